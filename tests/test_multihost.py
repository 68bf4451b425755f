"""A multi-host run on one machine: two launcher processes joined by `--multihost`
(jax.distributed over gloo CPU collectives), one CPU device each, train one global batch split
between them. Both finish with the same results, only process 0 writes the logs, and the
checkpoint both wrote together restores in a single process."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

import experiments.main as launcher
from experiments import shapes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _results(stdout: str) -> dict[str, float]:
    """The launcher's closing table: `name  value` lines."""
    rows = [line.split() for line in stdout.splitlines()]
    return {r[0]: float(r[1]) for r in rows
            if len(r) == 2 and r[1].replace(".", "").replace("e-", "").isdigit()}


def test_two_processes_train_one_run(tmp_path):
    workdir = tmp_path / "run"
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)  # one device per process
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "experiments.main", "--config=experiments/shapes.py:smoke",
             f"--workdir={workdir}", "--config.eval.evaluators=('reconstruction',)",
             "--multihost", f"--coordinator_address=localhost:{port}", "--num_processes=2",
             f"--process_id={i}"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in processes]
    for p, (_, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-4000:]
    first, second = ({k: v for k, v in _results(out).items() if k != "train_seconds"}
                     for out, _ in outputs)
    assert first["step"] == 4 and first == second  # both saw the same global computation
    assert "on 2 device(s)" in outputs[0][1]

    # Only process 0 logged: one record per log interval, not two.
    with open(workdir / "metrics.jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    train_steps = [r["step"] for r in records if r.get("split") == "train"]
    assert train_steps == [2, 4]
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]

    # The checkpoint written by both processes restores in one process, with the same metrics.
    config = shapes.get_config("smoke")
    config.eval.evaluators = ("reconstruction",)
    evaluated = launcher.run(config, str(workdir), "eval")
    assert evaluated["step"] == 4
    np.testing.assert_allclose(evaluated["test/reconstruction"], first["test/reconstruction"],
                               rtol=1e-4)
