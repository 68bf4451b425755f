"""The MUG facial expression database (Aifanti et al., 2010) as the sequential disentanglement
papers use it (C-DSVAE App. C.1, SPYL A.1, DBSE A.1), pure numpy + PIL.

52 subjects show 6 expressions in about 3528 takes of 50-160 frames; a sample is a clip of
T = 15 frames, each cropped to the face and resized to 64x64 RGB. Static label: the subject;
dynamic label: the expression (`EXPRESSIONS`, class indices 0..5).

**The release's layout** (licence-restricted, so only a synthetic copy is tested here)::

    subjects3/                      --source_dir is this folder or its parent
      001/  002/  ...               one folder per subject, 3-digit names
        anger/ disgust/ fear/ happiness/ neutral/ sadness/ surprise/
          take000/  take001/ ...    one folder per take
            img_0000.jpg  img_0001.jpg ...   896x896 JPEG frames
        session1/ session2/ ...     (a few subjects) an extra level above the expression folders

An expression folder that holds the frames directly, without take folders, is one take (when
it has take folders, only those are read). Folders other than the six expressions (``neutral``,
…) and other than ``session<N>`` in a subject folder, folders not named ``<3 digits>`` in
``subjects3`` and files not ending in ``.jpg`` are ignored. Frames are ordered by the last
integer in their file name. A take's **key** is the path of the folder holding its frames
relative to ``subjects3``, with ``/``: ``subject/[session/]expression/take`` (``001/anger`` for
frames held directly). Takes with fewer than `NUM_FRAMES` frames are skipped (and reported).

**Clip rule** (`clip_starts`): a take of ``n`` frames gives clips of stride
``s = max(1, n // 15)`` (an even stride covering the whole take: onset, apex, offset); clip
``k`` (of ``clips_per_video``, default 1) holds frames ``start + s * j``, j = 0..14, with
``start = rng.integers(0, n - 14 * s)`` (uniform on ``[0, n - 1 - 14 * s]``) and
``rng = np.random.default_rng([seed, zlib.crc32(key.encode()), k])`` (default seed 0), so a
clip depends neither on the order nor on the number of the other takes.

**Face crop** (`crop_box`, `load_face_detector`): ``center`` (default) crops the central square
of side ``round(crop_fraction * min(H, W))`` (default crop_fraction 1.0: the whole 896x896
frame); ``haar`` (what the papers do; needs OpenCV) runs OpenCV's
``haarcascade_frontalface_alt.xml`` on the clip's middle frame (j = 7) and crops every frame of
the clip to the largest face found there, or centre-crops when none is found. Each crop is then
resized to 64x64 with PIL's LANCZOS filter (antialiased downsampling).

**Split** (`split_videos`): by take, stratified. The usable takes of each (subject, expression)
(sessions pooled) are sorted by key; of ``n`` takes, ``n_test = 0 if n == 1 else
max(1, round(0.2 * n))`` go to test: positions ``rng.choice(n, n_test, replace=False)`` with
``rng = np.random.default_rng([0, zlib.crc32(f"{subject}/{expression}".encode())])``; all clips
of a take go to its split. Subject label: index of the subject's folder name among the sorted
names of the subjects with at least one usable take (`subject_names`); the ClassLabel names are
those folder names.
"""

from __future__ import annotations

import dataclasses
import os
import re
import zlib
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from seqdis_jax.data import images
from seqdis_jax.data.registry import PreparedSpec

TFDS_NAME = "mug"
TFDS_VERSION = "1.0.0"

EXPRESSIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")  # labels 0..5
NUM_FRAMES = 15
SIZE = 64  # px, frames are SIZE x SIZE RGB
STATIC_FACTORS = ("subject",)
DYNAMIC_FACTORS = ("expression",)
NUM_CLASSES = {"subject": 52, "expression": 6}  # a build's own subject list overrides 52
SPLIT_SEED = 0
TEST_FRACTION = 0.2
CROPS = ("center", "haar")
HAAR_CASCADE = "haarcascade_frontalface_alt.xml"  # in cv2.data.haarcascades
RELEASE_DIR = "subjects3"

SPEC = PreparedSpec(
    tfds_name=TFDS_NAME,
    video_shape=(NUM_FRAMES, SIZE, SIZE, 3),
    static_factors=STATIC_FACTORS,
    dynamic_factors=DYNAMIC_FACTORS,
    num_classes=NUM_CLASSES,
    prepare_command="python -m data_prep.mug --source_dir=<the MUG release's subjects3 folder>",
)

_SUBJECT = re.compile(r"\d{3}")
_SESSION = re.compile(r"session\d+")
_TAKE = re.compile(r"take\d+")
_NUMBER = re.compile(r"\d+")

Box = images.Box
Detector = Callable[[Image.Image], Box | None]  # image -> face box, None: no face


@dataclasses.dataclass(frozen=True)
class Video:
    """One take: its frames (absolute paths in frame order) and labels."""

    subject: str  # the subject folder's name, e.g. "001"
    expression: str  # one of EXPRESSIONS
    key: str  # "subject/[session/]expression/take" relative to subjects3, "/"-separated
    frames: tuple[str, ...]


def release_root(source_dir: str) -> str:
    """The ``subjects3`` folder: ``source_dir`` itself or its ``subjects3`` child.

    Raises FileNotFoundError when ``source_dir`` does not exist.
    """
    if not os.path.isdir(source_dir):
        raise FileNotFoundError(
            f"MUG source directory not found: {source_dir}; pass --source_dir=<the MUG "
            f"release's {RELEASE_DIR} folder> (or its parent)"
        )
    child = os.path.join(source_dir, RELEASE_DIR)
    return child if os.path.isdir(child) else source_dir


def _frame_number(path: str) -> int:
    numbers = _NUMBER.findall(os.path.splitext(os.path.basename(path))[0])
    if not numbers:
        raise ValueError(f"frame file {path} has no frame number in its name (img_0000.jpg)")
    return int(numbers[-1])


def _frames(folder: str) -> tuple[str, ...]:
    """The ``.jpg`` files of ``folder`` ordered by the last integer in their names."""
    names = [n for n in os.listdir(folder) if n.lower().endswith(".jpg")]
    paths = [os.path.join(folder, n) for n in names]
    paths = [p for p in paths if os.path.isfile(p)]
    return tuple(sorted(paths, key=lambda p: (_frame_number(p), p)))


def _subdirs(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n)))


def _expression_takes(root: str, key: str, subject: str, expression: str) -> list[Video]:
    """The takes of one expression folder (``key`` relative to ``root``)."""
    folder = os.path.join(root, *key.split("/"))
    takes = [n for n in _subdirs(folder) if _TAKE.fullmatch(n)]
    if not takes:  # frames held directly: one take
        frames = _frames(folder)
        if not frames:
            raise ValueError(
                f"empty expression folder {folder}: it holds neither take folders (take000, "
                "...) nor frames (img_0000.jpg, ...); restore it from the MUG release or "
                "remove it"
            )
        return [Video(subject, expression, key, frames)]
    return [
        Video(subject, expression, f"{key}/{t}", _frames(os.path.join(folder, t))) for t in takes
    ]


def find_videos(source_dir: str) -> tuple[list[Video], list[Video]]:
    """(usable, short): every take of the six expressions under ``source_dir`` (the release's
    ``subjects3`` folder or its parent), sorted by key; ``short`` are those with fewer than
    `NUM_FRAMES` frames, which are skipped.

    Raises FileNotFoundError for a missing directory or one without subject folders, ValueError
    for an empty expression folder or a frame file without a number in its name.
    """
    root = release_root(source_dir)
    subjects = [n for n in _subdirs(root) if _SUBJECT.fullmatch(n)]
    if not subjects:
        raise FileNotFoundError(
            f"no subject folders (001, 002, ...) in {root}; pass --source_dir=<the MUG "
            f"release's {RELEASE_DIR} folder> (or its parent)"
        )
    videos = []
    for subject in subjects:
        for entry in _subdirs(os.path.join(root, subject)):
            if entry in EXPRESSIONS:
                videos += _expression_takes(root, f"{subject}/{entry}", subject, entry)
            elif _SESSION.fullmatch(entry):
                for expression in _subdirs(os.path.join(root, subject, entry)):
                    if expression in EXPRESSIONS:
                        key = f"{subject}/{entry}/{expression}"
                        videos += _expression_takes(root, key, subject, expression)
    videos.sort(key=lambda v: v.key)
    usable = [v for v in videos if len(v.frames) >= NUM_FRAMES]
    short = [v for v in videos if len(v.frames) < NUM_FRAMES]
    return usable, short


def subject_names(videos: Sequence[Video]) -> tuple[str, ...]:
    """The ClassLabel names of the subject label: sorted folder names of the subjects with a
    usable take; the label of a take is the index of its subject here."""
    return tuple(sorted({v.subject for v in videos}))


def split_videos(videos: Sequence[Video]) -> dict[str, list[int]]:
    """{"train": indices, "test": indices} into ``videos`` (ascending), stratified by
    (subject, expression) with `SPLIT_SEED` (see the module docstring)."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, v in enumerate(videos):
        groups.setdefault((v.subject, v.expression), []).append(i)
    test = set()
    for (subject, expression), members in groups.items():
        members = sorted(members, key=lambda i: videos[i].key)
        n = len(members)
        n_test = 0 if n == 1 else max(1, round(TEST_FRACTION * n))
        rng = np.random.default_rng([SPLIT_SEED, zlib.crc32(f"{subject}/{expression}".encode())])
        test.update(members[j] for j in rng.choice(n, n_test, replace=False))
    return {
        "train": [i for i in range(len(videos)) if i not in test],
        "test": sorted(test),
    }


def clip_stride(num_frames: int) -> int:
    """``max(1, n // NUM_FRAMES)``: the even stride that spans a take of ``n`` frames."""
    return max(1, num_frames // NUM_FRAMES)


def clip_starts(video: Video, clips_per_video: int = 1, seed: int = 0) -> list[int]:
    """The first frame of each of the take's clips (see the module docstring)."""
    n = len(video.frames)
    stride = clip_stride(n)
    if n < NUM_FRAMES:
        raise ValueError(f"take {video.key} has {n} frames, fewer than {NUM_FRAMES}")
    key = zlib.crc32(video.key.encode())
    return [
        int(np.random.default_rng([seed, key, k]).integers(0, n - (NUM_FRAMES - 1) * stride))
        for k in range(clips_per_video)
    ]


def crop_box(size: tuple[int, int], crop_fraction: float = 1.0) -> Box:
    """The central square of side ``round(crop_fraction * min(W, H))`` of a (W, H) image."""
    return images.center_square(size, crop_fraction)


def load_face_detector() -> Detector:
    """OpenCV's frontal-face Haar cascade: image -> box of the largest face, or None.

    Raises ImportError with the fix when OpenCV is not installed.
    """
    try:
        import cv2
    except ImportError as e:
        raise ImportError(
            "--crop=haar needs OpenCV: pip install opencv-python-headless, or use --crop=center"
        ) from e
    cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, HAAR_CASCADE))
    if cascade.empty():
        raise ImportError(f"OpenCV could not load {HAAR_CASCADE} from {cv2.data.haarcascades}")

    def detect(image: Image.Image) -> Box | None:
        gray = np.asarray(image.convert("L"))
        min_side = max(1, min(gray.shape) // 8)
        faces = cascade.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side)
        )
        if len(faces) == 0:
            return None
        x, y, w, h = (int(a) for a in max(faces, key=lambda f: int(f[2]) * int(f[3])))
        return x, y, x + w, y + h

    return detect


def read_frame(path: str) -> Image.Image:
    """A frame as an RGB image; ValueError naming the file when it cannot be decoded."""
    return images.read_image(path, "RGB", "frame")


def check_crop(crop: str, crop_fraction: float) -> None:
    """ValueError for an unknown crop or a crop_fraction outside (0, 1]."""
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")


def clip_records(
    video: Video,
    video_index: int,
    subject: int,
    clips_per_video: int = 1,
    seed: int = 0,
    crop: str = "center",
    crop_fraction: float = 1.0,
    detector: Detector | None = None,
) -> list[dict[str, np.ndarray]]:
    """The records of the take's clips: ``video`` uint8 (15, 64, 64, 3) and int32
    ``expression``, ``subject`` (the given label), ``video_index``, ``start``, ``stride``.

    ``crop="haar"`` uses ``detector`` (default `load_face_detector()`). Raises ValueError
    naming an unreadable frame.
    """
    check_crop(crop, crop_fraction)
    if crop == "haar" and detector is None:
        detector = load_face_detector()
    stride = clip_stride(len(video.frames))
    cache: dict[int, Image.Image] = {}

    def frame(i: int) -> Image.Image:
        if i not in cache:
            cache[i] = read_frame(video.frames[i])
        return cache[i]

    records = []
    for start in clip_starts(video, clips_per_video, seed):
        indices = [start + stride * j for j in range(NUM_FRAMES)]
        box = None
        if crop == "haar":
            box = detector(frame(indices[NUM_FRAMES // 2]))
        frames = []
        for i in indices:
            image = frame(i)
            frame_box = box or crop_box(image.size, crop_fraction)
            resized = images.resize(image.crop(frame_box), SIZE)
            frames.append(np.asarray(resized, np.uint8))
        records.append(
            {
                "video": np.stack(frames),
                "expression": np.int32(EXPRESSIONS.index(video.expression)),
                "subject": np.int32(subject),
                "video_index": np.int32(video_index),
                "start": np.int32(start),
                "stride": np.int32(stride),
            }
        )
    return records
