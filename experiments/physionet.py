"""PhysioNet 2012 ICU records: in-hospital mortality (DBSE Table 2, SPYL Table 2) and the ICU
unit from s (DBSE Table 3).

Licence-restricted (physionet.org, credentialed access): prepare it once from the challenge's
set-a/ set-b/ and Outcomes-{a,b}.txt (48 hourly bins of 10 vitals; set-a train, set-b test;
seqdis_jax/data/physionet.py states the protocol):
    python -m data_prep.physionet --source_dir=<the challenge folder> --data_dir=<dir>
    python -m experiments.main --config=experiments/physionet.py:dbse \
        --workdir=runs/physionet_dbse --config.data.data_dir=<dir>

Variants (experiments/base.py `series_config`; GLR's network): :dsvae (default), :cdsvae,
:spyl (Table 6: lambda 2.5, 7, 1, 0.1, 2.5; ds 12, dd 4; batch 10), :dbse (Table 5: alpha
0.1, beta 2e-3, batch 30, ds = dd = 8); :<method>_cpu; smokes (the fixture build, tests).
Metrics: downstream/mortality/{codes,raw}/{auroc,auprc}, downstream/icu_unit/{static,raw}/
accuracy. Papers: DBSE 0.447 AUPRC / 0.849 AUROC, SPYL 0.367 / 0.764, RF 0.446 / 0.802; ICU
unit accuracy DBSE 55.42 %, SPYL 46.98 %, RF 62.00 %. Not measured here: no PhysioNet copy.
"""

from __future__ import annotations

from experiments.base import (
    SERIES_VARIANTS,
    SeriesSettings,
    add_downstream_task,
    parse_variant,
    series_config,
)

VARIANTS = SERIES_VARIANTS
SETTINGS = SeriesSettings(spyl_weights=(2.5, 7.0, 1.0, 0.1, 2.5), spyl_dims=(12, 4),
                          spyl_batch=10, dbse_alpha=0.1, dbse_beta=2e-3, dbse_batch=30)
TRAIN_SEQUENCES = 4000  # set-a


def get_config(arg: str | None = None):
    variant = parse_variant(arg, VARIANTS)
    config = series_config("physionet", variant, SETTINGS, num_features=10,
                           num_train=TRAIN_SEQUENCES)
    add_downstream_task(config, "mortality", "mortality", "binary", ("codes", "raw"))
    add_downstream_task(config, "icu_unit", "icu_type", "multiclass", ("static", "raw"))
    return config
