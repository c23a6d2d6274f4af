"""Labels from user data (loan ids, borrowers, scenario names and descriptions) are drawn as
plain text in every figure (issue 13): matplotlib must not parse them as math text."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TAPE = ROOT / "conf" / "portfolio" / "example_loans.csv"
RLO = "\u202e"  # right-to-left override
HOSTILE = ["$y^^$ \\frac{x}", "a\\b\\c", "__x_y^z^", "100%{}{x}", "two\nlines", f"{RLO}txet", "L" * 500]


def hostile_tape(path: Path) -> None:
    """The example tape with every loan id and borrower replaced by a hostile label."""
    with open(TAPE, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for i, row in enumerate(rows):
        row["loan_id"] = f"{HOSTILE[i % len(HOSTILE)]}{i}"
        row["borrower"] = HOSTILE[(i + 3) % len(HOSTILE)]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def hostile_scenario(conf: Path) -> str:
    """A scenario file named and described by hostile labels; returns its group name."""
    (conf / "scenario").mkdir(parents=True)
    scenario = {"description": " ".join(HOSTILE), "shocks": [{"target": "price.all", "kind": "mul", "value": 0.9}]}
    (conf / "scenario" / "hostile.yaml").write_text(yaml.safe_dump({" ".join(HOSTILE[:4]): scenario}))
    return "hostile"


def run(args: list[str], cwd: Path, module: str = "stress.cli") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def test_hostile_labels_are_drawn_as_plain_text(tmp_path):
    tape = tmp_path / "tape.csv"
    hostile_tape(tape)
    name = hostile_scenario(tmp_path / "my_conf")
    out = tmp_path / "out"
    r = run([f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]", f"scenario=[baseline,{name}]",
             f"portfolio.path={tape}", "tenors=[36]", "mc.paths=16", "mc.fan_paths=4", "quiet=true",
             f"output.dir={out}"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    figures = sorted(p.name for p in out.glob("fig_*.png"))
    assert len(figures) >= 5 and (out / "report.html").stat().st_size > 0
    html = (out / "report.html").read_text()
    assert "L" * 500 in html and "$y^^$" in html
    for p in out.glob("fig_*.png"):
        p.unlink()
    (out / "report.html").unlink()
    r = run([str(out / "results.nc"), "--out", str(tmp_path / "again"), "--xlsx"], tmp_path, "stress.report.cli")
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "again").glob("fig_*.png"))) == len(figures)
    import openpyxl

    loans = [c.value for c in openpyxl.load_workbook(tmp_path / "again" / "committee_pack.xlsx")["loans"]["C"]][2:]
    assert "L" * 500 + "6" in loans and any(str(v).startswith("$y^^$") for v in loans)
