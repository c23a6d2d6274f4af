"""The ``ds.stress`` accessor (stress/results/accessor.py) and the generated config reference of docs/configuration.md."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import stress
from stress.config.compose import to_schema
from stress.config.install import tape_path
from stress.config.portfolio import load_portfolio

from support import V2_TAPE
from stress.config.reference import config_reference

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
REFERENCE = ROOT / "docs" / "configuration.md"  # the page README links for the config reference


@pytest.fixture(scope="module")
def ds():
    return stress.run(stress.compose([f"portfolio.path={V2_TAPE}", "scenario=[baseline,ai_winter]", "tenors=[36,60]",
                                      "mc.paths=40", "mc.fan_paths=8"]))


def test_loan_coordinates_come_from_the_tape(ds):
    tape = load_portfolio(tape_path(to_schema(stress.compose([]))), ds.chip.values)
    assert list(ds.borrower.values) == list(tape.borrower)
    assert list(ds.loan_chip.values) == list(tape.chip)
    assert ds.borrower.dims == ds.loan_chip.dims == ("loan",)


def test_summary_equals_the_dataset(ds):
    s = ds.stress.summary(quantile=0.99)
    assert list(s.index.names) == ["scenario", "tenor"] and len(s) == 4
    for sc in ds.scenario.values:
        for k in ds.tenor.values:
            row, cell = s.loc[(sc, k)], ds.sel(scenario=sc, tenor=k)
            assert row["EL"] == cell.expected_loss.item()
            assert row["EL SE"] == cell.expected_loss_se.item()
            for col, var in (("VaR", "var"), ("VaR SE", "var_se"), ("ES", "es"), ("ES SE", "es_se")):
                assert row[col] == cell[var].sel(quantile=0.99).item()
            assert row["EL % principal"] == pytest.approx(100 * cell.expected_loss.item() / ds.principal.sum().item())
    with pytest.raises(KeyError, match="0.95, 0.99, 0.999"):
        ds.stress.summary(quantile=0.9)


def test_noisy_figures_are_flagged_in_the_summary_table_report_and_heatmap(ds):
    """At 40 paths the baseline 36-month tail is noise: every place that shows it says so. The
    summary frame's flags follow SE > 10% of the figure; the CLI table marks those figures '*' with
    the paths needed (SE x sqrt(paths) fixed), the report's tables and the heatmap too."""
    from rich.console import Console

    from stress.report import figures, html
    from stress.results import dataset, metrics

    s = ds.stress.summary(quantile=0.99)
    for (sc, k), row in s.iterrows():
        want = [f for f in ("EL", "VaR", "ES") if row[f"{f} SE"] > 0.1 * abs(row[f])]
        assert row["noisy"] == ", ".join(want)
        need = row["paths for SE 10%"]
        if want:
            worst = max((row[f"{f} SE"] / (0.1 * abs(row[f]))) ** 2 for f in want if row[f])
            assert need >= 40 * worst and need < 40 * worst * 1.1 + 10
        else:
            assert pd.isna(need)
    assert (s["noisy"] != "").any() and (s["noisy"] == "").any()  # both kinds in this run
    console = Console(width=200, record=True)
    console.print(dataset.summary_tables(ds)[0])
    text = console.export_text()
    noisy_rows = [line for line in text.splitlines() if "*" in line and ("baseline" in line or "ai_winter" in line)]
    assert len(noisy_rows) == (s["noisy"] != "").sum()
    assert "* noisy: standard error above 10% of the figure" in text and f"{s['paths for SE 10%'].max():,}" in text
    html = html.render_html(ds)
    assert "* noisy: standard error above 10% of the figure" in html and "*" in html
    fig = figures.risk_heatmap_figure(ds)
    labels = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("*" in t for t in labels) and "* noisy" in fig._suptitle.get_text()
    assert metrics.NOISY_SHARE == 0.1


def test_tenor_comparison_equals_the_dataset(ds):
    t = ds.stress.tenor_comparison("baseline", pd_limit=0.05)
    assert list(t.index) == list(ds.loan.values)
    for k in (36, 60):
        np.testing.assert_array_equal(t[f"PD {k}m"], ds.pd.sel(scenario="baseline", tenor=k))
        np.testing.assert_array_equal(t[f"EL {k}m"], ds.el.sel(scenario="baseline", tenor=k))
    pd36, pd60 = t["PD 36m"] <= 0.05, t["PD 60m"] <= 0.05
    expected = np.where(pd36 & pd60, 60, np.where(pd36, 36, -1))
    np.testing.assert_array_equal(t["max_safe_tenor"].fillna(-1).astype(int), expected)
    both = ds.stress.tenor_comparison()
    assert list(both.index.names) == ["scenario", "loan"] and len(both) == 2 * ds.sizes["loan"]
    pd.testing.assert_frame_equal(both.loc["baseline"], t)


@pytest.mark.parametrize("group, coord", [("borrower", "borrower"), ("chip", "loan_chip")])
def test_loss_by_sums_to_the_portfolio_el(ds, group, coord):
    one = ds.stress.loss_by(group, scenario="ai_winter", tenor=60)
    assert set(one.index) == set(ds[coord].values)
    assert one["EL"].is_monotonic_decreasing
    cell = ds.sel(scenario="ai_winter", tenor=60)
    assert one["EL"].sum() == pytest.approx(cell.el.sum().item(), rel=1e-12)
    assert one["EL"].sum() == pytest.approx(cell.expected_loss.item(), rel=1e-9)  # loss per path = sum over loans
    assert one["share"].sum() == pytest.approx(1.0)
    name = one.index[0]
    assert one.loc[name, "EL"] == pytest.approx(cell.el.where(cell[coord] == name, 0).sum().item(), rel=1e-12)
    every = ds.stress.loss_by(group)
    assert list(every.index.names) == ["scenario", "tenor", group]
    assert every.groupby(["scenario", "tenor"])["share"].sum().to_numpy() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="borrower, chip"):
        ds.stress.loss_by("lender")


def test_config_reference_lists_every_key():
    table = config_reference()
    for key in ("mc.paths", "market.chips.<name>.price", "scenario.<name>.shocks[].target", "analyses.reverse.grid",
                "backend", "quiet"):
        assert f"| `{key}` |" in table
    assert "| `mc.seed` | `int` | `20261125` |" in table


def test_docs_config_reference_is_the_generated_table():
    """docs/configuration.md's block between the markers is exactly ``python -m stress.config``, and
    README links that page; regenerate the block with that command when a schema field or its comment changes."""
    assert "docs/configuration.md" in README.read_text(encoding="utf-8")
    text = REFERENCE.read_text(encoding="utf-8")
    block = re.search(r"<!-- config-reference:start -->\n(.*?)<!-- config-reference:end -->", text, re.DOTALL)
    assert block, "docs/configuration.md lacks the config-reference markers"
    assert block.group(1) == config_reference()


def test_python_m_stress_config_prints_the_table():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "stress.config"], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout == config_reference()
