"""Free Spoken Digit Dataset (FSDD): speaker (static) and digit (dynamic) from spoken digits.

The real speech benchmark on this machine (TIMIT, the papers' set, is licence-restricted:
experiments/timit.py). Prepare it once (200-d log-magnitude frames, 200 ms segments of 20
frames, FSDD's official split: takes 0-4 test, 5-49 train; README "FSDD"):
    python -m data_prep.fsdd --source_dir=../shared/data/fsdd/recordings --data_dir=<dir>
Train and evaluate (judge-free: speaker verification EER, latent classification, spectrogram
swap pictures), then re-evaluate the Orbax checkpoint:
    python -m experiments.main --config=experiments/fsdd.py:dsvae_cpu \
        --workdir=runs/fsdd_dsvae_cpu --config.data.data_dir=<dir>
    python -m experiments.main --config=experiments/fsdd.py:dsvae_cpu \
        --workdir=runs/fsdd_dsvae_cpu --config.data.data_dir=<dir> --mode=eval

Variants (each paper's TIMIT settings, the nearest speech benchmark: experiments/base.py
`set_speech_method`):
  :dsvae (default), :cdsvae, :spyl, :dbse, :rwae   the paper settings, 300 epochs.
  :<method>_cpu   the same objective with LSTMs of 128 and batch 32, 3000 steps: sized for
                  2 CPU cores (docs/results.md has the runtimes and scores).
  :smoke, :<method>_smoke   a few steps of a tiny network on the fixture build (tests).
`:fsdd_mel` builds (--features=log_mel) need --config.data.tfds_name=fsdd_mel
--config.data.num_features=80.
Metrics: eer/{static,dynamic,gap} (speaker verification by cosine similarity of the
per-utterance mean codes, the DSVAE/C-DSVAE/SPYL TIMIT protocol; static low and dynamic high is
good), latent/* (speaker from s and d, digit from d and s: SPYL Table 3's protocol).
Measured, `_cpu` (2 CPU cores, 3000 steps; docs/results.md): static / dynamic EER DSVAE
16.8 % / 28.4 % (2 min), C-DSVAE 16.6 / 28.8, SPYL 11.8 / 16.9, DBSE 15.7 / 22.0. Papers (TIMIT,
other data): DSVAE 5.64 / 19.20, C-DSVAE 4.03 / 31.81, SPYL 3.41 / 33.22, DBSE 3.83 / 36.75.
"""

from __future__ import annotations

from experiments.base import SPEECH_VARIANTS, parse_variant, speech_config

VARIANTS = SPEECH_VARIANTS
# Train segments of the default build (2700 utterances, 20-frame segments, hop 10; 811 test).
TRAIN_SEQUENCES = 7431


def get_config(arg: str | None = None):
    return speech_config("fsdd", parse_variant(arg, VARIANTS), TRAIN_SEQUENCES, epochs=300)
