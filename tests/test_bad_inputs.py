"""The bad-input table (issue 9): every malformed input stops the launcher with ONE clear error
that names the problem and the fix, and leaves every file that existed before untouched.

`test_bad_input` runs each row of `CASES` against one module-wide tree (prepared datasets,
judges, a trained run, empty and locked workdirs) and compares a `snapshot` of the whole tree
(names, sizes, sha256 of the contents, mtimes; folders by their mtime too) before and after. A
row either calls `experiments.main.run(config, workdir, mode)` in process, expecting one of the
exceptions that `main()` turns into `error: ...` and exit status 2, or runs the launcher
(`python -m experiments.main ...`) and expects exit status 2 with one `error: ...` line.
`test_full_disk_while_saving_keeps_the_earlier_checkpoint` is the one case that fails midway.
The row `nan-in-a-training-batch` runs the per-batch NaN check as the fit loop does: the rows
the train step flags on device (`train_step.non_finite_rows`), refused by
`seqdis_jax.data.validation.check_batch_rows`.

The prepared datasets are tiny `array_record` builds written here: `fsdd*` builds of (T, F) =
`FSDD_SHAPE` float32 features (the speech model at config.data.num_features = F) and `sprites*`
builds of video frames, some damaged on purpose.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import pytest

from experiments import fsdd as fsdd_config
from experiments import main as launcher
from experiments import shapes as shapes_config
from experiments import sprites as sprites_config
from seqdis_jax import (
    checkpointing,
    errors,
    metric_writers,
    models,
    train,
    train_step,
    workdir_lock,
)
from seqdis_jax import judge as judge_lib
from seqdis_jax.data import array_record, registry, validation
from seqdis_jax.data.array_record import Feature
from seqdis_jax.data.pipeline import InMemorySource
from seqdis_jax.data.registry import BadDataError, NotPreparedError
from seqdis_jax.errors import (
    JudgeMismatchError,
    MissingCheckpointError,
    MissingLabelError,
    UserInputError,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The exceptions `experiments.main.main` prints as one `error: ...` line with exit status 2.
USER_ERRORS = (UserInputError, MissingCheckpointError, JudgeMismatchError, MissingLabelError,
               NotPreparedError)

FSDD_SHAPE = (6, 8)  # (T, F) of the fsdd builds: small, so the speech model compiles fast
FSDD_TRAIN, FSDD_TEST = 16, 8
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
DIGITS = tuple(str(d) for d in range(10))
NAN_RECORD = 3  # the test record of fsdd_nan holding a NaN

# A refused Orbax restore leaves Orbax's own read coroutines unawaited; pytest reports them.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


# --------------------------------------------------------------------------- the snapshot


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def snapshot(*paths: str | os.PathLike) -> dict[str, Any]:
    """Every file and folder under `paths`: a file as ('file', size, sha256, mtime_ns), a
    folder as ('dir', mtime_ns) (creating or removing anything in it changes that), a missing
    path as None. Equal snapshots: nothing was written, touched, created or deleted."""
    out: dict[str, Any] = {}
    for top in map(os.fspath, paths):
        if not os.path.lexists(top):
            out[top] = None
            continue
        if not os.path.isdir(top):
            st = os.stat(top)
            out[top] = ("file", st.st_size, _sha256(top), st.st_mtime_ns)
            continue
        for base, _, files in os.walk(top):
            out[base] = ("dir", os.stat(base).st_mtime_ns)
            for name in files:
                path = os.path.join(base, name)
                st = os.stat(path)
                out[path] = ("file", st.st_size, _sha256(path), st.st_mtime_ns)
    return out


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two snapshots, one readable line per path."""
    lines = []
    for path in sorted(set(before) | set(after)):
        if before.get(path) != after.get(path):
            lines.append(f"{path}: {before.get(path)} -> {after.get(path)}")
    return lines


def test_snapshot_sees_contents_names_and_mtimes(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 10)
    before = snapshot(tmp_path, tmp_path / "missing")
    assert snapshot(tmp_path, tmp_path / "missing") == before
    (tmp_path / "a").write_bytes(b"y" * 10)  # same size, other contents
    os.utime(tmp_path / "a", ns=(before[str(tmp_path / "a")][3],) * 2)
    assert changes(before, snapshot(tmp_path, tmp_path / "missing"))
    (tmp_path / "a").write_bytes(b"x" * 10)
    os.utime(tmp_path / "a", ns=(before[str(tmp_path / "a")][3],) * 2)
    assert not changes(before, snapshot(tmp_path, tmp_path / "missing"))
    (tmp_path / "missing").mkdir()
    assert changes(before, snapshot(tmp_path, tmp_path / "missing"))


# --------------------------------------------------------------------------- the fixtures


def _fsdd_records(n: int, seed: int, dtype: str = "float32") -> dict[str, np.ndarray]:
    """`n` records in the layout of data_prep.fsdd (2 segments per utterance)."""
    rng = np.random.default_rng(seed)
    index = np.arange(n)
    return {
        "video": rng.standard_normal((n, *FSDD_SHAPE)).astype(dtype),
        "speaker": (index % len(SPEAKERS)).astype(np.int32),
        "digit": (index % len(DIGITS)).astype(np.int32),
        "utterance": (index // 2).astype(np.int32),
        "take": np.full(n, 5 + seed, np.int32),
        "segment": (index % 2).astype(np.int32),
    }


def _fsdd_features(dtype: str = "float32") -> dict[str, Feature]:
    return {
        "video": Feature(dtype, FSDD_SHAPE),
        "speaker": Feature("int32", names=SPEAKERS),
        "digit": Feature("int32", names=DIGITS),
        "utterance": Feature("int32"),
        "take": Feature("int32"),
        "segment": Feature("int32"),
    }


def _write(name: str, data_dir: str, splits: dict, features: dict) -> str:
    with contextlib.redirect_stderr(io.StringIO()):  # TFDS's progress bars
        return array_record.write_dataset(name, data_dir, splits, features)


def _split_file(version_dir: str, split: str) -> str:
    (name,) = [n for n in os.listdir(version_dir) if f"-{split}.array_record" in n]
    return os.path.join(version_dir, name)


def _edit_json(path: str, edit: Callable[[dict], None]) -> None:
    with open(path) as f:
        content = json.load(f)
    edit(content)
    with open(path, "w") as f:
        json.dump(content, f)


def _write_builds(data_dir: str) -> None:
    """The good `fsdd` build and one damaged build per kind of damage."""
    def fsdd_splits(dtype="float32"):
        return {"train": _fsdd_records(FSDD_TRAIN, 0, dtype),
                "test": _fsdd_records(FSDD_TEST, 1, dtype)}

    _write("fsdd", data_dir, fsdd_splits(), _fsdd_features())
    _write("fsdd_f64", data_dir, fsdd_splits("float64"), _fsdd_features("float64"))
    nan = fsdd_splits()
    nan["test"]["video"][NAN_RECORD, 2, 5] = np.nan
    _write("fsdd_nan", data_dir, nan, _fsdd_features())

    # 0 records in the train split (TFDS refuses to write one: the split info says so).
    empty = _write("fsdd_empty", data_dir, fsdd_splits(), _fsdd_features())

    def no_train_records(info):
        for split in info["splits"]:
            if split["name"] == "train":
                split["shardLengths"], split["numBytes"] = ["0"], "0"
    _edit_json(os.path.join(empty, "dataset_info.json"), no_train_records)

    garbage = _write("fsdd_garbage", data_dir, fsdd_splits(), _fsdd_features())
    path = _split_file(garbage, "test")
    size = os.path.getsize(path)
    with open(path, "wb") as f:
        f.write(np.random.default_rng(0).integers(0, 256, size, np.uint8).tobytes())
    truncated = _write("fsdd_truncated", data_dir, fsdd_splits(), _fsdd_features())
    path = _split_file(truncated, "train")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    bad_info = _write("fsdd_bad_info", data_dir, fsdd_splits(), _fsdd_features())
    with open(os.path.join(bad_info, "dataset_info.json"), "w") as f:
        f.write("{ this is not JSON")

    # Records of T = 6 in a build whose features declare T = 5.
    short = _write("fsdd_t5", data_dir, fsdd_splits(), _fsdd_features())

    def declare_t5(features):
        shape = features["featuresDict"]["features"]["video"]["tensor"]["shape"]
        shape["dimensions"] = ["5", str(FSDD_SHAPE[1])]
    _edit_json(os.path.join(short, "features.json"), declare_t5)

    # Video frames: 32x32 for the 64x64 video models, and int32 pixels.
    rng = np.random.default_rng(0)
    small = {split: {"video": rng.integers(0, 256, (n, 8, 32, 32, 3), np.uint8)}
             for split, n in (("train", 8), ("test", 4))}
    _write("sprites_32px", data_dir, small, {"video": Feature("uint8", (8, 32, 32, 3))})
    wide = {split: {"video": rng.integers(0, 256, (n, 8, 64, 64, 3)).astype(np.int32)}
            for split, n in (("train", 4), ("test", 4))}
    _write("sprites_int32", data_dir, wide, {"video": Feature("int32", (8, 64, 64, 3))})


@dataclasses.dataclass
class Env:
    """The module's tree: everything below `root` is snapshotted by every row."""

    root: str
    data_dir: str
    judges: str  # judges/shapes_smoke (a fitting one is trained on first use) and foreign ones
    empty_workdir: str  # exists, empty
    locked: str  # a folder that cannot be written to
    a_file: str
    trained: str = ""  # a trained fsdd run (config.json + checkpoint of step 1): `trained_run`
    foreign: str = ""  # a copy of its checkpoints, without config.json

    def new_workdir(self) -> str:
        """A workdir that does not exist (and must not be created)."""
        return os.path.join(self.root, "new_run")


def _shapes_judge_metadata(config, **overrides) -> dict:
    """judge.json of a shapes smoke judge, with `overrides`."""
    dataset = registry.load(config.data, "test")
    return judge_lib.data_signature(config, dataset) | {
        "architecture": judge_lib.judge_architecture(config), "step": 4,
        "test_accuracy": {"motion": 1.0}, "train_seconds": 1.0} | overrides


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    root = str(tmp_path_factory.mktemp("bad_inputs"))
    data_dir = os.path.join(root, "tfds")
    _write_builds(data_dir)
    judges = os.path.join(root, "judges")
    config = shapes_config.get_config("smoke")
    for name, overrides in (("sprites", {"dataset": "sprites", "pixel_scale": 256.0}),
                            ("shapes_t10", {"video_shape": [10, 64, 64, 3]})):
        os.makedirs(os.path.join(judges, name))
        judge_lib.write_metadata(os.path.join(judges, name),
                                 _shapes_judge_metadata(config, **overrides))
    env = Env(root=root, data_dir=data_dir, judges=judges,
              empty_workdir=os.path.join(root, "empty_run"), locked=os.path.join(root, "locked"),
              a_file=os.path.join(root, "a_file"))
    os.makedirs(env.empty_workdir)
    os.makedirs(env.locked)
    with open(env.a_file, "w") as f:
        f.write("not a workdir\n")
    return env


def fsdd_config_for(env: Env, build: str = "fsdd"):
    """experiments/fsdd.py:smoke on the build `build` of env.data_dir, reconstruction only."""
    config = fsdd_config.get_config("smoke")
    config.data.data_dir = env.data_dir
    config.data.tfds_name = build
    config.data.num_features = FSDD_SHAPE[1]
    config.eval.evaluators = ("reconstruction",)
    config.eval.mi_every = 0
    return config


def shapes_config_for(env: Env):
    config = shapes_config.get_config("smoke")
    config.judge.workdir = os.path.join(env.judges, "shapes_smoke")
    config.eval.evaluators = ("reconstruction",)
    config.eval.mi_every = 0
    return config


# The launcher with orbax's file writes failing with ENOSPC inside the checkpoint of step 2
# (orbax writes its metadata through `async_path.write_text`; the array data goes through
# tensorstore, out of Python's reach).
FULL_DISK_LAUNCHER = """
import errno, os, runpy, sys
from orbax.checkpoint._src.path import async_path
write_text = async_path.write_text
async def full_disk(path, *args, **kwargs):
    if "2.orbax-checkpoint-tmp" in os.fspath(path):
        print("full-disk patch hit", file=sys.stderr)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))
    return await write_text(path, *args, **kwargs)
async_path.write_text = full_disk
sys.argv = ["experiments.main", *sys.argv[1:]]
runpy.run_module("experiments.main", run_name="__main__", alter_sys=True)
"""
FULL_DISK_STEPS = 3


def _fsdd_flags(env: Env) -> list[str]:
    return ["--config=experiments/fsdd.py:smoke", f"--config.data.data_dir={env.data_dir}",
            "--config.data.tfds_name=fsdd", f"--config.data.num_features={FSDD_SHAPE[1]}",
            "--config.eval.evaluators=('reconstruction',)", "--config.eval.mi_every=0"]


@pytest.fixture(scope="module")
def trained_run(env: Env) -> subprocess.CompletedProcess:
    """A 3-step fsdd run, checkpointing every step, whose disk fills up at step 2: it leaves
    env.trained with config.json and the checkpoint of step 1 (and env.foreign, a copy of that
    checkpoint without config.json)."""
    env.trained = os.path.join(env.root, "trained")
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK_LAUNCHER, *_fsdd_flags(env),
         f"--workdir={env.trained}", f"--config.train.num_steps={FULL_DISK_STEPS}",
         "--config.train.checkpoint_every=1", "--config.train.log_every=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    env.foreign = os.path.join(env.root, "foreign_checkpoints")
    if os.path.isdir(os.path.join(env.trained, "checkpoints", "1")):
        os.makedirs(os.path.join(env.foreign, "checkpoints"))
        shutil.copytree(os.path.join(env.trained, "checkpoints", "1"),
                        os.path.join(env.foreign, "checkpoints", "1"))
    return result


def test_full_disk_while_saving_keeps_the_earlier_checkpoint(env, trained_run):
    """ENOSPC inside the second checkpoint: exit status 1, one `error:` line naming the
    intact checkpoint and the fix, and that checkpoint restores."""
    stderr = trained_run.stderr
    assert "full-disk patch hit" in stderr, (
        "orbax no longer writes through async_path.write_text: move the patch point\n"
        + stderr[-3000:])
    assert trained_run.returncode == 1, stderr[-3000:]
    # Orbax logs its own tracebacks of the failed write before; the launcher says one line.
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    checkpoints = os.path.join(env.trained, "checkpoints")
    # Orbax's closed-event-loop tracebacks can fill the tail: show the other lines.
    noise = ("Traceback", "  File ", "    ", "RuntimeError: Event loop is closed")
    assert len(errors) == 1, "\n".join(
        line for line in stderr.splitlines() if not line.startswith(noise))[-3000:]
    assert re.fullmatch(
        rf"error: Could not write the checkpoint of step 2 to {re.escape(checkpoints)}: the "
        r"disk is full; the checkpoint of step 1 is intact\. Free space .* to resume\.",
        errors[0]), errors[0]
    steps = sorted(name for name in os.listdir(checkpoints) if name.isdigit())
    assert steps == ["1"]  # orbax left only its temporary directory of step 2

    config = fsdd_config_for(env)
    method = models.get_method(config.method)
    model = method.build(config)
    tx = train.make_optimizer(config, method)
    manager = checkpointing.make_manager(env.trained, 1, 1, create=False)
    assert manager.latest_step() == 1
    abstract = train.abstract_train_state(model, tx, (config.data.batch_size, *FSDD_SHAPE))
    state = checkpointing.restore(manager, abstract)
    manager.close()
    assert int(state.step) == 1
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))


# --------------------------------------------------------------------------- the table


class LauncherExit(Exception):
    """`python -m experiments.main` exited with `code`; the message is its stderr."""

    def __init__(self, code: int, stderr: str):
        super().__init__(stderr.strip())
        self.code = code


def _launch(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "experiments.main", *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    if result.returncode:
        raise LauncherExit(result.returncode, result.stderr)


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input: `act(env, monkeypatch)` must raise `error` with a message matching
    `match` (a regex) and change nothing under env.root but `new_files` (relative paths)."""

    act: Callable[[Env, pytest.MonkeyPatch], Any]
    error: type[BaseException]
    match: str
    needs_trained_run: bool = False
    new_files: tuple[str, ...] = ()


def _override(config, overrides: dict[str, Any]):
    """`config` with `section__field=value` (or `field=value`) overrides applied."""
    for key, value in overrides.items():
        *section, field = key.split("__")
        (config[section[0]] if section else config)[field] = value
    return config


def _run_fsdd(build: str, mode: str = "train", **overrides) -> Callable:
    """launcher.run on the fsdd build `build`, into a workdir that does not exist."""
    def act(env, monkeypatch):
        config = _override(fsdd_config_for(env, build), overrides)
        return launcher.run(config, env.new_workdir(), mode)
    return act


def _run_shapes(mode: str = "train", workdir: str = "new", **overrides) -> Callable:
    """launcher.run of shapes:smoke into one of env's workdirs."""
    def act(env, monkeypatch):
        config = _override(shapes_config_for(env), overrides)
        path = {"new": env.new_workdir(), "empty": env.empty_workdir, "file": env.a_file,
                "locked": env.locked, "in_locked": os.path.join(env.locked, "run")}[workdir]
        return launcher.run(config, path, mode)
    return act


def _sprites(build: str) -> Callable:
    def act(env, monkeypatch):
        config = sprites_config.get_config("smoke")
        config.data.data_dir = env.data_dir
        config.data.tfds_name = build
        config.eval.evaluators = ("reconstruction",)
        return launcher.run(config, env.new_workdir(), "train")
    return act


def _judge(name: str, mode: str) -> Callable:
    def act(env, monkeypatch):
        config = shapes_config_for(env)
        config.judge.workdir = os.path.join(env.judges, name)
        config.eval.evaluators = ("reconstruction", "judge_generation")
        return launcher.run(config, env.new_workdir(), mode)
    return act


def _nan_in_memory(env, monkeypatch):
    """ETTh1 (generated in memory from its CSV) whose test split holds a NaN in record 5."""
    from experiments import etth1 as etth1_config
    from seqdis_jax.data import etth1

    def load(config, split):
        records = 12
        video = np.random.default_rng(0).standard_normal((records, 24, 7)).astype(np.float32)
        if split == "test":
            video[5, 10, 3] = np.nan
        return registry.Dataset(
            source=InMemorySource({"video": video}), video_shape=(24, 7),
            static_factors=(), dynamic_factors=(), num_classes={})

    monkeypatch.setattr(etth1, "load", load)
    config = etth1_config.get_config("smoke")
    config.eval.evaluators = ("reconstruction",)
    return launcher.run(config, env.new_workdir(), "train")


def _nan_in_a_training_batch(env, monkeypatch):
    """A NaN in a record the load-time sample did not read: the train step flags its rows on
    device (`train_step.non_finite_rows`) and the loop refuses the batch with them
    (`validation.check_batch_rows`)."""
    batch = {"video": np.zeros((4, *FSDD_SHAPE), np.float32)}
    batch["video"][2, 0, 0] = np.nan
    train.check_batch(batch, (4, *FSDD_SHAPE))
    validation.check_batch_rows(jax.device_get(jax.jit(train_step.non_finite_rows)(batch)))


def _three_devices(env, monkeypatch):
    """A mesh of 3 devices (simulated: the one CPU device three times) for a batch of 4."""
    device = jax.local_devices()[0]
    monkeypatch.setattr(jax, "devices", lambda *args: [device] * 4)
    config = shapes_config_for(env)
    config.mesh.data = 3
    return launcher.run(config, env.new_workdir(), "train")


def _trained_with(mode: str, workdir: str, **overrides) -> Callable:
    """launcher.run of the fsdd config, changed, on env.trained or env.foreign."""
    def act(env, monkeypatch):
        config = _override(fsdd_config_for(env), overrides)
        return launcher.run(config, getattr(env, workdir), mode)
    return act


def _unwritable(workdir: str) -> Callable:
    def act(env, monkeypatch):
        if os.geteuid() == 0:
            # Permission bits do not bind root (CI runs as root): deny writes through
            # os.access, which is what the launcher asks.
            monkeypatch.setattr(os, "access", lambda path, mode, **kw: not mode & os.W_OK)
            return _run_shapes(workdir=workdir)(env, monkeypatch)
        os.chmod(env.locked, 0o500)
        try:
            return _run_shapes(workdir=workdir)(env, monkeypatch)
        finally:
            os.chmod(env.locked, 0o700)
    return act


def _cli(*flags: str, data: bool = False) -> Callable:
    def act(env, monkeypatch):
        _launch(*flags, f"--workdir={env.new_workdir()}",
                *([f"--config.data.data_dir={env.data_dir}"] if data else []))
    return act


def _locked_by(pid: int, host: str | None = None) -> Callable:
    """launcher.run of shapes:smoke into a new workdir whose run.lock names `pid` on `host`
    (this one by default) as a run started by `python -m experiments.main ...`."""
    def act(env, monkeypatch):
        os.makedirs(env.new_workdir())
        owner = {"pid": pid, "host": host or socket.gethostname(),
                 "started": "2025-01-01T12:00:00+00:00", "id": "x",
                 "command": "python -m experiments.main --config=experiments/shapes.py:smoke"}
        with open(os.path.join(env.new_workdir(), workdir_lock.LOCK_FILE), "w") as f:
            json.dump(owner, f)
        return launcher.run(shapes_config_for(env), env.new_workdir(), "train")
    return act


LOCK_NEW_FILES = ("new_run", "new_run/run.lock")  # the refusal writes no config.json
PREPARE_FSDD = r"re-prepare it with: python -m data_prep\.fsdd --source_dir=.* --data_dir="

CASES: dict[str, Case] = {
    # 1. missing dataset
    "dataset-not-prepared": Case(
        _run_fsdd("fsdd_missing"), NotPreparedError,
        r"dataset 'fsdd_missing' is not prepared: no .*dataset_info\.json\. Prepare it with: "
        r"python -m data_prep\.fsdd --source_dir=.* --data_dir="),
    # 2. empty dataset
    "empty-train-split": Case(
        _run_fsdd("fsdd_empty"), BadDataError,
        r"dataset 'fsdd_empty' has no records in its 'train' split .*; " + PREPARE_FSDD),
    # 3. wrong frame shape / channels / features
    "frames-32x32-for-a-64x64-model": Case(
        _sprites("sprites_32px"), UserInputError,
        r"Dataset 'sprites' has sequences of shape \(8, 32, 32, 3\); the video models need "
        r"\(T, 64, 64, config\.data\.channels=3\)\. Fix config\.data\.channels or re-run"),
    "wrong-channels": Case(
        _run_shapes(data__channels=1), UserInputError,
        r"shape \(8, 64, 64, 3\); the video models need \(T, 64, 64, "
        r"config\.data\.channels=1\) \(config\.data\.image_size=64\)\. Fix "
        r"config\.data\.channels or config\.data\.image_size"),
    "wrong-feature-count": Case(
        _run_fsdd("fsdd", data__num_features=200), UserInputError,
        r"shape \(6, 8\); the speech models need \(T, config\.data\.num_features=200\)\. Set "
        r"config\.data\.num_features to the dataset's feature count"),
    # 4. wrong dtype
    "float64-features": Case(
        _run_fsdd("fsdd_f64"), BadDataError,
        r"The 'test' split of dataset 'fsdd_f64' stores 'video' as float64, but the models "
        r"take uint8 frames or float32 features; " + PREPARE_FSDD),
    "int32-frames": Case(
        _sprites("sprites_int32"), BadDataError,
        r"dataset 'sprites_int32' stores 'video' as int32, but the models take uint8 frames or "
        r"float32 features; re-prepare it with: python -m data_prep\.sprites"),
    # 5. NaN frames: prepared (a few records read at load time), in memory (all), per batch
    "nan-in-a-prepared-split": Case(
        _run_fsdd("fsdd_nan"), BadDataError,
        rf"The 'test' split of dataset 'fsdd_nan' has non-finite \(NaN/Inf\) 'video' values "
        rf"in record {NAN_RECORD}; " + PREPARE_FSDD),
    "nan-in-an-in-memory-split": Case(
        _nan_in_memory, BadDataError,
        r"The 'test' split of dataset 'etth1' has non-finite \(NaN/Inf\) 'video' values in "
        r"record 5; check the source files .*"
        r"config\.data\.source_dir"),
    "nan-in-a-training-batch": Case(  # the step's non_finite_rows, then check_batch_rows
        _nan_in_a_training_batch, BadDataError,
        r"A training batch has non-finite \(NaN/Inf\) 'video' values in 1 of its 4 sequences "
        r"\(batch rows \[2\]\): a record of the training split is damaged; re-run"),
    # 6. corrupt array_record files / metadata
    "garbage-array-record-file": Case(
        _run_fsdd("fsdd_garbage"), BadDataError,
        r"Could not read record 0 of the 'test' split of dataset 'fsdd_garbage' "
        r"\(RuntimeError: .*\): its files are damaged .*; " + PREPARE_FSDD),
    "truncated-array-record-file": Case(
        _run_fsdd("fsdd_truncated"), BadDataError,
        r"Could not read record 0 of the 'train' split of dataset 'fsdd_truncated' .*: its "
        r"files are damaged .*; " + PREPARE_FSDD),
    "corrupt-dataset-info": Case(
        _run_fsdd("fsdd_bad_info"), BadDataError,
        r"dataset 'fsdd_bad_info' in .* cannot be opened \(.*JSON.*\); " + PREPARE_FSDD),
    # 7. sequence length: configs declare none (T comes from the data, the models' parameters
    # do not depend on it); records disagreeing with their build, a judge of another T.
    "records-longer-than-declared": Case(
        _run_fsdd("fsdd_t5"), BadDataError,
        r"Could not read record 0 of the 'test' split of dataset 'fsdd_t5' \(ValueError: "
        r"cannot reshape array of size 48 into shape \(5,\s*8\)\): its files are damaged"),
    "judge-of-another-sequence-length": Case(
        _judge("shapes_t10", "judge"), JudgeMismatchError,
        r"The judge in .*shapes_t10 does not fit this run \(video_shape: judge has "
        r"\[10, 64, 64, 3\], run needs \[8, 64, 64, 3\]\)\. Point config\.judge\.workdir"),
    # 8, 9. config fields the flag parser refuses
    "unknown-config-field": Case(
        _cli("--config=experiments/shapes.py:smoke", "--config.train.nonexistent=1"),
        LauncherExit,
        r"^error: --config\.train\.nonexistent: config\.train has no field 'nonexistent' "
        r"\(it has adam_b1, .*num_steps.*\); fix the spelling or drop the flag\.$"),
    "mistyped-config-field": Case(
        _cli("--config=experiments/shapes.py:smoke", "--config.data.batch_size=abc"),
        LauncherExit,
        r"^error: flag --config\.data\.batch_size=abc: invalid literal for int\(\).*; "
        r"config\.data\.batch_size is an int field \(the config file sets 4\): pass a value "
        r"of that type, e\.g\. --config\.data\.batch_size=4\.$"),
    # 10. batch size
    "zero-batch-size": Case(
        _run_shapes(data__batch_size=0), UserInputError,
        r"config\.data\.batch_size must be > 0, got 0; set --config\.data\.batch_size to a "
        r"positive value\."),
    "negative-batch-size": Case(
        _run_fsdd("fsdd", data__batch_size=-4), UserInputError,
        r"config\.data\.batch_size must be > 0, got -4"),
    "negative-tsne-threads": Case(
        _run_shapes(eval__tsne_threads=-2), UserInputError,
        r"config\.eval\.tsne_threads must be >= 0, got -2; set --config\.eval\.tsne_threads=1 "
        r"\(one thread, the default\) or 0 \(every core\)\."),
    "batch-larger-than-the-train-split": Case(
        _run_fsdd("fsdd", data__batch_size=64), UserInputError,
        rf"config\.data\.batch_size=64 is larger than the {FSDD_TRAIN} records of the 'train' "
        r"split of dataset 'fsdd'; lower config\.data\.batch_size\."),
    # 11. devices
    "batch-not-divisible-by-the-devices": Case(
        _three_devices, errors.MeshError,
        r"config\.data\.batch_size=4 is not divisible by the 3 devices of the mesh .*; choose "
        r"a multiple of 3\."),
    "mesh-larger-than-the-devices": Case(
        _run_shapes(mesh__data=2), errors.MeshError,
        r"config\.mesh\.data \* config\.mesh\.fsdp = 2 \* 1 = 2 devices, but only 1 are "
        r"available; use config\.mesh\.data=-1"),
    # 12. a checkpoint of another config / model
    "workdir-of-another-config": Case(
        _trained_with("train", "trained", model__static_dim=99), UserInputError,
        r"--workdir .*trained holds a run with a different config \(model\.static_dim: \d+ -> "
        r"99\)\. Use a new --workdir, or pass the config that run used\.",
        needs_trained_run=True),
    "checkpoint-of-another-model": Case(
        _trained_with("eval", "foreign", model__hidden_dim=32), UserInputError,
        r"The checkpoint of step 1 in .*foreign_checkpoints/checkpoints does not fit this model "
        r"and config \(Requested shape: \([\d, ]+\) is not compatible with the stored shape: "
        r"\([\d, ]+\)\); it was written by another model "
        r"or config: pass the config that run used, or use a new --workdir\.",
        needs_trained_run=True),
    "checkpoint-of-another-structure": Case(
        _trained_with("eval", "foreign", model__prior_layers=3), UserInputError,
        r"The checkpoint of step 1 in .* does not fit this model and config \(.*\); it was "
        r"written by another model or config", needs_trained_run=True),
    # 13. unwritable workdir
    "unwritable-workdir": Case(
        _unwritable("locked"), UserInputError,
        r"--workdir .*locked is not writable; pass a writable directory\."),
    "workdir-in-an-unwritable-folder": Case(
        _unwritable("in_locked"), UserInputError,
        r"--workdir .*locked/run cannot be created: .*locked is not writable\."),
    # 15. a judge for another dataset, found before training (and by --mode=judge)
    "judge-of-another-dataset": Case(
        _judge("sprites", "train"), JudgeMismatchError,
        r"The judge in .*sprites does not fit this run \(dataset: judge has 'sprites', run "
        r"needs 'shapes'; pixel_scale: judge has 256\.0, run needs 255\.0\)\. Point "
        r"config\.judge\.workdir at a judge trained for this dataset, or train one there"),
    "judge-of-another-dataset-mode-judge": Case(
        _judge("sprites", "judge"), JudgeMismatchError,
        r"dataset: judge has 'sprites', run needs 'shapes'"),
    # extras
    # a second run on a workdir (the lock names a live process: this test's own)
    "workdir-in-use-by-another-run": Case(
        _locked_by(os.getpid()), errors.WorkdirLockedError,
        r"^.*new_run is in use by another run \(pid \d+ on .*, started 2025-01-01T12:00:00"
        r"\+00:00: python -m experiments\.main --config=experiments/shapes\.py:smoke\); wait "
        r"for it to end or stop it, or use another --workdir \(if no run uses it, delete "
        r".*new_run/run\.lock\)\.$", new_files=LOCK_NEW_FILES),
    "workdir-in-use-on-another-host": Case(
        _locked_by(1, "another-host"), errors.WorkdirLockedError,
        r"in use by another run \(pid 1 on another-host, started", new_files=LOCK_NEW_FILES),
    "unknown-method": Case(
        _run_shapes(method="vae"), UserInputError,
        r"Unknown method 'vae'; config\.method must be one of \[.*'dsvae'.*\]\."),
    "unknown-dataset": Case(
        _run_shapes(data__name="mnist"), UserInputError,
        r"Unknown dataset 'mnist'; config\.data\.name must be one of \[.*'shapes'.*\]\."),
    "workdir-is-a-file": Case(
        _run_shapes(workdir="file"), UserInputError,
        r"--workdir .*a_file is a file, not a directory\."),
    "eval-without-a-checkpoint": Case(
        _run_shapes(mode="eval", workdir="empty"), MissingCheckpointError,
        r"--mode=eval found no checkpoints in .*empty_run/checkpoints; train first with "
        r"--mode=train and the same --workdir\."),
    "eval-of-a-missing-workdir": Case(
        _run_shapes(mode="eval"), UserInputError,
        r"--workdir .*new_run does not exist; --mode=eval needs the workdir of a trained "
        r"run\."),
    "missing-config-file": Case(
        _cli("--config=experiments/no_such_config.py"), LauncherExit,
        r"^error: --config=experiments/no_such_config\.py: the config file cannot be loaded "
        r"\(\[Errno 2\] No such file or directory: .*\); pass an existing file, e\.g\. "
        r"--config=experiments/shapes\.py"),
    "unknown-config-variant": Case(
        _cli("--config=experiments/shapes.py:huge"), LauncherExit,
        r"^error: --config=experiments/shapes\.py:huge: ValueError: Unknown config variant "
        r"'huge'; choose one of \['default', 'smoke', '64px'\]\.$"),
    "unknown-flag": Case(
        _cli("--config=experiments/shapes.py:smoke", "--workdirr=/tmp/x"), LauncherExit,
        r"^error: Unknown command line flag 'workdirr'\. Did you mean: workdir \?$"),
    "unprepared-dataset-on-the-command-line": Case(
        _cli("--config=experiments/fsdd.py:smoke", "--config.data.tfds_name=fsdd_missing",
             data=True), LauncherExit,
        r"^error: dataset 'fsdd_missing' is not prepared: .* Prepare it with: python -m "
        r"data_prep\.fsdd"),
    "bf16-products-for-a-speech-model": Case(
        _run_fsdd("fsdd", model__product_dtype="bfloat16"), UserInputError,
        r"config\.model\.product_dtype='bfloat16' applies to the video frame convolutions "
        r"only, and config\.model\.modality is 'speech'; set config\.model\.product_dtype="
        r"'float32'"),
    # The loss terms are known once the model is traced, at the start of training: config.json
    # is written by then (nothing else).
    "best-metric-not-a-loss-term": Case(
        _run_fsdd("fsdd", train__best_metric="elbo"), UserInputError,
        r"config\.train\.best_metric='elbo' is not a term of the dsvae loss; choose one of "
        r"\['kl_dynamic', 'kl_static', 'loss', 'reconstruction'\]\.",
        new_files=("new_run", "new_run/config.json")),
}


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_bad_input(name, env, request, monkeypatch):
    case = CASES[name]
    if case.needs_trained_run:
        request.getfixturevalue("trained_run")
    before = snapshot(env.root)

    with pytest.raises(case.error) as info:
        case.act(env, monkeypatch)
    message = str(info.value)

    # One clear message: one line, the problem and the fix, no traceback.
    if isinstance(info.value, LauncherExit):
        assert info.value.code == 2, message
        assert len(message.splitlines()) == 1 and message.startswith("error: "), message
    else:
        assert isinstance(info.value, USER_ERRORS), type(info.value)  # main(): exit 2
        assert len(message.splitlines()) == 1, message
    assert "Traceback" not in message
    assert re.search(case.match, message), f"{message!r}\n does not match\n{case.match!r}"

    after = snapshot(env.root)
    new = {os.path.join(env.root, path) for path in case.new_files}
    unchanged = {k: v for k, v in after.items() if k not in new}
    expected = {k: v for k, v in before.items() if k not in new}
    if new:  # the folder holding the new files has a new mtime
        for path in {os.path.dirname(p) for p in new} - new:
            unchanged.pop(path, None)
            expected.pop(path, None)
    assert not changes(expected, unchanged), "\n".join(changes(expected, unchanged))
    assert all(path in after for path in new)
    if new:
        shutil.rmtree(env.new_workdir())  # the next rows expect it absent


# --------------------------------------------------------------------------- the workdir lock


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_workdir_lock(tmp_path, capsys):
    """Created exclusively, naming its owner; refused while that owner lives; a stale one (its
    pid gone) replaced after one line; removed when the holder ends, also on an error."""
    path = tmp_path / workdir_lock.LOCK_FILE
    with workdir_lock.held(str(tmp_path)) as held_path:
        assert held_path == str(path)
        owner = json.loads(path.read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        assert {"started", "command", "id"} <= set(owner)
        with workdir_lock.held(str(tmp_path)):  # re-entrant in one process
            pass
        assert path.exists()
    assert not path.exists()

    stale = {"pid": _dead_pid(), "host": socket.gethostname(), "started": "then",
             "command": "python -m experiments.main --workdir=x", "id": "old"}
    path.write_text(json.dumps(stale))
    with pytest.raises(RuntimeError, match="boom"), workdir_lock.held(str(tmp_path)):
        assert json.loads(path.read_text())["pid"] == os.getpid()
        raise RuntimeError("boom")
    assert not path.exists()
    err = capsys.readouterr().err.strip()
    assert err == (f"Replacing the stale lock {path} (pid {stale['pid']} is not running; it "
                   f"was pid {stale['pid']} on {stale['host']}, started then: python -m "
                   "experiments.main --workdir=x).")

    # A live process (a sleeping child) and a reused pid.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = dict(stale, pid=sleeper.pid, pid_start=workdir_lock._proc_start(sleeper.pid))
        path.write_text(json.dumps(live))
        with pytest.raises(errors.WorkdirLockedError, match=rf"pid {sleeper.pid} on "):
            workdir_lock.acquire(str(tmp_path))
        assert json.loads(path.read_text()) == live  # untouched
        if live["pid_start"] is not None:  # Linux: the pid now runs another program
            path.write_text(json.dumps(dict(live, pid_start="1")))
            with workdir_lock.held(str(tmp_path)):
                pass
            assert "now belongs to another process" in capsys.readouterr().err
    finally:
        sleeper.kill()
        sleeper.wait()


def test_metrics_records_after_the_resumed_step_are_dropped(tmp_path):
    """Records logged after the checkpoint a run resumes from go (the file is replaced whole);
    those at or before it stay byte for byte; a record without values is never written."""
    writer = metric_writers.MetricWriter(str(tmp_path))
    for step in (2, 4, 6):
        writer.write(step, {"loss": float(step)})
        writer.write(step, {}, "eval")  # nothing measured: no record
    writer.close()
    path = tmp_path / "metrics.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) == 3
    path.write_text("".join(lines) + '{"step": 7, "split": "tr')  # cut short by a kill
    writer = metric_writers.MetricWriter(str(tmp_path), resume_step=4)
    assert writer.dropped == 2
    writer.write(5, {"loss": 5.0})
    writer.close()
    assert path.read_text().splitlines(keepends=True)[:2] == lines[:2]
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [2, 4, 5]
    assert not (tmp_path / "metrics.jsonl.tmp").exists()
