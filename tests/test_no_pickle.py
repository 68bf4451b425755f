"""No loading path unpickles: a checkpoint, its data-iterator state and the dataset are read
back with every pickle entry point disabled, and the sources never call np.load with pickles
allowed. (Config files are Python and are executed: they are trusted, as the README says.)"""

import os
import pathlib
import pickle
import re

import pytest

import experiments.main as launcher
from experiments import shapes

ROOT = pathlib.Path(__file__).resolve().parent.parent
LOADING_CODE = ["seqdis_jax", "data_prep", "experiments", "bench"]


def test_sources_never_unpickle():
    offenders = []
    for folder in LOADING_CODE:
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for pattern in (r"pickle\.loads?\(", r"allow_pickle\s*=\s*True", r"torch\.load\(",
                            r"np\.load\((?![^)]*allow_pickle=False)"):
                offenders += [f"{path.relative_to(ROOT)}: {m.group(0)}"
                              for m in re.finditer(pattern, text)]
    assert not offenders, offenders


def _refuse(*args, **kwargs):
    raise AssertionError("a loading path tried to unpickle")


def test_resume_and_evaluation_never_unpickle(tmp_path, monkeypatch):
    config = shapes.get_config("smoke")
    config.eval.evaluators = ("reconstruction",)
    workdir = str(tmp_path / "run")
    launcher.run(config, workdir, "train")
    for name in ("load", "loads"):
        monkeypatch.setattr(pickle, name, _refuse)
    monkeypatch.setattr(pickle, "Unpickler", _refuse)
    evaluated = launcher.run(config, workdir, "eval")  # restores the Orbax checkpoint
    assert evaluated["step"] == config.train.num_steps
    config.train.num_steps += 2  # resumes: restores the state and the grain iterator
    resumed = launcher.run(config, workdir, "train")
    assert resumed["step"] == config.train.num_steps
    assert os.path.isdir(os.path.join(workdir, "checkpoints", str(config.train.num_steps)))


@pytest.mark.parametrize("pattern,text,hit", [
    (r"np\.load\((?![^)]*allow_pickle=False)", "np.load(path)", True),
    (r"np\.load\((?![^)]*allow_pickle=False)", "np.load(path, allow_pickle=False)", False),
])
def test_the_source_scan_catches_np_load(pattern, text, hit):
    assert bool(re.search(pattern, text)) == hit
