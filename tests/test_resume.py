"""Resuming and checkpoint safety.

* A run killed with SIGKILL resumes bit for bit (train state, data order, PRNG stream).
* A save that dies before Orbax renames its temporary directory leaves the previous checkpoint
  in charge, and the same step can be saved again.
* Retention keeps the latest `keep` checkpoints plus the `keep_best` best by a metric, also
  through `fit.fit`'s validation metrics.
* The NaN/Inf guard skips a bad step without touching the state, and a run that keeps
  diverging stops with its last good parameters on disk.

Compiling the DSVAE train step dominates the cost (XLA:CPU). The module shares one persistent
compilation cache between pytest and the launcher subprocesses, and the tests that train use
the same config, so each distinct step program is compiled once.
"""

import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache
from orbax.checkpoint._src.path import atomicity

from experiments import main as launcher
from experiments import shapes as shapes_config
from seqdis_jax import checkpointing, errors, fit, models, parallel, train
from seqdis_jax.data import pipeline
from seqdis_jax.data import registry as data_registry
from seqdis_jax.data import shapes as shapes_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))

# The subprocess run: experiments/shapes.py:smoke for STEPS steps, a checkpoint (and a log line,
# so the logged interval means line up after a resume) every EVERY steps, no evaluator.
STEPS, EVERY = 40, 5
LAUNCH_FLAGS = (
    "--config=experiments/shapes.py:smoke",
    f"--config.train.num_steps={STEPS}",
    f"--config.train.checkpoint_every={EVERY}",
    f"--config.train.log_every={EVERY}",
    "--config.eval.evaluators=()",
    "--config.eval.mi_every=0",
)


@pytest.fixture(scope="module", autouse=True)
def compile_cache(tmp_path_factory):
    """A persistent compilation cache for this module (pytest and its subprocesses); the
    previous setting comes back afterwards."""
    path = str(tmp_path_factory.mktemp("jax_compilation_cache"))
    previous = jax.config.jax_compilation_cache_dir
    compilation_cache.set_cache_dir(path)
    compilation_cache.reset_cache()
    yield path
    compilation_cache.set_cache_dir(previous)
    compilation_cache.reset_cache()


def smoke_config(**train_fields):
    """experiments/shapes.py:smoke as LAUNCH_FLAGS sets it (same step program), with
    `config.train` overrides."""
    config = shapes_config.get_config("smoke")
    config.eval.evaluators = ()
    config.eval.mi_every = 0
    config.train.log_every = 2
    for name, value in train_fields.items():
        config.train[name] = value
    return config


def saved_steps(workdir) -> list[int]:
    """The finished checkpoints on disk (Orbax renames a step's directory when complete)."""
    directory = checkpointing.checkpoint_dir(str(workdir))
    if not os.path.isdir(directory):
        return []
    return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def restore_state(workdir, step: int | None = None) -> train.TrainState:
    """The smoke DSVAE train state of `workdir` at `step` (default: latest), on the host."""
    config = smoke_config()
    method = models.get_method(config.method)
    model = method.build(config)
    tx = train.make_optimizer(config, method)
    shape = (config.data.batch_size,) + tuple(data_registry.load(config.data, "test").video_shape)
    manager = checkpointing.make_manager(str(workdir), 1, 1, create=False)
    try:
        state = checkpointing.restore(
            manager, train.abstract_train_state(model, tx, shape), step=step)
    finally:
        manager.close()
    return jax.device_get(state)


def assert_trees_bitwise_equal(actual, expected) -> None:
    """Same structure, and every leaf has the same dtype, shape and bytes."""
    actual_leaves, actual_def = jax.tree_util.tree_flatten_with_path(actual)
    expected_leaves, expected_def = jax.tree_util.tree_flatten_with_path(expected)
    assert actual_def == expected_def
    for (path, a), (_, b) in zip(actual_leaves, expected_leaves):
        a, b = np.asarray(a), np.asarray(b)
        name = jax.tree_util.keystr(path)
        assert (a.dtype, a.shape) == (b.dtype, b.shape), name
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert a.tobytes() == b.tobytes(), name  # also -0.0 vs 0.0 and NaN payloads


def assert_all_finite(tree) -> None:
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        assert np.isfinite(np.asarray(leaf)).all(), jax.tree_util.keystr(path)


def read_metrics(workdir) -> list[dict]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


# ------------------------------------------------------------------------------------------
# 1. kill -9 in the middle of a run


def _launch_command(workdir) -> list[str]:
    return [sys.executable, "-m", "experiments.main", *LAUNCH_FLAGS, f"--workdir={workdir}"]


def _launch_env(cache_dir: str) -> dict[str, str]:
    return {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": cache_dir}


def test_a_run_killed_with_sigkill_resumes_bit_for_bit(tmp_path, compile_cache):
    env = _launch_env(compile_cache)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    result = subprocess.run(_launch_command(whole), cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert saved_steps(whole)[-1] == STEPS

    # The same command, killed as soon as the checkpoint of a random step has been committed.
    kill_step = random.Random(0).choice(range(EVERY, STEPS, EVERY))
    committed = killed / "checkpoints" / str(kill_step)
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen(_launch_command(killed), cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 540
            while not committed.is_dir():
                assert process.poll() is None, (
                    f"the run ended before saving step {kill_step}:\n"
                    + (tmp_path / "killed.log").read_text()[-3000:])
                assert time.monotonic() < deadline, "no checkpoint of step {kill_step} in time"
                time.sleep(0.002)
            os.kill(process.pid, signal.SIGKILL)
        finally:
            if process.poll() is None:
                process.kill()
            returncode = process.wait(timeout=60)
    assert returncode == -signal.SIGKILL
    at_kill = saved_steps(killed)
    assert kill_step in at_kill and at_kill[-1] < STEPS, at_kill  # it had not finished

    resumed = subprocess.run(_launch_command(killed), cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {at_kill[-1]}." in resumed.stderr  # "Resumed from ... at step k."
    assert saved_steps(killed)[-1] == STEPS

    expected, actual = restore_state(whole), restore_state(killed)
    assert int(actual.step) == int(expected.step) == STEPS
    assert_trees_bitwise_equal(actual.params, expected.params)
    assert_trees_bitwise_equal(actual.batch_stats, expected.batch_stats)
    assert_trees_bitwise_equal(actual.opt_state, expected.opt_state)
    assert_trees_bitwise_equal(actual, expected)  # and nothing else in the state differs
    # The data iterator is at the same position.
    data_state = os.path.join("checkpoints", str(STEPS), "data", "process_0-of-1.json")
    assert (killed / data_state).read_text() == (whole / data_state).read_text()
    # Every logged interval (log_every == checkpoint_every) has the same means; the killed run
    # may have logged a step twice (before the kill and after the resume): the last one counts.
    def train_logs(workdir):
        return {r["step"]: {k: v for k, v in r.items() if k != "steps_per_sec"}
                for r in read_metrics(workdir) if r["split"] == "train"}

    assert train_logs(killed) == train_logs(whole)
    assert sorted(train_logs(whole)) == list(range(EVERY, STEPS + 1, EVERY))


# ------------------------------------------------------------------------------------------
# 2. A save that dies before its temporary directory is renamed


def _toy_state(step: int) -> dict:
    rng = np.random.default_rng(step)
    return {"step": jnp.asarray(step, jnp.int32),
            "params": {"w": jnp.asarray(rng.normal(size=(3, 5)), jnp.float32),
                       "b": jnp.asarray(rng.normal(size=(5,)), jnp.float32)},
            "opt_state": {"count": jnp.asarray(step, jnp.int32),
                          "mu": jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)}}


def _toy_abstract() -> dict:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _toy_state(0))


def _toy_iterator():
    """Batches 0-3, 4-7, ... of a shuffled range, checkpointable like the training data."""
    source = pipeline.InMemorySource({"x": np.arange(64)})
    return pipeline.train_iterator(source, batch_size=4, seed=0)


def _toy_batches(count: int) -> list[np.ndarray]:
    data = _toy_iterator()
    return [next(data)["x"] for _ in range(count)]


def crash_at_finalize(step: int, crash) -> None:
    """Makes Orbax call `crash(temporary step directory)` when it is about to finalise the save
    of `step` (write commit_success.txt and rename `<step>.orbax-checkpoint-tmp` to `<step>`):
    the items are fully written by then."""
    finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def crashing_finalize(self):
        if self.get_final().name == str(step):  # the step directory, not an item inside it
            crash(self.get())
        return await finalize(self)

    atomicity.AtomicRenameTemporaryPath.finalize = crashing_finalize


def save_toy_run(workdir: str, last_step: int, before_last=None) -> None:
    """Saves toy states (and the toy data iterator) at steps 1..last_step, calling
    `before_last()` just before the last save."""
    manager = checkpointing.make_manager(workdir, save_every=1, keep=10)
    data = _toy_iterator()
    try:
        for step in range(1, last_step + 1):
            next(data)
            if step == last_step and before_last is not None:
                before_last()
            checkpointing.save(manager, step, _toy_state(step), data)
    finally:
        manager.close()


_SIGKILL_SAVE = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import test_resume

def crash(tmp_dir):
    os.kill(os.getpid(), signal.SIGKILL)

test_resume.save_toy_run(sys.argv[1], 3, lambda: test_resume.crash_at_finalize(3, crash))
"""


@pytest.mark.parametrize("crash", ["exception", "sigkill"])
def test_a_save_that_dies_before_its_rename_leaves_the_previous_checkpoint(
        crash, tmp_path, monkeypatch):
    workdir = str(tmp_path)
    if crash == "exception":  # e.g. the disk filled up while committing
        written = []

        def disk_full(tmp_dir):
            written.extend(sorted(os.listdir(tmp_dir)))
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize",
                            atomicity.AtomicRenameTemporaryPath.finalize)  # restored by undo()
        with pytest.raises(errors.CheckpointWriteError,
                           match="step 3 .*the disk is full; the checkpoint of step 2 is intact"):
            save_toy_run(workdir, 3, lambda: crash_at_finalize(3, disk_full))
        monkeypatch.undo()  # Orbax's own finalize again
        assert {"state", "data"} <= set(written)  # it died after writing the items
    else:  # the process is killed at the same point
        result = subprocess.run(
            [sys.executable, "-c", _SIGKILL_SAVE.format(tests=TESTS), workdir], cwd=ROOT,
            env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True,
            timeout=300)
        assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]

    directory = checkpointing.checkpoint_dir(workdir)
    leftovers = [name for name in os.listdir(directory) if not name.isdigit()]
    assert leftovers == ["3" + atomicity.TMP_DIR_SUFFIX], os.listdir(directory)
    assert {"state", "data"} <= set(os.listdir(os.path.join(directory, leftovers[0])))

    # A fresh manager (the resumed run) ignores the temporary directory.
    manager = checkpointing.make_manager(workdir, save_every=1, keep=10)
    assert manager.latest_step() == 2
    assert list(manager.all_steps()) == [1, 2]
    data = _toy_iterator()
    restored = checkpointing.restore(manager, _toy_abstract(), data)
    assert_trees_bitwise_equal(restored, _toy_state(2))
    batches = _toy_batches(4)
    np.testing.assert_array_equal(next(data)["x"], batches[2])  # data resumes after step 2
    # Step 3 can be saved again; the leftover is replaced.
    checkpointing.save(manager, 3, _toy_state(3), data)
    manager.close()
    assert sorted(os.listdir(directory)) == ["1", "2", "3"]
    manager = checkpointing.make_manager(workdir, save_every=1, keep=10, create=False)
    assert manager.latest_step() == 3
    data = _toy_iterator()
    assert_trees_bitwise_equal(checkpointing.restore(manager, _toy_abstract(), data),
                               _toy_state(3))
    np.testing.assert_array_equal(next(data)["x"], batches[3])
    manager.close()


# ------------------------------------------------------------------------------------------
# 3. Retention: the latest `keep` plus the `keep_best` best by a metric

LOSSES = [5, 1, 4, 3, 6, 7]


@pytest.mark.parametrize("best_metric,best_mode,keep_best,losses,kept", [
    ("loss", "min", 1, LOSSES, {2, 5, 6}),  # step 2 has the lowest loss
    ("loss", "max", 1, LOSSES, {5, 6}),  # the highest (step 6) is one of the latest
    ("loss", "max", 1, [5, 9, 4, 3, 6, 7], {2, 5, 6}),
    ("loss", "min", 2, LOSSES, {2, 4, 5, 6}),  # 1 and 3
    ("loss", "min", 0, LOSSES, {5, 6}),  # no best kept
    ("", "min", 1, LOSSES, {5, 6}),  # no metric: the latest only
])
@pytest.mark.parametrize("resume_after", [None, 3])
def test_retention_keeps_the_latest_and_the_best(best_metric, best_mode, keep_best, losses,
                                                 kept, resume_after, tmp_path):
    """Also when the run stops after `resume_after` steps and a new manager (a resumed run)
    saves the rest: the metrics of the earlier checkpoints must come from disk."""
    workdir = str(tmp_path)

    def open_manager():
        return checkpointing.make_manager(workdir, save_every=1, keep=2, best_metric=best_metric,
                                          best_mode=best_mode, keep_best=keep_best)

    manager = open_manager()
    for step, loss in enumerate(losses, start=1):
        assert checkpointing.save(manager, step, _toy_state(step), metrics={"loss": float(loss)})
        if step == resume_after:
            manager.close()
            manager = open_manager()
    manager.wait_until_finished()
    assert set(manager.all_steps()) == kept
    manager.close()
    assert set(saved_steps(workdir)) == kept
    # Reopened (as a resumed run or --mode=eval would), every kept step restores.
    manager = checkpointing.make_manager(workdir, save_every=1, keep=2, create=False)
    assert set(manager.all_steps()) == kept and manager.latest_step() == len(losses)
    for step in kept:
        assert_trees_bitwise_equal(checkpointing.restore(manager, _toy_abstract(), step=step),
                                   _toy_state(step))
    manager.close()
    assert set(saved_steps(workdir)) == kept  # opening a manager deletes nothing


# ------------------------------------------------------------------------------------------
# 4. Best-by-metric retention through training


@pytest.mark.parametrize("field", ["compute_dtype", "product_dtype"])
@pytest.mark.parametrize("lacks_units", [True, False])
def test_bfloat16_on_a_cpu_without_bf16_units_says_float32_is_faster(
        lacks_units, field, tmp_path, capfd, monkeypatch):
    """A bf16 run (bf16 networks, or bf16 products only) on a CPU whose flags show no bf16
    units (lscpu, `machine.lacks_bf16_units`) gets one note before it trains; elsewhere none.
    Either trains its step and saves its checkpoint."""
    from seqdis_jax import machine

    monkeypatch.setattr(machine, "lacks_bf16_units", lambda info=None: lacks_units)
    config = smoke_config(num_steps=1, checkpoint_every=1)
    config.model[field] = "bfloat16"
    assert launcher.run(config, str(tmp_path), "train")["step"] == 1
    notes = [line for line in capfd.readouterr().err.splitlines() if line.startswith("Note:")]
    assert len(notes) == int(lacks_units)
    assert all(f"{field}=bfloat16" in line and "float32 is faster on this CPU" in line
               for line in notes)


def test_training_keeps_the_checkpoint_with_the_best_validation_metric(tmp_path):
    """Trained to step 5, then resumed to step 8: the best checkpoint of the first part
    survives the second. 'max' of the loss: training lowers it, so the best is an early
    checkpoint that keep_checkpoints=1 alone would have deleted."""
    config = smoke_config(num_steps=5, checkpoint_every=2, keep_checkpoints=1,
                          best_metric="loss", best_mode="max", keep_best=1,
                          validation_batches=2)
    assert launcher.run(config, str(tmp_path), "train")["step"] == 5
    config.train.num_steps = 8
    assert launcher.run(config, str(tmp_path), "train")["step"] == 8
    validation = {r["step"]: r for r in read_metrics(tmp_path) if r["split"] == "validation"}
    # One validation per checkpoint: every 2 steps and the end of each part.
    assert set(validation) == {2, 4, 5, 6, 8}
    for record in validation.values():
        assert {"loss", "reconstruction", "kl_static", "kl_dynamic"} <= set(record)
        assert np.isfinite(record["loss"])
    best = max(validation, key=lambda step: validation[step]["loss"])
    assert best != 8, validation
    assert saved_steps(tmp_path) == sorted({best, 8})
    # Orbax ranked them by the values that were logged.
    manager = checkpointing.make_manager(str(tmp_path), 1, 1, create=False)
    for step in saved_steps(tmp_path):
        assert manager.metrics(step)["loss"] == validation[step]["loss"]
    manager.close()
    assert int(restore_state(tmp_path, best).step) == best


def test_training_ranks_checkpoints_by_the_judged_accuracy_curve(tmp_path):
    """eval.judge_every logs the judged accuracy on log steps; train.best_metric on one of its
    keys ranks the checkpoints by it (computed once per step for both); --checkpoint=best
    evaluates the best one into metrics_step<N>.json."""
    workdir = tmp_path / "run"
    config = smoke_config(num_steps=6, checkpoint_every=2, keep_checkpoints=1,
                          best_metric="judge_curve/fix_dynamics/mean_accuracy",
                          best_mode="max", keep_best=1)
    config.eval.judge_every = 2
    config.eval.judge_curve_sequences = 12
    config.judge.workdir = str(tmp_path / "judge")  # trained on first use (a 4-step judge)
    assert launcher.run(config, str(workdir), "train")["step"] == 6
    records = read_metrics(workdir)
    curve = {r["step"]: r for r in records if r["split"] == "eval"}
    validation = {r["step"]: r for r in records if r["split"] == "validation"}
    assert set(curve) == set(validation) == {2, 4, 6}
    for step, record in curve.items():
        accuracy = record["judge_curve/fix_dynamics/mean_accuracy"]
        assert 0.0 <= accuracy <= 1.0 and accuracy * 12 == pytest.approx(round(accuracy * 12))
        assert validation[step]["judge_curve/fix_dynamics/mean_accuracy"] == accuracy
    score = lambda step: curve[step]["judge_curve/fix_dynamics/mean_accuracy"]
    kept = saved_steps(workdir)
    assert 6 in kept and len(kept) <= 2  # the latest, and the best when it is another
    best = max(kept, key=score)
    assert score(best) == max(map(score, curve))  # (equal scores may keep either)
    config.eval.evaluators = ("reconstruction",)
    results = launcher.run(config, str(workdir), "eval", "best")
    assert results["step"] == best
    name = "metrics.json" if best == 6 else f"metrics_step{best}.json"
    assert json.loads((workdir / name).read_text())["step"] == best


@pytest.mark.parametrize("fields,message", [
    (dict(judge_every=3), "judge_every=3 must be 0 \\(off\\) or a multiple of"),
    (dict(judge_every=2, best_metric="judge_curve/fix_dynamics/mean_accuracy"),
     "is an accuracy: set config.train.best_mode=max"),
    (dict(judge_every=2, best_metric="judge_curve/fix_dynamics/nothing", best_mode="max"),
     "is not a judged-accuracy key; choose one of"),
])
def test_judge_curve_settings_are_checked(fields, message, tmp_path):
    config = smoke_config(num_steps=2)
    config.eval.judge_every = fields.pop("judge_every")
    for name, value in fields.items():
        config.train[name] = value
    config.judge.workdir = str(tmp_path / "judge")
    with pytest.raises(errors.UserInputError, match=message):
        launcher.run(config, str(tmp_path / "run"), "train")
    assert not (tmp_path / "run" / "checkpoints").exists()


# ------------------------------------------------------------------------------------------
# 5-6. The NaN/Inf guard


def float_batches(poison_from: int | None = None):
    """A stand-in for fit.to_global_batch that feeds the step float video in [0, 1] and, from
    its `poison_from`-th call on, multiplies the video by the largest finite float32: the
    batch stays finite (the step's batch check passes) but the loss overflows, as in a run
    that diverges."""
    calls = [0]

    def to_global_batch(batch, sharding):
        calls[0] += 1
        video = np.asarray(batch["video"], np.float32) / 255.0
        if poison_from is not None and calls[0] >= poison_from:
            video = video * np.finfo(np.float32).max
        return pipeline.to_global_batch({**batch, "video": video}, sharding)

    return to_global_batch


@pytest.fixture(scope="module")
def float_step():
    """The sharded train step exactly as fit.fit builds it, for float video (the program that
    test 6's runs compile too), and a function making a fresh initial state."""
    config = smoke_config()
    method = models.get_method(config.method)
    model = method.build(config)
    tx = train.make_optimizer(config, method)
    video = shapes_data.generate(config.data.batch_size, seed=3)["video"]
    mesh = parallel.mesh_from_config(config)
    abstract = train.abstract_train_state(model, tx, video.shape)
    state_sharding = parallel.state_sharding(mesh, abstract)
    batch_sharding = parallel.batch_sharding(mesh)
    step = train.make_train_step(method, model, tx, config, state_sharding=state_sharding,
                                 batch_sharding=batch_sharding)

    def initial_state():
        return train.create_train_state(model, tx, jnp.zeros(video.shape, jnp.float32),
                                        jax.random.PRNGKey(0), out_shardings=state_sharding)

    rng = jax.device_put(jax.random.PRNGKey(1), parallel.replicated(mesh))
    return step, initial_state, video.astype(np.float32) / 255.0, batch_sharding, rng


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_a_non_finite_batch_is_skipped_without_touching_the_state(bad_value, float_step):
    step, initial_state, video, batch_sharding, rng = float_step
    state = initial_state()
    before = jax.device_get(state)  # the step donates `state`
    bad = video.copy()
    bad[1, 3, 20, 30, 0] = bad_value  # one pixel
    state, metrics = step(state, pipeline.to_global_batch({"video": bad}, batch_sharding), rng)
    metrics = jax.device_get(metrics)
    assert metrics["skipped"] == 1.0
    assert not np.isfinite(metrics["loss"])
    after = jax.device_get(state)
    assert int(after.step) == 1  # the step counter (data order, PRNG stream) goes on
    assert_trees_bitwise_equal(after.params, before.params)
    assert_trees_bitwise_equal(after.batch_stats, before.batch_stats)
    assert_trees_bitwise_equal(after.opt_state, before.opt_state)

    state, metrics = step(state, pipeline.to_global_batch({"video": video}, batch_sharding), rng)
    metrics = jax.device_get(metrics)
    assert metrics["skipped"] == 0.0 and np.isfinite(metrics["loss"])
    updated = jax.device_get(state)
    assert int(updated.step) == 2
    assert_all_finite(updated)
    changed = [not np.array_equal(a, b) for a, b in
               zip(jax.tree.leaves(updated.params), jax.tree.leaves(before.params))]
    assert all(changed)


def test_a_diverging_run_stops_with_its_last_good_parameters_on_disk(
        tmp_path, monkeypatch, float_step):
    del float_step  # compiled the same program first (one compilation for both tests)
    good, diverged = tmp_path / "good", tmp_path / "diverged"
    # Reference: the first three steps on finite data.
    monkeypatch.setattr(fit, "to_global_batch", float_batches())
    launcher.run(smoke_config(num_steps=3, checkpoint_every=2), str(good), "train")
    assert set(saved_steps(good)) - {1} == {2, 3}  # (1: Orbax's InitialSavePolicy)
    # Steps 4, 5, 6 overflow to a non-finite loss: 4 is saved (holding step 3's parameters),
    # 6 stops the run.
    monkeypatch.setattr(fit, "to_global_batch", float_batches(poison_from=4))
    config = smoke_config(num_steps=20, checkpoint_every=2, max_skips=3)
    with pytest.raises(errors.NonFiniteTrainingError,
                       match=r"3 consecutive steps up to step 6 .*the last checkpoint, step 4, "):
        launcher.run(config, str(diverged), "train")
    assert set(saved_steps(diverged)) - {1} == {2, 4}
    for step in saved_steps(diverged):
        expected = restore_state(good, min(step, 3))  # step 4 kept step 3's state
        state = restore_state(diverged, step)
        assert int(state.step) == step
        assert_all_finite(state)
        assert_trees_bitwise_equal(state.params, expected.params)
        assert_trees_bitwise_equal(state.batch_stats, expected.batch_stats)
        assert_trees_bitwise_equal(state.opt_state, expected.opt_state)
    logged = {r["step"]: r for r in read_metrics(diverged) if r["split"] == "train"}
    assert sorted(logged) == [2, 4]  # step 6 raised before logging
    assert logged[2]["skipped"] == 0 and logged[4]["skipped"] == 1  # steps 3-4: one skipped
    assert logged[4]["skipped_total"] == 1 and np.isfinite(logged[4]["loss"])


# ------------------------------------------------------------------------------------------
# 7. Ctrl-C and SIGTERM: a checkpoint at the current step, one line, the exit status


def _wait_for_checkpoint_after(workdir, step: int, process, log_path) -> None:
    deadline = time.monotonic() + 300
    while not [s for s in saved_steps(workdir) if s > step]:
        assert process.poll() is None, (
            f"the run ended before a checkpoint after step {step}:\n"
            + log_path.read_text()[-3000:])
        assert time.monotonic() < deadline, f"no checkpoint after step {step} in time"
        time.sleep(0.01)


def _interrupt(workdir, signum, after_step: int, env, log_path) -> tuple[int, str]:
    """Launches the run, sends `signum` once a checkpoint after `after_step` is committed;
    (exit status, stderr)."""
    command = [*_launch_command(workdir), "--config.train.num_steps=60"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                   stderr=log)
        try:
            _wait_for_checkpoint_after(workdir, after_step, process, log_path)
            process.send_signal(signum)
            returncode = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return returncode, log_path.read_text()


def test_sigint_and_sigterm_save_a_checkpoint_and_the_run_resumes(tmp_path, compile_cache):
    """Ctrl-C, then (resumed) SIGTERM, then the same command to the end: each interrupt exits
    with 128 + the signal and one line (no traceback) naming the step and the command; the
    checkpoint of that step is on disk and the next run resumes from it; metrics.jsonl ends with
    one record per (split, step), none empty and none logged twice."""
    env = _launch_env(compile_cache)
    workdir = tmp_path / "run"
    last = EVERY
    for signum in (signal.SIGINT, signal.SIGTERM):
        code, stderr = _interrupt(workdir, signum, last, env, tmp_path / f"{signum.name}.log")
        assert code == 128 + signum, stderr[-3000:]
        assert "Traceback" not in stderr, stderr[-3000:]
        lines = [line for line in stderr.splitlines() if line.startswith("Interrupted")]
        assert len(lines) == 1, stderr[-3000:]
        match = re.fullmatch(
            rf"Interrupted at step (\d+) \({signum.name}\); (saved a checkpoint of step \d+|the "
            rf"checkpoint of step \d+ is) in {re.escape(str(workdir / 'checkpoints'))}; resume "
            r"with: python -m experiments\.main --config=experiments/shapes\.py:smoke .*"
            rf"--workdir={re.escape(str(workdir))} --config\.train\.num_steps=60", lines[0])
        assert match, lines[0]
        step = int(match.group(1))
        assert step > last and saved_steps(workdir)[-1] == step, (step, saved_steps(workdir))
        assert not (workdir / "run.lock").exists()  # released on the way out
        if signum == signal.SIGTERM:
            assert f"Resumed from {workdir / 'checkpoints'} at step {last}." in stderr
        last = step
    command = [*_launch_command(workdir), "--config.train.num_steps=60"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"at step {last}." in result.stderr
    assert int(restore_state(workdir).step) == 60
    records = read_metrics(workdir)
    for split in {r["split"] for r in records}:
        steps = [r["step"] for r in records if r["split"] == split]
        assert steps == sorted(set(steps)), (split, steps)  # strictly increasing
    assert all(set(r) - {"step", "split"} for r in records)  # no record without values
    train_steps = [r["step"] for r in records if r["split"] == "train"]
    assert set(range(EVERY, 61, EVERY)) <= set(train_steps)


# ------------------------------------------------------------------------------------------
# 8. A damaged checkpoint: reported in one line, the newest intact one instead, nothing deleted


def _damage(checkpoint_dir, how: str) -> str:
    """Cuts the largest array file of the checkpoint's state in half (or deletes it); returns
    its path relative to the step directory."""
    files = [os.path.join(base, name)
             for base, _, names in os.walk(os.path.join(checkpoint_dir, "state", "d"))
             for name in names]
    path = max(files, key=os.path.getsize)
    if how == "delete":
        os.remove(path)
    else:
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    return os.path.relpath(path, checkpoint_dir)


def _tree(path) -> dict[str, bytes]:
    return {os.path.relpath(os.path.join(base, name), path):
            open(os.path.join(base, name), "rb").read()
            for base, _, names in os.walk(path) for name in names}


@pytest.mark.parametrize("how", ["truncate", "delete"])
def test_a_damaged_checkpoint_falls_back_to_the_newest_intact_one(how, tmp_path, capfd):
    workdir = str(tmp_path)
    save_toy_run(workdir, 3)
    directory = checkpointing.checkpoint_dir(workdir)
    damaged = _damage(os.path.join(directory, "3"), how)
    before = _tree(directory)
    cause = "file cut short" if how == "truncate" else "missing file"

    # Read only (--mode=eval): step 2 is restored, nothing is moved or written.
    manager = checkpointing.make_manager(workdir, save_every=1, keep=10, create=False)
    data = _toy_iterator()
    assert_trees_bitwise_equal(checkpointing.restore(manager, _toy_abstract(), data),
                               _toy_state(2))
    np.testing.assert_array_equal(next(data)["x"], _toy_batches(3)[2])  # step 2's data order
    manager.close()
    lines = [line for line in capfd.readouterr().err.splitlines() if "damaged" in line]
    assert lines == [f"Checkpoint 3 in {directory} is damaged ({damaged}: {cause}); restoring "
                     "the newest intact one, step 2."]
    assert _tree(directory) == before

    # A run that trains on: the damaged step is moved aside (all its files kept), and a new
    # checkpoint of step 3 is written beside it, not over it.
    manager = checkpointing.make_manager(workdir, save_every=1, keep=2)
    data = _toy_iterator()
    checkpointing.restore(manager, _toy_abstract(), data, set_aside=True)
    aside = os.path.join(workdir, checkpointing.DAMAGED_SUBDIR)
    assert f"moved to {aside}/ (nothing is deleted)" in capfd.readouterr().err
    assert _tree(os.path.join(aside, "3")) == {k.removeprefix("3/"): v for k, v in
                                               before.items() if k.startswith("3/")}
    assert list(manager.all_steps()) == [1, 2] and manager.latest_step() == 2
    for step in (3, 4, 5):  # retention (keep=2) never reaches the damaged one
        checkpointing.save(manager, step, _toy_state(step), data)
    manager.close()
    assert saved_steps(workdir) == [4, 5] and os.listdir(aside) == ["3"]

    # Every checkpoint damaged: one line, nothing touched.
    for step in saved_steps(workdir):
        _damage(os.path.join(directory, str(step)), how)
    before = _tree(tmp_path)
    manager = checkpointing.make_manager(workdir, save_every=1, keep=2)
    with pytest.raises(errors.DamagedCheckpointError) as info:
        checkpointing.restore(manager, _toy_abstract(), _toy_iterator(), set_aside=True)
    # A damaged step other than the latest, asked for by number: no fallback.
    with pytest.raises(errors.DamagedCheckpointError, match=(
            rf"^The checkpoint of step 4 in .* is damaged \(state/d/\w+: {cause}\); "
            r"nothing was deleted\. Choose another of the kept steps \[4, 5\]\.$")):
        checkpointing.restore(manager, _toy_abstract(), step=4)
    manager.close()
    assert re.fullmatch(rf"Every checkpoint in {re.escape(directory)} is damaged \(5: .*; 4: "
                        r".*\); nothing was deleted\. Copy them back from a backup, or train "
                        r"afresh with a new --workdir\.", str(info.value)), str(info.value)
    assert _tree(tmp_path) == before


def test_a_damaged_checkpoint_stops_the_launcher_in_one_line(tmp_path, compile_cache):
    """Through the launcher: the latest checkpoint damaged, the run resumes from the one
    before; all of them damaged, exit status 1 and one `error:` line."""
    env = _launch_env(compile_cache)
    command = [*_launch_command(tmp_path), "--config.train.num_steps=10"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    directory = checkpointing.checkpoint_dir(str(tmp_path))
    assert saved_steps(tmp_path) == [5, 10]
    _damage(os.path.join(directory, "10"), "truncate")
    (tmp_path / "metrics.jsonl").write_text(  # a record cut short by a killed run
        (tmp_path / "metrics.jsonl").read_text() + '{"step": 11, "spl')
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert re.search(r"^Checkpoint 10 in .* is damaged \(state/d/\w+: file cut short\); moved "
                     r"to .*damaged_checkpoints/ \(nothing is deleted\); restoring the newest "
                     r"intact one, step 5\.$", result.stderr, re.M), result.stderr[-3000:]
    # Step 10's records and the one cut short are dropped, then step 10 is logged again.
    assert re.search(r"at step 5\. Dropped the \d+ records of metrics\.jsonl logged after it\.",
                     result.stderr), result.stderr[-3000:]
    assert saved_steps(tmp_path) == [5, 10]
    assert os.listdir(tmp_path / "damaged_checkpoints") == ["10"]
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records if r["split"] == "train"] == [5, 10]

    for step in saved_steps(tmp_path):
        _damage(os.path.join(directory, str(step)), "delete")
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors_ = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors_) == 1 and errors_[0].startswith(
        f"error: Every checkpoint in {directory} is damaged (10: state/d/"), result.stderr
    assert saved_steps(tmp_path) == [5, 10]
