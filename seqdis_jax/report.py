"""`<workdir>/report.html`: one self-contained page per run, rewritten after every evaluation.

It shows the run's identity (method, dataset, step, date, machine), its metrics beside their
chance levels and the papers' numbers (seqdis_jax/paper_results.py), the evaluators' pictures
with what each shows, the training curves of metrics.jsonl (drawn with matplotlib) and the
t-SNE. Images are inline data URIs and the CSS is inline: the file opens anywhere, offline.

Rebuild it for an existing run without evaluating again:

    python -m seqdis_jax.report --workdir=DIR [--out=FILE]
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from seqdis_jax import paper_results, tensorboard_images
from seqdis_jax.errors import UserInputError

REPORT_FILE = "report.html"
# README.md's Outputs table: (file, title, what it shows).
GRIDS = (
    ("reconstruction.png", "Reconstruction", "pairs of rows: test input, reconstruction"),
    ("swap.png", "Swap", "blocks of four rows: x_A, x_B, decode(s_A, d_B), decode(s_B, d_A)"),
    ("static_fixed_dynamics_sampled.png", "Fixed s, sampled d_1:T",
     "row 0 the input; below, its s with d_1:T drawn from the learned prior (ancestral "
     "samples)"),
    ("dynamics_fixed_static_sampled.png", "Fixed d_1:T, sampled s",
     "row 0 the input; below, its d_1:T with s ~ N(0, I)"),
    ("interpolation.png", "Interpolation",
     "x_A, then d_1:T of A with s moving linearly from s_A to s_B, then x_B"),
)
TSNE = ("tsne.png", "t-SNE", "t-SNE of s (top) and of d_1:T (bottom), one panel per label, "
        "points coloured by its value")
ACCURACY_SUFFIXES = ("accuracy", "/svc", "/knn", "/random_forest")
# Training-curve keys left out of the plots: a running total of another curve.
UNPLOTTED = ("skipped_total",)


@dataclasses.dataclass(frozen=True)
class ResultRow:
    """One scalar result: `key` and `key_std` as value +- std, the chance level of its label
    where it is an accuracy of one, and log M where an MWS mutual information is at it."""

    key: str
    value: float
    std: float | None = None
    chance: float | None = None
    ceiling: float | None = None


def result_rows(results: Mapping[str, Any]) -> list[ResultRow]:
    """The scalar results in key order, paired with their std, chance level and MI ceiling
    (`experiments.main.format_results` prints them; the report tabulates them)."""
    chance = {k.removeprefix("chance/"): v for k, v in results.items()
              if k.startswith("chance/")}
    ceiling = results.get("mi/ceiling")
    rows = []
    for key in sorted(results):
        value = results[key]
        if (key.endswith("_std") or key.startswith("chance/") or key == "mi/ceiling"
                or not isinstance(value, (int, float))):
            continue
        # The innermost label named: fix_dynamics/motion/direction/accuracy is a direction's.
        label = max((f for f in chance if f"/{f}/" in key or f"/{f}_from_" in key),
                    key=lambda f: max(key.rfind(f"/{f}/"), key.rfind(f"/{f}_from_")),
                    default=None)
        at_ceiling = key.startswith("mi/") and ceiling is not None and value >= ceiling - 0.05
        rows.append(ResultRow(
            key, value, results.get(f"{key}_std"),
            chance[label] if label is not None and key.endswith(ACCURACY_SUFFIXES) else None,
            ceiling if at_ceiling else None))
    return rows


def paper_numbers(method: str, dataset: str, keys: Sequence[str]
                  ) -> dict[str, list[paper_results.PaperResult]]:
    """key -> what the papers report for `method` on `dataset` under that metrics.json key."""
    name = paper_results.METHOD_NAMES.get(method)
    if name is None:
        return {}
    found: dict[str, list[paper_results.PaperResult]] = {}
    for r in paper_results.lookup(dataset=dataset, method=name):
        if r.key in keys:
            found.setdefault(r.key, []).append(r)
    return found


def _read_json(path: str) -> Any:
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_curves(workdir: str) -> dict[str, dict[int, dict[str, float]]]:
    """metrics.jsonl as split -> step -> scalars; a step logged again (a resumed run) keeps
    its last record, and a line cut short (a killed run) is skipped."""
    curves: dict[str, dict[int, dict[str, float]]] = {}
    path = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                # (the test record's step is a float: the results' own "step" overrides it)
                if isinstance(record, dict) and isinstance(record.get("step"), (int, float)):
                    split, step = record.pop("split", "train"), int(record.pop("step"))
                    curves.setdefault(split, {})[step] = record
    return curves


def _series(curves: dict[int, dict[str, float]]) -> dict[str, tuple[list[int], list[float]]]:
    out: dict[str, tuple[list[int], list[float]]] = {}
    for step in sorted(curves):
        for key, value in curves[step].items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                out.setdefault(key, ([], []))
                out[key][0].append(step)
                out[key][1].append(value)
    return {k: v for k, v in out.items()
            if k not in UNPLOTTED and any(y != 0 for y in v[1])}


def plot_panels(title: str, panels: dict[str, dict[str, tuple[list[int], list[float]]]],
                columns: int = 3) -> bytes:
    """A PNG of small multiples: one panel per curve name, one line per split in it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(3.8 * columns, 2.6 * rows + 0.5), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title, fontsize=12, x=0.01, ha="left")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (name, lines) in zip(axes, panels.items()):
        for i, (split, (steps, values)) in enumerate(lines.items()):
            ax.plot(steps, values, marker="." if len(steps) < 30 else None, lw=1.4,
                    ls=("-", "--", ":")[i % 3], label=split)  # coinciding lines stay visible
        values = [y for _, ys in lines.values() for y in ys]
        first = next(iter(lines.values()))[1]
        if min(values) > 0 and first[0] / first[-1] > 20:  # a loss falling by decades
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.set_xlabel("step", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(lines) > 1:
            ax.legend(fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def curve_figures(workdir: str) -> list[tuple[str, bytes]]:
    """(caption, PNG) of the training loss terms and of the evaluation / validation curves."""
    curves = read_curves(workdir)
    figures = []
    train = _series(curves.get("train", {}))
    # The loss first, then its terms, then the optimiser's and the machine's numbers.
    train = dict(sorted(train.items(), key=lambda kv: (
        kv[0] != "loss", kv[0] in ("grad_norm", "skipped", "steps_per_sec"), kv[0])))
    if train:
        figures.append(("Training: every loss term, the gradient norm and the speed, at each "
                        "logged step (split train of metrics.jsonl).",
                        plot_panels("Training", {k: {"train": v} for k, v in train.items()})))
    panels: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for split in ("eval", "validation"):
        for name, line in _series(curves.get(split, {})).items():
            panels.setdefault(name, {})[split] = line
    if panels:
        figures.append(("Evaluation curves during training: eval (mutual informations every "
                        "eval.mi_every steps, judged accuracies every eval.judge_every steps) "
                        "and validation (the score checkpoints are ranked by).",
                        plot_panels("Evaluation during training", panels)))
    return figures


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _number(value: float, std: float | None = None) -> str:
    text = f"{value:.4g}"
    return text + (f" ± {std:.2g}" if std is not None else "")


def _paper_cell(found: list[paper_results.PaperResult]) -> str:
    """Each value +- std the papers print, in our units, with the tables that print it (the
    later papers copy their baselines' numbers: one line for them all)."""
    where: dict[str, list[str]] = {}
    for r in found:
        std = None if r.std is None else paper_results.as_our_units(r, r.std)
        where.setdefault(_number(paper_results.as_our_units(r), std), []).append(
            f"{r.paper} {r.table}")
    return "".join(f"<div>{number}<br><span class=src>{html.escape(', '.join(tables))}</span>"
                   "</div>" for number, tables in where.items())


def metrics_tables(results: Mapping[str, Any], method: str, dataset: str) -> str:
    """One table per metric family (the key's first part): ours, chance, the papers'."""
    rows = [r for r in result_rows(results) if r.key not in ("step", "train_seconds")]
    papers = paper_numbers(method, dataset, [r.key for r in rows])
    groups: dict[str, list[ResultRow]] = {}
    for r in rows:
        groups.setdefault(r.key.split("/")[0] if "/" in r.key else "other", []).append(r)
    # A column no row fills (no labels, no paper numbers for this method and data) is left out.
    with_chance = any(r.chance is not None for r in rows)
    header = "<th>metric</th><th>ours</th>" + ("<th>chance</th>" if with_chance else "") + (
        "<th>papers</th>" if papers else "")
    parts = []
    for group, members in groups.items():
        body = []
        for r in members:
            note = (f" <span class=warn>at the estimator's ceiling log M = {r.ceiling:.3f}: "
                    "a bound</span>" if r.ceiling is not None else "")
            chance = f"{r.chance:.3f}" if r.chance is not None else ""
            body.append(f"<tr><td class=key>{html.escape(r.key.removeprefix(group + '/'))}</td>"
                        f"<td class=num>{_number(r.value, r.std)}{note}</td>"
                        + (f"<td class=num>{chance}</td>" if with_chance else "")
                        + (f"<td class=paper>{_paper_cell(papers.get(r.key, []))}</td>"
                           if papers else "") + "</tr>")
        parts.append(f"<table class=metrics><caption>{html.escape(group)}</caption>"
                     f"<tr>{header}</tr>" + "".join(body) + "</table>")
    if not parts:
        return "<p class=note>This evaluation measured no scalar (config.eval.evaluators).</p>"
    return "<div class=tables>" + "".join(parts) + "</div>"


def _figure(png: bytes, title: str, caption: str, min_width: int = 0) -> str:
    """An image and its caption. A picture narrower than `min_width` is shown enlarged by a
    whole factor, its pixels kept sharp (a 32-pixel frame grid stays legible)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        width = image.width
    zoom = max(1, min_width // max(width, 1))
    style = " class=pixels" if zoom > 1 else ""
    heading = f"<b>{html.escape(title)}</b>: " if title else ""
    return (f"<figure style='flex: 0 1 {width * zoom}px'><img{style} width={width * zoom} "
            f"src='{_data_uri(png)}' alt='{html.escape(title or caption)}'>"
            f"<figcaption>{heading}{html.escape(caption)}</figcaption></figure>")


def _read_png(workdir: str, name: str) -> bytes | None:
    path = os.path.join(workdir, name)
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return f.read()


def identity(workdir: str, config: Mapping[str, Any], results: Mapping[str, Any]
             ) -> list[tuple[str, str]]:
    """(label, text) lines saying which run this is and where and when it ran."""
    from seqdis_jax import machine

    train = config.get("train", {})
    lines = [("run", os.path.basename(os.path.normpath(workdir))),
             ("workdir", os.path.abspath(workdir)),
             ("method", str(config.get("method", "?"))),
             ("dataset", str(config.get("data", {}).get("name", "?"))
              + (f" ({config['data']['tfds_name']})"
                 if config.get("data", {}).get("tfds_name") else "")),
             ("step", f"{results.get('step', '?')} of {train.get('num_steps', '?')}")]
    test = read_curves(workdir).get("test", {})
    seconds = results.get("train_seconds") or next(
        (r["train_seconds"] for _, r in sorted(test.items(), reverse=True)
         if "train_seconds" in r), None)
    if seconds:
        lines.append(("training time", f"{seconds / 60:.1f} min"))
    metrics_path = os.path.join(workdir, "metrics.json")
    if os.path.exists(metrics_path):
        lines.append(("evaluated", time.strftime("%Y-%m-%d %H:%M",
                                                 time.localtime(os.path.getmtime(metrics_path)))))
    machines = machine.read(workdir)
    if machines:
        last = machines[-1]
        lines.append(("machine", f"{machine.summary(last)}, jax {last.get('jax', '?')}"
                      + (f" (and {len({machine.summary(m) for m in machines}) - 1} other)"
                         if len({machine.summary(m) for m in machines}) > 1 else "")))
    lines.append(("report written", time.strftime("%Y-%m-%d %H:%M")))
    return lines


CSS = """
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; color: #222;
       margin: 0 auto; max-width: 1150px; padding: 16px 24px 48px; background: #fff; }
h1 { font-size: 24px; margin: 8px 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px;
     border-bottom: 1px solid #ddd; padding-bottom: 4px; }
nav a { margin-right: 14px; color: #0b63b6; text-decoration: none; }
dl.id { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 8px 0; }
dl.id dt { color: #666; } dl.id dd { margin: 0; font-family: ui-monospace, monospace; }
.tables { columns: 2 520px; column-gap: 24px; }
table.metrics { border-collapse: collapse; width: 100%; margin: 0 0 16px;
                break-inside: avoid; font-size: 13px; }
table.metrics caption { text-align: left; font-weight: 600; padding: 4px 0; }
table.metrics th { text-align: left; color: #555; font-weight: 500;
                   border-bottom: 1px solid #ccc; padding: 2px 6px; }
table.metrics td { border-bottom: 1px solid #eee; padding: 2px 6px; vertical-align: top; }
td.key { font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
td.num { white-space: nowrap; font-variant-numeric: tabular-nums; }
td.paper { font-variant-numeric: tabular-nums; min-width: 7em; }
.src { color: #777; font-size: 11px; } .warn { color: #b5530b; font-size: 11px;
       white-space: normal; }
.gallery { display: flex; flex-wrap: wrap; gap: 8px 24px; align-items: flex-start; }
figure { margin: 0 0 22px; } figure img { max-width: 100%; height: auto; display: block;
       border: 1px solid #eee; }
img.pixels { image-rendering: pixelated; }
figcaption { color: #444; font-size: 13px; margin-top: 4px; }
.note { color: #666; font-size: 13px; }
"""


def render(workdir: str, results: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """The report's HTML."""
    method = str(config.get("method", "?"))
    dataset = str(config.get("data", {}).get("name", "?"))
    pictures = set(tensorboard_images.pictures(results))  # only those of this evaluation
    grids = [(_read_png(workdir, name), title, caption) for name, title, caption in GRIDS
             if name in pictures]
    grids = [g for g in grids if g[0] is not None]
    tsne = _read_png(workdir, TSNE[0]) if TSNE[0] in pictures else None
    curves = curve_figures(workdir)
    sections = [("metrics", "Metrics", metrics_tables(results, method, dataset)
                 + "<p class=note>ours: mean ± std over the evaluator's repeats; chance: one over "
                 "the label's classes, for accuracies; papers: the value each paper reports "
                 "for this method and dataset under the same metric, in our units (fractions), "
                 "with the paper and table (seqdis_jax/paper_results.py).</p>")]
    if grids:
        sections.append(("pictures", "Pictures", "<div class=gallery>" + "".join(
            _figure(png, title, caption, min_width=360) for png, title, caption in grids)
            + "</div>"))
    if tsne is not None:
        sections.append(("tsne", "t-SNE", _figure(tsne, *TSNE[1:])))
    if curves:
        sections.append(("curves", "Training curves", "".join(
            _figure(png, "", caption) for caption, png in curves)))
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>"
                    for k, v in identity(workdir, config, results))
    nav = "".join(f"<a href='#{anchor}'>{title}</a>" for anchor, title, _ in sections)
    body = "".join(f"<h2 id={anchor}>{title}</h2>{content}" for anchor, title, content in sections)
    title = f"{paper_results.METHOD_NAMES.get(method, method)} on {dataset}"
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f"<title>{html.escape(title)} — {html.escape(os.path.basename(workdir))}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<dl class=id>{items}</dl><nav>{nav}</nav>{body}</body></html>\n")


def write_report(workdir: str, results: Mapping[str, Any] | None = None,
                 config: Mapping[str, Any] | None = None, out: str | None = None) -> str:
    """Writes `out` (default `<workdir>/report.html`) from the run's files; `results` and
    `config` default to its metrics.json and config.json. Returns the path written."""
    if not os.path.isdir(workdir):
        raise UserInputError(f"--workdir {workdir} does not exist; pass the workdir of a run.")
    if results is None:
        results = _read_json(os.path.join(workdir, "metrics.json"))
        if results is None:
            raise UserInputError(
                f"{workdir} holds no metrics.json; evaluate the run first: python -m "
                f"experiments.main --config=<its config> --workdir={workdir} --mode=eval")
    if config is None:
        config = _read_json(os.path.join(workdir, "config.json")) or {}
    path = out or os.path.join(workdir, REPORT_FILE)
    text = render(workdir, results, config)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)  # a browser never sees half a report
    return path


def after_evaluation(config: Any, workdir: str, results: Mapping[str, Any],
                     results_file: str = "metrics.json") -> None:
    """After every evaluation (train.py): its PNGs and the hparams to TensorBoard, then the
    report: report.html beside metrics.json, report_step<N>.html beside an earlier
    checkpoint's metrics_step<N>.json. Process 0 only."""
    import jax

    if jax.process_index() != 0:
        return
    config = json.loads(config.to_json()) if hasattr(config, "to_json") else dict(config)
    tensorboard_images.log_evaluation(config, workdir, results)
    name = results_file.replace("metrics", "report", 1).removesuffix(".json") + ".html"
    write_report(workdir, results, config, os.path.join(workdir, name))


def main() -> None:
    from absl import app, flags

    workdir = flags.DEFINE_string("workdir", None, "The run's workdir (read only).")
    out = flags.DEFINE_string("out", None, "Where to write the report (default: "
                              "<workdir>/report.html).")
    flags.mark_flag_as_required("workdir")

    def run(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        try:
            path = write_report(os.path.expanduser(workdir.value),
                                out=out.value and os.path.expanduser(out.value))
        except UserInputError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except OSError as e:
            target = out.value or os.path.join(workdir.value, REPORT_FILE)
            print(f"error: cannot write {target} ({e.strerror}); pass a writable --out=FILE.",
                  file=sys.stderr)
            sys.exit(2)
        print(f"wrote {path}")

    app.run(run)


if __name__ == "__main__":
    main()
