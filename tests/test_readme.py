"""Every ```python block of README.md runs as written (in a fresh namespace, in a temporary directory).

The bundled config runs 2,000 paths by default; a block that does not set ``mc.paths`` itself gets
``mc.paths=64`` and ``mc.fan_paths=8`` appended to its ``stress.compose`` overrides (autouse fixture
below), so the examples stay quick without changing what they show. Blocks that set their own path
counts run them as written; a block that takes more than ~20 s is marked slow (SLOW).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import stress

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.DOTALL | re.MULTILINE)
SLOW: tuple[str, ...] = ()  # a block containing one of these takes > 20 s (none now: each runs in < 2 s)
SMALL = ["mc.paths=64", "mc.fan_paths=8"]


def _line(block: str) -> int:
    """The README line of the block's first statement (test ids and tracebacks name it)."""
    text = README.read_text(encoding="utf-8")
    return text[:text.index(block)].count("\n") + 1


@pytest.fixture(autouse=True)
def small_runs(monkeypatch):
    """Append the small path counts to the overrides of a block that does not choose mc.paths."""
    compose = stress.compose

    def small_compose(overrides=()):
        overrides = list(overrides)
        if not any(o.startswith("mc.paths=") for o in overrides):
            overrides += [o for o in SMALL if not any(x.startswith(o.split("=")[0] + "=") for x in overrides)]
        return compose(overrides)

    monkeypatch.setattr(stress, "compose", small_compose)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("block", [pytest.param(b, id=f"line{_line(b)}",
                                                marks=[pytest.mark.slow] if any(s in b for s in SLOW) else [])
                                   for b in BLOCKS])
def test_readme_block_runs(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(block, f"README.md:line{_line(block)}", "exec"), {"__name__": "__readme__"})
