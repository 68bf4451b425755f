"""experiments/reproduce.py: every table's rows name real config variants and paper cells, and
a `--budget=smoke` table trains, ranks, evaluates and renders end to end, then reads its runs
back without training them again."""

from __future__ import annotations

import dataclasses
import importlib
import math
import os

import pytest

from experiments import reproduce
from seqdis_jax import paper_results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHEETS = os.path.join(ROOT, "..", "shared", "data", "sprites_lpc")


@pytest.mark.parametrize("name", sorted(reproduce.TABLES))
def test_every_row_names_a_config_variant_and_its_paper_cells(name):
    table = reproduce.TABLES[name]
    for row in table.rows:
        module = importlib.import_module(f"experiments.{row.config}")
        assert set(row.variants) == {"smoke", "cpu", "paper"}
        assert set(row.variants.values()) <= set(module.VARIANTS), row
        if row.cite is not None:  # at least one column finds its number
            cells = [reproduce.paper_cell(table, row, c) for c in table.columns]
            assert any(c != "—" for c in cells), (row, cells)


def test_paper_cells_carry_value_std_and_source():
    table = reproduce.TABLES["sprites_generation"]
    rows = {r.label: r for r in table.rows}
    acc = table.columns[0]
    assert reproduce.paper_cell(table, rows["DSVAE"], acc).startswith("90.73")
    assert reproduce.paper_cell(table, rows["C-DSVAE"], acc).startswith("99.99")
    assert reproduce.paper_cell(table, rows["R-WAE(MMD)"], acc).startswith("94.17")
    assert reproduce.paper_cell(table, rows["DSVAE"], table.columns[-1]) == "—"
    (r,) = paper_results.lookup(paper="cdsvae", table="Table 1", method="C-DSVAE", metric="IS")
    assert reproduce.paper_cell(table, rows["C-DSVAE"], table.columns[1]) == (
        f"{r.value:g} (cdsvae Table 1)" if r.std is None
        else f"{r.value:g} ± {r.std:g} (cdsvae Table 1)")


def test_smoke_table_trains_ranks_renders_and_rereads(tmp_path, monkeypatch):
    if not os.path.isdir(SHEETS):
        pytest.skip(f"LPC sheets not found at {SHEETS}")
    from data_prep import sprites as prep

    data_dir = str(tmp_path / "tfds")
    prep.prepare(SHEETS, data_dir, num_characters=2)
    full = reproduce.TABLES["sprites_generation"]
    table = dataclasses.replace(full, rows=full.rows[:1])  # DSVAE: one smoke run
    monkeypatch.setitem(reproduce.TABLES, "sprites_generation", table)
    root = str(tmp_path / "root")
    pending = reproduce.reproduce("sprites_generation", "smoke", root, data_dir=data_dir,
                                  finished_only=True)  # trains nothing
    assert "| DSVAE | not finished (step 0 of 4) | n/a |" in open(pending).read()
    assert not os.path.exists(os.path.join(root, "runs", "sprites_smoke_seed0"))
    reproduce.reproduce("sprites_generation", "smoke", root, data_dir=data_dir,
                        only=["cdsvae_sprites:smoke"])  # another row's run: DSVAE is read
    assert not os.path.exists(os.path.join(root, "runs", "sprites_smoke_seed0"))
    path = reproduce.reproduce("sprites_generation", "smoke", root, data_dir=data_dir,
                               only=["sprites:smoke"])
    text = open(path, encoding="utf-8").read()
    workdir = os.path.join(root, "runs", "sprites_smoke_seed0")
    assert os.path.exists(os.path.join(workdir, "metrics.json"))
    assert os.path.isdir(os.path.join(root, "judges", "sprites_smoke"))
    assert "| DSVAE | last" in text and "| 90.73 % (cdsvae Table 1) |" in text
    assert "best by the judged curve" in text  # "last (also the best ...)" or a line of its own
    assert "## Judged curves" in text and "| fix d: motion | " in text
    assert "| DSVAE | sprites_smoke_seed0 | 4 | " in text and " cores |" in text
    mtime = os.path.getmtime(os.path.join(workdir, "metrics.jsonl"))
    reproduce.reproduce("sprites_generation", "smoke", root, data_dir=data_dir)
    assert os.path.getmtime(os.path.join(workdir, "metrics.jsonl")) == mtime  # read, not re-run


def test_curves_print_every_run_finished_or_not(tmp_path):
    """judged_curve reads the validation records of metrics.jsonl (a step logged twice keeps
    its last record); render_curves prints CURVE_COLUMNS steps a table, a missing key as —."""
    import json

    workdir = tmp_path / "run"
    workdir.mkdir()
    prefix = "judge_curve/fix_dynamics/motion"
    records = [{"split": "train", "step": 500, "loss": 1.0}]
    records += [{"split": "validation", "step": step, f"{prefix}/accuracy": step / 10_000}
                for step in range(500, 6_001, 500)]
    records += [{"split": "validation", "step": 6_000, f"{prefix}/accuracy": 0.75,
                 f"{prefix}/action/accuracy": 0.875}]  # the same step again: this one counts
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    curve = reproduce.judged_curve(str(workdir))
    assert list(curve) == list(range(500, 6_001, 500))
    assert curve[6_000][f"{prefix}/accuracy"] == 0.75
    assert reproduce.judged_curve(str(tmp_path / "never_started")) == {}

    table = reproduce.TABLES["sprites_generation"]
    runs = {row.label: [] for row in table.rows}
    runs["DSVAE"] = [dict(run="sprites_cpu_seed0", steps="6000 of 10000", pending=True,
                          curve=curve)]
    text = "\n".join(reproduce.render_curves(table, runs))
    assert "DSVAE (`sprites_cpu_seed0`, 6000 of 10000):" in text
    assert "| step | 500 | 1,000 |" in text and "| step | 5,500 | 6,000 |" in text  # 10 + 2
    assert "| fix d: motion | 0.050 | 0.100 |" in text
    assert "| fix d: motion | 0.550 | 0.750 |" in text
    assert "| fix d: action | — | 0.875 |" in text
    assert reproduce.render_curves(reproduce.TABLES["fsdd_eer"], runs) == []  # no curve there


def test_train_time_and_logged_step_read_the_train_records(tmp_path):
    """train_time sums each logged interval's steps / its rate (a restart from scratch begins a
    new sum); logged_step is the last train step; steps_text prints unfinished runs as N of M."""
    import json

    workdir = tmp_path / "run"
    workdir.mkdir()
    records = [{"split": "train", "step": 100, "steps_per_sec": 2.0},
               {"split": "validation", "step": 100},
               {"split": "train", "step": 300, "steps_per_sec": 4.0},
               {"split": "train", "step": 50, "steps_per_sec": 1.0},  # restarted from scratch
               {"split": "train", "step": 60}]  # no rate: not counted in the time
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert reproduce.train_time(str(workdir)) == 100 / 2 + 200 / 4 + 50 / 1
    assert reproduce.logged_step(str(workdir)) == 60
    assert reproduce.logged_step(str(tmp_path / "never_started")) == 0
    assert math.isnan(reproduce.train_time(str(tmp_path / "never_started")))
    assert reproduce.steps_text(10_000, 10_000) == "10000"
    assert reproduce.steps_text(1_187, 10_000) == "1187 of 10000"


def test_only_refuses_a_run_no_table_has():
    reproduce.check_only(["sprites_generation"], ["dbse_sprites:cpu_code"], "cpu")
    with pytest.raises(ValueError, match="dbse_sprites:cpu_codee.*choose from"):
        reproduce.check_only(["sprites_generation"], ["dbse_sprites:cpu_codee"], "cpu")


def test_an_interrupted_run_ends_with_the_command_that_resumes_it(tmp_path, monkeypatch, capsys):
    """SIGINT / SIGTERM inside a run's training (fit saved a checkpoint and raised
    RunInterrupted): one line naming the resume command, the signal's exit status, no
    traceback."""
    from absl import flags
    from absl.testing import flagsaver

    from seqdis_jax import errors

    def interrupted(*args, **kwargs):
        raise errors.RunInterrupted("Interrupted at step 165 (SIGTERM); saved a checkpoint", 143)

    monkeypatch.setattr(reproduce, "reproduce", interrupted)
    argv = ["reproduce.py", "--table=sprites_generation", "--budget=cpu", f"--root={tmp_path}"]
    monkeypatch.setattr("sys.argv", argv)
    # Set this module's flags only (parsing argv would also check experiments.main's
    # required --config when another test has imported it).
    was_parsed = flags.FLAGS.is_parsed()
    flags.FLAGS.mark_as_parsed()
    try:
        with flagsaver.flagsaver(table="sprites_generation", budget="cpu", root=str(tmp_path)):
            with pytest.raises(SystemExit) as exit_info:
                reproduce.main([argv[0]])
    finally:
        if not was_parsed:
            flags.FLAGS.unparse_flags()
    assert exit_info.value.code == 143
    err = capsys.readouterr().err
    assert "Interrupted at step 165 (SIGTERM); saved a checkpoint; run the same command to " \
           "resume: python -m experiments.reproduce --table=sprites_generation --budget=cpu" in err
    assert "Traceback" not in err
