"""Prepare SPYL's Jester benchmark as a TFDS array_record dataset (no TensorFlow needed).

    python -m data_prep.jester --source_dir=<folder holding 20bn-jester-v1/ and the
        jester-v1-*.csv files> [--data_dir=DIR]

20BN-jester v1 is licence-restricted (download it from Qualcomm's AI datasets site, or a mirror
that keeps 20BN's layout): ``--source_dir`` holds ``20bn-jester-v1/<video id>/00001.jpg, ...``
and ``jester-v1-labels.csv``, ``jester-v1-train.csv``, ``jester-v1-validation.csv``. Writes
``<data_dir>/jester/1.0.0``: the videos of SPYL's five gestures, train = the official train
CSV, test = the official validation CSV; uint8 video (10, 64, 64, 3), int32 ``gesture`` (class
label, `seqdis_jax.data.jester.GESTURES`) and ``video_id``. Frame rule, crop and resize: see
`seqdis_jax.data.jester`. ``--data_dir`` defaults to ``$TFDS_DATA_DIR`` or
``~/tensorflow_datasets``.

A run is idempotent: the dataset's metadata holds a fingerprint (sha256 of the protocol, the
three CSVs and the relative path and size of every frame used); when the prepared dataset has
the same fingerprint, nothing is rewritten. Bad inputs (missing folder or CSV, a listed video
folder missing, a video of fewer than 10 frames, an unreadable frame, a labels CSV without the
five gestures) exit with status 2 and one line ``error: ...``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from data_prep import common
from data_prep.common import InputError, Progress, already_prepared, fingerprint
from seqdis_jax.data import array_record, jester

# Bump whenever the gestures, the frame rule, the crop/resize, the split or the record layout
# change: the fingerprint changes with it, so the next run rebuilds instead of skipping.
PROTOCOL = "jester-protocol-1"
CITATION = """@inproceedings{materzynska2019jester,
  title = {The Jester Dataset: A Large-Scale Video Dataset of Human Gestures},
  author = {Materzynska, Joanna and Berger, Guillaume and Bax, Ingo and Memisevic, Roland},
  booktitle = {International Conference on Computer Vision Workshops},
  year = {2019}
}"""


@dataclasses.dataclass(frozen=True)
class Video:
    """One video of the five gestures and the frames kept from it."""

    video_id: int
    gesture: int  # index into jester.GESTURES
    frames: tuple[str, ...]  # paths of the kept frames, relative to the source folder


def _read_csvs(source_dir: str) -> dict[str, list[tuple[int, str]]]:
    """The split CSVs' entries, after checking the folders and the labels CSV."""
    if not os.path.isdir(source_dir):
        raise InputError(f"Jester folder not found: {source_dir}")
    videos_dir = os.path.join(source_dir, jester.VIDEO_DIR)
    if not os.path.isdir(videos_dir):
        raise InputError(f"missing Jester video folder: {videos_dir}")
    for name in (jester.LABELS_CSV, *jester.SPLIT_CSVS.values()):
        if not os.path.isfile(os.path.join(source_dir, name)):
            raise InputError(f"missing Jester CSV: {os.path.join(source_dir, name)}")
    labels_csv = os.path.join(source_dir, jester.LABELS_CSV)
    names = set(jester.read_gesture_names(labels_csv))
    missing = [g for g in jester.GESTURES if g not in names]
    if missing:
        raise InputError(f"{labels_csv} lacks the gestures {', '.join(map(repr, missing))}")
    try:
        return {
            split: jester.read_split_csv(os.path.join(source_dir, name))
            for split, name in jester.SPLIT_CSVS.items()
        }
    except ValueError as e:
        raise InputError(str(e)) from e


def scan(source_dir: str) -> dict[str, list[Video]]:
    """The videos of each split (CSV order) with the frames to keep; reads no image.

    Raises `InputError` for a missing folder or CSV, a labels CSV without the five gestures, a
    listed video folder that is missing, and a video of fewer than 10 frames.
    """
    entries = _read_csvs(source_dir)
    videos: dict[str, list[Video]] = {}
    for split, rows in entries.items():
        csv_name = jester.SPLIT_CSVS[split]
        videos[split] = []
        for video_id, gesture in rows:
            if gesture not in jester.GESTURES:
                continue
            relative = os.path.join(jester.VIDEO_DIR, str(video_id))
            folder = os.path.join(source_dir, relative)
            if not os.path.isdir(folder):
                raise InputError(f"video folder {folder} (listed in {csv_name}) not found")
            files = jester.frame_files(folder)
            if len(files) < jester.NUM_FRAMES:
                raise InputError(
                    f"video {folder} has {len(files)} frames; at least {jester.NUM_FRAMES} "
                    "are needed"
                )
            kept = tuple(os.path.join(relative, files[i]) for i in jester.frame_indices(len(files)))
            videos[split].append(Video(video_id, jester.GESTURES.index(gesture), kept))
        if not videos[split]:
            raise InputError(f"{csv_name} lists no video of the gestures {jester.GESTURES}")
    return videos


def dataset_fingerprint(source_dir: str, videos: Mapping[str, Sequence[Video]]) -> str:
    """sha256 of the protocol, the CSVs' bytes and each kept frame's relative path and size
    (the frames themselves are not read: 20BN's release does not change in place)."""
    listing = hashlib.sha256()
    for split, split_videos in sorted(videos.items()):
        for video in split_videos:
            for frame in video.frames:
                size = os.path.getsize(os.path.join(source_dir, frame))
                listing.update(f"{split} {video.gesture} {frame} {size}\n".encode())
    header = f"{PROTOCOL}\n{jester.TFDS_VERSION}\nframes {listing.hexdigest()}\n"
    csvs = (jester.LABELS_CSV, *jester.SPLIT_CSVS.values())
    return fingerprint(header, [(name, os.path.join(source_dir, name)) for name in csvs])


def features() -> dict[str, array_record.Feature]:
    """The record layout: uint8 video, the gesture class label and the video id."""
    shape = (jester.NUM_FRAMES, jester.FRAME_SIZE, jester.FRAME_SIZE, 3)
    return {
        "video": array_record.Feature("uint8", shape),
        "gesture": array_record.Feature("int32", names=jester.GESTURES),
        "video_id": array_record.Feature("int32"),
    }


def _records(
    source_dir: str, videos: Sequence[Video], progress: Progress
) -> Iterator[dict[str, object]]:
    for video in videos:
        try:
            frames = jester.load_video([os.path.join(source_dir, f) for f in video.frames])
        except ValueError as e:
            raise InputError(str(e)) from e
        yield {
            "video": frames,
            "gesture": np.int32(video.gesture),
            "video_id": np.int32(video.video_id),
        }
        progress.update()


def prepare(source_dir: str, data_dir: str) -> tuple[str, bool]:
    """Builds the dataset unless it is prepared with the same fingerprint.

    Returns (version directory, whether anything was written). Raises `InputError` for bad
    inputs (see the module docstring); nothing is written then.
    """
    videos = scan(source_dir)
    digest = dataset_fingerprint(source_dir, videos)
    final = array_record.version_dir(jester.TFDS_NAME, data_dir, jester.TFDS_VERSION)
    if already_prepared(jester.TFDS_NAME, data_dir, jester.TFDS_VERSION, digest):
        return final, False
    progress = Progress(sum(map(len, videos.values())), jester.TFDS_NAME, "videos")
    array_record.write_dataset(
        jester.TFDS_NAME,
        data_dir,
        {split: _records(source_dir, vs, progress) for split, vs in videos.items()},
        features(),
        version=jester.TFDS_VERSION,
        description=(
            "Jester (Materzynska et al., 2019) as in SPYL (Naiman et al., 2023) App. A.1: five "
            "gestures, 10 frames per video at indices i * (n // 10), center-cropped and resized "
            "to 64x64 RGB; train = official train CSV, test = official validation CSV."
        ),
        homepage="https://developer.qualcomm.com/software/ai-datasets/jester",
        citation=CITATION,
        metadata={
            "protocol": PROTOCOL,
            "static_factors": list(jester.STATIC_FACTORS),
            "dynamic_factors": list(jester.DYNAMIC_FACTORS),
            "frame_rule": "i * (n // 10), i = 0..9",
            "num_videos": {split: len(vs) for split, vs in videos.items()},
        },
        fingerprint=digest,
        expected_sizes={split: len(vs) for split, vs in videos.items()},
    )
    return final, True


if __name__ == "__main__":
    common.main(
        prepare,
        source_help="Folder holding 20bn-jester-v1/ and the jester-v1-*.csv files.",
        source_required=(
            "--source_dir=<folder holding 20bn-jester-v1/ and the jester-v1-*.csv files> "
            "is required"
        ),
    )
