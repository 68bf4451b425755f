"""R-WAE(MMD) on Sprites (Han et al. 2021, Table 2 and App. G), on the DSVAE network of
experiments/sprites.py.

Prepare the data and train the judge once (see experiments/sprites.py), then:
    python -m experiments.main --config=experiments/rwae_sprites.py --workdir=runs/rwae

Every variant decodes as the paper (Fig. 1(a), App. G, Fig. 8(d); `rwae.decoder_fusion =
"fc_lstm"`): concat(s, d_t) -> FC -> LSTM over time -> the DCGAN-64 frame decoder on the LSTM's
h_t, FC width = LSTM size = `rwae.fusion_dim` (0: model.feature_dim, the paper's h_t).
--config.rwae.decoder_fusion=framewise decodes concat(s, d_t) frame by frame (DSVAE's decoder;
the ablation).

Variants:
  :default  the paper (App. G, Fig. 9): ds = 120, dd = 12, h_t = 150 (the encoder feature and
            the decoder's FC + LSTM(150)), batch 60, beta_1 = 10, beta_2 = 60, L = 5,
            Adam(0.5, 0.9) with 3e-4 (decoder + prior) and 1e-4 (encoder, f_gamma), x0.5 after
            50 epochs and x0.2 more after 80, 500 epochs. Needs a GPU/TPU. The paper's ResBlock
            encoder/decoder are not reproduced: this is the library's shared DCGAN backbone.
  :cpu      the DSVAE `:cpu` network and budget of experiments/sprites.py (quarter width,
            batch 32, ds 64, dd 16, feature 128, so FC + LSTM(128) before the decoder; 10,000
            steps, judged curve; the decoder is stepped on one in six, L = 5), Adam(0.5, 0.9)
            at the DSVAE `:cpu` 2e-3 for the decoder and a third of it for the encoder and
            f_gamma (the paper's 3:1).
  :smoke    a few steps at tiny width on a 2-character build (tests), FC + LSTM(16).
R-WAE(GAN): experiments/rwae_gan_sprites.py. The weakly supervised model (Sec. 3.4) on Sprites'
9 actions: --config.rwae.num_actions=9.
Paper (Table 2 and Table 4, Sprites, "S" networks; classification error of the judged attribute
when it is fixed and the others sampled): R-WAE(MMD) actions 5.83 % (accuracy 94.17 %),
content 2.45 %; R-WAE(GAN) actions 3.73 %, content 2.00 %; DS-VAE(S) actions 8.11 %.
Measured at commit 37afe59, before issue 19 changed BatchNorm to PyTorch's semantics (a re-run
with the current code is pending, issue 21):
Measured, `:cpu` with the frame-by-frame decoder (before "fc_lstm" existed; the same as
--config.rwae.decoder_fusion=framewise), 2 CPU cores, shared: 2400 steps in 1328 s; fix d and
sample s keeps the judged action 39.4 +- 1.1 % (IS 3.44; DSVAE `:cpu` 72.4 %); reconstruction
727 (DSVAE 273): the decoder had 400 updates; details in docs/results.md ("DBSE and R-WAE").
Checkpoints of R-WAE runs made before the fusion have a different parameter tree (no `fusion`
submodule; the frame decoder reads concat(s, d_t)): they restore only with
--config.rwae.decoder_fusion=framewise.
"""

from __future__ import annotations

from experiments import sprites
from experiments.base import parse_variant, use_method

VARIANTS = ("default", "cpu", "smoke")


def get_config(arg: str | None = None, divergence_static: str = "mmd"):
    variant = parse_variant(arg, VARIANTS)
    config = sprites.get_config(variant)
    learning_rate = config.train.learning_rate
    use_method(config, "rwae", divergence_static=divergence_static)
    if variant == "default":
        config.data.batch_size = 60
        config.model.static_dim = 120
        config.model.dynamic_dim = 12
        config.model.feature_dim = 150
        config.train.num_steps = 500 * sprites.TRAIN_SEQUENCES // 60
    elif variant == "cpu":
        config.train.learning_rate = learning_rate
        config.rwae.encoder_learning_rate = learning_rate / 3
        config.rwae.critic_learning_rate = learning_rate / 3
    return config
