"""Beijing Multi-Site Air Quality (Zhang et al. 2017): month from s (DBSE Table 3) and the
average daily rain (SPYL Table 2).

A sample is one station-day: 24 hourly steps of 10 standardised features (the six pollutants
log1p'd, TEMP, PRES, DEWP, WSPM; RAIN is the target and left out); train = days before
2016-03-01, test = the last year, every month in both (seqdis_jax/data/air_quality.py states
the protocol). Read from config.data.source_dir (default ../shared/data/air_quality):
    python -m experiments.main --config=experiments/air_quality.py:spyl_cpu \
        --workdir=runs/air_quality_spyl

Variants (experiments/base.py `series_config`; GLR's network): :dsvae (default), :cdsvae,
:spyl (Table 6: lambda 2.5, 5, 1, 0.1, 2.5; ds 12, dd 4; batch 10), :dbse (Table 5: alpha
0.2, beta 2e-3, batch 10, ds = dd = 8); :<method>_cpu (batch 64, 10,000 steps); smokes.
Metrics: downstream/month/{static,raw}/accuracy (12-way, from s alone or from the raw day),
downstream/rain/{codes,raw}/mae (mm per hour), latent/* (month and station from s and d).
Papers: month accuracy (DBSE Table 3) DBSE 62.07 %, SPYL 57.93 %, C-DSVAE 47.07 %, RF 62.43 %;
daily rain MAE (SPYL Table 2) SPYL 1.823, C-DSVAE 1.806, GLR 1.824. Their samples are GLR's
station-months; ours are station-days, so the numbers do not compare directly.
Measured, `_cpu` (docs/results.md): month from s DSVAE 56.0 %, SPYL 47.2 %, DBSE 43.5 % (raw
day 58.4 %); rain MAE 0.067 mm for every method and the raw day (predicting 0: 0.075).
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
SETTINGS = SeriesSettings(spyl_weights=(2.5, 5.0, 1.0, 0.1, 2.5), spyl_dims=(12, 4),
                          spyl_batch=10, dbse_alpha=0.2, dbse_beta=2e-3, dbse_batch=10)
TRAIN_SEQUENCES = 12_638  # kept station-days before 2016-03-01


def get_config(arg: str | None = None):
    variant = parse_variant(arg, VARIANTS)
    config = series_config("air_quality", variant, SETTINGS, num_features=10,
                           num_train=TRAIN_SEQUENCES)
    config.data.source_dir = "../shared/data/air_quality"
    add_downstream_task(config, "month", "month", "multiclass", ("static", "raw"))
    add_downstream_task(config, "rain", "rain", "regression", ("codes", "raw"))
    return config
