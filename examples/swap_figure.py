"""Swap the content and the motion of two test sequences of a trained run, as a PNG.

    python examples/swap_figure.py --workdir=runs/shapes --out=swap_example.png

Rows: x_a, x_b, then decode(s_a, d_b) (a's content moving as b) and decode(s_b, d_a),
from the posterior means (`seqdis_jax.load(...).swap`). Video runs only (shapes, Sprites,
MUG, ...); `--a` and `--b` pick the test sequences.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from PIL import Image, ImageDraw

import seqdis_jax
from seqdis_jax.data import pipeline, registry
from seqdis_jax.errors import UserInputError
from seqdis_jax.evaluators.drawing import frames_to_grid, save_png

LABELS = ("x_a", "x_b", "s_a + d_b", "s_b + d_a")
LABEL_WIDTH = 64  # pixels left of the frames for the row names


def swap_figure(workdir: str, out: str, a: int = 0, b: int = 1, step: int | None = None
                ) -> None:
    model = seqdis_jax.load(workdir, step)
    if model.modality != "video":
        raise UserInputError(f"{workdir} holds a {model.modality} model; this figure draws "
                             "video frames only (its grids.png heat maps show the others).")
    test = registry.load(model.config.data, "test")
    if not (0 <= a < len(test.source) and 0 <= b < len(test.source)):
        raise UserInputError(f"--a={a} and --b={b} must index the {len(test.source)} test "
                             "sequences.")
    x_a = test.source[a][pipeline.RECORD_KEY][None]  # as stored: uint8 frames
    x_b = test.source[b][pipeline.RECORD_KEY][None]
    ab, ba = model.swap(x_a, x_b)
    inputs = pipeline.model_inputs({pipeline.RECORD_KEY: np.concatenate([x_a, x_b])},
                                   model.config.data.pixel_scale)[pipeline.MODEL_KEY]
    grid = frames_to_grid(np.concatenate([inputs, ab, ba]))  # the model scale: [0, 1]
    frame, gap = inputs.shape[2], 2
    zoom = max(1, 64 // frame)  # small frames drawn at 64 px at least
    picture = Image.fromarray(grid).resize((grid.shape[1] * zoom, grid.shape[0] * zoom),
                                           Image.NEAREST)
    canvas = Image.new("RGB", (picture.width + LABEL_WIDTH, picture.height), "white")
    canvas.paste(picture, (LABEL_WIDTH, 0))
    draw = ImageDraw.Draw(canvas)
    for row, label in enumerate(LABELS):
        y = (gap + row * (frame + gap) + frame // 2) * zoom - 5
        draw.text((4, y), label, fill=(0, 0, 0))
    save_png(out, np.asarray(canvas))
    print(f"Wrote {out}: test sequences {a} and {b} of {workdir} (step {model.step}), "
          "swapped.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="The --workdir of a trained run.")
    parser.add_argument("--out", default="swap_example.png", help="The PNG to write.")
    parser.add_argument("--a", type=int, default=0, help="Index of test sequence a.")
    parser.add_argument("--b", type=int, default=1, help="Index of test sequence b.")
    parser.add_argument("--step", type=int, default=None,
                        help="A kept checkpoint step (default: the latest).")
    args = parser.parse_args(argv)
    try:
        swap_figure(args.workdir, args.out, args.a, args.b, args.step)
    except (UserInputError, FileNotFoundError) as e:  # the library's one-line errors
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
