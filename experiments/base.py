"""Fields every experiment config has, with their defaults. Experiment files override them.

Not a runnable config itself: experiments/<name>.py calls `base_config()` and fills it in.
"""

from __future__ import annotations

import dataclasses
from typing import Any

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
    # What stored integer sequences are divided by to give the model's float input x, in every
    # modality (seqdis_jax/data/pipeline.py model_inputs; float features are stored ready).
    config.data.pixel_scale = 255.0  # uint8 pixels / 255
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
    # The frame networks' convolution products only: "bfloat16" multiplies their float32
    # operands in bf16 (sums in float32) while activations, BatchNorm, the LSTMs, parameters
    # and optimizer state stay in compute_dtype; for CPUs with bf16 matrix units (AMX,
    # AVX512-BF16) and for GPUs/TPUs; video models only. docs/results.md ("bf16 products")
    # has its speed and drift.
    config.model.product_dtype = "float32"
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
    # OpenMP threads of the t-SNE (0: the runtime's default, every core). One: beside any
    # other busy process its spinning threads ran 8-100x slower (docs/results.md, "t-SNE").
    config.eval.tsne_threads = 1
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
    # per dataset, shared by every run on it: train it with --mode=judge. A relative path is
    # taken from the parent of --workdir (runs/x -> runs/judges/<dataset>), not from the
    # current directory (experiments/main.py resolve_judge_dir).
    config.judge = ml_collections.ConfigDict()
    config.judge.workdir = "judges/unset"  # experiment files set judges/<dataset>
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
    seconds. The judge goes to judges/<dataset>_smoke."""
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
    config.judge.workdir = f"judges/{config.data.name}_smoke"
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


def use_method(config: ml_collections.ConfigDict, name: str, **options: Any) -> None:
    """Sets `config` to train the registered method `name` (seqdis_jax/models), in place:
    `config.method`, its section `config.<name>` with the defaults its module owns
    (`default_config(**options)`, e.g. R-WAE's `divergence_static`) and the shared fields its
    paper sets (`Method.config_overrides`, e.g. SPYL's KL weights, R-WAE's Adam)."""
    from seqdis_jax import models

    models.get_method(name).configure(config, **options)


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
    """`shrink_to_smoke` for a config whose method is already set, and the method's own
    `smoke_overrides` (SPYL: one predicted view per sequence, so its smoke step stays as cheap
    as the others)."""
    from seqdis_jax import models

    shrink_to_smoke(config, judge_batch_size=4)
    models.get_method(config.method).shrink_to_smoke(config)


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
    if method not in SPEECH_METHODS:
        raise ValueError(f"Unknown speech method {method!r}; choose one of {SPEECH_METHODS}.")
    config.model.modality = "speech"
    config.data.pixel_scale = 1.0  # features are stored standardised, as floats: unused
    config.model.hidden_dim = 256
    config.model.static_dim = 256
    config.model.dynamic_dim = 64
    config.train.learning_rate = 1e-3
    use_method(config, method)
    if method in ("dsvae", "cdsvae"):
        config.data.batch_size = 256
    elif method in ("spyl", "dbse"):
        config.data.batch_size = 10
    if method == "cdsvae":
        config.cdsvae.contrastive_weight = 1.0  # beta
        config.cdsvae.motion_augmentation = False
    elif method == "spyl":
        set_spyl_weights(config, 5.0, 1.0, 1.0, 0.5, 1.0)
    elif method == "dbse":
        config.dbse.anchor_weight = 1.0  # alpha
        config.loss.kl_static_weight = config.loss.kl_dynamic_weight = 4e-4  # beta
    elif method == "rwae":
        config.model.static_dim = config.model.dynamic_dim = 16


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
    if method not in SERIES_METHODS:
        raise ValueError(f"Unknown time-series method {method!r}; choose one of "
                         f"{SERIES_METHODS}.")
    config.model.modality = "series"
    config.data.pixel_scale = 1.0
    config.model.hidden_dim = 64
    config.model.static_dim, config.model.dynamic_dim = settings.spyl_dims
    config.train.learning_rate = 1e-3
    config.data.batch_size = settings.spyl_batch
    use_method(config, method)
    if method == "cdsvae":
        config.cdsvae.motion_augmentation = False
    elif method == "spyl":
        set_spyl_weights(config, *settings.spyl_weights)
    elif method == "dbse":
        config.dbse.anchor_weight = settings.dbse_alpha
        config.loss.kl_static_weight = config.loss.kl_dynamic_weight = settings.dbse_beta
        config.model.static_dim, config.model.dynamic_dim = settings.dbse_dims
        config.data.batch_size = settings.dbse_batch


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
