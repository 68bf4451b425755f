"""seqdis_jax/paper_results.py: spot checks against the papers' tables, and well-formedness."""

from __future__ import annotations

import collections
import dataclasses
import importlib
import math
import re

import pytest

from seqdis_jax import paper_results as pr
from seqdis_jax.data import registry


def one(**kwargs) -> pr.PaperResult:
    found = pr.lookup(**kwargs)
    assert len(found) == 1, (kwargs, found)
    return found[0]


@pytest.mark.parametrize("kwargs, value, std", [
    # C-DSVAE Table 1 (Sprites): its own row and the baselines.
    (dict(paper="cdsvae", table="Table 1", method="C-DSVAE", metric="Acc"), 99.99, None),
    (dict(paper="cdsvae", table="Table 1", method="C-DSVAE", metric="IS"), 8.871, None),
    (dict(paper="cdsvae", table="Table 1", method="C-DSVAE", metric="H(y|x)"), 0.014, None),
    (dict(paper="cdsvae", table="Table 1", method="C-DSVAE", metric="H(y)"), 2.197, None),
    (dict(paper="cdsvae", table="Table 1", method="S3VAE", metric="Acc"), 99.49, None),
    (dict(paper="cdsvae", table="Table 1", method="S3VAE", metric="IS"), 8.637, None),
    (dict(paper="cdsvae", table="Table 1", method="S3VAE", metric="H(y|x)"), 0.041, None),
    (dict(paper="cdsvae", table="Table 1", method="DSVAE", metric="Acc"), 90.73, None),
    (dict(paper="cdsvae", table="Table 2", method="C-DSVAE", metric="Acc"), 81.16, None),
    (dict(paper="cdsvae", table="Table 3", method="MoCoGAN", metric="H(y)"), 0.191, None),
    (dict(paper="cdsvae", table="Table 4", method="C-DSVAE", metric="motion EER"), 31.81, None),
    # SPYL Tables 1-3.
    (dict(paper="spyl", table="Table 1", dataset="sprites", method="SPYL", metric="Acc"),
     100.0, 0.0),
    (dict(paper="spyl", table="Table 1", dataset="sprites", method="SKD", metric="H(y|x)"),
     1.6e-7, None),
    (dict(paper="spyl", table="Table 1", dataset="mug", method="SPYL", metric="Acc"),
     85.71, 0.9),
    (dict(paper="spyl", table="Table 1", method="SKD", metric="dynamic EER"), 26.78, None),
    (dict(paper="spyl", table="Table 1", method="SPYL", metric="static EER"), 3.41, None),
    (dict(paper="spyl", table="Table 2", method="GLR", metric="AUPRC"), 0.365, 0.092),
    (dict(paper="spyl", table="Table 2", method="SPYL", metric="MAE"), 1.823, 0.001),
    (dict(paper="spyl", table="Table 3", dataset="mug", method="SPYL", metric="Dynamic L-Acc",
          setting="dynamic features"), 85.62, 2.4),
    (dict(paper="spyl", table="Table 3", dataset="letters", method="C-DSVAE", metric="Gap",
          setting="static features"), 82.47, None),
    (dict(paper="spyl", table="Table 3", dataset="jester", method="SPYL"), 27.70, None),
    # DBSE Tables 1-3.
    (dict(paper="dbse", table="Table 1", dataset="mug", method="DBSE", metric="Acc"),
     87.53, 0.9),
    (dict(paper="dbse", table="Table 1", dataset="mug", method="DBSE", metric="IS"),
     5.598, 0.068),
    (dict(paper="dbse", table="Table 2", method="DBSE", metric="AUROC"), 0.849, 0.01),
    (dict(paper="dbse", table="Table 2", method="RF", metric="MAE"), 12.09, 0.01),
    (dict(paper="dbse", table="Table 3", dataset="air_quality", method="SPYL"), 57.93, 3.53),
    # R-WAE: errors converted to accuracies.
    (dict(paper="rwae", table="Table 4", method="R-WAE(MMD) (S)", metric="actions"),
     94.17, None),
    (dict(paper="rwae", table="Table 2", method="R-WAE(S)", metric="actions"), 94.17, None),
    (dict(paper="rwae", table="Table 2", method="DS-VAE(C)", metric="digits"), 95.74, None),
])
def test_spot_values(kwargs, value, std):
    result = one(**kwargs)
    assert result.value == pytest.approx(value)
    assert result.std == (None if std is None else pytest.approx(std))


def test_rwae_errors_are_accuracies():
    for result in pr.lookup(paper="rwae"):
        assert result.higher_is_better and "100 - error" in result.note
        error = float(re.search(r"printed error ([0-9.]+)%", result.note).group(1))
        assert result.value == pytest.approx(100.0 - error)


def test_every_entry_is_well_formed():
    assert len(pr.RESULTS) > 250
    for r in pr.RESULTS:
        assert r.paper in pr.PAPERS
        assert re.fullmatch(r"Table \d+", r.table)
        assert r.dataset in registry.DATASETS, r
        assert r.method and r.metric
        assert isinstance(r.value, float) and math.isfinite(r.value)
        assert r.std is None or (math.isfinite(r.std) and r.std >= 0)
        if pr.is_percent(r):
            assert 0.0 <= r.value <= 100.0, r


def test_tables_covered():
    counts = collections.Counter((r.paper, r.table) for r in pr.RESULTS)
    assert set(counts) == {("cdsvae", f"Table {i}") for i in range(1, 5)} | {
        (p, f"Table {i}") for p in ("spyl", "dbse") for i in range(1, 4)} | {
        ("rwae", "Table 2"), ("rwae", "Table 4")}
    assert counts["cdsvae", "Table 1"] == 5 * 4  # 5 methods x Acc, IS, H(y|x), H(y)
    assert counts["cdsvae", "Table 4"] == 5 * 2
    assert counts["spyl", "Table 1"] == 7 * 4 * 2 + 7 * 2  # Sprites + MUG, TIMIT
    assert counts["dbse", "Table 1"] == 8 * 4 * 2
    assert counts["dbse", "Table 2"] == 7 * 3 and counts["dbse", "Table 3"] == 7 * 2


def test_no_duplicate_cells():
    cells = collections.Counter((r.paper, r.table, r.dataset, r.method, r.metric, r.setting)
                                for r in pr.RESULTS)
    assert [c for c, n in cells.items() if n > 1] == []


KEY_PATTERNS = (
    r"fix_(dynamics|static)/[a-z0-9_]+/(accuracy|inception_score_balanced"
    r"|entropy_y_given_x_balanced|entropy_y_balanced)",
    r"eer/(static|dynamic|gap)",
    r"latent/[a-z0-9_]+_from_(s|d|d_t)/(svc|random_forest|knn)",
    r"latent/(static_gap|dynamic_gap|frame_gap)/(svc|random_forest|knn)",
    r"downstream/[a-z0-9_]+/(codes|static|dynamic|raw)/(mae|auroc|auprc|accuracy)",
    r"mi/[a-z0-9_]+",
)


def test_keys_follow_the_library_names():
    keyed = [r for r in pr.RESULTS if r.key]
    assert len(keyed) > 150
    for r in keyed:
        assert any(re.fullmatch(p, r.key) for p in KEY_PATTERNS), r.key
    # Factor names are the dataset modules' labels.
    for r in keyed:
        if r.key.startswith(("fix_", "latent/")):
            module = importlib.import_module(f"seqdis_jax.data.{r.dataset}")
            labels = (*module.STATIC_FACTORS, *module.DYNAMIC_FACTORS,
                      *getattr(module, "FRAME_FACTORS", ()))
            label = (r.key.split("/")[1] if r.key.startswith("fix_")
                     else re.match(r"latent/(.+)_from_", r.key).group(1))
            assert label in labels, r
            if r.key.startswith("fix_dynamics/"):
                assert label in module.DYNAMIC_FACTORS, r
            if r.key.startswith("fix_static/"):
                assert label in module.STATIC_FACTORS, r
    # Downstream tasks and inputs are those the experiment configs define.
    for r in keyed:
        if r.key.startswith("downstream/"):
            _, task, inputs, _ = r.key.split("/")
            config = importlib.import_module(f"experiments.{r.dataset}").get_config()
            assert inputs in config.eval.downstream[task].inputs, r
    assert one(paper="cdsvae", table="Table 1", method="C-DSVAE", metric="IS").key == (
        "fix_dynamics/motion/inception_score_balanced")
    assert one(paper="cdsvae", table="Table 3", method="C-DSVAE", metric="Acc").key == (
        "fix_static/digits/accuracy")
    assert one(paper="cdsvae", table="Table 4", method="DSVAE", metric="content EER").key == (
        "eer/static")
    assert one(paper="dbse", table="Table 2", method="RF", metric="AUPRC").key == (
        "downstream/mortality/raw/auprc")
    assert all(not r.key for r in pr.lookup(method="random"))


def test_higher_is_better():
    assert not one(paper="cdsvae", table="Table 1", method="DSVAE",
                   metric="H(y|x)").higher_is_better
    assert one(paper="cdsvae", table="Table 4", method="DSVAE",
               metric="motion EER").higher_is_better
    assert not one(paper="dbse", table="Table 2", method="DBSE", metric="MAE").higher_is_better
    assert not one(paper="spyl", table="Table 3", dataset="mug", method="SPYL",
                   metric="Dynamic L-Acc", setting="static features").higher_is_better


def test_lookup_filters():
    assert pr.lookup() == list(pr.RESULTS)
    sprites = pr.lookup(paper="cdsvae", dataset="sprites")
    assert len(sprites) == 20 and all(r.table == "Table 1" for r in sprites)
    acc = pr.lookup(paper="spyl", table="Table 1", metric="Acc")
    assert {r.dataset for r in acc} == {"sprites", "mug"} and len(acc) == 14
    assert pr.lookup(setting=pr.FIX_S, paper="cdsvae") == pr.lookup(paper="cdsvae",
                                                                     table="Table 3")
    assert pr.lookup(paper="nope") == []
    assert {r.paper for r in pr.lookup(key="eer/static")} == {"cdsvae", "spyl"}


def test_as_our_units():
    acc = one(paper="cdsvae", table="Table 1", method="S3VAE", metric="Acc")
    assert pr.as_our_units(acc) == pytest.approx(0.9949)
    assert pr.as_our_units(one(paper="rwae", table="Table 4", method="R-WAE(MMD) (S)",
                               metric="actions")) == pytest.approx(0.9417)
    eer = one(paper="cdsvae", table="Table 4", method="C-DSVAE", metric="content EER")
    assert pr.as_our_units(eer) == pytest.approx(0.0403)
    mug = one(paper="dbse", table="Table 1", dataset="mug", method="DBSE", metric="Acc")
    assert pr.as_our_units(mug, mug.std) == pytest.approx(0.009)
    for metric, value in (("IS", 8.871), ("H(y|x)", 0.014)):
        r = one(paper="cdsvae", table="Table 1", method="C-DSVAE", metric=metric)
        assert pr.as_our_units(r) == value
    auroc = one(paper="dbse", table="Table 2", method="DBSE", metric="AUROC")
    assert pr.as_our_units(auroc) == 0.849


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        pr.RESULTS[0].value = 0.0  # type: ignore[misc]
