"""The evaluators' pictures and the run's hyperparameters in TensorBoard.

After every evaluation `log_evaluation` adds, to `<workdir>/tensorboard` (the run's own logdir,
beside MetricWriter's scalars; TensorBoard reads several event files of one logdir as one run):

- each PNG the evaluation wrote (`pictures`) as an image `outputs/<name>` at the evaluated step;
- the config, flattened to `a.b.c` keys, as the hparams plugin's session, with the final test
  metrics as its metrics (scalars `hparams/<metrics.json key>` at the same step).

tensorboardX's `add_hparams` would write into a timestamped sub-folder (a second run in the
dashboard); its `summary.hparams` protos are written here into the run's own event file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

LOGDIR = "tensorboard"
# The evaluators' PNGs (grids.py, tsne.py), in the order the report shows them.
IMAGES = ("reconstruction.png", "swap.png", "static_fixed_dynamics_sampled.png",
          "dynamics_fixed_static_sampled.png", "interpolation.png", "tsne.png")
IMAGE_PREFIX, METRIC_PREFIX = "outputs/", "hparams/"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; an empty section disappears."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def hparam_values(config: Mapping[str, Any]) -> dict[str, bool | int | float | str]:
    """The config as hparams: scalars and strings as they are, anything else (lists, None)
    as its text, so that every field shows in the dashboard."""
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v)
            for k, v in flatten(config).items()}


def final_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    """The scalar results worth comparing runs by: no std, chance level, count or step."""
    skip = ("chance/", "step", "mi/ceiling", "grids", "tsne")
    return {k: float(v) for k, v in results.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
            and not k.startswith(skip) and not k.endswith(("_std", "num_sequences",
                                                            "balanced_per_class"))}


def pictures(results: Mapping[str, Any]) -> list[str]:
    """The PNGs that the evaluation of `results` wrote (its `grids` and `tsne` keys), in
    `IMAGES` order; an evaluation that ran neither evaluator left older ones in place."""
    written = {*results.get("grids", ()), *([results["tsne"]] if "tsne" in results else [])}
    return [name for name in IMAGES if name in written]


def log_evaluation(config: Mapping[str, Any], workdir: str, results: Mapping[str, Any]) -> None:
    """Logs the PNGs of `workdir` and the hparams session of `config` with `results`' metrics at
    step `results["step"]`. Call from process 0 only."""
    from PIL import Image
    from tensorboardX import SummaryWriter
    from tensorboardX.summary import hparams

    step = int(results["step"])
    writer = SummaryWriter(os.path.join(workdir, LOGDIR), filename_suffix=".images")
    try:
        for name in pictures(results):
            path = os.path.join(workdir, name)
            if os.path.exists(path):
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert("RGB"))
                writer.add_image(IMAGE_PREFIX + name.removesuffix(".png"), pixels, step,
                                 dataformats="HWC")
        metrics = {METRIC_PREFIX + k: v for k, v in final_metrics(results).items()}
        for summary in hparams(hparam_values(config), metrics):
            writer.file_writer.add_summary(summary, step)
        for tag, value in metrics.items():  # the plugin reads a session's metrics as scalars
            writer.add_scalar(tag, value, step)
    finally:
        writer.close()
