"""Prepare the MUG facial expression database as a TFDS array_record dataset (no TensorFlow).

    python -m data_prep.mug --source_dir=<the MUG release's subjects3 folder> [--data_dir=DIR]
        [--clips_per_video=1] [--seed=0] [--crop=center|haar] [--crop_fraction=1.0]

MUG is licence-restricted (request it from mug.ee.auth.gr); ``--source_dir`` is the unpacked
release's ``subjects3`` folder or its parent::

    subjects3/<subject 001..>/[session<N>/]<expression>/take<NNN>/img_<NNNN>.jpg

(an expression folder may hold its frames directly, as one take; ``neutral`` and non-jpg files
are ignored). Writes ``<data_dir>/mug/1.0.0`` with splits train and test: per clip a uint8
``video`` (15, 64, 64, 3), the ClassLabels ``expression`` (anger, disgust, fear, happiness,
sadness, surprise) and ``subject`` (the subject folder names), and int32 ``video_index`` (the
take's index in the sorted list of usable takes), ``start`` and ``stride`` (the clip holds
frames ``start + stride * j`` of the take). The clip, crop and split rules are those of
`seqdis_jax.data.mug`. ``--data_dir`` defaults to ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.

``--clips_per_video=K`` cuts K clips (own random starts) from every take, all in the take's
split; ``--seed`` picks other starts. ``--crop=haar`` crops to the face OpenCV's Haar cascade
finds (as the papers do; needs ``pip install opencv-python-headless``), ``--crop=center`` (the
default) to the central square of side ``crop_fraction * min(H, W)``.

A run is idempotent: the dataset's metadata holds a fingerprint of the protocol, the options
and every frame file's path and size; when the prepared dataset has the same fingerprint,
nothing is rewritten. Bad inputs (missing folder, no subject folders, an empty expression
folder, an unreadable frame, bad options) exit with status 2 and one line ``error: ...``; a
failed build leaves a previously prepared dataset as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

from data_prep import common
from data_prep.common import InputError, Progress, already_prepared
from seqdis_jax.data import array_record, mug

# Bump whenever the take discovery, clip, crop, split rules or the record layout change: the
# fingerprint changes with it, so the next run rebuilds instead of skipping.
PROTOCOL = "mug-protocol-1"
HOMEPAGE = "https://mug.ee.auth.gr/fed/"
CITATION = """@inproceedings{aifanti2010mug,
  title = {The MUG facial expression database},
  author = {Aifanti, Niki and Papachristou, Christos and Delopoulos, Anastasios},
  booktitle = {11th International Workshop on Image Analysis for Multimedia Interactive
               Services (WIAMIS 10)},
  pages = {1--4},
  year = {2010}
}"""


def fingerprint(root: str, videos: Sequence[mug.Video], options: dict[str, Any]) -> str:
    """sha256 of the protocol, the options and every frame file's relative path and size.

    Unlike `common.fingerprint`, file contents are not hashed: reading all JPEG bytes of the
    35 GB release would take about as long as the build itself; a frame replaced by one of the
    same size goes unnoticed (bump PROTOCOL or remove the dataset to force a rebuild).
    """
    header = {"protocol": PROTOCOL, "version": mug.TFDS_VERSION, "options": options}
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for video in sorted(videos, key=lambda v: v.key):
        for path in video.frames:
            relative = os.path.relpath(path, root).replace(os.sep, "/")
            h.update(f"\n{relative}\t{os.path.getsize(path)}".encode())
    return h.hexdigest()


def features(subjects: Sequence[str]) -> dict[str, array_record.Feature]:
    """The record layout: uint8 video, ClassLabels expression and subject, int32 clip info."""
    return {
        "video": array_record.Feature("uint8", mug.SPEC.video_shape),
        "expression": array_record.Feature("int32", names=mug.EXPRESSIONS),
        "subject": array_record.Feature("int32", names=tuple(subjects)),
        "video_index": array_record.Feature("int32"),
        "start": array_record.Feature("int32"),
        "stride": array_record.Feature("int32"),
    }


def _options(clips_per_video: int, seed: int, crop: str, crop_fraction: float) -> dict:
    """The options after validation (InputError for bad ones), as stored in the metadata."""
    try:
        mug.check_crop(crop, crop_fraction)
    except ValueError as e:
        raise InputError(str(e)) from e
    if clips_per_video < 1:
        raise InputError(f"clips_per_video must be >= 1, got {clips_per_video}")
    if seed < 0:
        raise InputError(f"seed must be >= 0, got {seed}")
    options = {
        "clips_per_video": int(clips_per_video),
        "seed": int(seed),
        "crop": crop,
        "crop_fraction": float(crop_fraction),
    }
    if crop == "haar":  # detections may change with the OpenCV version
        import cv2

        options["opencv"] = cv2.__version__
    return options


def prepare(
    source_dir: str,
    data_dir: str,
    clips_per_video: int = 1,
    seed: int = 0,
    crop: str = "center",
    crop_fraction: float = 1.0,
) -> tuple[str, bool]:
    """Builds the dataset unless it is prepared with the same fingerprint.

    Returns (version directory, whether anything was written). Raises `InputError` for a bad
    release folder, an unreadable frame, bad options or a missing OpenCV with ``crop="haar"``.
    """
    detector = None
    try:
        if crop == "haar":
            detector = mug.load_face_detector()
        options = _options(clips_per_video, seed, crop, crop_fraction)
        root = mug.release_root(source_dir)
        videos, short = mug.find_videos(source_dir)
    except (ImportError, FileNotFoundError, ValueError) as e:
        raise InputError(str(e)) from e
    if not videos:
        raise InputError(f"no take of at least {mug.NUM_FRAMES} frames under {root}")
    subjects = mug.subject_names(videos)
    splits = mug.split_videos(videos)
    if not splits["test"]:
        raise InputError(f"no test takes: every (subject, expression) under {root} has one take")
    digest = fingerprint(root, videos + short, options)
    final = array_record.version_dir(mug.TFDS_NAME, data_dir, mug.TFDS_VERSION)
    if already_prepared(mug.TFDS_NAME, data_dir, mug.TFDS_VERSION, digest):
        return final, False

    progress = Progress(len(videos), mug.TFDS_NAME, "videos")

    def records(indices: list[int]) -> Iterator[dict]:
        for i in indices:
            video = videos[i]
            try:
                yield from mug.clip_records(
                    video,
                    video_index=i,
                    subject=subjects.index(video.subject),
                    clips_per_video=clips_per_video,
                    seed=seed,
                    crop=crop,
                    crop_fraction=crop_fraction,
                    detector=detector,
                )
            except ValueError as e:  # an unreadable frame
                raise InputError(str(e)) from e
            progress.update()

    array_record.write_dataset(
        mug.TFDS_NAME,
        data_dir,
        {split: records(indices) for split, indices in splits.items()},
        features(subjects),
        version=mug.TFDS_VERSION,
        description=(
            "MUG facial expression database (Aifanti et al., 2010): 15-frame 64x64 RGB clips "
            "of takes of 6 expressions; static label subject, dynamic label expression."
        ),
        homepage=HOMEPAGE,
        citation=CITATION,
        metadata={
            "protocol": PROTOCOL,
            "options": options,
            "static_factors": list(mug.STATIC_FACTORS),
            "dynamic_factors": list(mug.DYNAMIC_FACTORS),
            "num_videos": {split: len(indices) for split, indices in splits.items()},
            "skipped_short_takes": [v.key for v in short],
        },
        fingerprint=digest,
        expected_sizes={split: len(ix) * clips_per_video for split, ix in splits.items()},
    )
    return final, True


if __name__ == "__main__":
    common.main(
        prepare,
        source_help="The MUG release's subjects3 folder (or the folder holding it).",
        source_required=(
            "--source_dir=<the MUG release's subjects3 folder> is required (MUG is "
            f"licence-restricted: request it from {HOMEPAGE})"
        ),
        options=[
            common.Option(
                "clips_per_video", 1, "Clips of 15 frames cut from every take (random starts).",
                kind="integer",
            ),
            common.Option(
                "seed", 0, "Seed of the clips' random starts (>= 0).", kind="integer"
            ),
            common.Option(
                "crop", "center", "Face crop: central square, or OpenCV's Haar cascade.",
                kind="enum", choices=mug.CROPS,
            ),
            common.Option(
                "crop_fraction", 1.0,
                "Side of the central crop as a fraction of min(height, width).", kind="float",
            ),
        ],
    )
