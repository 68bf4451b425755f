"""bench/gpu_check.sh: its CPU mode (--small) end to end and its JSON; its refusals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "bench", "gpu_check.sh")
SHEETS = os.path.join(ROOT, "..", "shared", "data", "sprites_lpc")

pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("timeout") is None,
    reason="needs bash and coreutils' timeout")


def _env(tmp_path, **extra: str) -> dict[str, str]:
    """The caller's environment on CPU, without $OUT or any GPU_CHECK_* tuning."""
    env = {k: v for k, v in os.environ.items()
           if k != "OUT" and not k.startswith("GPU_CHECK_")}
    return env | {"JAX_PLATFORMS": "cpu", "PYTHON": sys.executable,
                  "TMPDIR": str(tmp_path)} | extra


def _run(args: list[str], env: dict[str, str], cwd, timeout: float
         ) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


@pytest.mark.slow  # ~100 s on 2 CPU cores: two throughput runs, a judge and a training run
@pytest.mark.skipif(not os.path.isdir(SHEETS), reason=f"no Sprites LPC sheets in {SHEETS}")
def test_small_mode_prints_one_report(tmp_path):
    out = tmp_path / "out"
    result = _run(["--small", f"--workdir={tmp_path / 'work'}",
                   f"--json={tmp_path / 'report.json'}", f"--source_dir={SHEETS}"],
                  _env(tmp_path, OUT=str(out)), tmp_path, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    report = json.loads(result.stdout)  # stdout is the JSON and nothing else
    assert report == json.loads((tmp_path / "report.json").read_text())
    assert report == json.loads((out / "gpu_check.json").read_text())
    assert all(line.startswith("[gpu_check") for line in result.stderr.splitlines())

    assert report["ok"] is True and report["problems"] == [] and report["small"] is True
    assert report["device"] == report["jax_device_kind"] and report["jax_backend"] == "cpu"
    assert report["jax_version"] == jax.__version__
    for part in ("setup", "throughput", "data_prep", "judge", "train", "total"):
        assert report["wall_s"][part] >= 0, part
    assert report["wall_s"]["total"] >= report["wall_s"]["train"]

    rows = report["throughput"]["rows"]
    assert {(r["method"], r["batch_size"], r["dtype"]) for r in rows} == {
        ("dsvae", 8, "float32"), ("dsvae", 8, "bfloat16")}
    for r in rows:
        assert "error" not in r
        assert r["step_ms_median"] > 0 and r["sequences_per_s"] > 0 and r["compile_s"] > 0
    assert report["throughput"]["config_variant"] == "smoke"

    judge = report["judge"]
    assert judge["steps"] == 4 and judge["status"] == "trained"
    assert set(judge["test_accuracy"]) == {"motion", "skin", "pants", "top", "hair"}

    train = report["train"]
    assert train["config"] == "experiments/cdsvae_sprites.py:smoke"
    assert train["rc"] == 0 and train["timed_out"] is False and train["steps_reached"] == 8
    assert (train["plan"]["num_steps"], train["plan"]["judge_every"]) == (8, 2)
    assert [p["step"] for p in train["curve"]] == [2, 4, 6, 8]
    for point in train["curve"]:
        assert 0.0 <= point["fix_dynamics/motion/accuracy"] <= 1.0
        assert 0.0 <= point["fix_static/mean_accuracy"] <= 1.0
    final = train["final"]
    assert final["source"].startswith("judge_generation") and final["step"] == 8
    assert final["key"] == "fix_dynamics/motion/accuracy"
    assert 0.0 <= final["judged_accuracy"] <= 1.0

    logs = out / "gpu_check_logs"
    assert report["logs"] == str(logs)
    for name in ("train_metrics.jsonl", "throughput_full.json", "train.log", "judge.log"):
        assert (logs / name).is_file(), name


def test_refuses_without_a_gpu(tmp_path):
    result = _run([f"--workdir={tmp_path / 'work'}", f"--json={tmp_path / 'r.json'}"],
                  _env(tmp_path), tmp_path, timeout=300)
    assert result.returncode == 2
    assert "error: jax sees no GPU" in result.stderr and "--small" in result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"] is False and "no GPU" in report["error"]
    assert json.loads(result.stdout) == report


def test_unknown_argument_exits_2(tmp_path):
    result = _run(["--smal"], _env(tmp_path), tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown argument '--smal'")
