"""The house rules of wna_helpers' layout, read from the code itself (imports as the parser sees them)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import wna_helpers as wna

PKG = Path(__file__).resolve().parents[1] / "wna_helpers"

#: What each layer may import (besides itself); ``book`` may import anything and nothing imports it.
ALLOWED: dict[str, set[str]] = {
    "engine": set(),
    "config": {"engine"},
    "methods": {"engine"},
    "zoo": {"engine", "config"},
    "applications": {"engine", "methods", "zoo", "config"},
    "paper": {"engine", "methods", "zoo", "config"},
    "__init__": {"engine", "methods", "zoo", "config", "applications", "paper"},
    "__main__": {"engine", "methods", "zoo", "config", "applications", "paper"},
}
LAYERS = ("engine", "methods", "zoo", "applications", "paper", "book")


def _modules() -> list[tuple[Path, str]]:
    """Every module with its dotted name under wna_helpers (packages by their folder)."""
    out = []
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(PKG).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out.append((p, ".".join(parts)))
    return out


def _layer(dotted: str) -> str:
    return dotted.split(".")[0]


def _imports(path: Path, dotted: str) -> list[tuple[str, list[str], int]]:
    """(absolute target under wna_helpers, imported names, line) of every import of the package's own code."""
    is_pkg = path.name == "__init__.py"
    here = dotted.split(".") if is_pkg and dotted != "__init__" else dotted.split(".")[:-1]
    if dotted == "__init__":
        here = []
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[: len(here) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            names = [a.name for a in node.names]
            if not node.module:  # from . import a, b: the names are modules
                for n in names:
                    found.append((".".join(base + [n]), [n], node.lineno))
            else:
                found.append((target, names, node.lineno))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("wna_helpers"):
            found.append((node.module.removeprefix("wna_helpers").lstrip("."), [a.name for a in node.names],
                          node.lineno))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("wna_helpers"):
                    found.append((a.name.removeprefix("wna_helpers").lstrip("."), [], node.lineno))
    return found


def test_every_module_lives_in_a_layer():
    loose = [d for _, d in _modules() if _layer(d) not in (*LAYERS, "config", "__init__", "__main__")]
    assert not loose, f"modules outside the layers {LAYERS}: {loose}"


def test_layers_import_only_the_layers_below():
    wrong = []
    for path, dotted in _modules():
        layer = _layer(dotted)
        if layer == "book":
            continue
        for target, _, line in _imports(path, dotted):
            to = _layer(target) if target else "__init__"
            if to != layer and to not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(PKG.parent)}:{line} ({layer}) imports {target or 'wna_helpers'}")
    assert not wrong, "\n".join(wrong)


def test_no_private_name_crosses_a_module():
    crossing = [f"{p.relative_to(PKG.parent)}:{line}: {target}.{n}" for p, d in _modules()
                for target, names, line in _imports(p, d) for n in names if n.startswith("_") and not n.startswith("__")]
    assert not crossing, "\n".join(crossing)


def test_import_wna_helpers_loads_no_book_module():
    code = "import sys, wna_helpers; print([m for m in sys.modules if m.startswith('wna_helpers.book')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"import wna_helpers loaded the book's glue: {out}"


def test_public_face_is_sorted_names_that_exist():
    names = wna.__all__
    assert names == sorted(names, key=lambda s: (s.lower(), s)), "wna_helpers.__all__ is not sorted"
    assert len(set(names)) == len(names)
    for n in names:
        obj = getattr(wna, n)
        assert not isinstance(obj, type(wna)), f"{n} in __all__ is a module; __all__ lists names only"


@pytest.mark.parametrize("name", ["classification_images", "spike_triggered_average", "activation_statistics",
                                  "Mixture", "Images", "Uniform", "GaborNoise", "perturbation_attack",
                                  "compare_classification_images", "microstimulate", "psychometric_curve",
                                  "two_class_ci", "load_dataset", "get_trained_model", "gamma_curves"])
def test_readme_names_stay_reachable(name):
    assert name in wna.__all__ and callable(getattr(wna, name))


def test_readme_modules_stay_reachable():
    from wna_helpers import trojan  # noqa: F401  (the README's example)
    assert callable(trojan.trojan_dataset) and callable(wna.ci_stats.CIStatsAccumulator)
    assert callable(wna.paper.paper_numbers)
