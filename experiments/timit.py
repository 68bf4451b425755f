"""TIMIT (Garofolo et al. 1993): the papers' speaker-verification benchmark (C-DSVAE Table 4,
SPYL Table 1, DBSE Table 6).

Licence-restricted (LDC93S1): prepare it once from the LDC layout (TRAIN/ and TEST/ with
DR1..DR8/<speaker>/<sentence>.WAV, NIST SPHERE or RIFF): 200-d log-magnitude frames, 200 ms
segments of 20 frames; train = every TRAIN speaker, test = the 24-speaker core test set, eight
SI/SX sentences each (SPYL B.5: 192 utterances); seqdis_jax/data/timit.py states the rules:
    python -m data_prep.timit --source_dir=<folder holding TRAIN/ and TEST/> --data_dir=<dir>
    python -m experiments.main --config=experiments/timit.py:spyl --workdir=runs/timit_spyl \
        --config.data.data_dir=<dir>

Variants: each paper's TIMIT settings (experiments/base.py `set_speech_method`):
:dsvae (default), :cdsvae, :spyl, :dbse, :rwae, 300 epochs; :<method>_cpu; smokes (tests, on
the fixture build). Metric: eer/static (low), eer/dynamic (high), eer/gap, from the cosine
similarity of each utterance's mean codes over all test pairs.
Papers (static / dynamic EER): DSVAE 5.64 % / 19.20 %, R-WAE 4.73 / 23.41, C-DSVAE 4.03 /
31.81, SPYL 3.41 / 33.22, DBSE 3.83 / 36.75. Not measured here: no TIMIT copy.
"""

from __future__ import annotations

from experiments.base import SPEECH_VARIANTS, parse_variant, speech_config

VARIANTS = SPEECH_VARIANTS
# About 30 non-overlapping 20-frame segments (hop 20) in each of TRAIN's 3696 SI/SX sentences.
TRAIN_SEQUENCES = 110_000


def get_config(arg: str | None = None):
    return speech_config("timit", parse_variant(arg, VARIANTS), TRAIN_SEQUENCES, epochs=100)
