"""report.html (seqdis_jax/report.py) and the TensorBoard pictures and hparams
(seqdis_jax/tensorboard_images.py): on a hand-made workdir, in a headless Chromium, and after a
tiny training run."""

import json
import os
import re
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from seqdis_jax import report, tensorboard_images

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BROWSERS = ("chromium-headless-shell", "chromium", "chrome-headless-shell")
CONFIG = {"method": "dsvae", "seed": 0, "data": {"name": "sprites", "batch_size": 4},
          "train": {"num_steps": 20, "learning_rate": 0.002, "cosine_decay": False},
          "eval": {"evaluators": ["all"], "judge_limit": None, "downstream": {}}}
RESULTS = {
    "step": 20, "chance/motion": 1 / 9, "chance/hair": 1 / 6,
    "fix_dynamics/motion/accuracy": 0.75, "fix_dynamics/motion/accuracy_std": 0.01,
    "latent/hair_from_s/svc": 0.9, "latent/static_gap/svc": 0.4,
    "mi/ceiling": 4.60517, "mi/s_x": 4.6, "mi/s_d": 0.3, "test/reconstruction": 135.0,
    "grids": [name for name, _, _ in report.GRIDS], "tsne": "tsne.png"}


@pytest.fixture
def run_dir(tmp_path):
    """A finished run's files, small: the PNGs, metrics, curves (one step logged twice, as a
    resumed run does; a last line cut short), config and machine."""
    workdir = tmp_path / "sprites_tiny_seed0"
    workdir.mkdir()
    rng = np.random.default_rng(0)
    for i, name in enumerate(tensorboard_images.IMAGES):
        Image.fromarray(rng.integers(0, 255, (12 + i, 20, 3), np.uint8)).save(workdir / name)
    (workdir / "metrics.json").write_text(json.dumps(RESULTS))
    (workdir / "config.json").write_text(json.dumps(CONFIG))
    lines = [{"step": s, "split": "train", "loss": 100.0 / s, "kl_static": 1.0 + s,
              "skipped": 0.0, "steps_per_sec": 2.0} for s in (5, 10, 10, 15, 20)]
    lines += [{"step": s, "split": "eval", "mi_s_d": 0.1 * s} for s in (10, 20)]
    lines += [{"step": s, "split": "validation", "judge_curve/fix_dynamics/mean_accuracy":
               0.5 + s / 100} for s in (10, 20)]
    lines += [{"step": 20.0, "split": "test", "train_seconds": 90.0}]  # as MetricWriter logs it
    (workdir / "metrics.jsonl").write_text(  # ending in a line a killed run cut short
        "".join(json.dumps(r) + "\n" for r in lines) + '{"step": 25, "spl')
    (workdir / "machine.jsonl").write_text(json.dumps(
        {"cpu": "Test CPU", "cpu_cores": 2, "platform": "cpu", "devices": 1,
         "device_kind": "cpu", "jax": "0.10.2", "start_step": 0}) + "\n")
    return workdir


def _images(text: str) -> list[str]:
    return re.findall(r"<img[^>]* src='([^']*)'", text)


def test_result_rows_pair_std_chance_and_the_mi_ceiling():
    rows = {r.key: r for r in report.result_rows(RESULTS)}
    assert "chance/motion" not in rows and "mi/ceiling" not in rows and "grids" not in rows
    acc = rows["fix_dynamics/motion/accuracy"]
    assert (acc.value, acc.std, acc.chance) == (0.75, 0.01, pytest.approx(1 / 9))
    assert rows["latent/hair_from_s/svc"].chance == pytest.approx(1 / 6)
    assert rows["latent/static_gap/svc"].chance is None
    assert rows["mi/s_x"].ceiling == pytest.approx(4.60517) and rows["mi/s_d"].ceiling is None


def test_report_is_self_contained_and_shows_the_run(run_dir):
    path = report.write_report(str(run_dir))
    assert path == str(run_dir / "report.html")
    text = (run_dir / "report.html").read_text()
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", text), "an external URL"
    images = _images(text)
    # Five grids, the t-SNE and two curve figures, all inline.
    assert len(images) == 8 and all(i.startswith("data:image/png;base64,") for i in images)
    for _, title, caption in report.GRIDS:
        assert f"<b>{title}</b>" in text and caption.split(";")[0] in text
    for line in ("sprites_tiny_seed0", "dsvae", "20 of 20", "1.5 min", "Test CPU, 2 cores"):
        assert line in text, line
    # Chance beside the accuracy; the papers' DSVAE number for the same key (C-DSVAE Table 1).
    row = re.search(r"motion/accuracy</td>(.*?)</tr>", text).group(1)
    assert "0.75 ± 0.01" in row and "0.111" in row and "cdsvae Table 1" in row
    assert "ceiling log M = 4.605" in text


def test_pictures_not_written_by_this_evaluation_are_left_out(run_dir):
    results = {k: v for k, v in RESULTS.items() if k not in ("grids", "tsne")}
    text = open(report.write_report(str(run_dir), results)).read()
    assert len(_images(text)) == 2 and "Reconstruction" not in text  # the curves only
    assert tensorboard_images.pictures(results) == []


def test_an_earlier_checkpoints_evaluation_gets_its_own_report(run_dir):
    """--mode=eval --checkpoint=<step>: metrics_step<N>.json beside report_step<N>.html."""
    report.after_evaluation(CONFIG, str(run_dir), RESULTS | {"step": 10}, "metrics_step10.json")
    assert (run_dir / "report_step10.html").is_file() and not (run_dir / "report.html").exists()
    assert "10 of 20" in (run_dir / "report_step10.html").read_text()
    images, _, _, _ = _pictures_and_hparams(run_dir / "tensorboard")
    assert {step for step, _, _ in images.values()} == {10}


def _browser() -> str:
    found = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if found is None and not os.environ.get("SEQDIS_REQUIRE_BROWSER"):
        # A fresh machine (the README's test command) may lack a browser; CI sets
        # SEQDIS_REQUIRE_BROWSER=1 after installing one (.ci/run), so there it must run.
        pytest.skip(f"no headless Chromium on PATH (looked for {', '.join(BROWSERS)}); "
                    "`apt-get install chromium-headless-shell` (Debian) runs this test.")
    if found is None:
        pytest.fail(f"no headless Chromium on PATH (looked for {', '.join(BROWSERS)}): install "
                    "it, e.g. `apt-get install chromium-headless-shell` (Debian), to test "
                    "that report.html renders.")
    return found


def test_every_image_of_the_report_loads_in_a_browser(run_dir, tmp_path):
    report.write_report(str(run_dir))
    # A copy with a script that writes each image's decoded width into the DOM once loaded.
    text = (run_dir / "report.html").read_text().replace("</body>", (
        "<script>addEventListener('load', () => document.body.setAttribute('data-widths', "
        "[...document.images].map(i => i.complete ? i.naturalWidth : 0).join(' ')))"
        "</script></body>"))
    probe = tmp_path / "probe.html"
    probe.write_text(text)
    result = subprocess.run(
        [_browser(), "--headless", "--disable-gpu", "--no-sandbox", "--virtual-time-budget=5000",
         "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    widths = re.search(r'data-widths="([\d ]*)"', result.stdout)
    assert widths, result.stdout[:2000]
    widths = [int(w) for w in widths.group(1).split()]
    assert len(widths) == 8 and min(widths) > 0, widths


def _snapshot(workdir) -> dict:
    return {p: (os.stat(os.path.join(workdir, p)).st_mtime_ns,
                os.stat(os.path.join(workdir, p)).st_size) for p in os.listdir(workdir)}


def test_command_rebuilds_a_report_elsewhere_without_touching_the_run(run_dir, tmp_path):
    before = _snapshot(run_dir)
    out = tmp_path / "out.html"
    result = subprocess.run([sys.executable, "-m", "seqdis_jax.report",
                             f"--workdir={run_dir}", f"--out={out}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.is_file() and len(_images(out.read_text())) == 8
    assert _snapshot(run_dir) == before
    (run_dir / "metrics.json").unlink()
    result = subprocess.run([sys.executable, "-m", "seqdis_jax.report", f"--workdir={run_dir}",
                             f"--out={out}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ") and "--mode=eval" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def read_events(logdir) -> list:
    """Every Event of the TFRecord event files in `logdir` (length, crc, data, crc)."""
    from tensorboardX.proto import event_pb2

    events = []
    for name in sorted(os.listdir(logdir)):
        with open(os.path.join(logdir, name), "rb") as f:
            data = f.read()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            events.append(event_pb2.Event.FromString(data[offset + 12:offset + 12 + length]))
            offset += 12 + length + 4
    return events


def _pictures_and_hparams(logdir):
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    images, scalars, hparams, metric_tags = {}, {}, {}, []
    for event in read_events(logdir):
        for value in event.summary.value:
            if value.HasField("image"):
                images[value.tag] = (event.step, value.image.width, value.image.height)
            elif value.HasField("simple_value"):
                scalars[value.tag] = (event.step, value.simple_value)
            if value.metadata.plugin_data.plugin_name == "hparams":
                data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
                if data.HasField("session_start_info"):
                    hparams = dict(data.session_start_info.hparams)
                if data.HasField("experiment"):
                    metric_tags = [m.name.tag for m in data.experiment.metric_infos]
    return images, scalars, hparams, metric_tags


def test_tensorboard_holds_the_pictures_and_the_hparams_in_the_run_logdir(run_dir):
    tensorboard_images.log_evaluation(CONFIG, str(run_dir), RESULTS)
    logdir = run_dir / "tensorboard"
    assert all(os.path.isfile(logdir / f) for f in os.listdir(logdir))  # no sub-folder
    images, scalars, hparams, metric_tags = _pictures_and_hparams(logdir)
    assert images == {f"outputs/{name[:-4]}": (20, 20, 12 + i)
                      for i, name in enumerate(tensorboard_images.IMAGES)}
    assert hparams["train.num_steps"].number_value == 20
    assert hparams["data.name"].string_value == "sprites"
    assert hparams["eval.evaluators"].string_value == "['all']"
    assert hparams["eval.judge_limit"].string_value == "None"
    assert "hparams/fix_dynamics/motion/accuracy" in metric_tags
    assert scalars["hparams/fix_dynamics/motion/accuracy"] == (20, 0.75)
    assert not any(t.endswith("_std") or "chance/" in t for t in metric_tags)


def test_a_training_run_writes_its_report_and_tensorboard_pictures(tmp_path):
    """The wiring in train.py: a few steps on the generated shapes, then the evaluators."""
    from experiments import shapes
    from seqdis_jax import train

    config = shapes.get_config("smoke")
    config.train.num_steps = 2
    config.eval.evaluators = ("grids",)  # (the t-SNE is slow on a busy CPU)
    workdir = tmp_path / "run"
    workdir.mkdir()
    train.train_and_evaluate(config, str(workdir))
    text = (workdir / "report.html").read_text()
    for _, title, _ in report.GRIDS:
        assert f"<b>{title}</b>" in text
    assert "Training: every loss term" in text and "train_seconds" not in text
    images, _, hparams, _ = _pictures_and_hparams(workdir / "tensorboard")
    assert set(images) == {f"outputs/{n[:-4]}" for n, _, _ in report.GRIDS}
    assert {step for step, _, _ in images.values()} == {2}
    assert hparams["method"].string_value == "dsvae"


def test_tsne_panels_get_a_key_of_their_label_values():
    from seqdis_jax.evaluators import drawing, tsne

    labels = np.array([0, 1, 2, 1, 0, 2])
    panel = drawing.scatter_panel(np.random.default_rng(0).normal(size=(6, 2)), labels, "t")
    keyed = np.asarray(tsne._with_legend(panel, labels, 1))
    assert keyed.shape[0] == panel.height + tsne.LEGEND_ROW + 8
    strip = keyed[panel.height:].reshape(-1, 3)
    for value in (0, 1, 2):  # each value's swatch, in scatter_panel's colour
        assert (strip == drawing._PALETTE[value]).all(axis=1).any()
    many = np.arange(30)
    keyed = tsne._with_legend(panel, many, 3)  # 19 swatches and "+11 more"
    strip = np.asarray(keyed)[panel.height:].reshape(-1, 3)
    assert not (strip == drawing._PALETTE[19]).all(axis=1).any()


def test_the_part_of_a_product_label_gets_the_parts_chance_level():
    """Sprites' motion (9 classes) = action x direction (3 each): a direction accuracy is
    beside 1/3, the motion's beside 1/9, whichever label the dict names first."""
    rows = {r.key: r for r in report.result_rows({
        "chance/motion": 1 / 9, "chance/action": 1 / 3, "chance/direction": 1 / 3,
        "fix_dynamics/motion/accuracy": 0.35, "fix_dynamics/motion/direction/accuracy": 0.36,
        "fix_dynamics/motion/action/accuracy": 0.97})}
    assert rows["fix_dynamics/motion/accuracy"].chance == pytest.approx(1 / 9)
    assert rows["fix_dynamics/motion/direction/accuracy"].chance == pytest.approx(1 / 3)
    assert rows["fix_dynamics/motion/action/accuracy"].chance == pytest.approx(1 / 3)


def test_machine_records_tell_apart_cpus_that_share_a_model_name():
    """Two `AMD EPYC`s, one with AVX-512 and bf16 units and one without: the records and their
    one-line summaries say which; a record from before these fields keeps its old summary."""
    from seqdis_jax import machine

    zen3 = machine.parse_lscpu(
        "Architecture:  x86_64\nModel name:    AMD EPYC\nCPU family:    25\nModel:         1\n"
        "Flags:         fpu sse avx avx2 fma vaes\n")
    assert zen3 == {"cpu": "AMD EPYC", "cpu_arch": "x86_64", "cpu_family": "25",
                    "cpu_model_number": "1", "cpu_isa": ["AVX2"]}
    zen4 = machine.parse_lscpu("Architecture: x86_64\nModel name: AMD EPYC\nCPU family: 25\n"
                               "Model: 17\nFlags: avx2 avx512f avx512_bf16 avx512vl\n")
    assert machine.cpu_summary(zen4) == "AMD EPYC (family 25 model 17; AVX2, AVX-512, AVX512-BF16)"
    record = zen3 | {"cpu_cores": 2, "platform": "cpu"}
    assert machine.summary(record) == "AMD EPYC (family 25 model 1; AVX2), 2 cores"
    assert machine.summary({"cpu": "Old CPU", "cpu_cores": 2}) == "Old CPU, 2 cores"
    assert machine.parse_lscpu("")["cpu"]  # no lscpu: the platform's name or "unknown CPU"
    assert {"cpu", "cpu_cores", "jax"} <= set(machine.describe())
    assert machine.lacks_bf16_units(zen3) and not machine.lacks_bf16_units(zen4)
    assert not machine.lacks_bf16_units({"cpu": "no lscpu"})  # unknown: no note
    arm = machine.parse_lscpu("Architecture: aarch64\nModel name: Neoverse-V1\nFlags: fp bf16\n")
    assert "cpu_isa" not in arm and not machine.lacks_bf16_units(arm)


@pytest.mark.parametrize("threads, limit", [(None, 1), (1, 1), (0, None), (3, 3)])
def test_tsne_runs_under_its_thread_limit(threads, limit, tmp_path, monkeypatch):
    """eval.tsne_threads caps the t-SNE's OpenMP and BLAS threads (1 when a saved config
    predates the field; 0: the runtime's default), inside threadpoolctl's limit."""
    import types

    import ml_collections
    import threadpoolctl

    from seqdis_jax.evaluators import tsne

    seen = []
    real = threadpoolctl.threadpool_limits

    def spy(limits=None, *args, **kwargs):
        seen.append(limits)
        return real(limits, *args, **kwargs)

    monkeypatch.setattr(threadpoolctl, "threadpool_limits", spy)
    rng = np.random.default_rng(0)
    eval_config = {} if threads is None else {"tsne_threads": threads}
    ctx = types.SimpleNamespace(
        config=ml_collections.ConfigDict({"eval": eval_config, "seed": 0}),
        workdir=str(tmp_path),
        dataset=types.SimpleNamespace(static_factors=("colour",), dynamic_factors=("motion",)),
        codes=lambda: {"s_mean": rng.normal(size=(12, 4)), "d_mean": rng.normal(size=(12, 3, 2)),
                       "colour": np.arange(12) % 3, "motion": np.arange(12) % 2})
    assert tsne.tsne(ctx) == {"tsne": "tsne.png"}
    assert seen == [limit, limit]  # s, then d
    assert Image.open(tmp_path / "tsne.png").size[0] > 0
