"""DSVAE: the disentangled sequential VAE that C-DSVAE, SPYL, R-WAE and DBSE build on.

Generative model (Li & Mandt 2018; C-DSVAE eq. 1):
    p(x_1:T, s, d_1:T) = p(s) prod_t p(d_t | d_<t) p(x_t | s, d_t),   p(s) = N(0, I),
with a learned LSTM prior p(d_t | d_<t). Posterior (C-DSVAE eq. 2):
    q(s, d_1:T | x_1:T) = q(s | x_1:T) prod_t q(d_t | d_<t, x_<=t).
Loss (negative ELBO, C-DSVAE eq. 3 / App. A.1):
    sum_{t,pixels} (x - x_hat)^2 + w_s KL[q(s|x) || N(0, I)]
                                 + w_d sum_t KL[q(d_t|.) || p(d_t | d_<t)],
every KL in closed form, the dynamic one against the prior teacher-forced on the posterior
sample d_<t; all terms are summed over dimensions and time and averaged over the batch.

Modalities (`modality`, SPYL App. A.3, DBSE App. A.4): the posteriors, the prior and every
method's loss are shared; only the frame networks differ.
  * `video`: the DCGAN-64 conv encoder and decoder (`seqdis_jax.nn.video`), squared error.
  * `speech`: no encoder (the spectral frames feed the LSTMs), an MLP decoder
    (`seqdis_jax.nn.speech`), squared error.
  * `series`: the GLR MLP encoder and LSTM decoder (`seqdis_jax.nn.series`) with a Gaussian
    likelihood; the reconstruction term is its negative log-likelihood.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from seqdis_jax import estimators
from seqdis_jax.models.method import LossInputs, LossOutput, Method, loss_output
from seqdis_jax.nn.gaussian import kl_diag_gaussians, kl_standard_normal, reparameterize
from seqdis_jax.nn.recurrent import (
    DynamicPosterior,
    DynamicPrior,
    RNNDynamicPosterior,
    StaticPosterior,
)
from seqdis_jax.nn.series import SeriesDecoder, SeriesEncoder
from seqdis_jax.nn.speech import SpeechDecoder
from seqdis_jax.nn.video import FrameDecoder, FrameEncoder, apply_updating_batch_stats

Array = jax.Array

MODALITIES = ("video", "speech", "series")
# q(d_1:T | x): `lstm` the paper's (C-DSVAE eq. 2: an LSTM on [g_t, d_{t-1}], nested sampling);
# `rnn_bilstm` the C-DSVAE authors' code (a tanh RNN over the static posterior's bidirectional
# LSTM outputs, d_t drawn independently; REFERENCE_FACTS.md section 4).
DYNAMIC_POSTERIORS = ("lstm", "rnn_bilstm")


class DSVAE(nn.Module):
    """The DSVAE base model. Methods are separate entry points for swapping and sampling.

    RNG streams: `'sample'` for every reparameterised draw. Variables: `params` and
    `batch_stats` (the frame encoder's and decoder's BatchNorm).
    """

    static_dim: int
    dynamic_dim: int
    hidden_dim: int = 256
    feature_dim: int = 128
    width: float = 1.0
    prior_layers: int = 2
    channels: int = 3
    dtype: Any = None
    fast_conv_transpose: bool = True
    conv_lowering: str = "gemm"  # the frame networks' CPU convolutions (FrameEncoder, -Decoder)
    modality: str = "video"  # one of MODALITIES
    num_features: int = 0  # F of a speech / series frame (B, T, F)
    dynamic_posterior_kind: str = "lstm"  # one of DYNAMIC_POSTERIORS
    static_head_activation: str = "linear"  # one of STATIC_HEAD_ACTIVATIONS
    recurrent_init: str = "flax"  # one of recurrent.RECURRENT_INITS
    image_size: int = 64  # video frames' side: 64 (the papers') or 32 (nn.video.BLOCK_CHANNELS)
    product_dtype: Any = None  # the frame networks' convolution products (model.product_dtype)

    def setup(self):
        if self.modality == "video":
            self.encoder = FrameEncoder(self.feature_dim, self.width, self.dtype,
                                        conv_lowering=self.conv_lowering,
                                        product_dtype=self.product_dtype)
            self.decoder = FrameDecoder(self.channels, self.width, self.dtype,
                                        self.fast_conv_transpose, self.conv_lowering,
                                        self.image_size, self.product_dtype)
        elif self.modality == "speech":
            self.decoder = SpeechDecoder(self.num_features, dtype=self.dtype)
        elif self.modality == "series":
            self.encoder = SeriesEncoder(self.dtype)
            self.decoder = SeriesDecoder(self.num_features, self.dtype)
        else:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}.")
        if self.dynamic_posterior_kind not in DYNAMIC_POSTERIORS:
            raise ValueError(f"dynamic_posterior must be one of {DYNAMIC_POSTERIORS}, got "
                             f"{self.dynamic_posterior_kind!r}.")
        shared_bilstm = self.dynamic_posterior_kind == "rnn_bilstm"
        init = self.recurrent_init
        self.static_posterior = StaticPosterior(
            self.static_dim, self.hidden_dim, self.dtype, self.static_head_activation,
            return_sequence=shared_bilstm, recurrent_init=init)
        if shared_bilstm:
            self.dynamic_posterior = RNNDynamicPosterior(self.dynamic_dim, self.hidden_dim,
                                                         self.dtype, init)
        else:
            self.dynamic_posterior = DynamicPosterior(self.dynamic_dim, self.hidden_dim,
                                                      self.dtype, init)
        self.prior = DynamicPrior(self.dynamic_dim, self.hidden_dim, self.prior_layers, self.dtype,
                                  init)

    def encode_frames(self, x: Array, train: bool) -> Array:
        """x_1:T -> per-frame features (B, T, g). Video: (B, T, H, W, C), all frames as one
        (B*T) conv batch; speech: the (B, T, F) frames themselves; series: the per-step MLP."""
        if self.modality == "speech":
            return x.astype(self.dtype or jnp.float32)
        if self.modality == "series":
            return self.encoder(x)
        b, t = x.shape[:2]
        return self.encoder(x.reshape((b * t,) + x.shape[2:]), train).reshape(b, t, -1)

    def decode_distribution(self, s: Array, d: Array, train: bool) -> tuple[Array, Array | None]:
        """Decoder input concat(s broadcast over time, d_t) -> (mean of x_1:T, its log-variance
        or None). Only `series` has a learned variance; the others are squared-error models."""
        b, t = d.shape[:2]
        s_t = jnp.broadcast_to(s[:, None, :], (b, t, s.shape[-1]))
        z = jnp.concatenate([s_t, d], axis=-1)
        if self.modality == "series":
            return self.decoder(z)
        if self.modality == "speech":
            return self.decoder(z), None
        frames = self.decoder(z.reshape(b * t, -1), train)
        return frames.reshape((b, t) + frames.shape[1:]), None

    def decode(self, s: Array, d: Array, train: bool) -> Array:
        """(s, d_1:T) -> the decoded sequence x_1:T (the likelihood's mean)."""
        return self.decode_distribution(s, d, train)[0]

    def posterior(self, features: Array) -> dict[str, Array]:
        """Posterior parameters and reparameterised samples of s and d_1:T."""
        if self.dynamic_posterior_kind == "rnn_bilstm":  # both read one bidirectional LSTM
            s_mean, s_logvar, bilstm_outputs = self.static_posterior(features)
        else:
            s_mean, s_logvar = self.static_posterior(features)
        s = reparameterize(self.make_rng("sample"), s_mean, s_logvar)
        eps = jax.random.normal(
            self.make_rng("sample"), features.shape[:2] + (self.dynamic_dim,)
        )
        if self.dynamic_posterior_kind == "rnn_bilstm":
            d_mean, d_logvar = self.dynamic_posterior(bilstm_outputs)
            d = d_mean + jnp.exp(0.5 * d_logvar) * eps
        else:
            d_mean, d_logvar, d = self.dynamic_posterior(features, eps)
        return dict(s_mean=s_mean, s_logvar=s_logvar, s=s, d_mean=d_mean, d_logvar=d_logvar, d=d)

    def encode(self, x: Array, train: bool = False) -> dict[str, Array]:
        """Posterior of s and d_1:T for a batch of sequences (no decoding)."""
        return self.posterior(self.encode_frames(x, train))

    def reconstruct(self, posterior: dict[str, Array], train: bool = True) -> dict[str, Array]:
        """Adds the teacher-forced prior of the posterior's d_1:T and the decoded frames."""
        out = dict(posterior)
        # The prior models d's first dynamic_dim dimensions (R-WAE's weakly supervised d
        # carries its action code after them).
        out["prior_mean"], out["prior_logvar"] = self.prior(out["d"][..., :self.dynamic_dim])
        out["reconstruction"], logvar = self.decode_distribution(out["s"], out["d"], train)
        if logvar is not None:
            out["reconstruction_logvar"] = logvar
        return out

    def __call__(self, x: Array, train: bool = True) -> dict[str, Array]:
        """Full pass: posterior, teacher-forced prior and reconstruction."""
        return self.reconstruct(self.posterior(self.encode_frames(x, train)), train)

    def reencode(self, codes: tuple[Array, Array], train: bool = True) -> dict[str, Array]:
        """Posterior of the sequences decoded from codes = (s, d_1:T): SPYL's predictive
        sampling (eq. 8). The decoded frames are under stop-gradient: they are generated
        training inputs, so the decoder is not trained to make views that are easy to
        contrast."""
        s, d = codes
        return self.encode(jax.lax.stop_gradient(self.decode(s, d, train)), train)

    def sample_dynamics(self, batch: int, num_steps: int) -> tuple[Array, Array]:
        """Free-running prior: (means, samples) of d_1:T, each (batch, T, dd)."""
        return self.prior.sample(batch, num_steps)


def _decode_distribution_of(module: DSVAE, codes: tuple[Array, Array], train: bool):
    return module.decode_distribution(*codes, train)


def decode_updating_batch_stats(model: DSVAE, params: Any, batch_stats: Any, s: Array,
                                d: Array, train: bool) -> tuple[tuple[Array, Array | None], Any]:
    """((mean of x_1:T, its log-variance or None), batch_stats) of decode(s, d_1:T) as an apply
    of its own -- its own BatchNorm batch in training, as a separate `decoder(...)` call of
    the authors' code (SPYL's views and bank, DBSE's anchor frame). Gradients flow through."""
    return apply_updating_batch_stats(model, params, batch_stats, (s, d), train,
                                      method=_decode_distribution_of)


def product_dtype(config: ml_collections.ConfigDict) -> Any:
    """`model.product_dtype` as the frame networks take it: None (the products in
    `model.compute_dtype`) or jnp.bfloat16 (bf16 products inside a float32 network)."""
    name = config.model.get("product_dtype", "float32")
    return None if name == "float32" else jnp.dtype(name)


def build(config: ml_collections.ConfigDict, module: type[DSVAE] = DSVAE, **fields: Any
          ) -> DSVAE:
    """The model of `config.model`; a method whose network subclasses DSVAE passes its class
    as `module` and its own fields."""
    m = config.model
    return module(
        static_dim=m.static_dim,
        dynamic_dim=m.dynamic_dim,
        hidden_dim=m.hidden_dim,
        feature_dim=m.feature_dim,
        width=m.width,
        prior_layers=m.prior_layers,
        channels=config.data.channels,
        dtype=jnp.dtype(m.compute_dtype) if m.compute_dtype != "float32" else None,
        fast_conv_transpose=m.fast_conv_transpose,
        conv_lowering=m.get("cpu_conv_lowering", "gemm"),
        modality=m.get("modality", "video"),
        num_features=config.data.get("num_features", 0),
        dynamic_posterior_kind=m.get("dynamic_posterior", "lstm"),
        static_head_activation=m.get("static_head_activation", "linear"),
        recurrent_init=m.get("recurrent_init", "flax"),
        image_size=config.data.get("image_size", 64),
        product_dtype=product_dtype(config),
        **fields,
    )


def check_method_section(config: ml_collections.ConfigDict, section: str, batch_minimum: int
                         ) -> ml_collections.ConfigDict:
    """The method's config section (`Method.validate` has checked that it is there), checked
    for what every contrastive method needs (a positive temperature, enough sequences per
    batch); ValueError names the fix."""
    if not config[section].temperature > 0:
        raise ValueError(f"config.{section}.temperature must be > 0, got "
                         f"{config[section].temperature}.")
    if config.data.batch_size < batch_minimum:
        raise ValueError(f"{section} contrasts the sequences of a batch: config.data.batch_size "
                         f"must be >= {batch_minimum}, got {config.data.batch_size}.")
    return config[section]


def flat(a: Array) -> Array:
    """(B, T, D) -> (B, T*D): a trajectory as one vector (how d_1:T is contrasted)."""
    return a.reshape(a.shape[0], -1)


# How C-DSVAE and SPYL estimate the I(s; d_1:T) they minimise: `sequence` the paper's MWS
# (C-DSVAE App. A.3 eq. 13, d_1:T as one variable); `per_frame_code` the authors' code
# (`estimators.mws_per_frame_code`).
MWS_ESTIMATORS = ("sequence", "per_frame_code")


def mws_static_dynamic(out: dict[str, Array], dataset_size: int,
                       estimator: str = "sequence") -> Array:
    """I(s; d_1:T) by minibatch weighted sampling with dataset size N, the term C-DSVAE and
    SPYL minimise, by `estimator` (one of MWS_ESTIMATORS)."""
    args = (out["s"], out["s_mean"], out["s_logvar"], out["d"], out["d_mean"], out["d_logvar"])
    if estimator == "per_frame_code":
        return estimators.mws_per_frame_code(*args, dataset_size=dataset_size)
    if estimator != "sequence":
        raise ValueError(f"mws_estimator must be one of {MWS_ESTIMATORS}, got {estimator!r}.")
    return estimators.mws_mutual_information(*args, dataset_size=dataset_size)["mi_s_d"]


def reconstruction_error_per_sequence(x: Array, x_hat: Array, logvar: Array | None = None
                                      ) -> Array:
    """-log p(x_1:T | s, d_1:T) up to a constant, summed over frames and features, (B,).
    Without `logvar`: the sum of squared errors (the papers' MSE term). With the decoder's
    log-variance (series): the Gaussian negative log-likelihood
    0.5 * (log 2 pi + logvar + (x - x_hat)^2 / e^logvar)."""
    sq = jnp.square(x_hat - x)
    if logvar is not None:
        sq = 0.5 * (jnp.log(2.0 * jnp.pi) + logvar + sq * jnp.exp(-logvar))
    return jnp.sum(sq.reshape(x.shape[0], -1), axis=-1)


def reconstruction_error(x: Array, x_hat: Array, logvar: Array | None = None) -> Array:
    """`reconstruction_error_per_sequence` averaged over the batch."""
    return jnp.mean(reconstruction_error_per_sequence(x, x_hat, logvar))


def output_reconstruction_error(x: Array, out: dict[str, Array]) -> Array:
    """`reconstruction_error` of a model output, with its likelihood variance when it has one."""
    return reconstruction_error(x, out["reconstruction"], out.get("reconstruction_logvar"))


# How a method reduces its reconstruction error over the batch (its reconstruction_reduction).
RECONSTRUCTION_REDUCTIONS = ("sum", "mean")


def reconstruction_scale(reduction: str, batch_size: int) -> int:
    """Factor on the batch-mean reconstruction error: `sum` (SPYL App. B, DBSE App. A.3: "we did
    not normalize the MSE by the batch size") gives B, so the error is summed over the batch
    while the KL terms stay batch means; `mean` (the authors' code) gives 1."""
    if reduction not in RECONSTRUCTION_REDUCTIONS:
        raise ValueError(f"reconstruction_reduction must be one of "
                         f"{RECONSTRUCTION_REDUCTIONS}, got {reduction!r}.")
    return batch_size if reduction == "sum" else 1


def dynamic_kl_per_sequence(out: dict[str, Array]) -> Array:
    """Closed-form sum_t KL[q(d_t | .) || p(d_t | d_<t)] per sequence, (B,), against the
    teacher-forced prior. Only the prior's dimensions of d are compared (R-WAE's weakly
    supervised d carries its action code after them), and the time steps are weighed by
    `out["dynamic_kl_mask"]` (T,) when the model gives one (DBSE leaves out its anchor)."""
    dims = out["prior_mean"].shape[-1]
    kl_d = kl_diag_gaussians(out["d_mean"][..., :dims], out["d_logvar"][..., :dims],
                             out["prior_mean"], out["prior_logvar"])
    if "dynamic_kl_mask" in out:
        kl_d = kl_d * out["dynamic_kl_mask"][:, None]
    return jnp.sum(kl_d, axis=(1, 2))


def kl_terms(out: dict[str, Array]) -> tuple[Array, Array]:
    """Closed-form KL of s against N(0, I) and of d_1:T against the teacher-forced prior
    (`dynamic_kl_per_sequence`), summed over dimensions (and time), averaged over the batch."""
    kl_s = jnp.mean(jnp.sum(kl_standard_normal(out["s_mean"], out["s_logvar"]), axis=-1))
    return kl_s, jnp.mean(dynamic_kl_per_sequence(out))


def loss_fn(inputs: LossInputs) -> LossOutput:
    """Negative ELBO of DSVAE (C-DSVAE eq. 3); metrics: its three terms."""
    out, batch_stats = inputs.forward()
    recon = output_reconstruction_error(inputs.x, out)
    kl_s, kl_d = kl_terms(out)
    w = inputs.config.loss
    loss = recon + w.kl_static_weight * kl_s + w.kl_dynamic_weight * kl_d
    return loss_output(loss, batch_stats, reconstruction=recon, kl_static=kl_s, kl_dynamic=kl_d)


METHOD = Method(name="dsvae", build=build, loss=loss_fn)
