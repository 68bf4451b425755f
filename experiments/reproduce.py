"""Regenerates the papers' tables: trains (or resumes) every run a table needs, evaluates it,
and writes our numbers beside the papers'.

    python -m experiments.reproduce --table=sprites_generation --budget=cpu --root=DIR
    python -m experiments.reproduce --list          # the tables, their rows and their runs
    python -m experiments.reproduce --table=sprites_generation --only=dbse_sprites:cpu_code

--budget picks each row's config variant: `smoke` (seconds; CI runs it), `cpu` (the `:cpu`
variants: hours on 2 CPU cores) or `paper` (the papers' settings; a GPU/TPU). Runs live in
ROOT/runs/<config>_<variant>_seed<k> and are shared between tables (Sprites generation and
latent classification read the same runs); judges in ROOT/judges/. A finished run (its
metrics.json at the last step) is read, not re-run; an interrupted one resumes exactly. The
table goes to ROOT/<table>.md: our mean +- std (over the judge's R draws for the judged
metrics, over the classifier seeds for latent classification, over --seeds runs when there
are several) beside the paper's value +- std (seqdis_jax/paper_results.py), and, per run, its
command, machine (machine.jsonl), steps and training time. Runs whose config ranks checkpoints
by the judged-accuracy curve (`train.best_metric`) get a second line: the best checkpoint by
that validation score (C-DSVAE Sec. 4.2 selects so), labelled as such. Below the table, every
run's judged-accuracy curve (the table's `curve` keys), unfinished runs included.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
import time

from absl import app, flags

from seqdis_jax import cpu_malloc, errors, paper_results

_TABLE = flags.DEFINE_string("table", None, "A table name (see --list), or 'all'.")
_BUDGET = flags.DEFINE_enum("budget", "cpu", ["smoke", "cpu", "paper"], "Each row's variant.")
_ROOT = flags.DEFINE_string("root", "runs/reproduce", "Where runs, judges and tables go.")
_SEEDS = flags.DEFINE_integer("seeds", 1, "Runs per row (config.seed = 0 .. seeds-1).")
_LIST = flags.DEFINE_bool("list", False, "List the tables and their runs, then exit.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Prepared datasets (default: config's).")
_FINISHED_ONLY = flags.DEFINE_bool(
    "finished_only", False, "Train nothing: write the table from the runs that have finished "
    "and mark the others with the step they reached.")
_ONLY = flags.DEFINE_list(
    "only", None, "Train only these rows' runs, each named config:variant (dbse_sprites:"
    "cpu_code for experiments/dbse_sprites.py:cpu_code, --list shows them); the other rows "
    "are read as with --finished_only.")


@dataclasses.dataclass(frozen=True)
class Column:
    label: str  # as the papers name it
    key: str  # our metrics.json key
    percent: bool = False  # a fraction shown in percent, as the papers print it


@dataclasses.dataclass(frozen=True)
class Row:
    label: str
    config: str  # experiments/<config>.py
    variants: dict[str, str]  # budget -> config variant
    cite: tuple[str, str, str] | None = None  # (paper, table, method) of paper_results
    metric_names: dict[str, str] = dataclasses.field(default_factory=dict)  # label -> paper's


@dataclasses.dataclass(frozen=True)
class Table:
    title: str
    dataset: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    note: str = ""
    # (label, key under judge_curve/): the judged-accuracy curve printed for every run, finished
    # or not, from its metrics.jsonl (empty: the table prints no curves).
    curve: tuple[tuple[str, str], ...] = ()


def _variants(paper: str, cpu: str, smoke: str = "smoke") -> dict[str, str]:
    return {"paper": paper, "cpu": cpu, "smoke": smoke}


def _method_rows(config: str, methods: tuple[str, ...], names: dict[str, str],
                 smoke_of=lambda m: "smoke" if m == "dsvae" else f"{m}_smoke",
                 cite=lambda m: None) -> tuple[Row, ...]:
    """One row per method of a dataset config whose variants are <m>, <m>_cpu, <m>_smoke."""
    return tuple(Row(names[m], config, _variants(m, f"{m}_cpu", smoke_of(m)), cite(m))
                 for m in methods)


def _dbse_row(table: str):
    """The DBSE paper's row of `table` for each method it reports (all but DSVAE)."""
    return lambda m: ("dbse", table, NAMES[m]) if m != "dsvae" else None


NAMES = paper_results.METHOD_NAMES
JUDGED = (Column("Acc", "fix_dynamics/motion/accuracy", True),
          Column("IS", "fix_dynamics/motion/inception_score_balanced"),
          Column("H(y|x)", "fix_dynamics/motion/entropy_y_given_x_balanced"),
          Column("H(y)", "fix_dynamics/motion/entropy_y_balanced"),
          Column("Acc static (fix s)", "fix_static/mean_static_accuracy", True),
          # Sprites' motion = action x facing direction (Dataset.factor_parts): which part a
          # low Acc misses, and whether s carries the direction (judge_swap, real codes).
          Column("Acc action (fix d)", "fix_dynamics/motion/action/accuracy", True),
          Column("Acc direction (fix d)", "fix_dynamics/motion/direction/accuracy", True),
          Column("direction follows s (swap, directions differ)",
                 "swap/motion/direction/follows_other_code_where_labels_differ", True))
SPRITES_ROWS = (
    Row("DSVAE", "sprites", _variants("default", "cpu"), ("cdsvae", "Table 1", "DSVAE")),
    Row("C-DSVAE", "cdsvae_sprites", _variants("default", "cpu"),
        ("cdsvae", "Table 1", "C-DSVAE")),
    Row("C-DSVAE `:code`", "cdsvae_sprites", _variants("code", "cpu_code"),
        ("cdsvae", "Table 1", "C-DSVAE")),
    Row("SPYL", "spyl_sprites", _variants("default", "cpu"), ("spyl", "Table 1", "SPYL")),
    Row("SPYL `:code`", "spyl_sprites", _variants("code", "cpu_code"),
        ("spyl", "Table 1", "SPYL")),
    Row("DBSE", "dbse_sprites", _variants("default", "cpu"), ("dbse", "Table 1", "DBSE")),
    Row("DBSE `:code`", "dbse_sprites", _variants("code", "cpu_code"),
        ("dbse", "Table 1", "DBSE")),
    Row("R-WAE(MMD)", "rwae_sprites", _variants("default", "cpu"),
        ("rwae", "Table 4", "R-WAE(MMD) (S)"), {"Acc": "actions"}),
    Row("R-WAE(GAN)", "rwae_gan_sprites", _variants("default", "cpu"),
        ("rwae", "Table 4", "R-WAE(GAN) (S)"), {"Acc": "actions"}),
)
TABLES: dict[str, Table] = {
    "sprites_generation": Table(
        "Sprites: fix d_1:T and sample s (judged action), fix s and sample d_1:T (judged "
        "appearance)", "sprites", JUDGED, SPRITES_ROWS,
        "At the cpu and paper budgets, Acc is over all 2,664 test sequences with R draws of "
        "s (10 at cpu, 5 at paper; ± is their std), and IS, H(y|x), H(y) over the first 296 "
        "of each action (the authors' balanced protocol). R-WAE's paper prints "
        "classification errors; its Acc is 100 - error. The papers report no fix-s accuracy "
        "on Sprites, and no split of the judged motion into its action and facing direction "
        "(the last three columns). The swap decodes s of another test sequence with d_1:T of "
        "each and counts how often the judged direction is the partner's, over the pairs "
        "whose two directions differ (metrics.json's swap/motion/direction/"
        "pairs_where_labels_differ says how many): there it follows s or d_1:T, not both.",
        (("fix d: motion", "fix_dynamics/motion/accuracy"),
         ("fix d: action", "fix_dynamics/motion/action/accuracy"),
         ("fix d: direction", "fix_dynamics/motion/direction/accuracy"),
         ("fix s: static (mean)", "fix_static/mean_accuracy"))),
    "sprites_latent": Table(
        "Sprites: latent classification (SVC on posterior means, 80/20 splits)", "sprites",
        (Column("motion from d", "latent/motion_from_d/svc", True),
         Column("motion from s", "latent/motion_from_s/svc", True),
         Column("hair from s", "latent/hair_from_s/svc", True),
         Column("hair from d", "latent/hair_from_d/svc", True),
         Column("static gap", "latent/static_gap/svc", True),
         Column("dynamic gap", "latent/dynamic_gap/svc", True)),
        tuple(dataclasses.replace(r, cite=None) for r in SPRITES_ROWS),
        "No paper reports latent classification on Sprites (SPYL Table 3 is MUG, Letters, "
        "Jester): our numbers only."),
    "fsdd_eer": Table(
        "FSDD: speaker verification EER from s and from d_1:T", "fsdd",
        (Column("EER static", "eer/static", True), Column("EER dynamic", "eer/dynamic", True)),
        _method_rows("fsdd", ("dsvae", "cdsvae", "spyl", "dbse", "rwae"), NAMES),
        "The papers report EER on TIMIT (C-DSVAE Table 4, SPYL Table 1), which is not "
        "available here; FSDD has no paper numbers."),
    "etth1_mae": Table(
        "ETTh1: next-day oil temperature MAE from the codes", "etth1",
        (Column("MAE", "downstream/oil_temperature/codes/mae"),),
        _method_rows("etth1", ("dsvae", "cdsvae", "spyl", "dbse"), NAMES,
                     cite=_dbse_row("Table 2")),
        "DBSE Table 2's MAE gives no window or horizon: the paper column is a reference, not "
        "the same task."),
    "air_quality_month": Table(
        "Beijing Air Quality: month classification from s", "air_quality",
        (Column("Accuracy", "downstream/month/static/accuracy", True),),
        _method_rows("air_quality", ("dsvae", "cdsvae", "spyl", "dbse"), NAMES,
                     cite=_dbse_row("Table 3")),
        "DBSE Table 3 classifies station-months; ours are station-day windows: the paper "
        "column is a reference, not the same task."),
    "smmnist": Table(
        "SM-MNIST: fix s and sample d_1:T (judged digits)", "smmnist",
        (Column("Acc", "fix_static/digits/accuracy", True),
         Column("IS", "fix_static/digits/inception_score"),
         Column("H(y|x)", "fix_static/digits/entropy_y_given_x"),
         Column("H(y)", "fix_static/digits/entropy_y")),
        (Row("C-DSVAE", "smmnist", _variants("default", "cpu"),
             ("cdsvae", "Table 3", "C-DSVAE")),),
        "IS and entropies over every scored sequence (this config does not balance classes)."),
}


def config_for(row: Row, budget: str, seed: int, root: str, data_dir: str | None = None):
    module = importlib.import_module(f"experiments.{row.config}")
    config = module.get_config(row.variants[budget])
    config.seed = seed
    if data_dir:
        config.data.data_dir = data_dir
    config.judge.workdir = os.path.join(root, "judges", os.path.basename(
        os.path.normpath(config.judge.workdir)))
    config.judge.train_if_missing = True  # the first run of a dataset trains its judge
    return config


def run_name(row: Row, budget: str, seed: int) -> str:
    return f"{row.config}_{row.variants[budget]}_seed{seed}"


def command(row: Row, config, budget: str, seed: int, root: str) -> str:
    return (f"python -m experiments.main --config=experiments/{row.config}.py:"
            f"{row.variants[budget]} --workdir={root}/runs/{run_name(row, budget, seed)} "
            f"--config.seed={seed} --config.judge.workdir={config.judge.workdir} "
            "--config.judge.train_if_missing=True")


def _read_json(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _records(workdir: str, split: str):
    """The records of one split ("train", "validation") of the run's metrics.jsonl, in the
    order logged (none when the file does not exist)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if record.get("split") == split:
                yield record


def train_time(workdir: str) -> float:
    """Seconds of training, from the logged step rates (each interval's steps / its rate)."""
    if not os.path.exists(os.path.join(workdir, "metrics.jsonl")):
        return float("nan")
    seconds, last_step = 0.0, 0
    for record in _records(workdir, "train"):
        if record.get("steps_per_sec"):
            # a step at or below the last one starts again (a run restarted from scratch)
            previous = last_step if record["step"] > last_step else 0
            seconds += (record["step"] - previous) / record["steps_per_sec"]
            last_step = record["step"]
    return seconds


def judged_curve(workdir: str) -> dict[int, dict]:
    """{step: validation record} of the run's metrics.jsonl (`eval.judge_every`'s judged
    curve, `judge_curve/...` keys); a step logged twice keeps its last record."""
    curve = {record["step"]: record for record in _records(workdir, "validation")}
    return dict(sorted(curve.items()))


def logged_step(workdir: str) -> int:
    """The last training step in the run's metrics.jsonl (0: none logged)."""
    step = 0
    for record in _records(workdir, "train"):
        step = record["step"]
    return step


def steps_text(step: int, num_steps: int) -> str:
    """A run's steps as its table prints them: "10000" when finished, "1187 of 10000" not."""
    return str(step) if step == num_steps else f"{step} of {num_steps}"


def run(row: Row, budget: str, seed: int, root: str, data_dir: str | None = None,
        finished_only: bool = False) -> dict:
    """Trains or resumes one run, evaluates it (and its best checkpoint), returns its record.
    With `finished_only` an unfinished run is not trained: its record is `pending`."""
    from experiments import main as launcher
    from seqdis_jax import machine

    config = config_for(row, budget, seed, root, data_dir)
    workdir = os.path.join(root, "runs", run_name(row, budget, seed))
    last = _read_json(os.path.join(workdir, "metrics.json"))
    if not last or last.get("step") != config.train.num_steps:
        if finished_only:
            return dict(row=row.label, run=run_name(row, budget, seed), pending=True,
                        steps=steps_text(logged_step(workdir), config.train.num_steps),
                        command=command(row, config, budget, seed, root),
                        seconds=train_time(workdir) if os.path.isdir(workdir) else 0.0,
                        machines=sorted({machine.summary(m) for m in machine.read(workdir)})
                        if os.path.isdir(workdir) else [], curve=judged_curve(workdir))
        last = launcher.run(config, workdir, "train")
    record = dict(row=row.label, run=run_name(row, budget, seed), last=last,
                  steps=steps_text(last["step"], config.train.num_steps),
                  command=command(row, config, budget, seed, root),
                  seconds=train_time(workdir),
                  machines=sorted({machine.summary(m) for m in machine.read(workdir)}),
                  curve=judged_curve(workdir))
    if config.train.get("best_metric", "").startswith("judge_curve/"):
        best_step = _best_step(workdir, config)
        if best_step == last["step"]:
            record["best"] = last
        elif best_step is not None:
            path = os.path.join(workdir, f"metrics_step{best_step}.json")
            record["best"] = _read_json(path)
            if record["best"] is None:
                config.eval.evaluators = ("judge_generation",)
                record["best"] = launcher.run(config, workdir, "eval", "best")
    return record


def _best_step(workdir: str, config) -> int | None:
    from seqdis_jax import train

    manager = train.ranked_manager(config, workdir)
    step = manager.best_step()
    manager.close()
    return step


def _mean_std(records: list[dict], key: str) -> tuple[float, float] | None:
    """Over seeds when there are several; else the run's own std (`<key>_std`)."""
    import numpy as np

    values = [r[key] for r in records if key in r]
    if not values:
        return None
    if len(values) > 1:
        return float(np.mean(values)), float(np.std(values))
    return values[0], records[0].get(f"{key}_std", float("nan"))


def _format(value: float, std: float, percent: bool) -> str:
    scale, digits = (100.0, 2) if percent else (1.0, 3)
    text = f"{value * scale:.{digits}f}"
    if std == std:  # not NaN
        text += f" ± {std * scale:.{digits}f}"
    return text + (" %" if percent else "")


def paper_cell(table: Table, row: Row, column: Column) -> str:
    if row.cite is None:
        return "—"
    paper, table_name, method = row.cite
    found = paper_results.lookup(paper=paper, table=table_name, dataset=table.dataset,
                                 method=method,
                                 metric=row.metric_names.get(column.label, column.label))
    if not found:
        return "—"
    r = found[0]
    text = f"{r.value:g}" + (f" ± {r.std:g}" if r.std is not None else "")
    return text + (" %" if paper_results.is_percent(r) else "") + f" ({paper} {table_name})"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def render(name: str, table: Table, records: dict[str, list[dict]], budget: str, seeds: int,
           seconds: float) -> str:
    pending = any(r.get("pending") for runs in records.values() for r in runs)
    header = ["method", "checkpoint"] + [
        f"{_escape(c.label)} {who}" for c in table.columns for who in ("ours", "paper")]
    lines = [f"# {table.title}", "",
             f"`python -m experiments.reproduce --table={name} --budget={budget} "
             f"--seeds={seeds}{' --finished_only' if pending else ''}` "
             f"({time.strftime('%Y-%m-%d')}; this command "
             f"{seconds / 60:.1f} min)", "", table.note, "",
             "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in table.rows:
        runs = [r for r in records[row.label] if not r.get("pending")]
        if not runs:
            steps = ", ".join(r["steps"] for r in records[row.label])
            lines.append(_result_line(table, row, f"not finished (step {steps})", []))
            continue
        last = [r["last"] for r in runs]
        best = [r["best"] for r in runs if r.get("best")]
        same = bool(best) and all(b["step"] == r["last"]["step"] for b, r in zip(best, runs))
        lines.append(_result_line(table, row, "last (also the best by the judged curve)"
                                  if same else "last", last))
        if best and not same:
            steps = ", ".join(str(b["step"]) for b in best)
            lines.append(_result_line(
                table, row, f"best by the judged curve (step {steps}; validation: 300 test "
                "sequences, 1 draw)", best))
    lines += ["", "| method | run | steps | training time | machine | command |",
              "| --- | --- | --- | --- | --- | --- |"]
    for row in table.rows:
        for r in records[row.label]:
            lines.append(f"| {row.label} | {r['run']} | {r['steps']} | "
                         f"{r['seconds'] / 60:.1f} min | {'; '.join(r['machines']) or '?'} | "
                         f"`{r['command']}` |")
    return "\n".join(lines + render_curves(table, records)) + "\n"


CURVE_COLUMNS = 10  # steps per line of a printed curve


def render_curves(table: Table, records: dict[str, list[dict]]) -> list[str]:
    """Markdown lines: each run's judged curve (`table.curve`), CURVE_COLUMNS steps a table."""
    runs = [(row, r) for row in table.rows for r in records.get(row.label, []) if r.get("curve")]
    if not table.curve or not runs:
        return []
    from seqdis_jax.evaluators import JUDGE_CURVE_PREFIX

    lines = ["", "## Judged curves", "",
             "Every run's judged-accuracy curve as its metrics.jsonl logged it (`eval.judge_every`"
             "; validation: `eval.judge_curve_sequences` test sequences spread evenly over the "
             "split, one fixed draw), finished runs and unfinished ones alike."]
    for row, r in runs:
        steps = list(r["curve"])
        lines += ["", f"{row.label} (`{r['run']}`, {r['steps']}):"]
        for start in range(0, len(steps), CURVE_COLUMNS):
            chunk = steps[start:start + CURVE_COLUMNS]
            lines += ["", "| step | " + " | ".join(f"{s:,}" for s in chunk) + " |",
                      "|" + " --- |" * (len(chunk) + 1)]
            for label, key in table.curve:
                values = [r["curve"][s].get(f"{JUDGE_CURVE_PREFIX}/{key}") for s in chunk]
                lines.append(f"| {label} | " + " | ".join(
                    "—" if v is None else f"{v:.3f}" for v in values) + " |")
    return lines


def _result_line(table: Table, row: Row, label: str, evaluated: list[dict]) -> str:
    cells = []
    for column in table.columns:
        ours = _mean_std(evaluated, column.key)
        cells += [_format(*ours, column.percent) if ours else "n/a",
                  paper_cell(table, row, column)]
    return f"| {row.label} | {label} | " + " | ".join(cells) + " |"


def run_id(row: Row, budget: str) -> str:
    """How --only names a row's run: config:variant."""
    return f"{row.config}:{row.variants[budget]}"


def check_only(names: list[str], only: list[str], budget: str) -> None:
    """Refuses an --only entry that names no run of the tables, with the ones that exist."""
    known = {run_id(row, budget) for name in names for row in TABLES[name].rows}
    unknown = [o for o in only if o not in known]
    if unknown:
        raise errors.UserInputError(
            f"--only names no run of {names} at --budget={budget}: {unknown}; choose from "
            f"{sorted(known)}.")


def reproduce(name: str, budget: str, root: str, seeds: int = 1, data_dir: str | None = None,
              finished_only: bool = False, only: list[str] | None = None) -> str:
    """Trains / resumes / reads every run of table `name` (`finished_only`: reads the finished
    ones only; `only`: trains the runs of these config:variant names, reads the others);
    writes and returns ROOT/name.md."""
    table = TABLES[name]
    start = time.perf_counter()
    records = {}
    for row in table.rows:
        read_only = finished_only or (only is not None and run_id(row, budget) not in only)
        records[row.label] = [run(row, budget, seed, root, data_dir, read_only)
                              for seed in range(seeds)]
    text = render(name, table, records, budget, seeds, time.perf_counter() - start)
    path = os.path.join(root, f"{name}.md")
    os.makedirs(root, exist_ok=True)  # --finished_only may have created no run under it
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    return path


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from experiments.main import configure_jax

    if _LIST.value:
        for name, table in TABLES.items():
            print(f"{name}: {table.title}")
            for row in table.rows:
                print(f"    {row.label}: " + ", ".join(
                    f"{b}=experiments/{row.config}.py:{v}" for b, v in row.variants.items()))
        return
    names = list(TABLES) if _TABLE.value == "all" else [_TABLE.value]
    unknown = [n for n in names if n not in TABLES]
    if not _TABLE.value or unknown:
        print(f"error: --table must be one of {sorted(TABLES)} or 'all' (got "
              f"{_TABLE.value!r}); --list shows them.", file=sys.stderr)
        sys.exit(2)
    if _SEEDS.value < 1:
        print(f"error: --seeds must be >= 1, got {_SEEDS.value}.", file=sys.stderr)
        sys.exit(2)
    configure_jax()
    from experiments.main import _resume_command, exit_with_error, known_errors

    input_errors, failures = known_errors()
    root = os.path.abspath(os.path.expanduser(_ROOT.value))
    try:
        if _ONLY.value is not None:
            check_only(names, _ONLY.value, _BUDGET.value)
        os.makedirs(root, exist_ok=True)
        for name in names:
            path = reproduce(name, _BUDGET.value, root, _SEEDS.value, _DATA_DIR.value,
                             _FINISHED_ONLY.value, _ONLY.value)
            print(f"wrote {path}", flush=True)
    except input_errors + failures as e:
        exit_with_error(e, input_errors)
    except errors.RunInterrupted as e:  # SIGINT/SIGTERM: fit saved a checkpoint at its step
        print(f"{e}; run the same command to resume: {_resume_command('experiments.reproduce')}",
              file=sys.stderr, flush=True)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    cpu_malloc.reexec_if_wanted()  # before any work: glibc reads its tunables at start
    app.run(main)
