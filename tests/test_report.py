"""Figures (stress.plots), the HTML report (stress.report) and the ``stress-report`` command."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from stress import compose, plots, report, run
from stress.report_cli import REQUIRED_VARIABLES, main

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = ["baseline", "ai_winter"]
TENORS = [36, 60]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ds() -> xr.Dataset:
    return run(compose(["scenario=[baseline,ai_winter]", "tenors=[36,60]", "mc.paths=200", "mc.fan_paths=50",
                        "quiet=true"]))


@pytest.fixture(scope="module")
def saved(ds, tmp_path_factory) -> Path:
    """The dataset saved as <tmp>/run/results.nc."""
    path = tmp_path_factory.mktemp("run") / "results.nc"
    ds.to_netcdf(path)
    return path


@pytest.fixture(scope="module")
def written(ds, tmp_path_factory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("report")
    return out, report.write_all(ds, out)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])


# ----------------------------------------------------------------------------- figures

@pytest.mark.parametrize("name, panels, units", [
    ("loss_distribution", len(SCENARIOS) * len(TENORS), ["USD m"]),  # scenario rows x tenor columns
    ("risk_heatmap", 2, ["% of portfolio principal", "tenor"]),  # EL and VaR
    ("price_fans", 5, ["USD per GPU-hour", "months"]),  # one panel per chip family
    ("ltv_dscr_fans", 3 * len(SCENARIOS), ["LTV (%)", "DSCR", "% of principal", "months"]),  # LTV, DSCR, live share
    ("defaults", len(TENORS) + 1, ["% of principal", "share of defaults (%)", "months"]),  # rate per tenor + causes
    ("loans", 4, ["USD m", "probability of default (%)"]),  # EL and PD for the baseline and the worst scenario
])
def test_figure_panel_counts_and_labels(ds, name, panels, units):
    make, _ = plots.FIGURES[name]
    fig = make(ds)
    assert len(fig.axes) == panels
    assert all(ax.get_title() or ax.get_ylabel() for ax in fig.axes)
    labels = " ".join(ax.get_xlabel() + " " + ax.get_ylabel() + " " + ax.get_title() for ax in fig.axes)
    for unit in units:
        assert unit in labels, f"{name}: no label with {unit!r}"


def test_figures_use_no_pyplot(ds):
    plots.loss_distribution_figure(ds)
    assert "matplotlib.pyplot" not in sys.modules


def test_write_figures_writes_nonempty_pngs(written):
    out, paths = written
    pngs = [p for p in paths if p.suffix == ".png"]
    assert sorted(p.name for p in pngs) == sorted(plots.figure_filename(n) for n in plots.FIGURES)
    for p in pngs:
        data = p.read_bytes()
        w, h = png_size(data)
        assert len(data) > 10_000 and w >= 500 and h >= 250, p.name
    assert not list(out.glob(".partial-*"))


def test_single_scenario_and_tenor_and_no_fan_paths():
    one = run(compose(["scenario=[rate_shock]", "tenors=[48]", "mc.paths=50", "mc.fan_paths=0", "quiet=true"]))
    for name, (make, _) in plots.FIGURES.items():
        fig = make(one)
        assert fig.axes, name
        assert png_size(plots.render_png(fig))[0] > 0
    assert len(plots.loan_figure(one).axes) == 2  # the baseline-or-first scenario is also the worst


# ----------------------------------------------------------------------------- report

def test_report_is_self_contained_with_every_part(ds, written):
    out, paths = written
    html_path = paths[-1]
    assert html_path == out / "report.html"
    html = html_path.read_text(encoding="utf-8")
    for s in SCENARIOS:
        assert s in html
    assert html.count('src="data:image/png;base64,') == len(plots.FIGURES)
    assert not re.search(r'(src|href)="(https?:)?//', html), "external asset"
    for table in ("summary-usd", "summary-pct", "loans"):
        assert f'<table id="{table}">' in html
    assert html.count('<p class="driver"') == len(SCENARIOS)
    for s in SCENARIOS:
        assert f'data-scenario="{s}"' in html
    for attr in ("created", "backend", "precision", "seed", "package_version", "portfolio"):
        assert str(ds.attrs[attr]) in html, attr
    assert "<details>" in html and "launches:" in html  # the config YAML
    # every loan is in the per-loan table, and every scenario description in words
    for loan in ds.loan.values:
        assert f"<td>{loan}</td>" in html
    assert "phased in over 12 months from month 1" in html  # ai_winter's shocks in words


def test_driver_paragraph_is_computed_from_the_dataset(ds):
    text = report.driver_paragraph(ds, "ai_winter")
    k = plots.default_tenor(ds)
    el = ds.el.sel(scenario="ai_winter", tenor=k)
    top = str(el.loan.values[int(np.argmax(el.values))])
    assert top in text
    assert f"{float(ds.expected_loss.sel(scenario='ai_winter', tenor=k)) / 1e6:,.1f} USD m" in text
    assert "36 months" in text and "60 months" in text  # tenor effect
    share = ds.default_share.sel(scenario="ai_winter", tenor=k)
    if np.isfinite(share.values).any():
        assert str(share.cause.values[int(np.nanargmax(share.values))]) in text
    assert "baseline" in text


def test_shocks_are_described_in_words():
    shock = dict(target="price.all", kind="mul", value=0.6, start_month=1, ramp_months=12, end_month=None)
    assert report.describe_shock(shock) == "All chip rental prices ×0.60 (-40%), phased in over 12 months from month 1."
    rate = dict(target="base_rate", kind="add", value=0.03, start_month=1, ramp_months=0, end_month=24)
    assert report.describe_shock(rate) == ("The base rate (SOFR) of floating-rate loans +3 percentage points, "
                                           "from month 1 until month 24, then removed.")


def test_text_is_escaped(ds, tmp_path):
    odd = ds.copy()
    odd.attrs = {**ds.attrs, "portfolio": "<script>alert(1)</script>"}
    html = report.write_report(odd, tmp_path, pngs={}).read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;" in html


# ----------------------------------------------------------------------------- stress-report

def test_cli_renders_a_saved_dataset_and_refuses_to_overwrite(saved, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(saved), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert str(out / "report.html") in printed and len(printed) == len(plots.FIGURES) + 1
    assert all(Path(p).stat().st_size > 0 for p in printed)

    before = (out / "report.html").stat().st_mtime_ns
    assert main([str(saved), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "report.html" in err and "--overwrite" in err and "Traceback" not in err
    assert (out / "report.html").stat().st_mtime_ns == before


def test_cli_subprocess_writes_next_to_the_dataset(saved):
    proc = subprocess.run([sys.executable, "-m", "stress.report_cli", str(saved)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (saved.parent / "report.html").is_file()
    again = subprocess.run([sys.executable, "-m", "stress.report_cli", str(saved.parent)], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already holds" in again.stderr and "Traceback" not in again.stderr


def test_cli_overwrite_flag(saved, tmp_path):
    out = tmp_path / "o"
    (out).mkdir()
    (out / "report.html").write_text("old")
    assert main([str(saved), "--out", str(out), "--overwrite"]) == 0
    assert "data:image/png;base64," in (out / "report.html").read_text()


def test_cli_rejects_a_dataset_that_is_not_results(tmp_path, capsys):
    path = tmp_path / "other.nc"
    xr.Dataset({"loss": ("x", np.zeros(3)), "foo": ("x", np.ones(3))}).to_netcdf(path)
    assert main([str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "not a stress-test results dataset" in err and "Traceback" not in err
    for var in REQUIRED_VARIABLES:
        if var != "loss":
            assert var in err
    assert not (tmp_path / "o" / "report.html").exists()


@pytest.mark.parametrize("make", ["missing", "garbage", "empty_dir"])
def test_cli_user_errors_exit_2(tmp_path, capsys, make):
    target = tmp_path / "thing"
    if make == "garbage":
        target.write_text("not a netcdf file\n")
    elif make == "empty_dir":
        target.mkdir()
    assert main([str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stress-report: error:") and "Traceback" not in err
