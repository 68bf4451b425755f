"""R-WAE: the disentangled recurrent Wasserstein autoencoder (Han et al., ICLR 2021).

The posterior networks, the learned prior and the frame networks are DSVAE's
(models/dsvae.py); what changes is the decoder's input, the objective, eq. (9), and how it is
optimised (App. G, Alg. 1-2).

* Decoder input, `rwae.decoder_fusion` (Fig. 1(a), App. G, Fig. 8(d)-(e)):
  - "fc_lstm" (default, the paper): concat(s, d_t) per step -> FC -> LSTM over time
    (seqdis_jax/nn/fusion.py, a `lax.scan`); the frame decoder of the modality reads the
    LSTM's hidden state h_t, so x_t depends on s and d_<=t. FC width = LSTM size =
    `rwae.fusion_dim`, 0 meaning the paper's h_t: `model.feature_dim` for video (Sprites 150,
    MUG 180: Figs. 9-10; the encoder's h_t and the decoder's have the same symbol and size) and
    `model.hidden_dim` otherwise (TIMIT: "The dimension of hidden states is 256"). The paper
    gives no width or activation for the FC layer: it is linear and as wide as h_t. Its
    parameters (top-level `fusion`) are stepped with the decoder and the prior.
  - "framewise": DSVAE's decoder on concat(s, d_t), frame by frame (the ablation, and this
    library's R-WAE before the fusion). Its parameter tree is DSVAE's plus the critic (and the
    action posterior); "fc_lstm" adds `fusion`, so checkpoints of one do not restore into the
    other.

The objective and its optimisation:

    sum_t E ||x_t - x^_t||^2  +  beta_1 D(Q_s, P_s)  +  beta_2 sum_t D(Q_{d_t|d<t}, P_{d_t|d<t})
        + w_d sum_t KL[q(d_t|.) || p(d_t|d<t)]                 (App. D: "for stability")
        + w_a KL[q(a|d_1:T) || Uniform(A)]                     (Sec. 3.4, weak supervision)

* D on d_t (both variants; App. D eq. 21): the unbiased MMD with a mixture of RBF kernels
  between the posterior samples d_t and samples of the learned prior p(d_t | d_<t), per step,
  summed over t. The prior is teacher-forced on the posterior's d_<t, so the two samples of
  step t share their histories: D compares the conditionals, as eq. (9) writes them, and the
  estimator is the paired U-statistic (the (i, i) cross pairs are dependent and left out).
* D on s, `rwae.divergence_static`:
  - "mmd", R-WAE(MMD): the scaled MMD of App. D with a learned scalar feature map f_gamma
    (MLP 256-256-128-1 with spectral normalisation), MMD_k(f(s~), f(s)) / (1 + 10 E_P ||grad
    f(s)||^2), s ~ N(0, I). The encoder minimises it; f_gamma maximises it.
  - "gan", R-WAE(GAN): a discriminator D_gamma (the same MLP) on s with the JS objective of
    eq. (23), which the encoder minimises and D_gamma maximises minus the gradient penalty of
    eq. (24) on interpolates between prior and posterior samples.
* Alg. 1-2: each iteration updates the encoder and the critic L times (a fresh batch each)
  and then the decoder and the prior once. Here every training step takes one batch and is
  one jitted function; its phase is `step mod (L + 1)` (< L: encoder + critic, = L:
  decoder + prior), chosen with `lax.cond`. Each group has its own Adam(0.5, 0.9) state and
  learning rate (seqdis_jax/optim.py); the epoch schedule (x0.5 after 50 epochs, x0.2 more
  after 80) is applied at the global step.
* One backward pass serves both players: the model's loss sees the critic's parameters under
  stop-gradient and the critic's loss sees the posterior samples under stop-gradient, so the
  gradient of their sum is each player's own gradient.
* Weak supervision (`rwae.num_actions` = A > 0, Sec. 3.4): q(a | d_1:T), an LSTM over the
  motion codes, gives a relaxed one-hot a by Gumbel-softmax; the decoder reads (s, d_t, a)
  (with "fc_lstm" through the FC-LSTM, Fig. 8(e)).
  To the evaluators a is part of the dynamic code: `d` is (d_t, a) (paper: z_t^R = (z_t^m, a)),
  and `sample_dynamics` draws a from the uniform prior.

Not reproduced: the ResBlock/self-attention encoder and decoder of App. G (Tables 5-8: FC
and reshape to (N, 2048, 2, 2), "ResBlock up" 1024-512-256-128-64, with h_t split evenly among
the ResBlocks, Fig. 7(b)); this library's methods share the DCGAN-64 frame decoder, which reads
h_t as its latent vector (REFERENCE_FACTS.md section 1).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from seqdis_jax import estimators, optim
from seqdis_jax.models import dsvae
from seqdis_jax.models.dsvae import DSVAE, kl_terms, output_reconstruction_error
from seqdis_jax.models.method import LossInputs, LossOutput, Method, TrainStateLike
from seqdis_jax.nn.critic import LatentCritic
from seqdis_jax.nn.fusion import FcLstmFusion
from seqdis_jax.nn.gaussian import reparameterize
from seqdis_jax.nn.recurrent import dense_init

Array = jax.Array

DIVERGENCES = ("mmd", "gan")
RECONSTRUCTIONS = ("l2", "bernoulli")
DECODER_FUSIONS = ("fc_lstm", "framewise")  # rwae.decoder_fusion; see the module docstring
# Parameter groups of Alg. 1-2, by top-level submodule; each has its own Adam.
GROUPS = ("decoder", "encoder", "critic")
_GROUP_OF = {"decoder": "decoder", "fusion": "decoder", "prior": "decoder", "critic": "critic"}


def group_of(submodule: str) -> str:
    """decoder + its FC-LSTM input + prior (p_theta, p_psi), critic (f_gamma / D_gamma), the
    rest: encoder (q_phi)."""
    return _GROUP_OF.get(submodule, "encoder")


class ActionPosterior(nn.Module):
    """q(a | d_1:T) (Fig. 8c): an LSTM over the motion codes, logits of A actions from its
    last state."""

    num_actions: int
    hidden_dim: int
    dtype: Any = None

    @nn.compact
    def __call__(self, d: Array) -> Array:
        rnn = nn.RNN(nn.OptimizedLSTMCell(self.hidden_dim, dtype=self.dtype, name="lstm"))
        (_, last), _ = rnn(d, return_carry=True)
        logits = nn.Dense(self.num_actions, kernel_init=dense_init, dtype=self.dtype,
                          name="logits")(last)
        return logits.astype(jnp.float32)


class RWAE(DSVAE):
    """DSVAE's networks plus the latent critic on s (and the action posterior when A > 0),
    and the FC-LSTM before the frame decoder when `decoder_fusion` is "fc_lstm".

    `d` in every output is the decoder's dynamic input: d_t, or (d_t, a) with actions."""

    critic_hidden: tuple[int, ...] = (256, 256, 128)
    critic_spectral_norm: bool = True
    num_actions: int = 0
    gumbel_temperature: float = 0.67
    decoder_fusion: str = "fc_lstm"  # one of DECODER_FUSIONS
    fusion_dim: int = 0  # FC width and LSTM size; 0: `default_fusion_dim`

    def default_fusion_dim(self) -> int:
        """The paper's h_t: the frame feature size for video, the LSTM size otherwise."""
        return self.feature_dim if self.modality == "video" else self.hidden_dim

    def setup(self):
        super().setup()
        if self.decoder_fusion == "fc_lstm":
            self.fusion = FcLstmFusion(self.fusion_dim or self.default_fusion_dim(), self.dtype)
        elif self.decoder_fusion != "framewise":
            raise ValueError(f"decoder_fusion must be one of {DECODER_FUSIONS}, got "
                             f"{self.decoder_fusion!r}.")
        self.critic = LatentCritic(self.critic_hidden, self.critic_spectral_norm)
        if self.num_actions:
            self.action_posterior = ActionPosterior(self.num_actions, self.hidden_dim,
                                                    self.dtype)

    def posterior(self, features: Array) -> dict[str, Array]:
        out = super().posterior(features)
        if not self.num_actions:
            return out
        logits = self.action_posterior(out["d"])
        a = estimators.gumbel_softmax(self.make_rng("sample"), logits, self.gumbel_temperature)
        t = out["d"].shape[1]
        over_time = lambda v: jnp.broadcast_to(v[:, None], (v.shape[0], t, v.shape[-1]))
        return out | dict(
            action_logits=logits,
            d=jnp.concatenate([out["d"], over_time(a)], -1),
            # For the evaluators the action part is a point mass at q(a)'s probabilities.
            d_mean=jnp.concatenate([out["d_mean"], over_time(jax.nn.softmax(logits))], -1),
            d_logvar=jnp.concatenate([out["d_logvar"], jnp.zeros_like(over_time(logits))], -1),
        )

    def decoder_input(self, s: Array, d: Array) -> Array:
        """Per-step input of the frame decoder, (B, T, .): concat(s, d_t) ("framewise") or the
        LSTM's hidden states h_t over it ("fc_lstm", App. G / Fig. 8(d))."""
        b, t = d.shape[:2]
        z = jnp.concatenate([jnp.broadcast_to(s[:, None, :], (b, t, s.shape[-1])), d], axis=-1)
        return z if self.decoder_fusion == "framewise" else self.fusion(z)

    def decode_distribution(self, s: Array, d: Array, train: bool) -> tuple[Array, Array | None]:
        if self.decoder_fusion == "framewise":
            return super().decode_distribution(s, d, train)
        h = self.decoder_input(s, d)
        # DSVAE's frame decoder of the modality on h_t: its input concat(s, d_t) with a
        # zero-width s is h_t itself.
        return super().decode_distribution(h[:, 0, :0], h, train)

    def reconstruct(self, posterior: dict[str, Array], train: bool = True) -> dict[str, Array]:
        out = super().reconstruct(posterior, train)
        # One power iteration of the critic's spectral normalisation per training step.
        self.critic(jax.lax.stop_gradient(out["s"]), update_stats=train)
        return out

    def critic_scores(self, s: Array) -> Array:
        """f_gamma(s) or the discriminator logits D_gamma(s), (B,)."""
        return self.critic(s, update_stats=False)

    def sample_dynamics(self, batch: int, num_steps: int) -> tuple[Array, Array]:
        means, samples = self.prior.sample(batch, num_steps)
        if not self.num_actions:
            return means, samples
        action = jax.random.randint(self.make_rng("sample"), (batch,), 0, self.num_actions)
        a = jnp.broadcast_to(jax.nn.one_hot(action, self.num_actions)[:, None],
                             (batch, num_steps, self.num_actions))
        return jnp.concatenate([means, a], -1), jnp.concatenate([samples, a], -1)


def build(config: ml_collections.ConfigDict) -> RWAE:
    r = config.rwae
    return dsvae.build(config, RWAE, critic_hidden=tuple(r.critic_hidden),
                       critic_spectral_norm=r.critic_spectral_norm, num_actions=r.num_actions,
                       gumbel_temperature=r.gumbel_temperature,
                       decoder_fusion=r.decoder_fusion, fusion_dim=r.fusion_dim)


def default_config(divergence_static: str = "mmd") -> ml_collections.ConfigDict:
    """`config.rwae`: the paper's Sprites settings (App. G) as defaults. `divergence_static`:
    "mmd" for R-WAE(MMD) (scaled MMD, spectrally normalised f_gamma), "gan" for R-WAE(GAN) (JS
    discriminator with the gradient penalty of eq. 24). Its optimiser and KL weights are
    `config.train`'s and `config.loss`'s (`CONFIG_OVERRIDES`)."""
    c = ml_collections.ConfigDict()
    c.divergence_static = divergence_static
    c.static_weight = 10.0  # beta_1 of eq. (9)
    c.dynamic_weight = 60.0  # beta_2 of eq. (9)
    c.reconstruction = "l2"  # or "bernoulli" (SM-MNIST)
    # Decoder input (Fig. 1(a), App. G, Fig. 8(d)): "fc_lstm", concat(s, d_t) -> FC -> LSTM ->
    # frame decoder; "framewise", DSVAE's frame-by-frame decoder on concat(s, d_t) (ablation;
    # the parameter tree of R-WAE runs made before the fusion existed).
    c.decoder_fusion = "fc_lstm"
    c.fusion_dim = 0  # FC width = LSTM size; 0: h_t = model.feature_dim (video), else hidden_dim
    c.kernel_bandwidths = (1.0, 2.0, 4.0, 8.0, 16.0)  # sigmas of the RBF mixture on d_t
    c.critic_steps = 5  # L: encoder + critic steps per decoder + prior step (Alg. 1-2)
    c.critic_hidden = (256, 256, 128)  # f_gamma / D_gamma: FC 256-256-128-1 (App. G)
    # Spectral parametrisation of f_gamma (App. D, R-WAE(MMD)); the GAN uses eq. (24) instead.
    c.critic_spectral_norm = divergence_static == "mmd"
    c.smmd_gradient_scale = 10.0  # the 10 of 1 / (1 + 10 E||grad f||^2)
    c.gradient_penalty_weight = 10.0  # lambda of eq. (24); the paper gives no value
    c.encoder_learning_rate = 1e-4  # config.train.learning_rate is the decoder + prior's
    c.critic_learning_rate = 1e-4
    c.lr_decay_epochs = (50, 80)  # every rate x0.5 after 50 epochs, x0.2 more after 80
    c.lr_decay_factors = (0.5, 0.2)
    c.num_actions = 0  # A > 0: the weakly supervised model of Sec. 3.4
    c.gumbel_temperature = 0.67  # tau; the paper gives no value (Maddison et al.'s 2/3)
    c.action_kl_weight = 50.0  # App. G (MUG)
    return c


CONFIG_OVERRIDES = {
    # App. G: the decoder + prior's Adam(0.5, 0.9) at 3e-4.
    "train.learning_rate": 3e-4, "train.adam_b1": 0.5, "train.adam_b2": 0.9,
    # KL on d only "to stabilize training" (App. D); s is regularised by D alone.
    "loss.kl_static_weight": 0.0, "loss.kl_dynamic_weight": 1.0,
}


def validate_config(config: ml_collections.ConfigDict) -> None:
    """R-WAE's checks (`Method.checks`); ValueError names the fix."""
    r = config.rwae
    if r.divergence_static not in DIVERGENCES:
        raise ValueError(f"config.rwae.divergence_static must be one of {DIVERGENCES}, got "
                         f"{r.divergence_static!r}.")
    if r.reconstruction not in RECONSTRUCTIONS:
        raise ValueError(f"config.rwae.reconstruction must be one of {RECONSTRUCTIONS}, got "
                         f"{r.reconstruction!r}.")
    if r.decoder_fusion not in DECODER_FUSIONS:
        raise ValueError(f"config.rwae.decoder_fusion must be one of {DECODER_FUSIONS}, got "
                         f"{r.decoder_fusion!r}.")
    if int(r.fusion_dim) < 0:
        raise ValueError(f"config.rwae.fusion_dim must be >= 0 (0: the paper's h_t, "
                         f"config.model.feature_dim for video), got {r.fusion_dim}.")
    if int(r.critic_steps) < 1:
        raise ValueError(f"config.rwae.critic_steps (L of Alg. 1-2) must be >= 1, got "
                         f"{r.critic_steps}.")
    if config.data.batch_size < 2:
        raise ValueError("The unbiased MMD compares samples within a batch: "
                         f"config.data.batch_size must be >= 2, got {config.data.batch_size}.")
    if not r.kernel_bandwidths or min(r.kernel_bandwidths) <= 0:
        raise ValueError(f"config.rwae.kernel_bandwidths must be positive, got "
                         f"{r.kernel_bandwidths}.")
    if r.num_actions < 0 or (r.num_actions and not r.gumbel_temperature > 0):
        raise ValueError("config.rwae.num_actions must be >= 0 (0: no action variable) and "
                         "config.rwae.gumbel_temperature > 0.")
    if len(r.lr_decay_epochs) != len(r.lr_decay_factors):
        raise ValueError("config.rwae.lr_decay_epochs and lr_decay_factors must have the same "
                         f"length, got {r.lr_decay_epochs} and {r.lr_decay_factors}.")


# ---------------------------------------------------------------------------------------
# Optimisation (App. G): one Adam(0.5, 0.9) per group, phases by step.


def group_transforms(config: ml_collections.ConfigDict) -> dict[str, optax.GradientTransformation]:
    """Adam per group: decoder + prior at config.train.learning_rate, the encoder and the
    critic at their own rates (Sprites: 3e-4, 1e-4, 1e-4)."""
    t, r = config.train, config.rwae
    rates = {"decoder": t.learning_rate, "encoder": r.encoder_learning_rate,
             "critic": r.critic_learning_rate}

    def adam(rate):
        tx = optax.adam(rate, b1=t.adam_b1, b2=t.adam_b2)
        return optax.chain(optax.clip_by_global_norm(t.grad_clip_norm), tx) \
            if t.grad_clip_norm > 0 else tx

    return {group: adam(rates[group]) for group in GROUPS}


def param_labels(params: dict[str, Any]) -> dict[str, str]:
    """The `optax.partition` labels: each top-level submodule's `group_of`."""
    return {name: group_of(name) for name in params}


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """The groups' Adams as one `optax.partition`, which `train_update` steps a phase at a
    time (`optim.step_groups`)."""
    return optax.partition(group_transforms(config), param_labels)


def learning_rate_decay(config: ml_collections.ConfigDict) -> optax.Schedule:
    """Multiplier of every learning rate at a global step: x0.5 after 50 epochs, then x0.2
    after 80 (App. G), an epoch being num_train / batch_size steps."""
    r = config.rwae
    steps_per_epoch = max(1, config.data.num_train // config.data.batch_size)
    return optax.piecewise_constant_schedule(
        1.0, {int(e * steps_per_epoch): f for e, f in zip(r.lr_decay_epochs, r.lr_decay_factors)})


def encoder_phase(step: Array, config: ml_collections.ConfigDict) -> Array:
    """True on the L encoder + critic steps of an iteration, False on its decoder step."""
    return step % (config.rwae.critic_steps + 1) < config.rwae.critic_steps


def train_update(model: RWAE, tx: optax.GradientTransformation,
                 config: ml_collections.ConfigDict,
                 state: TrainStateLike, batch: dict[str, Array], rng: Array
                 ) -> tuple[TrainStateLike, dict[str, Array]]:
    """One step of Alg. 1-2 (`Method.update`, traced inside the jitted train step): one
    gradient of both players' losses, then the phase's groups stepped through `tx`."""

    def objective(params):
        model_loss, critic_loss, metrics, batch_stats = objectives(
            LossInputs(model, params, state.batch_stats, batch, rng, config))
        return model_loss + critic_loss, (metrics, batch_stats)

    (_, (metrics, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params)
    scale = learning_rate_decay(config)(state.step)

    def step_groups(active):
        return lambda: optim.step_groups(tx, param_labels(state.params), active, grads,
                                         state.opt_state, state.params, scale)

    params, opt_state = jax.lax.cond(encoder_phase(state.step, config),
                                     step_groups(("encoder", "critic")),
                                     step_groups(("decoder",)))
    metrics = {**metrics, "grad_norm": optax.tree.norm(grads)}
    return state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                         opt_state=opt_state), metrics


# ---------------------------------------------------------------------------------------
# The objective.


def _reconstruction(x: Array, out: dict[str, Array], kind: str) -> Array:
    if kind == "l2":  # squared error, or the Gaussian NLL of a series decoder
        return output_reconstruction_error(x, out)
    # Bernoulli log-likelihood of binary frames (SM-MNIST); the decoder outputs probabilities.
    p = jnp.clip(out["reconstruction"], 1e-6, 1 - 1e-6)
    bce = -(x * jnp.log(p) + (1 - x) * jnp.log1p(-p))
    return jnp.mean(jnp.sum(bce.reshape(x.shape[0], -1), axis=-1))


def _static_divergence(model, params, batch_stats, s_posterior, rng, config):
    """(encoder's term, critic's loss, the divergence's value) for D(Q_s, P_s).

    The encoder's term sees the critic under stop-gradient; the critic's loss sees the
    posterior samples under stop-gradient."""
    r = config.rwae
    prior_rng, interpolation_rng = jax.random.split(rng)
    s_prior = jax.random.normal(prior_rng, s_posterior.shape)

    def critic(critic_params):
        variables = {"params": {**params, "critic": critic_params}, "batch_stats": batch_stats}
        return lambda s: model.apply(variables, s, method=RWAE.critic_scores)

    trained, frozen = critic(params["critic"]), critic(jax.lax.stop_gradient(params["critic"]))
    s_detached = jax.lax.stop_gradient(s_posterior)
    per_sample = lambda f: (lambda z: f(z[None])[0])
    if r.divergence_static == "mmd":
        # Scaled MMD (App. D): the scale depends on f_gamma and the prior only.
        gradient_sq = estimators.mean_gradient_sq_norm(per_sample(trained), s_prior)
        encoder_term = estimators.scaled_mmd(frozen(s_posterior), frozen(s_prior),
                                             jax.lax.stop_gradient(gradient_sq),
                                             r.smmd_gradient_scale)
        value = estimators.scaled_mmd(trained(s_detached), trained(s_prior), gradient_sq,
                                      r.smmd_gradient_scale)
        return encoder_term, -value, value
    # JS GAN (eq. 23): D maximises E_p log D(s) + E_q log(1 - D(s~)); the encoder minimises
    # its E_q log(1 - D(s~)). Gradient penalty (eq. 24) at interpolates of the two samples.
    encoder_term = jnp.mean(jax.nn.log_sigmoid(-frozen(s_posterior)))
    value = estimators.js_discriminator_objective(trained(s_prior), trained(s_detached))
    s_hat = estimators.interpolates(interpolation_rng, s_prior, s_detached)
    penalty = estimators.mean_gradient_sq_norm(per_sample(trained), s_hat)
    return encoder_term, -value + r.gradient_penalty_weight * penalty, value


def objectives(inputs: LossInputs) -> tuple[Array, Array, dict[str, Array], Any]:
    """(model loss, critic loss, metrics, new batch_stats); see the module docstring."""
    config, x = inputs.config, inputs.x
    r = config.rwae
    model_rng, prior_rng, static_rng = jax.random.split(inputs.rng, 3)
    out, new_batch_stats = inputs.forward(model_rng)
    recon = _reconstruction(x, out, r.reconstruction)

    dd = config.model.dynamic_dim
    motion_d = out["d"][..., :dd]  # without the action code
    kl_s, kl_d = kl_terms(out)
    # D on d_t: posterior samples against the teacher-forced prior's samples, per step. Sample
    # i of both shares the history d_<t, so the pairs (i, i) are left out of the cross term.
    d_prior = reparameterize(prior_rng, out["prior_mean"], out["prior_logvar"])
    mmd_d = jnp.sum(estimators.mmd_unbiased_per_step(
        motion_d, d_prior, tuple(r.kernel_bandwidths), paired=True))
    static_term, critic_loss, static_divergence = _static_divergence(
        inputs.model, inputs.params, inputs.batch_stats, out["s"], static_rng, config)

    loss = (recon + r.static_weight * static_term + r.dynamic_weight * mmd_d
            + config.loss.kl_dynamic_weight * kl_d + config.loss.kl_static_weight * kl_s)
    metrics = dict(reconstruction=recon, static_divergence=static_divergence,
                   mmd_dynamic=mmd_d, kl_dynamic=kl_d, kl_static=kl_s, critic_loss=critic_loss)
    if inputs.model.num_actions:
        kl_a = jnp.mean(estimators.categorical_kl_uniform(out["action_logits"]))
        loss = loss + r.action_kl_weight * kl_a
        metrics["kl_action"] = kl_a
    metrics["loss"] = loss
    return loss, critic_loss, metrics, new_batch_stats


def loss_fn(inputs: LossInputs) -> LossOutput:
    """The model's loss, eq. (9) (the validation's and tests' entry point; training uses
    `train_update`, which also steps the critic)."""
    loss, _, metrics, batch_stats = objectives(inputs)
    return loss, (metrics, batch_stats)


METHOD = Method(name="rwae", build=build, loss=loss_fn, default_config=default_config,
                checks=validate_config, optimizer=make_optimizer, update=train_update,
                config_overrides=CONFIG_OVERRIDES)
