"""Fields every experiment config has, with their defaults. Experiment files override them.

Not a runnable config itself: experiments/<name>.py calls `base_config()` and fills it in.
"""

from __future__ import annotations

import dataclasses

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.method = "dsvae"
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    config.data.name = "shapes"
    config.data.batch_size = 32
    config.data.num_train = 8000
    config.data.num_test = 1000
    config.data.seed = 0
    config.data.channels = 3  # video frames' colour channels
    # Features per time step of speech (spectral bins) and time-series data; 0 for video.
    config.data.num_features = 0
    config.data.pixel_scale = 255.0  # uint8 pixels / pixel_scale -> float input
    # Prepared (TFDS array_record) datasets: where data_prep wrote them ('' = $TFDS_DATA_DIR or
    # ~/tensorflow_datasets) and which build to read ('' = the full dataset).
    config.data.data_dir = ""
    config.data.tfds_name = ""
    # Datasets generated on the fly from source files (SM-MNIST: the MNIST idx folder).
    config.data.source_dir = ""

    config.model = ml_collections.ConfigDict()
    # 'video' (conv frame networks), 'speech' (DSVAE's MLP decoder) or 'series' (GLR's MLP
    # encoder and Gaussian LSTM decoder): seqdis_jax/models/dsvae.py.
    config.model.modality = "video"
    config.model.static_dim = 256
    config.model.dynamic_dim = 32
    config.model.hidden_dim = 256
    config.model.feature_dim = 128  # g: the frame encoder's output size
    config.model.width = 1.0  # multiplier on every conv channel count
    config.model.prior_layers = 2
    config.model.compute_dtype = "float32"
    # FastConvTranspose (custom CPU backward, same values) in the decoder; False: nn.ConvTranspose.
    config.model.fast_conv_transpose = True
    # CPU only: the frame encoder's and decoder's (transposed) convolutions as matrix products
    # ("gemm", same values, faster forward + backward: bench/compare_torch.py) or XLA's
    # convolutions ("xla"; the decoder then keeps FastConvTranspose's custom backward)
    config.model.cpu_conv_lowering = "gemm"
    # Posterior switches of the C-DSVAE authors' code (seqdis_jax/models/dsvae.py; on in the
    # cdsvae and spyl `:code` variants): q(d | x) 'lstm' (the paper: C-DSVAE eq. 2) or
    # 'rnn_bilstm' (a tanh RNN over the static posterior's bidirectional LSTM outputs), and the
    # static heads 'linear' (the paper) or 'leaky_relu' (C-DSVAE's LinearUnit).
    config.model.dynamic_posterior = "lstm"
    config.model.static_head_activation = "linear"
    # LSTM / RNN cells: Flax's initialisers, or 'pytorch' (U(+-1/sqrt(H)) weights and
    # b_ih + b_hh, the authors' nn.LSTM defaults; on in every `:code` variant).
    config.model.recurrent_init = "flax"

    config.loss = ml_collections.ConfigDict()
    config.loss.kl_static_weight = 1.0
    config.loss.kl_dynamic_weight = 1.0

    config.train = ml_collections.ConfigDict()
    config.train.num_steps = 10_000
    config.train.learning_rate = 1e-3
    config.train.adam_b1 = 0.9
    config.train.adam_b2 = 0.999
    config.train.cosine_decay = False  # True: cosine-anneal the learning rate to 0
    config.train.grad_clip_norm = 0.0  # 0 disables clipping
    config.train.log_every = 50
    config.train.checkpoint_every = 1000
    config.train.keep_checkpoints = 3  # the latest K checkpoints are kept
    # Also keep the `keep_best` checkpoints with the best `best_metric` (a term of the method's
    # loss, e.g. 'loss' or 'reconstruction', averaged over the first `validation_batches`
    # test batches at each checkpoint, in eval mode; or a judged accuracy of eval.judge_every's
    # curve, e.g. 'judge_curve/fix_dynamics/mean_accuracy', with best_mode 'max'); ''
    # disables the ranking.
    config.train.best_metric = ""
    config.train.best_mode = "min"  # 'min' or 'max'
    config.train.keep_best = 1
    config.train.validation_batches = 4
    # NaN/Inf guard: a step with a non-finite loss or gradient is skipped (counted in the
    # logged `skipped`); after this many consecutive skips the run stops.
    config.train.max_skips = 10

    # Devices (seqdis_jax/parallel.py): a ('data', 'fsdp') mesh; the batch is split over both
    # axes, parameters and optimizer state over 'fsdp'. data=-1 takes every device left.
    config.mesh = ml_collections.ConfigDict()
    config.mesh.data = -1
    config.mesh.fsdp = 1

    config.eval = ml_collections.ConfigDict()
    # 'all': every evaluator the dataset's labels allow (seqdis_jax/evaluate.py); or name them.
    config.eval.evaluators = ("all",)
    config.eval.batch_size = 100
    config.eval.limit = 1000  # test sequences used by the metric evaluators (None: all)
    config.eval.grid_sequences = 8
    config.eval.judge_repeats = 5  # R draws of the sampled factor -> mean and std
    # Test sequences judge_generation scores: 0 = as eval.limit, None = all, n = the first n.
    config.eval.judge_limit = 0
    # judge_generation's IS, H(y|x), H(y): 0 = over every scored sequence; k > 0 = over the
    # first k scored sequences of each class of the judged factor's labels, -1 = as many as the
    # smallest class has (the authors' protocol: C-DSVAE, SPYL, DBSE); keys then end in
    # `_balanced`. Accuracy is always over every scored sequence.
    config.eval.judge_balanced_per_class = 0
    config.eval.latent_seeds = 10  # 80/20 splits of latent classification
    config.eval.latent_classifiers = ("svc", "random_forest", "knn")
    config.eval.mi_batch_size = 100  # M of the MWS estimator
    config.eval.mi_every = 0  # log MWS mutual-information curves every N steps (0: never)
    # Log the judged generation accuracy (fix d, sample s; fix s, sample d) on a fixed
    # validation set of judge_curve_sequences test sequences every N steps (0: never); a
    # multiple of train.log_every. Needs the dataset's judge (--mode=judge).
    config.eval.judge_every = 0
    config.eval.judge_curve_sequences = 300
    # Downstream tasks (add_downstream_task): predictors trained on frozen codes.
    config.eval.downstream = ml_collections.ConfigDict()
    config.eval.downstream_steps = 2000  # Adam steps of each predictor
    config.eval.downstream_seeds = 3  # predictors per task -> mean and std
    config.eval.downstream_train_limit = 20_000  # train sequences encoded for the predictors

    # The judge classifier that scores generated sequences (seqdis_jax/judge.py). One judge
    # per dataset, shared by every run on it: train it with --mode=judge.
    config.judge = ml_collections.ConfigDict()
    config.judge.workdir = "runs/judges/unset"  # experiment files set runs/judges/<dataset>
    config.judge.train_if_missing = False  # True: the first evaluation trains it
    config.judge.min_accuracy = 0.99  # factors judged less accurately are not scored
    config.judge.feature_dim = 128
    config.judge.hidden_dim = 256
    config.judge.head_dim = 256
    config.judge.width = 1.0
    config.judge.batch_size = 64
    config.judge.train = ml_collections.ConfigDict()
    config.judge.train.num_steps = 3000
    config.judge.train.learning_rate = 1e-3
    config.judge.train.adam_b1 = 0.9
    config.judge.train.adam_b2 = 0.999
    config.judge.train.cosine_decay = True
    config.judge.train.grad_clip_norm = 0.0
    config.judge.train.log_every = 100
    config.judge.train.checkpoint_every = 1000
    config.judge.train.keep_checkpoints = 1
    return config


def shrink_to_smoke(config: ml_collections.ConfigDict, judge_batch_size: int) -> None:
    """The `:smoke` variant of any config, in place: a few steps at tiny width, every evaluator
    and a 4-step judge trained on first use (scored anyway), so tests run the whole pipeline in
    seconds. The judge goes to runs/judges/<dataset>_smoke."""
    config.data.batch_size = 4
    config.model.width = 0.0625
    config.model.feature_dim = 16
    config.model.hidden_dim = 16
    config.model.static_dim = 8
    config.model.dynamic_dim = 4
    config.train.num_steps = 4
    config.train.log_every = 2
    config.train.checkpoint_every = 2
    config.eval.evaluators = ("all",)
    config.eval.batch_size = 8
    config.eval.limit = 16
    config.eval.judge_limit = 0  # as eval.limit; judge_balanced_per_class stays the caller's
    config.eval.grid_sequences = 4
    config.eval.judge_repeats = 2
    config.eval.latent_seeds = 2
    config.eval.mi_batch_size = 8
    config.eval.mi_every = 2
    config.judge.workdir = f"runs/judges/{config.data.name}_smoke"
    config.judge.train_if_missing = True
    config.judge.min_accuracy = 0.0  # a 4-step judge is not accurate; score anyway
    config.judge.width = 0.0625
    config.judge.feature_dim = 16
    config.judge.hidden_dim = 16
    config.judge.head_dim = 16
    config.judge.batch_size = judge_batch_size
    config.judge.train.num_steps = 4
    config.judge.train.log_every = 2
    config.judge.train.checkpoint_every = 4


def shrink_to_cpu(config: ml_collections.ConfigDict) -> None:
    """The network and judge of every `:cpu` variant, in place: quarter width, ds 64, dd 16,
    LSTMs 128, batch 32, Adam 2e-3, 1000 test sequences scored. Steps and the judge metrics'
    sequence count (config.eval.judge_limit) stay the caller's."""
    config.data.batch_size = 32
    config.model.width = 0.25
    config.model.static_dim = 64
    config.model.dynamic_dim = 16
    config.model.hidden_dim = 128
    config.train.learning_rate = 2e-3
    config.train.log_every = 100
    config.eval.limit = 1000
    config.judge.width = 0.25
    config.judge.hidden_dim = 128
    config.judge.batch_size = 32
    config.judge.train.learning_rate = 2e-3


def parse_variant(arg: str | None, variants: tuple[str, ...]) -> str:
    """The `:variant` suffix of --config=path.py:variant, checked against the known ones."""
    variant = arg or variants[0]
    if variant not in variants:
        raise ValueError(f"Unknown config variant {variant!r}; choose one of {list(variants)}.")
    return variant


def add_cdsvae_fields(config: ml_collections.ConfigDict) -> None:
    """C-DSVAE (seqdis_jax/models/cdsvae.py), in place: method and its `config.cdsvae`
    section, with the paper's values (eq. 6, App. A.5, C.2) as defaults."""
    from seqdis_jax.data.augment import MotionAugmentationConfig

    config.method = "cdsvae"
    c = config.cdsvae = ml_collections.ConfigDict()
    c.contrastive_weight = 1.0  # beta of eq. (6) (App. C.2: 1.0 on Sprites)
    c.mi_static_dynamic_weight = 1.0  # gamma of eq. (6)
    c.temperature = 0.5  # tau of phi(u, v) = exp(cos(u, v) / tau)
    c.content_reverse_probability = 0.5  # content view: reverse time, else a random order
    c.motion_augmentation = True  # False: no motion view and no I(d; x) term (e.g. audio)
    c.motion = ml_collections.ConfigDict(dataclasses.asdict(MotionAugmentationConfig()))
    c.batch_norm_views = "separate"  # or "joint": x and its views in one BatchNorm batch
    # I(s; d) of eq. (6): "sequence" (App. A.3 eq. 13) or "per_frame_code" (the authors' code:
    # per frame, std = exp(logvar), + log(B N) inside a ReLU).
    c.mws_estimator = "sequence"


def add_spyl_fields(config: ml_collections.ConfigDict) -> None:
    """SPYL (seqdis_jax/models/spyl.py), in place: method and its `config.spyl` section with
    the paper's algorithm as defaults (Sec. 4, Alg. 1) and Sprites' weights of Table 6."""
    config.method = "spyl"
    c = config.spyl = ml_collections.ConfigDict()
    c.reconstruction_weight = 10.0  # lambda_1
    c.contrastive_weight = 5.0  # lambda_4
    c.mi_static_dynamic_weight = 1.0  # lambda_5
    c.temperature = 0.5
    c.views = "predictive"  # or "reparameterization" (Table 7), "code" (the authors' bank)
    c.negatives = "farthest"  # or "middle", "middle_farthest", "random" (Table 4)
    c.views_per_sequence = 2  # K predicted views drawn from each posterior of the batch
    c.bank_size = 512  # views="code": prior-generated bank ...
    c.bank_negatives = 256  # ... and the farthest of it used as negatives
    c.contrastive_warmup_steps = 0  # the authors' code: 50 epochs without contrastive terms
    c.reconstruction_reduction = "sum"  # App. B: MSE not divided by the batch; code: "mean"
    c.mws_estimator = "sequence"  # I(s; d) as C-DSVAE eq. 13; code: "per_frame_code"
    # lambda_2, lambda_3 of Table 6 (Sprites: 5, 1) are the KL weights.
    config.loss.kl_static_weight = 5.0
    config.loss.kl_dynamic_weight = 1.0


def set_cdsvae_code_posterior(config: ml_collections.ConfigDict) -> None:
    """The C-DSVAE authors' posterior network, in place (REFERENCE_FACTS.md section 4; the SPYL
    authors' cdsvae/model.py shares it, with linear static heads): q(d | x) a tanh RNN over the
    static posterior's bidirectional LSTM outputs; every recurrent cell initialised as PyTorch
    does."""
    config.model.dynamic_posterior = "rnn_bilstm"
    config.model.recurrent_init = "pytorch"


def set_spyl_weights(config: ml_collections.ConfigDict, reconstruction: float,
                     kl_static: float, kl_dynamic: float, contrastive: float,
                     mi_static_dynamic: float) -> None:
    """lambda_1..lambda_5 of SPYL eq. (9), a row of its Table 6, in place."""
    config.spyl.reconstruction_weight = reconstruction
    config.loss.kl_static_weight = kl_static
    config.loss.kl_dynamic_weight = kl_dynamic
    config.spyl.contrastive_weight = contrastive
    config.spyl.mi_static_dynamic_weight = mi_static_dynamic


def shrink_method_to_smoke(config: ml_collections.ConfigDict) -> None:
    """`shrink_to_smoke` for a config whose method is already set: one predicted view per
    sequence for SPYL, so its smoke step stays as cheap as the others."""
    shrink_to_smoke(config, judge_batch_size=4)
    if config.method == "spyl":
        config.spyl.views_per_sequence = 1


def add_rwae_fields(config: ml_collections.ConfigDict, divergence_static: str = "mmd") -> None:
    """R-WAE (seqdis_jax/models/rwae.py), in place: method and its `config.rwae` section with
    the paper's Sprites settings (App. G) as defaults. `divergence_static`: "mmd" for
    R-WAE(MMD) (scaled MMD, spectrally normalised f_gamma), "gan" for R-WAE(GAN) (JS
    discriminator with the gradient penalty of eq. 24)."""
    config.method = "rwae"
    c = config.rwae = ml_collections.ConfigDict()
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
    config.train.learning_rate = 3e-4
    config.train.adam_b1 = 0.5
    config.train.adam_b2 = 0.9
    # KL on d only "to stabilize training" (App. D); s is regularised by D alone.
    config.loss.kl_static_weight = 0.0
    config.loss.kl_dynamic_weight = 1.0


def add_dbse_fields(config: ml_collections.ConfigDict) -> None:
    """DBSE (seqdis_jax/models/dbse.py), in place: method and its `config.dbse` section with the
    paper's model (eqs. 4-8, App. A.3) and Sprites' alpha of Table 5 as defaults. The betas of
    eq. (6) are `loss.kl_static_weight` and `loss.kl_dynamic_weight` (experiment files set them)."""
    config.method = "dbse"
    c = config.dbse = ml_collections.ConfigDict()
    c.anchor = "first"  # s from x_1; or "middle" (x_{T/2}), "last" (x_T) (Table 4, bottom)
    c.anchor_weight = 0.2  # alpha of eq. (5) (Table 5, Sprites)
    c.first_frame_loss = True  # False: no alpha term (Table 4 "no loss")
    c.subtraction = "hidden"  # h_t = h~_t - s~ (eq. 8); "none" (Table 4 "no sub"); "features"
    c.sequence_reconstruction = "others"  # eq. (5): t != a; "all" (the authors' Sprites code)
    c.anchor_decode = "shared"  # x^_a from the one decoder pass; "separate": the code's 2nd call
    c.reconstruction_reduction = "sum"  # App. A.3: MSE not divided by the batch; code: "mean"


# --------------------------------------------------------------------------------------------
# Speech and time series (issue 8): the modality, its network and each method's settings.

SPEECH_METHODS = ("dsvae", "cdsvae", "spyl", "dbse", "rwae")


def set_speech_method(config: ml_collections.ConfigDict, method: str) -> None:
    """Each paper's TIMIT settings, in place, on DSVAE's speech network (no frame encoder, an
    MLP decoder, LSTMs of 256; seqdis_jax/nn/speech.py), ds = 256, dd = 64, Adam 1e-3:
      dsvae   the C-DSVAE network without its contrastive terms, batch 256.
      cdsvae  C-DSVAE App. C.2 (TIMIT): beta = 1, batch 256 (Table 9's best). The content view
              (time shuffled / reversed) only: the audio motion view is voice conversion, which
              is not implemented (Table 6's "w/o motion aug" row: 4.31 % / 31.09 % EER).
      spyl    SPYL Table 6 (TIMIT): lambda_1..5 = 5, 1, 1, 0.5, 1, batch 10.
      dbse    DBSE Table 5 (Timit): alpha = 1, beta = 4e-4 on both KLs, batch 10.
      rwae    R-WAE App. G (TIMIT): z^c = z^m = 16, the Sprites MMD settings otherwise.
    """
    config.model.modality = "speech"
    config.data.pixel_scale = 1.0  # features are stored standardised, as floats
    config.model.hidden_dim = 256
    config.model.static_dim = 256
    config.model.dynamic_dim = 64
    config.train.learning_rate = 1e-3
    if method in ("dsvae", "cdsvae"):
        if method == "cdsvae":
            add_cdsvae_fields(config)
            config.cdsvae.contrastive_weight = 1.0  # beta
            config.cdsvae.motion_augmentation = False
        config.data.batch_size = 256
    elif method == "spyl":
        add_spyl_fields(config)
        set_spyl_weights(config, 5.0, 1.0, 1.0, 0.5, 1.0)
        config.data.batch_size = 10
    elif method == "dbse":
        add_dbse_fields(config)
        config.dbse.anchor_weight = 1.0  # alpha
        config.loss.kl_static_weight = config.loss.kl_dynamic_weight = 4e-4  # beta
        config.data.batch_size = 10
    elif method == "rwae":
        add_rwae_fields(config, "mmd")
        config.model.static_dim = config.model.dynamic_dim = 16
    else:
        raise ValueError(f"Unknown speech method {method!r}; choose one of {SPEECH_METHODS}.")


SERIES_METHODS = ("dsvae", "cdsvae", "spyl", "dbse")


@dataclasses.dataclass(frozen=True)
class SeriesSettings:
    """A dataset's rows of SPYL Table 6 and DBSE Table 5 (None: that paper has no row)."""

    spyl_weights: tuple[float, float, float, float, float] | None  # lambda_1..5
    spyl_dims: tuple[int, int]  # (ds, dd)
    spyl_batch: int
    dbse_alpha: float
    dbse_beta: float
    dbse_batch: int
    dbse_dims: tuple[int, int] = (8, 8)


def set_series_method(config: ml_collections.ConfigDict, method: str,
                      settings: SeriesSettings) -> None:
    """The paper settings of `method` for a time-series dataset, in place, on GLR's network
    (seqdis_jax/nn/series.py; the static and dynamic LSTMs 64 wide: the papers do not give
    their size), Adam 1e-3 (both papers' rows):
      dsvae   SPYL's network (its ds, dd) without contrastive terms, unit KL weights.
      cdsvae  as GLR ran C-DSVAE on these sets: content view (shuffled time) only, beta = 1.
      spyl    SPYL Table 6: lambda_1..5, ds, dd and batch of the dataset's row.
      dbse    DBSE Table 5: alpha, beta on both KLs, ds = dd = 8, the row's batch.
    """
    config.model.modality = "series"
    config.data.pixel_scale = 1.0
    config.model.hidden_dim = 64
    config.model.static_dim, config.model.dynamic_dim = settings.spyl_dims
    config.train.learning_rate = 1e-3
    config.data.batch_size = settings.spyl_batch
    if method == "cdsvae":
        add_cdsvae_fields(config)
        config.cdsvae.motion_augmentation = False
    elif method == "spyl":
        add_spyl_fields(config)
        set_spyl_weights(config, *settings.spyl_weights)
    elif method == "dbse":
        add_dbse_fields(config)
        config.dbse.anchor_weight = settings.dbse_alpha
        config.loss.kl_static_weight = config.loss.kl_dynamic_weight = settings.dbse_beta
        config.model.static_dim, config.model.dynamic_dim = settings.dbse_dims
        config.data.batch_size = settings.dbse_batch
    elif method != "dsvae":
        raise ValueError(f"Unknown time-series method {method!r}; choose one of "
                         f"{SERIES_METHODS}.")


def add_downstream_task(config: ml_collections.ConfigDict, name: str, target: str, kind: str,
                        inputs: tuple[str, ...]) -> None:
    """A downstream task of `config.eval.downstream` (seqdis_jax/evaluate.py `downstream`): a
    small RNN trained on the train split's frozen codes predicts record key `target` (kind
    'regression', 'binary' or 'multiclass'); `inputs` among 'codes' ([s, d_t] per step),
    'static' (s), 'dynamic' (d_1:T) and 'raw' (x_1:T, the "RF" baseline)."""
    config.eval.downstream[name] = ml_collections.ConfigDict(
        dict(target=target, kind=kind, inputs=tuple(inputs)))


def shrink_sequence_model_to_smoke(config: ml_collections.ConfigDict) -> None:
    """`:smoke` of a speech or time-series config (no judge), in place: a few steps of a tiny
    network, every evaluator and each downstream predictor a few steps long."""
    shrink_method_to_smoke(config)
    config.eval.latent_seeds = 2
    config.eval.downstream_steps = 5
    config.eval.downstream_seeds = 2
    config.eval.downstream_train_limit = 64


def series_config(dataset: str, variant: str, settings: SeriesSettings, num_features: int,
                  num_train: int) -> ml_collections.ConfigDict:
    """A time-series experiment (ETTh1, Air Quality, PhysioNet) for a `variant` of
    SERIES_VARIANTS: `<method>` the paper settings for as many epochs as the paper's maximum
    (SPYL 600, DBSE 1000); `<method>_cpu` batch 64 and 3000 steps; `smoke` / `<method>_smoke`.
    The experiment file adds its downstream tasks."""
    method = "dsvae" if variant == "smoke" else variant.removesuffix("_smoke").removesuffix(
        "_cpu")
    config = base_config()
    config.data.name = dataset
    config.data.num_features = num_features
    config.data.num_train = num_train
    set_series_method(config, method, settings)
    epochs = 1000 if method == "dbse" else 600
    config.train.num_steps = epochs * num_train // config.data.batch_size
    config.train.checkpoint_every = 5000
    config.train.log_every = 200
    config.eval.evaluators = ("reconstruction", "grids", "latent_classification",
                              "mutual_information", "tsne", "downstream")
    config.eval.limit = 2000  # sequences for latent classification and t-SNE
    config.eval.latent_seeds = 3
    if variant.endswith("_cpu"):
        config.data.batch_size = 64
        config.train.num_steps = 10_000
        config.train.checkpoint_every = 2000
    elif variant.endswith("smoke"):
        shrink_sequence_model_to_smoke(config)
        config.eval.evaluators = ("all",)
    return config


SERIES_VARIANTS = (SERIES_METHODS + tuple(f"{m}_cpu" for m in SERIES_METHODS) + ("smoke",)
                   + tuple(f"{m}_smoke" for m in SERIES_METHODS if m != "dsvae"))


SPEECH_VARIANTS = (SPEECH_METHODS + tuple(f"{m}_cpu" for m in SPEECH_METHODS) + ("smoke",)
                   + tuple(f"{m}_smoke" for m in SPEECH_METHODS if m != "dsvae"))


def speech_config(dataset: str, variant: str, num_train: int, epochs: int
                  ) -> ml_collections.ConfigDict:
    """A speech experiment (FSDD, TIMIT) for a `variant` of SPEECH_VARIANTS: `<method>` the
    paper's TIMIT settings (`set_speech_method`) for `epochs`; `<method>_cpu` LSTMs of 128 and
    batch 32 for 3000 steps; `smoke` / `<method>_smoke`. 200-d log-magnitude frames."""
    method = "dsvae" if variant == "smoke" else variant.removesuffix("_smoke").removesuffix(
        "_cpu")
    config = base_config()
    config.data.name = dataset
    config.data.num_features = 200
    config.data.num_train = num_train
    set_speech_method(config, method)
    config.train.num_steps = epochs * num_train // config.data.batch_size
    config.train.checkpoint_every = 2000
    config.eval.limit = None  # every test segment: the EER averages each utterance's segments
    config.eval.latent_seeds = 3
    if variant.endswith("_cpu"):
        config.model.hidden_dim = 128
        config.data.batch_size = 32
        config.train.num_steps = 3000
        config.train.log_every = 100
        config.train.checkpoint_every = 1000
    elif variant.endswith("smoke"):
        shrink_sequence_model_to_smoke(config)
    return config
