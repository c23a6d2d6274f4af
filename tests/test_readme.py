"""Every ```python block of README.md and docs/*.md runs as written (in a fresh namespace, in a temporary
directory), and the command lines of README's ```bash blocks run as pasted.

The bundled config runs 2,000 paths by default; a block that does not set ``mc.paths`` itself gets
``mc.paths=64`` and ``mc.fan_paths=8`` appended to its ``stress.compose`` overrides (autouse fixture
below), so the examples stay quick without changing what they show. Blocks that set their own path
counts run them as written; a block that takes more than ~20 s is marked slow (SLOW).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr

import stress

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [(page, b) for page in PAGES
          for b in re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), flags=re.DOTALL | re.MULTILINE)]
SLOW: tuple[str, ...] = ()  # a block containing one of these takes > 20 s (none now: each runs in < 2 s)
SMALL = ["mc.paths=64", "mc.fan_paths=8"]


def _line(page: Path, block: str) -> str:
    """``page:lineN`` of the block's first statement (test ids and tracebacks name it)."""
    text = page.read_text(encoding="utf-8")
    return f"{page.name}:line{text[:text.index(block)].count(chr(10)) + 1}"


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
    assert sum(page == README for page, _ in BLOCKS) >= 1 and len(BLOCKS) >= 4


@pytest.mark.parametrize("page,block", [pytest.param(p, b, id=_line(p, b),
                                                     marks=[pytest.mark.slow] if any(s in b for s in SLOW) else [])
                                        for p, b in BLOCKS])
def test_readme_block_runs(page, block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(block, _line(page, block), "exec"), {"__name__": "__readme__"})


COMMANDS = {"stress-test": "stress.cli", "stress-report": "stress.report.cli", "stress-aggregate": "stress.results.aggregate"}


def readme_command_lines() -> list[str]:
    """The project's command lines of README's ```bash blocks, in order, comments dropped; ``a && b``
    keeps the part that is a project command (``pip install . && stress-test`` -> ``stress-test``)."""
    text = README.read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        for line in block.splitlines():
            for part in line.split(" # ")[0].split("&&"):
                if part.split() and part.split()[0] in (*COMMANDS, "sed"):
                    lines.append(part.strip())
    return lines


@pytest.mark.slow  # eight CLI runs with figures: about two minutes on the shared 2-core CPU
def test_readme_command_lines_run_as_pasted(tmp_path):
    """Each README command line, run in order in one fresh folder (later lines read what earlier ones
    wrote), exits 0; a ``stress-test`` line runs 64 paths (its own ``mc.paths`` is replaced, nothing
    else is changed). ``my_loans.csv`` is the user's tape: a copy of the example tape stands in."""
    lines = readme_command_lines()
    assert {line.split()[0] for line in lines} >= set(COMMANDS) and len(lines) >= 6
    shutil.copy(ROOT / "conf" / "portfolio" / "example_loans.csv", tmp_path / "my_loans.csv")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for line in lines:
        name, *args = shlex.split(line)
        if name == "sed":  # the README's edit of the user's config copy
            subprocess.run(["sed", *args], cwd=tmp_path, check=True)
            continue
        if name == "stress-test" and "--cfg" not in args and args[:1] != ["init"]:
            args = [a for a in args if not a.startswith(("mc.paths=", "mc.fan_paths="))] + SMALL
        r = subprocess.run([sys.executable, "-m", COMMANDS[name], *args], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"README line {line!r} failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}"
    assert (tmp_path / "out" / "results.nc").is_file() and (tmp_path / "report" / "report.html").is_file()
    assert (tmp_path / "my_book" / "results.nc").is_file() and (tmp_path / "seeds" / "aggregate.nc").is_file()
    assert "    price: 2.00" in (tmp_path / "my_conf" / "market" / "gpu_2026q4.yaml").read_text()
    with xr.open_dataset(tmp_path / "my_run" / "results.nc") as ds:  # the edited H100 price drove the run
        assert ds.attrs["config_dir"] == str((tmp_path / "my_conf").resolve())
        assert float(ds.price_fan.sel(scenario="baseline", chip="H100", fan_quantile=0.5, month=1)) < 2.3
