"""The package layout (docs/architecture.md): rooms that import only the rooms below them, no import
cycle between modules, no module over 500 lines, and kernel comments that name real numpy functions.

The checks read the source with ``ast`` (nothing is imported), so each one is also run on a small
planted package that breaks it, to see it fail."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from stress.engine import montecarlo
from stress.model import appraisal, market, recovery, rng, schedule, waterfall

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "stress"
MAX_LINES = 500

# What each room may import (besides itself): data flows config -> model -> engine -> results ->
# report / analysis; stress.errors is open to all, the package itself and the CLI sit on top.
BELOW = {
    "errors": set(),
    "config": {"errors"},
    "model": {"config", "errors"},
    "engine": {"config", "model", "errors"},
    "results": {"config", "model", "engine", "errors"},
    "pipeline": {"config", "model", "engine", "results", "errors"},
    "report": {"config", "model", "engine", "results", "errors"},
    "analysis": {"config", "model", "engine", "results", "pipeline", "errors"},
    "cli": {"config", "model", "engine", "results", "pipeline", "report", "analysis", "errors"},
    "__init__": {"config", "results", "pipeline", "analysis", "errors"},
}


def modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package``."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def room(name: str) -> str:
    """'stress.engine.backend' -> 'engine'; 'stress.cli' -> 'cli'; 'stress' -> '__init__'."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) of every import of the package in one module;
    TYPE_CHECKING blocks do not count (they never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top = name.split(".")[0]
    checking = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                for n in ast.walk(node)}
    module_level = {id(n) for n in tree.body} | {id(n) for node in tree.body if isinstance(node, (ast.If, ast.Try))
                                                  for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if id(node) in checking:
            continue
        targets = []
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            if base.split(".")[0] != top:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in known else base)
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name.split(".")[0] == top]
        for target in targets:
            if target in known and target != name:
                out.append((target, node.lineno, id(node) in module_level))
    return out


def upward_imports(package: Path) -> list[str]:
    """Every import of a room its room may not import."""
    known = modules(package)
    bad = []
    for name, path in known.items():
        here = room(name)
        for target, line, _ in imports(name, path, known):
            there = room(target)
            if there != here and there not in BELOW[here]:
                bad.append(f"{path.relative_to(package.parent)}:{line}: {here} imports {target} ({there})")
    return bad


def import_cycles(package: Path) -> list[list[str]]:
    """Cycles of module-level imports between modules (an import inside a function runs later)."""
    known = modules(package)
    graph = {name: sorted({t for t, _, top in imports(name, path, known) if top}) for name, path in known.items()}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in graph:
        if name not in state:
            visit(name, [name])
    return cycles


def long_modules(package: Path) -> list[str]:
    return [f"{p.relative_to(package.parent)}: {n} lines" for p in sorted(package.rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]


def test_rooms_import_only_the_rooms_below_them():
    assert upward_imports(PACKAGE) == []


def test_no_import_cycle_between_modules():
    assert import_cycles(PACKAGE) == []


def test_no_module_is_over_500_lines():
    assert long_modules(PACKAGE) == []


def test_every_room_says_what_it_holds_and_what_it_may_import():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "Imports:" in doc, init


def plant(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "stress"
    for rel, text in {"__init__.py": "", **files}.items():
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text(text)
    return package


def test_the_checks_fail_on_a_planted_package(tmp_path):
    package = plant(tmp_path, {
        "model/__init__.py": "", "model/market.py": "from . import waterfall\n",
        "model/waterfall.py": "from .market import x\n\ndef f():\n    from ..report import figures\n",
        "report/__init__.py": "", "report/figures.py": "import numpy\n" + "x = 1\n" * (MAX_LINES + 1),
        "engine/__init__.py": "", "engine/backend.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                                        "    from ..results import dataset\n",
        "results/__init__.py": "", "results/dataset.py": "",
    })
    assert upward_imports(package) == ["stress/model/waterfall.py:4: model imports stress.report.figures (report)"]
    assert import_cycles(package) == [["stress.model.market", "stress.model.waterfall", "stress.model.market"]]
    assert long_modules(package) == [f"stress/report/figures.py: {MAX_LINES + 2} lines"]


def test_a_lazy_import_breaks_no_cycle_rule_but_an_upward_one_is_still_caught(tmp_path):
    package = plant(tmp_path, {
        "config/__init__.py": "", "config/compose.py": "from .messages import explain\n",
        "config/messages.py": "def explain():\n    from .compose import compose\n",
        "engine/__init__.py": "", "engine/backend.py": "def simulate():\n    from ..analysis import runner\n",
        "analysis/__init__.py": "", "analysis/runner.py": "",
    })
    assert import_cycles(package) == []
    assert upward_imports(package) == ["stress/engine/backend.py:2: engine imports stress.analysis.runner (analysis)"]


# The kernel sources name the numpy function each device function mirrors ("market.advance",
# "waterfall.step", ...): every such name must exist under the current layout.
TWINS = {"market": market, "waterfall": waterfall, "recovery": recovery, "appraisal": appraisal,
         "schedule": schedule, "rng": rng, "montecarlo": montecarlo}


def kernel_references(text: str) -> set[tuple[str, str]]:
    """(module, name) of every 'module.name' in a kernel source, file names (rng.py) and config keys (market.valuation.method) left out."""
    return {(m, f) for m, f in re.findall(rf"(?<![/\w])({'|'.join(TWINS)})\.([A-Za-z_]\w*)\b(?!\.)", text) if f not in ("py", "cuh")}


@pytest.mark.parametrize("source", sorted(p.name for p in (REPO / "kernels").glob("*.cu*")))
def test_kernel_comments_name_numpy_functions_that_exist(source):
    refs = kernel_references((REPO / "kernels" / source).read_text(encoding="utf-8"))
    missing = sorted(f"{m}.{f}" for m, f in refs if not hasattr(TWINS[m], f))
    assert missing == []


def test_the_kernel_name_check_fails_on_a_renamed_function():
    assert kernel_references("// waterfall.step and market.advance_old") == {("waterfall", "step"),
                                                                          ("market", "advance_old")}
    assert not hasattr(market, "advance_old")
    assert any(kernel_references((REPO / "kernels" / "model.cuh").read_text(encoding="utf-8")))
