"""End to end through the absl launcher, and its refusals of bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import main as launcher
from experiments import shapes as shapes_config
from seqdis_jax import errors
from seqdis_jax.errors import MissingCheckpointError, UserInputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNGS = (
    "reconstruction.png",
    "swap.png",
    "static_fixed_dynamics_sampled.png",
    "dynamics_fixed_static_sampled.png",
)


def _launch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments.main", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _snapshot(workdir) -> dict[str, float]:
    """Every file under workdir with its modification time and size."""
    out = {}
    for base, _, files in os.walk(workdir):
        for name in files:
            path = os.path.join(base, name)
            st = os.stat(path)
            out[os.path.relpath(path, workdir)] = (st.st_mtime_ns, st.st_size)
    return out


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("judges") / "shapes_smoke"


def smoke_config(judge_dir):
    config = shapes_config.get_config("smoke")
    config.judge.workdir = str(judge_dir)
    return config


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory, judge_dir):
    """The smoke variant trained end to end by the launcher, as a user would run it (the
    judge is trained on first use: config.judge.train_if_missing)."""
    workdir = tmp_path_factory.mktemp("run") / "shapes"
    result = _launch("--config=experiments/shapes.py:smoke", f"--workdir={workdir}",
                     f"--config.judge.workdir={judge_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_train_writes_pngs_metrics_checkpoint_and_config(trained_workdir):
    for name in PNGS + ("metrics.json", "metrics.jsonl", "config.json"):
        assert (trained_workdir / name).is_file(), name
    steps = sorted(int(p) for p in os.listdir(trained_workdir / "checkpoints") if p.isdigit())
    assert steps[-1] == 4
    metrics = json.loads((trained_workdir / "metrics.json").read_text())
    assert metrics["step"] == 4
    assert metrics["test/num_sequences"] == 16
    for key in ("test/reconstruction", "test/kl_static", "test/kl_dynamic"):
        assert metrics[key] >= 0.0 and metrics[key] < 1e7
    # Every evaluator the shapes labels allow ran ('all').
    for key in ("fix_dynamics/motion/accuracy", "fix_dynamics/motion/inception_score_std",
                "fix_static/color/accuracy", "fix_static/mean_static_accuracy",
                "latent/color_from_s/svc", "latent/static_gap/knn", "latent/dynamic_gap/svc",
                "mi/s_d", "mi/s_x", "mi/d_x", "judge/test_accuracy/motion"):
        assert key in metrics and np.isfinite(metrics[key]), key
    assert 1.0 <= metrics["fix_dynamics/motion/inception_score"] <= 9.0
    assert (trained_workdir / "tsne.png").is_file()
    assert (trained_workdir / "interpolation.png").is_file()
    mi_curve = [json.loads(x) for x in (trained_workdir / "metrics.jsonl").read_text().splitlines()
                if '"eval"' in x]
    assert [r["step"] for r in mi_curve] == [2, 4] and "mi_s_d" in mi_curve[0]
    config = json.loads((trained_workdir / "config.json").read_text())
    assert config["model"]["width"] == shapes_config.get_config("smoke").model.width
    lines = (trained_workdir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines if '"train"' in line] == [2, 4]
    assert any(name.startswith("events") for name in os.listdir(trained_workdir / "tensorboard"))
    from PIL import Image

    swap = Image.open(trained_workdir / "swap.png")
    # 4 sequences -> 2 pairs x 4 rows of 8 frames, 64 px + 2 px gaps.
    assert swap.size == (8 * 66 + 2, 8 * 66 + 2)


def test_eval_mode_reloads_the_checkpoint(trained_workdir, judge_dir):
    before = json.loads((trained_workdir / "metrics.json").read_text())
    os.remove(trained_workdir / "swap.png")
    config = smoke_config(judge_dir)
    results = launcher.run(config, str(trained_workdir), "eval")
    assert results["step"] == 4
    # Same checkpoint and same evaluation key: the metrics are reproduced exactly.
    for key in ("test/reconstruction", "test/kl_static", "test/kl_dynamic"):
        assert results[key] == pytest.approx(before[key], rel=1e-6)
    assert (trained_workdir / "swap.png").is_file()
    # Re-running one evaluator keeps the other results of the same checkpoint in metrics.json.
    config.eval.evaluators = ("reconstruction",)
    launcher.run(config, str(trained_workdir), "eval")
    merged = json.loads((trained_workdir / "metrics.json").read_text())
    assert merged["latent/static_gap/knn"] == before["latent/static_gap/knn"]


def test_resume_continues_from_the_checkpoint(trained_workdir, judge_dir):
    config = smoke_config(judge_dir)
    config.train.num_steps = 6
    results = launcher.run(config, str(trained_workdir), "train")
    assert results["step"] == 6
    log = (trained_workdir / "metrics.jsonl").read_text().splitlines()
    train_steps = [json.loads(x)["step"] for x in log if json.loads(x)["split"] == "train"]
    assert train_steps == [2, 4, 6]  # steps 1-4 were not run again


def test_bad_config_fields_are_refused_by_the_flag_parser(tmp_path):
    workdir = tmp_path / "w"
    unknown = _launch("--config=experiments/shapes.py:smoke", f"--workdir={workdir}",
                      "--config.model.widht=0.5")
    assert unknown.returncode != 0
    assert "widht" in unknown.stderr
    wrong_type = _launch("--config=experiments/shapes.py:smoke", f"--workdir={workdir}",
                         "--config.model.width=wide")
    assert wrong_type.returncode != 0
    assert "width" in wrong_type.stderr and "wide" in wrong_type.stderr
    variant = _launch("--config=experiments/shapes.py:huge", f"--workdir={workdir}")
    assert variant.returncode != 0 and "huge" in variant.stderr
    assert not workdir.exists()


def test_bad_values_and_workdirs_change_nothing(trained_workdir, judge_dir, tmp_path):
    before = _snapshot(trained_workdir)
    config = smoke_config(judge_dir)
    config.data.batch_size = 0
    with pytest.raises(UserInputError, match="batch_size must be > 0"):
        launcher.run(config, str(trained_workdir), "train")
    different = smoke_config(judge_dir)
    different.model.static_dim = 99
    with pytest.raises(UserInputError, match=r"model.static_dim: 8 -> 99"):
        launcher.run(different, str(trained_workdir), "train")
    with pytest.raises(UserInputError, match=r"model.static_dim"):
        launcher.run(different, str(trained_workdir), "eval")
    assert _snapshot(trained_workdir) == before

    with pytest.raises(UserInputError, match="does not exist"):
        launcher.run(smoke_config(judge_dir), str(tmp_path / "missing"), "eval")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MissingCheckpointError, match="no checkpoints"):
        launcher.run(smoke_config(judge_dir), str(empty), "eval")
    assert os.listdir(empty) == []
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(UserInputError, match="is a file"):
        launcher.run(smoke_config(judge_dir), str(a_file), "train")


def test_unwritable_workdir_is_refused(judge_dir, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    # Permission bits do not bind root (CI runs as root): deny writes through os.access.
    monkeypatch.setattr(os, "access", lambda path, mode: not (mode & os.W_OK))
    with pytest.raises(UserInputError, match="cannot be created: .* is not writable"):
        launcher.run(smoke_config(judge_dir), str(locked / "run"), "train")
    with pytest.raises(UserInputError, match="is not writable"):
        launcher.run(smoke_config(judge_dir), str(locked), "train")
    assert os.listdir(locked) == []


def test_eval_without_checkpoint_via_cli_prints_one_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _launch("--config=experiments/shapes.py:smoke", f"--workdir={empty}", "--mode=eval")
    assert result.returncode == 2
    assert "error: --mode=eval found no checkpoints" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_run_saved_before_a_new_switch_existed_is_still_accepted(tmp_path):
    """A workdir written before `train.cosine_decay` existed keeps working while the switch is
    off, and is refused once it is turned on (that would change the run)."""
    import json

    from experiments import shapes as shapes_config
    from seqdis_jax import configuration

    config = shapes_config.get_config("smoke")
    configuration.save_config(config, str(tmp_path))
    saved = json.loads((tmp_path / configuration.CONFIG_FILE).read_text())
    del saved["train"]["cosine_decay"]
    (tmp_path / configuration.CONFIG_FILE).write_text(json.dumps(saved))
    configuration.check_workdir_compatible(config, str(tmp_path))
    config.train.cosine_decay = True
    with pytest.raises(errors.UserInputError, match="train.cosine_decay"):
        configuration.check_workdir_compatible(config, str(tmp_path))


@pytest.mark.parametrize("config,command", [
    ("experiments/mug.py", "python -m data_prep.mug --source_dir="),
    ("experiments/mug.py:dbse", "python -m data_prep.mug --source_dir="),
    ("experiments/jester.py", "python -m data_prep.jester --source_dir="),
])
def test_unprepared_data_stops_with_the_data_prep_command(config, command, tmp_path):
    """The headline job without its (licence-restricted) data: one line naming the command,
    nothing written to the workdir; --mode=judge says the same."""
    data_dir, workdir = tmp_path / "tfds", tmp_path / "run"
    result = _launch(f"--config={config}", f"--workdir={workdir}",
                     f"--config.data.data_dir={data_dir}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: dataset"), result.stderr
    assert f"{command}" in lines[0] and f"--data_dir={data_dir}" in lines[0]
    assert not workdir.exists()
    judge = _launch(f"--config={config}", "--mode=judge", f"--config.data.data_dir={data_dir}",
                    f"--config.judge.workdir={tmp_path / 'judge'}")
    assert judge.returncode == 2 and command in judge.stderr
    assert not (tmp_path / "judge").exists()


def test_results_table_shows_chance_levels_flags_mi_ceilings_and_lists_outputs(tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "swap.png").write_bytes(b"")
    text = launcher.format_results({
        "step": 10, "chance/motion": 0.25, "chance/shape": 1 / 3,
        "fix_dynamics/motion/accuracy": 0.9, "fix_dynamics/motion/accuracy_std": 0.01,
        "latent/shape_from_s/svc": 0.8, "latent/shape_from_s/svc_std": 0.02,
        "mi/ceiling": 4.60517, "mi/s_x": 4.6, "mi/s_d": 0.3}, str(tmp_path))
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert "chance/motion" not in lines and "mi/ceiling" not in lines
    assert lines["fix_dynamics/motion/accuracy"].endswith("0.9 +- 0.01  (chance 0.250)")
    assert lines["latent/shape_from_s/svc"].endswith("(chance 0.333)")
    assert "at the estimator's ceiling log M = 4.605" in lines["mi/s_x"]
    assert "ceiling" not in lines["mi/s_d"]
    assert f"Outputs in {tmp_path}: metrics.json, swap.png, checkpoints/" in text
