"""Figures (stress.report.figures, stress.report.fans), the HTML report (stress.report.html) and the ``stress-report`` command."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from stress import compose
from stress.pipeline import run
from stress.report import fans, figures
from stress.report import html as report_html
from stress.report import narrative, style
from stress.report.cli import REQUIRED_VARIABLES, main

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
    return out, report_html.write_all(ds, out)


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
    make, _ = figures.FIGURES[name]
    fig = make(ds)
    assert len(fig.axes) == panels
    assert all(ax.get_title() or ax.get_ylabel() for ax in fig.axes)
    labels = " ".join(ax.get_xlabel() + " " + ax.get_ylabel() + " " + ax.get_title() for ax in fig.axes)
    for unit in units:
        assert unit in labels, f"{name}: no label with {unit!r}"


def test_figures_use_no_pyplot(ds):
    figures.loss_distribution_figure(ds)
    assert "matplotlib.pyplot" not in sys.modules


def test_write_figures_writes_nonempty_pngs(written):
    out, paths = written
    pngs = [p for p in paths if p.suffix == ".png"]
    assert sorted(p.name for p in pngs) == sorted(figures.figure_filename(n) for n in figures.FIGURES)
    for p in pngs:
        data = p.read_bytes()
        w, h = png_size(data)
        assert len(data) > 10_000 and w >= 500 and h >= 250, p.name
    assert not list(out.glob(".partial-*"))


def test_single_scenario_and_tenor_and_no_fan_paths():
    one = run(compose(["scenario=[rate_shock]", "tenors=[48]", "mc.paths=50", "mc.fan_paths=0", "quiet=true"]))
    for name, (make, _) in figures.FIGURES.items():
        fig = make(one)
        assert fig.axes, name
        assert png_size(figures.render_png(fig))[0] > 0
    assert len(figures.loan_figure(one).axes) == 2  # the baseline-or-first scenario is also the worst


# ----------------------------------------------------------------------------- report

def test_report_is_self_contained_with_every_part(ds, written):
    out, paths = written
    html_path = paths[-1]
    assert html_path == out / "report.html"
    html = html_path.read_text(encoding="utf-8")
    for s in SCENARIOS:
        assert s in html
    assert html.count('src="data:image/png;base64,') == len(figures.FIGURES)
    assert not re.search(r'(src|href)="(https?:)?//', html), "external asset"
    for table in ("summary-usd", "summary-pct", "loans"):
        assert f'<table id="{table}">' in html
    assert html.count('<p class="driver"') == len(SCENARIOS)
    for s in SCENARIOS:
        assert f'data-scenario="{s}"' in html
    for attr in ("created", "backend", "precision", "seed", "package_version"):
        assert str(ds.attrs[attr]) in html, attr
    assert "<details>" in html and "launches:" in html  # the config YAML
    # every loan is in the per-loan table, and every scenario description in words
    for loan in ds.loan.values:
        assert f"<td>{loan}</td>" in html
    assert "phased in over 12 months from month 1" in html  # ai_winter's shocks in words


def test_driver_paragraph_is_computed_from_the_dataset(ds):
    text = narrative.driver_paragraph(ds, "ai_winter")
    k = style.default_tenor(ds)
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
    assert narrative.describe_shock(shock) == "All chip rental prices ×0.60 (-40%), phased in over 12 months from month 1."
    rate = dict(target="base_rate", kind="add", value=0.03, start_month=1, ramp_months=0, end_month=24)
    assert narrative.describe_shock(rate) == ("The base rate (SOFR) of floating-rate loans +3 percentage points, "
                                           "from month 1 until month 24, then removed.")


def test_text_is_escaped(ds, tmp_path):
    odd = ds.copy()
    odd.attrs = {**ds.attrs, "portfolio": "<script>alert(1)</script>"}
    html = report_html.write_report(odd, tmp_path, pngs={}).read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;" in html


# ----------------------------------------------------------------------------- stress-report

def test_cli_renders_a_saved_dataset_and_refuses_to_overwrite(saved, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(saved), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert str(out / "report.html") in printed and len(printed) == len(figures.FIGURES) + 1
    assert all(Path(p).stat().st_size > 0 for p in printed)

    before = (out / "report.html").stat().st_mtime_ns
    assert main([str(saved), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "report.html" in err and "--overwrite" in err and "Traceback" not in err
    assert (out / "report.html").stat().st_mtime_ns == before


def test_cli_subprocess_writes_next_to_the_dataset(saved):
    proc = subprocess.run([sys.executable, "-m", "stress.report.cli", str(saved)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (saved.parent / "report.html").is_file()
    again = subprocess.run([sys.executable, "-m", "stress.report.cli", str(saved.parent)], cwd=REPO,
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


# ----------------------------------------------------------------------------- readable figures (issue 14)

def _rgb(color) -> np.ndarray:
    from matplotlib.colors import to_rgb

    return np.array(to_rgb(color))


def with_copy_of_baseline(ds: xr.Dataset) -> xr.Dataset:
    """ds plus a scenario 'copy' with the baseline's results (as power_spike has on the example book)."""
    copy = ds.sel(scenario=["baseline"]).assign_coords(scenario=["copy"])
    return xr.concat([ds, copy], dim="scenario", data_vars="minimal", coords="minimal", compat="override")


def many_loans(ds: xr.Dataset, n: int) -> xr.Dataset:
    """ds with its loans repeated up to n loans (new ids): a big book without simulating one."""
    idx = np.arange(n) % ds.sizes["loan"]
    big = ds.isel(loan=idx)
    return big.assign_coords(loan=[f"X{i}" for i in range(n)])


def test_var_and_es_levels_have_distinct_colours_and_plain_log_ticks(ds):
    """The VaR/ES lines of different levels are far apart in colour and from the histogram; the log
    density ticks read as numbers (math text would print as '$\\mathdefault{...}$' in plain-text mode)."""
    fig = figures.loss_distribution_figure(ds)
    ax = fig.axes[0]
    colours = {tuple(_rgb(line.get_color())) for line in ax.lines}
    assert len(colours) == ds.sizes["quantile"]
    rgb = [np.array(c) for c in colours] + [_rgb(figures.HISTOGRAM_COLOR)]
    gaps = [np.linalg.norm(a - b) for i, a in enumerate(rgb) for b in rgb[i + 1:]]
    assert min(gaps) > 0.3, gaps
    fig.canvas.draw()
    ticks = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert ticks and all(re.fullmatch(r"1e-?\d+", t) for t in ticks), ticks


def test_price_fans_have_one_panel_per_chip_with_every_scenario(ds):
    fig = fans.price_fan_figure(ds)
    assert [ax.get_title() for ax in fig.axes] == [str(c) for c in ds.chip.values]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert all(any(label.startswith(f"{s} median") for label in labels) for s in SCENARIOS)


def test_scenarios_with_the_same_curve_are_named(ds):
    both = with_copy_of_baseline(ds)
    assert style.same_as(both["default_rate"], figures.RATE_SAME_ATOL) == {"copy": "baseline"}
    moved = both.copy(deep=True)
    moved["default_rate"].loc[dict(scenario="copy")] += 2 * figures.RATE_SAME_ATOL
    assert style.same_as(moved["default_rate"], figures.RATE_SAME_ATOL) == {}
    top = figures.defaults_figure(both).subfigs[0]  # the default-rate panels and their legend
    labels = [t.get_text() for t in top.legends[0].get_texts()]
    assert "copy\n(same curve as baseline)" in labels and "baseline" in labels
    labels = [t.get_text() for t in fans.price_fan_figure(both).legends[0].get_texts()]
    assert "copy median (same curve as baseline)" in labels


def _bars(ax) -> list:
    return [p for p in ax.patches if p.get_width() > 0]


def test_loan_figure_shows_every_tenor(ds):
    fig = figures.loan_figure(ds)
    T, L = ds.sizes["tenor"], ds.sizes["loan"]
    el_ax = fig.axes[0]
    assert len(_bars(el_ax)) == T * L
    worst = figures.worst_scenario(ds) if figures.worst_scenario(ds) != "baseline" else None
    # the bars of each tenor hold that tenor's EL of the baseline, in USD m
    for t_i, t in enumerate(style.sorted_tenors(ds)):
        heights = sorted(b.get_height() for b in _bars(el_ax)[t_i * L:(t_i + 1) * L])
        assert np.allclose(heights, np.sort(ds.el.sel(scenario="baseline", tenor=t).values / 1e6))
    assert worst is None or worst in fig.axes[2].get_title()


def test_loan_figure_of_a_big_book_aggregates_the_other_loans(ds):
    """Beyond LOAN_BARS loans the figure keeps LOAN_BARS bars and one 'other loans' bar, so its
    cost does not grow with the book; the other bar's EL is the sum of the rest."""
    n = 4 * figures.LOAN_BARS
    big = many_loans(ds, n)
    fig = figures.loan_figure(big)
    T = big.sizes["tenor"]
    el_ax, pd_ax = fig.axes[0], fig.axes[1]
    assert len(_bars(el_ax)) == T * (figures.LOAN_BARS + 1)
    labels = [t.get_text() for t in pd_ax.get_xticklabels()]
    assert labels[-1] == f"other {n - figures.LOAN_BARS:,} loans"
    k = style.sorted_tenors(big)[-1]
    el = big.el.sel(scenario="baseline", tenor=k).values
    total = sum(b.get_height() for b in _bars(el_ax)[(T - 1) * (figures.LOAN_BARS + 1):])
    assert np.isclose(total, el.sum() / 1e6)
    assert len(figures.loan_figure(many_loans(ds, 2 * n)).axes[0].patches) == len(el_ax.patches)


def test_live_share_beside_the_fans(ds):
    """The share of principal still live: all of it before any default, (1 - principal-weighted PD)
    in the last month of a fixed tenor, and the defaulted share the rest; the figure says it."""
    k = 36
    live, defaulted = fans.live_share(ds, k)
    p = ds.principal
    for s in SCENARIOS:
        pd_share = float((p * ds.pd.sel(scenario=s, tenor=k)).sum() / p.sum())
        assert np.isclose(float(defaulted.sel(scenario=s, month=k)), pd_share)
        assert np.isclose(float(live.sel(scenario=s, month=k)), 1 - pd_share)
        assert float(live.sel(scenario=s, month=k + 1)) == 0  # every loan has matured
        first = float(ds.default_rate.sel(scenario=s, tenor=k).isel(month=0))
        assert float(live.sel(scenario=s).isel(month=0)) >= 1 - first / float(
            ds.default_rate.sel(scenario=s, tenor=k).isel(month=-1)) - 1e-12
    fig = fans.ltv_dscr_figure(ds, tenor=k)
    texts = [t.get_text() for ax in fig.axes[:2] for t in ax.texts]
    want = f"live loans only: {float(live.sel(scenario=SCENARIOS[0], month=k)) * 100:.0f}% of principal live at month {k}"
    assert want in texts, texts


def test_fans_draw_each_loan_groups_covenant_level(ds):
    """Horizontal lines at the tape's ltv_max and dscr_min levels (the three with most principal),
    not a generic LTV 100% line."""
    import csv

    with open(REPO / "conf" / "portfolio" / "example_loans.csv", newline="") as fh:
        tape = list(csv.DictReader(fh))
    assert np.allclose(ds.ltv_max.values, [float(r["ltv_max"]) for r in tape])
    fig = fans.ltv_dscr_figure(ds)
    ltv_ax, dscr_ax = fig.axes[0], fig.axes[1]

    def levels(ax):
        return {round(float(line.get_ydata()[0]), 6) for line in ax.lines
                if len(set(line.get_ydata())) == 1 and tuple(line.get_xdata()) == (0, 1)}

    want = fans.covenant_levels(ds, "ltv_max", fans.LTV_OFF)[:3]
    assert want and levels(ltv_ax) == {round(v * 100, 6) for v, _, _ in want}
    assert 100.0 not in levels(ltv_ax) or any(v == 1.0 for v, _, _ in want)
    assert levels(dscr_ax) == {round(v, 6) for v, _, _ in fans.covenant_levels(ds, "dscr_min", fans.DSCR_OFF)[:3]}
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "LTV covenant" in legend and "of principal" in legend


def test_figures_can_be_left_out(ds, tmp_path):
    paths = report_html.write_all(ds, tmp_path, figures=False)
    assert paths == [tmp_path / "report.html"] and not list(tmp_path.glob("fig_*.png"))
    html = paths[0].read_text(encoding="utf-8")
    assert "data:image/png" not in html and "not drawn" in html and '<table id="loans">' in html
    assert report_html.output_paths(tmp_path, figures=False) == paths


def test_stress_test_output_figures_false(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "stress.cli", "scenario=[baseline]", "tenors=[36]", "mc.paths=20",
                           "mc.fan_paths=5", f"output.dir={out}", "output.figures=false", f"hydra.run.dir={tmp_path}/h"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "results.nc").is_file() and (out / "report.html").is_file()
    assert not list(out.glob("fig_*.png"))
    assert "no figures: output.figures=false" in proc.stdout


# ----------------------------------------------------------------------------- committee pack (issue 14 item 6)

def test_loan_table_has_borrower_chip_and_principal(ds):
    html = report_html._loan_table(ds)
    for i, loan in enumerate(ds.loan.values):
        row = re.search(rf"<tr><td>{re.escape(str(loan))}</td>(.*?)</tr>", html).group(1)
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        assert cells[0] == str(ds.borrower.values[i]) and cells[1] == str(ds.loan_chip.values[i])
        assert cells[2] == f"{float(ds.principal.values[i]) / 1e6:,.1f}"


def test_run_table_names_the_tape_inside_its_config_folder(ds):
    """The bundled example tape reads 'portfolio/example_loans.csv (bundled ...)', wherever the
    package is installed, not a site-packages path; a tape of the user's is shown as given."""
    assert narrative.portfolio_label(ds) == "example: portfolio/example_loans.csv (bundled with the package)"
    installed = ds.copy()
    installed.attrs = {**ds.attrs, "portfolio": "/usr/lib/python3/site-packages/stress/conf/portfolio/x.csv"}
    assert narrative.portfolio_label(installed) == "example: portfolio/x.csv (bundled with the package)"
    html = report_html._meta_section(installed)
    assert "site-packages" not in html and "portfolio/x.csv (bundled with the package)" in html
    own = ds.copy()
    own.attrs = {**ds.attrs, "portfolio": "/data/book.csv"}
    assert narrative.portfolio_label(own) == "example: /data/book.csv"


def same(cell, value: float) -> bool:
    """The workbook's number is the dataset's: openpyxl writes 16 significant digits (Excel keeps 15)."""
    return isinstance(cell, (int, float)) and abs(cell - value) <= 1e-15 * abs(value)


def _sheet(wb, name) -> tuple[list[str], list[tuple]]:
    rows = list(wb[name].iter_rows(values_only=True))
    return list(rows[1]), rows[2:]  # row 1: what and units; row 2: headers


def test_xlsx_pack_holds_the_datasets_numbers(saved, ds, tmp_path, capsys):
    import openpyxl

    out = tmp_path / "pack"
    assert main([str(saved), "--out", str(out), "--xlsx", "--no-figures"]) == 0
    path = out / "committee_pack.xlsx"
    assert str(path) in capsys.readouterr().out.split()
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["summary", "loans", "offtakers", "scenarios", "run"]  # the example tape has offtakers
    for name in wb.sheetnames:
        note, head = wb[name]["A1"].value, [c.value for c in wb[name][2]]
        assert note and all(head)
    head, rows = _sheet(wb, "summary")
    assert "EL (USD)" in head and "VaR 99% (USD)" in head and "ES 99.9% standard error (USD)" in head
    assert len(rows) == ds.sizes["scenario"] * ds.sizes["tenor"]
    for r in rows:
        c = ds.sel(scenario=r[0], tenor=r[1])
        assert same(r[head.index("EL (USD)")], float(c.expected_loss))
        assert same(r[head.index("EL standard error (USD)")], float(c.expected_loss_se))
        assert same(r[head.index("VaR 99% (USD)")], float(c["var"].sel(quantile=0.99)))
        assert same(r[head.index("ES 95% (USD)")], float(c.es.sel(quantile=0.95)))
    head, rows = _sheet(wb, "loans")
    assert len(rows) == ds.sizes["scenario"] * ds.sizes["tenor"] * ds.sizes["loan"]
    col = {h: head.index(full) for h, full in (("PD by maturity", "PD by maturity (share)"), ("EL", "EL (USD)"),
                                                ("principal", "principal (USD)"), ("borrower", "borrower"),
                                                ("chip", "chip"), ("LGD", next(x for x in head if x.startswith("LGD"))))}
    for r in rows:
        c = ds.sel(scenario=r[0], tenor=r[1], loan=r[2])
        assert same(r[col["PD by maturity"]], float(c.pd)) and same(r[col["EL"]], float(c.el))
        lgd = float(c.lgd)
        assert r[col["LGD"]] is None if np.isnan(lgd) else same(r[col["LGD"]], lgd)
        assert same(r[col["principal"]], float(c.principal))
        assert (r[col["borrower"]], r[col["chip"]]) == (str(c.borrower.values), str(c.loan_chip.values))
    assert wb["loans"].cell(3, col["PD by maturity"] + 1).number_format == "0.00%"
    head, rows = _sheet(wb, "scenarios")
    assert {r[0] for r in rows} == set(SCENARIOS)
    assert any(r[0] == "ai_winter" and "phased in over 12 months" in r[2] for r in rows)
    head, rows = _sheet(wb, "run")
    meta = dict(rows)
    assert meta["seed"] == str(ds.attrs["seed"]) and meta["Monte Carlo paths"] == str(ds.attrs["paths"])


def test_xlsx_pack_is_never_overwritten_silently(saved, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "committee_pack.xlsx").write_bytes(b"mine")
    assert main([str(saved), "--out", str(out), "--xlsx", "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert "committee_pack.xlsx" in err and "--overwrite" in err
    assert (out / "committee_pack.xlsx").read_bytes() == b"mine" and not (out / "report.html").exists()
    assert main([str(saved), "--out", str(out), "--xlsx", "--no-figures", "--overwrite"]) == 0
    assert (out / "committee_pack.xlsx").read_bytes()[:2] == b"PK"


def test_xlsx_labels_stay_text(ds, tmp_path):
    """A loan id that looks like a formula is written as text, and control characters XML cannot
    hold do not break the file."""
    import openpyxl

    from stress.report import workbook

    odd = ds.assign_coords(loan=["=1+1", "a\x01b"] + [str(v) for v in ds.loan.values[2:]])
    wb = openpyxl.load_workbook(workbook.write_workbook(odd, tmp_path / "w.xlsx"))
    cells = [c for c in wb["loans"]["C"] if c.value in ("=1+1", "a\ufffdb")]
    assert {c.value for c in cells} == {"=1+1", "a\ufffdb"} and all(c.data_type == "s" for c in cells)


def test_fans_of_a_dataset_without_covenants_or_schedule(ds):
    """A dataset written before the covenant coordinates (or without a schedule) still draws: the
    generic LTV 100% / DSCR 1 lines, said so in the legend, and loans live up to the tenor."""
    old = ds.drop_vars(["ltv_max", "dscr_min", "scheduled_balance"])
    fig = fans.ltv_dscr_figure(old, tenor=36)
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "no covenant levels stored" in legend
    assert any(tuple(line.get_ydata()) == (100, 100) for line in fig.axes[0].lines)
    live, _ = fans.live_share(old, 36)
    assert (live.sel(month=slice(37, None)) == 0).all() and (live.sel(month=36) > 0).all()


# ----------------------------------------------------------------------------- drawing cost (issues 14, 16)

def test_stored_config_is_parsed_once_and_shared_read_only(ds):
    """Every figure, the narrative and the workbook read the stored config: it is parsed once per
    config text, and nobody may change the shared object."""
    from omegaconf.errors import ReadonlyConfigError

    cfg = fans.run_config(ds)
    assert cfg is fans.run_config(ds.copy()) and "launches" in cfg.market
    with pytest.raises(ReadonlyConfigError):
        cfg.market.valuation_date = "1999-01-01"
    damaged = ds.copy()
    damaged.attrs = {**ds.attrs, "config": "a: [unclosed"}
    assert fans.run_config(damaged) is None


@pytest.mark.skipif(sys.platform != "linux", reason="figure workers are forked on Linux only")
def test_figures_drawn_by_workers_are_the_serial_bytes(ds):
    """Two forked workers draw the same PNG bytes, in the same order, as drawing here one by one,
    and leave no process behind."""
    import multiprocessing

    if threading.active_count() > 1:
        pytest.skip("a thread left by another test is running: the figures are not forked then")
    assert figures._worker_count(2) == 2  # one thread here: the workers are used
    serial = figures.figure_pngs(ds, workers=1)
    forked = figures.figure_pngs(ds, workers=2)
    assert list(forked) == list(serial) == list(figures.FIGURES)
    assert all(forked[name] == serial[name] for name in serial)
    assert not multiprocessing.active_children()


@pytest.mark.skipif(sys.platform != "linux", reason="figure workers are forked on Linux only")
def test_workers_get_a_dataset_in_memory_and_a_failed_start_draws_here(saved, ds, monkeypatch):
    """A dataset still on disk is read before the workers fork (they must not share its open file);
    when no worker process can be started the figures are drawn here, the same bytes."""
    if threading.active_count() > 1:
        pytest.skip("a thread left by another test is running: the figures are not forked then")
    handed = []

    class NoProcesses:
        def Pool(self, n, initializer, initargs):
            handed.extend(initargs)
            raise OSError("no processes left")

    monkeypatch.setattr(figures.multiprocessing, "get_context", lambda *_: NoProcesses())
    with xr.open_dataset(saved) as lazy:
        assert not lazy["loss"].variable._in_memory
        drawn = figures.figure_pngs(lazy, workers=2)
        assert handed and all(v._in_memory for v in handed[0].variables.values())
    assert drawn == figures.figure_pngs(ds, workers=1)


def test_figures_are_drawn_here_while_another_thread_runs(ds, monkeypatch):
    """Forking a process with other threads can deadlock the child: then no worker is started."""
    import threading

    monkeypatch.setattr(threading, "active_count", lambda: 2)
    assert figures._worker_count(2) == 1
    monkeypatch.setattr(figures.multiprocessing, "get_context", lambda *_: pytest.fail("a worker was started"))
    assert list(figures.figure_pngs(ds, workers=2)) == list(figures.FIGURES)
