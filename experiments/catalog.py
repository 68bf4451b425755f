"""What `python -m experiments.main --list` prints: every config file of experiments/ with its
variants, and every method of the registry, each with a one-line description.

Fast on purpose: the config files are imported (they import ml_collections only) but nothing
is built, and the methods are read from seqdis_jax/models/__init__.py and their modules'
docstrings without importing JAX or Flax.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import sys

EXPERIMENTS = os.path.dirname(os.path.abspath(__file__))
# Display names of the methods (and of mug.py's R-WAE(GAN) variant) in variant descriptions.
_TITLES = {"dsvae": "DSVAE", "cdsvae": "C-DSVAE", "spyl": "SPYL", "dbse": "DBSE",
           "rwae": "R-WAE(MMD)", "rwae_gan": "R-WAE(GAN)"}
_GENERIC = {
    "default": "the headline settings above",
    "cpu": "a smaller network and budget, sized for a CPU",
    "code": "the authors' released code where it departs from the paper",
    "cpu_code": ":cpu's network and budget with :code's switches",
    "64px": "the earlier 64x64 Quickstart",
    "smoke": "a few steps at tiny width (tests)",
}


def first_paragraph(doc: str | None) -> str:
    """A docstring's first paragraph on one line ('' for none)."""
    paragraph = (doc or "").strip().split("\n\n", 1)[0]
    return " ".join(line.strip() for line in paragraph.splitlines())


def config_files() -> list[str]:
    """The module names of experiments/*.py that define `get_config` (runnable configs)."""
    names = []
    for file in sorted(os.listdir(EXPERIMENTS)):
        if not file.endswith(".py") or file.startswith("_"):
            continue
        with open(os.path.join(EXPERIMENTS, file), encoding="utf-8") as f:
            if re.search(r"^def get_config\(", f.read(), re.MULTILINE):
                names.append(file[:-3])
    return names


def describe_variant(variant: str) -> str:
    """A variant's one-line description from its name (the docstrings hold the details)."""
    if variant in _GENERIC:
        return _GENERIC[variant]
    for suffix, text in (("_smoke", "a few steps at tiny width (tests)"),
                         ("_cpu", "sized for a CPU"), ("", "the paper's settings")):
        method = variant.removesuffix(suffix) if variant.endswith(suffix) else None
        if method in _TITLES:
            return f"{_TITLES[method]}, {text}"
    return "see the file's docstring"


def config_entries() -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(file name, description, [(variant, description)]) of every config file; the first
    variant is the one --config=FILE without `:variant` runs."""
    entries = []
    for name in config_files():
        module = importlib.import_module(f"experiments.{name}")
        variants = list(getattr(module, "VARIANTS", ()))
        entries.append((f"{name}.py", first_paragraph(module.__doc__),
                        [(v, describe_variant(v)) for v in variants]))
    return entries


def method_entries() -> list[tuple[str, str]]:
    """(name, description) of every method of seqdis_jax.models: the live registry when it is
    already imported (it holds methods registered from outside the package), else the
    registry's source, so that listing imports no JAX."""
    registry = sys.modules.get("seqdis_jax.models")
    if registry is not None:
        return [(name, _method_doc(entry if isinstance(entry, str) else entry.build.__module__))
                for name, entry in registry.METHODS.items()]
    path = os.path.join(os.path.dirname(EXPERIMENTS), "seqdis_jax", "models", "__init__.py")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and node.target.id == "METHODS"):
            methods = ast.literal_eval(node.value)
            return [(name, _method_doc(module)) for name, module in methods.items()]
    import seqdis_jax.models  # noqa: F401  the source changed shape: read the live registry

    return method_entries()


def _method_doc(module: str) -> str:
    """The first paragraph of a method module's docstring, read without importing it."""
    path = os.path.join(os.path.dirname(EXPERIMENTS), *module.split(".")) + ".py"
    if not os.path.exists(path):
        return module
    with open(path, encoding="utf-8") as f:
        return first_paragraph(ast.get_docstring(ast.parse(f.read())))


def listing() -> str:
    """The text that --list prints."""
    lines = ["Config files (--config=experiments/FILE[:variant]; without :variant the first "
             "listed variant runs; each file's docstring has its commands and settings):", ""]
    for file, description, variants in config_entries():
        lines.append(f"experiments/{file}  {description}")
        width = max((len(v) for v, _ in variants), default=0) + 1
        for i, (variant, text) in enumerate(variants):
            default = " (default)" if i == 0 else ""
            lines.append(f"    {':' + variant:<{width}}  {text}{default}")
        lines.append("")
    lines.append("Methods (config.method; seqdis_jax/models, docs/adding_a_method.md):")
    methods = method_entries()
    width = max((len(n) for n, _ in methods), default=0)
    lines += [f"    {name:<{width}}  {text}" for name, text in methods]
    return "\n".join(lines)
