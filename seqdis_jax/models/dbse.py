"""DBSE: sequential disentanglement by extracting the static factor from a single sequence
element (Berman, Naiman, Pegueroles, Azencot, "Mitigating Mode Collapse in Sequential
Disentanglement via an Architecture Bias", ICLR 2024).

Generative model and learned prior p(d_t | d_<t) as DSVAE (`dsvae.DSVAE`, DBSE eq. 1). The
posterior conditions s on one frame, the anchor x_a, and sets the anchor's dynamics to zero
(DBSE eq. 4, written there for a = 1):
    q(s, d_1:T | x_1:T) = q(s | x_a) prod_{t != a} q(d_t | s, d_<t, x_<=t),   d_a := 0.
Network (DBSE Sec. 4 "An architectural bias", Fig. 1), on the DSVAE frame encoder's g_1:T:
  * static path: s~ = tanh(Dense(g_a)), then linear heads mu(s~), log sigma^2(s~) and a
    reparameterised s;
  * dynamic path: the DSVAE dynamic posterior (a unidirectional LSTM with nested sampling,
    input [g_t, d_{t-1}]) whose output h~_t has s~ subtracted before the Gaussian head,
    h_t = h~_t - s~ (eq. 8; the recurrent carry is not changed). The anchor step is skipped:
    d_a = 0 (mean 0; its log-variance is reported as 0, a constant that the KL mask ignores),
    the LSTM carry passes through it and the next step reads d_{t-1} = d_a = 0.
Loss (eqs. 5-7, as a loss to minimise):
    sum_{t != a} ||x_t - x^_t||^2 + alpha ||x_a - x^_a||^2
        + beta_s KL[q(s | x_a) || N(0, I)] + beta_d sum_{t != a} KL[q(d_t | .) || p(d_t | d_<t)],
x^_a decoded from (s, d_a = 0): one decoder pass of (s, d_1:T) gives every frame. The KLs are
closed-form, the dynamic one against the prior teacher-forced on the whole d_1:T (d_a = 0
included as its input). beta_s, beta_d = `loss.kl_static_weight`, `loss.kl_dynamic_weight`
(one beta in the paper; kept apart because the authors' MUG script zeroes the static one).

Switches (`config.dbse`; defaults are the paper):
  * `anchor` first / middle / last: a = 0, (T - 1) // 2, T - 1 (0-based), the x_1, x_{T/2},
    x_T of Table 4 (bottom).
  * `anchor_weight` alpha (Table 5: Sprites 0.2); `first_frame_loss` False drops the alpha term
    (Table 4 "no loss").
  * `subtraction`: `hidden` (eq. 8); `none`, h_t = h~_t (Table 4 "no sub"; "no both" is
    `none` with `first_frame_loss` False); `features`, the authors' code (below).
  * `sequence_reconstruction`: `others` (eq. 5, t != a) or `all` (every frame, plus the alpha
    term: the authors' Sprites code).
  * `reconstruction_reduction`: `sum` (App. A.3: the MSE is not divided by the batch size, the
    KLs are batch means) or `mean` (the authors' code).

What the authors' code (azencot-group/DBSE, `video/model/dbse_model.py`, `run_sprites.py`;
REFERENCE_FACTS.md section 2) does differently, and the switch that gives it:
  * `subtraction="features"`: g_t - g_a is subtracted on the encoder features of every frame,
    the anchor's slot (then 0) is replaced by N(0, I) noise, and a 2-layer bidirectional LSTM of
    hidden size dd runs over all T frames with per-step Gaussian heads (no nested sampling,
    `recurrent.BidirectionalDynamicPosterior`). d_a is then the posterior sample at the noise
    slot, not 0: it is decoded for the anchor's frame, is clamped nowhere (also not in
    `sample_dynamics`) and its KL is counted (the code sums the KL over all T). The static path
    is the paper's.
  * `sequence_reconstruction="all"` and `reconstruction_reduction="mean"` (Sprites script).
  * Its Sprites weights, 5 on the sequence error and 1 on the anchor error and on both KLs
    (`sprites_hyperparameters.py`), are alpha = beta = 0.2 up to a global factor 5.
  * `anchor_decode="separate"`: the anchor's frame for the alpha term is decoded by a second
    decoder call on (s, d_a) alone, `recon_frame_x` of dbse_model.py, so it is normalised with
    the BatchNorm statistics of those B frames and updates the running averages a second
    time (after the sequence pass). In eval mode it equals the one pass; in training the
    gradients differ (REFERENCE_FACTS.md section 4: by up to ~10 %). The paper's `shared`
    takes x^_a from the one decoder pass of all frames.
In training, BatchNorm's batch statistics couple every frame in the encoder, as in the code;
"s depends on x_a only" holds exactly with the running averages (evaluation).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from seqdis_jax.models import dsvae
from seqdis_jax.models.method import LossInputs, LossOutput, Method, loss_output
from seqdis_jax.nn.gaussian import reparameterize
from seqdis_jax.nn.recurrent import BidirectionalDynamicPosterior, GaussianHead, dense_init

Array = jax.Array

ANCHORS = ("first", "middle", "last")
SUBTRACTIONS = ("hidden", "none", "features")
SEQUENCE_RECONSTRUCTIONS = ("others", "all")
ANCHOR_DECODES = ("shared", "separate")


def anchor_index(anchor: str, num_steps: int) -> int:
    """0-based index a of the anchor frame: x_1, x_{T/2}, x_T of DBSE Table 4 (bottom)."""
    return {"first": 0, "middle": (num_steps - 1) // 2, "last": num_steps - 1}[anchor]


class DBSE(dsvae.DSVAE):
    """The DSVAE network with DBSE's posterior (eqs. 4, 8). Encoder, decoder, learned prior and,
    for `subtraction` hidden / none, the dynamic posterior LSTM are the DSVAE modules; the
    DSVAE static posterior (a bidirectional LSTM over all frames) is never called and so has no
    parameters. `self.sow('intermediates', 's_tilde', s~)` exposes the static MLP's output."""

    anchor: str = "first"
    subtraction: str = "hidden"

    def setup(self):
        super().setup()
        self.static_mlp = nn.Dense(self.hidden_dim, kernel_init=dense_init, dtype=self.dtype)
        self.static_head = GaussianHead(self.static_dim, self.dtype)
        if self.subtraction == "features":
            # The authors' nn.LSTM(g, dd, 2, bidirectional=True): hidden size dd.
            self.feature_dynamic_posterior = BidirectionalDynamicPosterior(
                self.dynamic_dim, self.dynamic_dim, num_layers=2, dtype=self.dtype,
                recurrent_init=self.recurrent_init)

    def posterior(self, features: Array) -> dict[str, Array]:
        """q(s | x_a) and q(d_t | s, d_<t, x_<=t), t != a, with d_a = 0 (DBSE eqs. 4, 8)."""
        b, t = features.shape[:2]
        a = anchor_index(self.anchor, t)
        g_a = features[:, a]
        s_tilde = jnp.tanh(self.static_mlp(g_a))  # s~, Sec. 4
        self.sow("intermediates", "s_tilde", s_tilde)
        s_mean, s_logvar = self.static_head(s_tilde)
        s = reparameterize(self.make_rng("sample"), s_mean, s_logvar)
        eps = jax.random.normal(self.make_rng("sample"), (b, t, self.dynamic_dim))
        if self.subtraction == "features":  # the authors' code
            noise = jax.random.normal(self.make_rng("sample"), g_a.shape, features.dtype)
            inputs = (features - g_a[:, None]).at[:, a].set(noise)
            d_mean, d_logvar = self.feature_dynamic_posterior(inputs)
            d = d_mean + jnp.exp(0.5 * d_logvar) * eps
        else:
            d_mean, d_logvar, d = self.dynamic_posterior(
                features, eps,
                hidden_offset=s_tilde if self.subtraction == "hidden" else None,  # eq. (8)
                skip=jnp.arange(t) == a)  # d_a := 0, eq. (4)
        # Eq. (6): the dynamic KL over t != a; under `features` d_a is a latent and counted.
        kl_mask = jnp.ones((t,)) if self.subtraction == "features" else (jnp.arange(t) != a)
        return dict(s_mean=s_mean, s_logvar=s_logvar, s=s, d_mean=d_mean, d_logvar=d_logvar, d=d,
                    dynamic_kl_mask=kl_mask.astype(jnp.float32))

    def sample_dynamics(self, batch: int, num_steps: int) -> tuple[Array, Array]:
        """Free-running prior (means, samples) of d_1:T with d_a clamped to 0 inside the
        recursion (the next step is conditioned on 0); unclamped under `features`."""
        zero = None
        if self.subtraction != "features":
            zero = jnp.arange(num_steps) == anchor_index(self.anchor, num_steps)
        return self.prior.sample(batch, num_steps, zero_steps=zero)


def build(config: ml_collections.ConfigDict) -> DBSE:
    return dsvae.build(config, DBSE, anchor=config.dbse.anchor,
                       subtraction=config.dbse.subtraction)


def default_config() -> ml_collections.ConfigDict:
    """`config.dbse`: the paper's model (eqs. 4-8, App. A.3) and Sprites' alpha of Table 5 as
    defaults. The betas of eq. (6) are `loss.kl_static_weight` and `loss.kl_dynamic_weight`
    (experiment files set them)."""
    c = ml_collections.ConfigDict()
    c.anchor = "first"  # s from x_1; or "middle" (x_{T/2}), "last" (x_T) (Table 4, bottom)
    c.anchor_weight = 0.2  # alpha of eq. (5) (Table 5, Sprites)
    c.first_frame_loss = True  # False: no alpha term (Table 4 "no loss")
    c.subtraction = "hidden"  # h_t = h~_t - s~ (eq. 8); "none" (Table 4 "no sub"); "features"
    c.sequence_reconstruction = "others"  # eq. (5): t != a; "all" (the authors' Sprites code)
    c.anchor_decode = "shared"  # x^_a from the one decoder pass; "separate": the code's 2nd call
    c.reconstruction_reduction = "sum"  # App. A.3: MSE not divided by the batch; code: "mean"
    return c


def validate_config(config: ml_collections.ConfigDict) -> None:
    """DBSE's checks (`Method.checks`); ValueError names the fix."""
    c = config.dbse
    for field, allowed in (("anchor", ANCHORS), ("subtraction", SUBTRACTIONS),
                           ("sequence_reconstruction", SEQUENCE_RECONSTRUCTIONS),
                           ("anchor_decode", ANCHOR_DECODES),
                           ("reconstruction_reduction", dsvae.RECONSTRUCTION_REDUCTIONS)):
        if c[field] not in allowed:
            raise ValueError(f"config.dbse.{field} must be one of {allowed}, got {c[field]!r}.")
    if not c.anchor_weight >= 0:
        raise ValueError(f"config.dbse.anchor_weight (alpha of DBSE eq. 5) must be >= 0, got "
                         f"{c.anchor_weight}.")
    posterior = config.model.get("dynamic_posterior", "lstm")
    if posterior != "lstm" and posterior in dsvae.DYNAMIC_POSTERIORS:  # others: configuration
        raise ValueError(f"config.model.dynamic_posterior={posterior!r} is the C-DSVAE authors' "
                         "posterior; dbse has its own: set it to 'lstm'.")


def _decode_anchor(inputs: LossInputs, batch_stats: Any, out: dict[str, Array], a: int):
    """x^_a from a decoder call of its own on (s, d_a): (frames (B, 1, ...), log-variance or
    None, batch_stats) -- the authors' `recon_frame_x`."""
    (frames, logvar), batch_stats = dsvae.decode_updating_batch_stats(
        inputs.model, inputs.params, batch_stats, out["s"], out["d"][:, a:a + 1], inputs.train)
    return frames, logvar, batch_stats


def loss_fn(inputs: LossInputs) -> LossOutput:
    """DBSE eqs. (5)-(7) as a loss; metrics: its terms, the reconstruction errors per sequence
    (batch means) whatever the reduction."""
    config, x = inputs.config, inputs.x
    c = config.dbse
    out, batch_stats = inputs.forward()
    a = anchor_index(c.anchor, x.shape[1])

    def error_of(frames):  # the reconstruction term over the frames `frames` selects
        logvar = out.get("reconstruction_logvar")  # series: the Gaussian likelihood's
        return dsvae.reconstruction_error(frames(x), frames(out["reconstruction"]),
                                          None if logvar is None else frames(logvar))

    # Eq. (5): the sequence term over t != a (or every frame), and the anchor's frame
    # decoded from (s, d_a).
    if c.sequence_reconstruction == "all":
        recon = error_of(lambda v: v)
    else:
        recon = error_of(lambda v: jnp.delete(v, a, axis=1))
    if c.get("anchor_decode", "shared") == "separate":
        frames, logvar, batch_stats = _decode_anchor(inputs, batch_stats, out, a)
        recon_anchor = dsvae.reconstruction_error(x[:, a:a + 1], frames, logvar)
    else:
        recon_anchor = error_of(lambda v: v[:, a])
    alpha = c.anchor_weight if c.first_frame_loss else 0.0
    scale = dsvae.reconstruction_scale(c.reconstruction_reduction, x.shape[0])
    kl_s, kl_d = dsvae.kl_terms(out)  # eq. (6), the anchor masked by the posterior's output
    loss = (scale * (recon + alpha * recon_anchor) + config.loss.kl_static_weight * kl_s
            + config.loss.kl_dynamic_weight * kl_d)
    return loss_output(loss, batch_stats, reconstruction=recon,
                       reconstruction_anchor=recon_anchor, kl_static=kl_s, kl_dynamic=kl_d)


METHOD = Method(name="dbse", build=build, loss=loss_fn, default_config=default_config,
                checks=validate_config)
