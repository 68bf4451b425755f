"""bench/throughput.py: one tiny measurement end to end, its JSON, and its refusals; the judge
diagnoses' refusal of a missing judge."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_bench_script(name: str):
    """bench/<name>.py as a module (bench/ is scripts, not a package)."""
    path = os.path.join(ROOT, "bench", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def throughput():
    return load_bench_script("throughput")


def test_smoke_measurement_writes_one_complete_record(throughput, tmp_path, capsys):
    out = tmp_path / "x.json"
    # Backend optimisation level 0: the same program, compiled ~3x faster on XLA:CPU.
    returned = throughput.main([
        "--methods=dsvae", "--batch_sizes=4", "--config_variant=smoke", "--steps=2",
        "--warmup=1", f"--json={out}", "--compiler_option=xla_backend_optimization_level=0"])
    records = json.loads(out.read_text())
    assert records == json.loads(json.dumps(returned))
    assert len(records) == 1
    r = records[0]
    for field in ("method", "batch_size", "frames", "dtype", "devices", "platform",
                  "device_kind", "mesh", "params", "compile_s", "step_ms_median",
                  "step_ms_mean", "sequences_per_s", "flops_per_device", "flops_per_step",
                  "tflops_per_s", "jax", "config_variant", "width"):
        assert field in r, field
    assert (r["method"], r["batch_size"], r["frames"], r["dtype"]) == ("dsvae", 4, 8, "float32")
    assert r["config_variant"] == "smoke" and r["width"] == 0.0625
    assert r["sequences_per_s"] > 0 and r["step_ms_median"] > 0 and r["compile_s"] > 0
    assert r["flops_per_step"] > 0 and r["tflops_per_s"] > 0 and r["params"] > 0
    assert r["flops_per_step"] == pytest.approx(r["flops_per_device"] * r["devices"])
    assert r["sequences_per_s"] == pytest.approx(4e3 / r["step_ms_median"], rel=1e-3)
    assert r["timed_steps"] == 2 and r["last_step_skipped"] == 0.0
    stdout = capsys.readouterr()
    lines = [json.loads(line) for line in stdout.out.splitlines() if line.startswith("{")]
    assert lines == records
    assert "seq/s" in stdout.err  # the table


@pytest.mark.parametrize("argv, message", [
    (["--methods=dsvae,vae"], "Unknown method(s) ['vae']"),
    (["--batch_sizes=4,x"], "comma-separated integers"),
    (["--config_variant=code"], "Unknown --config_variant"),
    (["--mesh_fsdp=7"], "--mesh_fsdp=7 does not divide"),
    (["--dtype=float16"], "--dtype must be"),
])
def test_bad_arguments_exit_2_with_one_line(throughput, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        throughput.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_flops_of_reads_every_cost_analysis_form(throughput):
    assert throughput.flops_of({"flops": 10.0, "bytes accessed": 3.0}) == 10.0
    assert throughput.flops_of([{"flops": 4.0}, {"flops": 6.0}]) == 10.0
    assert throughput.flops_of(None) != throughput.flops_of(None)  # nan


@pytest.mark.parametrize("script", ["judge_frames.py", "motion_parts.py"])
def test_judge_diagnoses_refuse_a_missing_judge_and_train_none(tmp_path, script):
    """A --judge without a trained judge (e.g. `--judge=~/x`, whose `~` the shell leaves
    unexpanded after `=`) stops with one line; no judge is trained or directory made."""
    missing = tmp_path / "no_judge"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", script), f"--judge={missing}",
         f"--workdir={tmp_path}"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: no trained judge in ") and (
        result.stderr.count("\n") == 1), result.stderr[-2000:]
    assert not missing.exists()


def test_judge_diagnoses_say_unprepared_data_in_one_line(tmp_path):
    """A judge but no prepared dataset under --data_dir: one `error:` line, exit status 2."""
    judge = tmp_path / "judge"
    judge.mkdir()
    (judge / "judge.json").write_text("{}")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "motion_parts.py"), f"--judge={judge}",
         f"--workdir={tmp_path}", f"--data_dir={tmp_path / 'no_data'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, (
        result.stderr[-2000:])


def test_compare_torch_refuses_a_baseline_that_is_no_checkout(tmp_path):
    """--baseline must be another checkout of this repository: one usage error, exit 2, before
    any worker (or torch) starts."""
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "compare_torch.py"),
         f"--baseline={tmp_path}"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "is not a checkout of this repository" in result.stderr
    assert "git worktree add" in result.stderr


def test_profile_covered_time_is_the_union_of_intervals():
    """bench/profile_ops_cpu.py's products_wall_ms: overlapping intervals count once, gaps not."""
    profile_ops = load_bench_script("profile_ops_cpu")
    rng = np.random.default_rng(0)
    starts = rng.integers(0, 1000, 40)
    spans = [(int(a), int(a + b)) for a, b in zip(starts, rng.integers(1, 60, 40))]
    covered = np.zeros(1100, bool)
    for start, end in spans:
        covered[start:end] = True
    assert profile_ops.covered_ns(spans) == covered.sum()
    assert profile_ops.covered_ns([(0, 10), (2, 5), (10, 12), (20, 25)]) == 17
    assert profile_ops.covered_ns([]) == 0
    named = [(0, 10, "a"), (12, 15, "b"), (15, 20, "x"), (25, 30, "y"), (26, 28, "b"),
             (31, 33, "a")]
    assert profile_ops.gaps_ns(named, {"a", "b"}) == (2 + 5 + 1, 2)
    assert profile_ops.is_product("ynn_fusion") and profile_ops.is_product("dot")
    assert not profile_ops.is_product("convert_add_fusion")
    # An asynchronous dot ends at its mark; a mark after the operation's next run is not its.
    events = [(0, 1, "dot.2"), (1, 4, "add.1"), (4, 4, "end: add.1"), (9, 9, "end: dot.2"),
              (10, 12, "dot.2"), (20, 20, "end: dot.2"), (30, 31, "copy.3"),
              (40, 41, "copy.3"), (45, 45, "end: copy.3"), (2, 3, "ThreadpoolListener::Record")]
    by_name, named = profile_ops.operations(events)
    assert by_name == {"dot.2": 9 + 10, "add.1": 3, "copy.3": 1 + 5}
    assert sorted(profile_ops.intervals(named, products_only=True)) == [(0, 9), (10, 20)]
    assert profile_ops.covered_ns(profile_ops.intervals(named)) == 9 + 10 + 1 + 5
    assert profile_ops.is_operation("copy.12") and profile_ops.is_operation("ynn_fusion.3")
    for marker in ("end: copy", "end: ynn_fusion", "ThreadpoolListener::StartRegion",
                   "ThunkExecutor::Execute", "Await"):
        assert not profile_ops.is_operation(marker)


def test_profile_finds_the_instructions_of_while_loops():
    """bench/profile_ops_cpu.py's loop count: the instructions of a compiled scan's body are
    found, those outside every loop are not."""
    import jax
    import jax.numpy as jnp

    profile_ops = load_bench_script("profile_ops_cpu")

    def f(x):
        def body(carry, _):
            return jnp.tanh(carry @ carry) * 0.5, None
        y, _ = jax.lax.scan(body, x, None, length=4)
        return jnp.sum(jnp.exp(y))

    hlo = jax.jit(f).lower(jnp.ones((8, 8))).compile().as_text()
    inside = profile_ops.loop_instructions(hlo)
    assert inside
    entry = hlo[hlo.index("ENTRY"):]
    entry_names = set(re.findall(r"\n\s+(?:ROOT )?%?([\w.\-]+) = ", entry))
    assert entry_names and not inside & entry_names
    body = re.search(r"body=%?([\w.\-]+)", hlo).group(1)
    body_text = hlo[hlo.index(f"{body} ("):].split("\n}")[0]
    assert set(re.findall(r"\n\s+(?:ROOT )?%?([\w.\-]+) = ", body_text)) <= inside


def test_malloc_training_refuses_an_unknown_setting():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "malloc_training.py"), "--settings=big"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "unknown setting(s) ['big']; choose from" in result.stderr


def test_decode_records_compares_both_decoders_and_refuses_a_missing_dataset(tmp_path, capsys):
    from seqdis_jax.data import array_record

    bench = load_bench_script("decode_records")
    video = np.arange(6 * 2 * 4 * 4 * 3, dtype=np.uint8).reshape(6, 2, 4, 4, 3)
    array_record.write_dataset("tiny", tmp_path, {"train": {"video": video}},
                               {"video": array_record.Feature("uint8", (2, 4, 4, 3))})
    summary = bench.main([f"--data_dir={tmp_path}", "--dataset=tiny", "--batch=4",
                          "--batches=2", "--rounds=1"])
    assert summary["records_per_round"] == 8
    assert summary["wire_records_per_s"] > 0 and summary["tfds_records_per_s"] > 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3  # two rounds' lines, summary
    with pytest.raises(SystemExit, match="dataset 'absent' is not prepared.*Prepare it first"):
        bench.main([f"--data_dir={tmp_path}", "--dataset=absent"])


def test_watch_training_prints_one_line_per_interval(tmp_path):
    console = tmp_path / "console.log"
    console.write_text("[    300/10000   3.0%]   1.60 steps/s\n[    400/10000   4.0%]\n")
    watcher = subprocess.Popen(
        ["bash", os.path.join(ROOT, "bench", "watch_training.sh"), "pytest", str(console), "1"],
        stdout=subprocess.PIPE, text=True)
    try:
        first = watcher.stdout.readline()
    finally:
        watcher.kill()
        watcher.wait()
    assert re.match(r"^\d+ cpu( +\d+){7,} \| rss_kb=\d+ \| minflt_utime_stime=\d+ \d+ \d+ "
                    r"\| step=400/10000$", first.strip()), first


def test_tsne_threads_times_both_limits_and_refuses_a_bad_size(capsys):
    bench = load_bench_script("tsne_threads")
    summary = bench.main(["--sizes=12x3", "--repeats=1"])
    assert set(summary["median_seconds"]["12x3"]) == {"default", "one_thread"}
    assert len(capsys.readouterr().out.strip().splitlines()) == 3  # two fits, the summary
    with pytest.raises(SystemExit):
        bench.main(["--sizes=12"])
    assert "--sizes='12': give comma-separated NxD" in capsys.readouterr().err
