"""The report's figures: loss distribution, risk heatmap, default timing and causes, per-loan
risk; the registry of every figure (fans included) and how they are written as PNG files."""

from __future__ import annotations

import io
import math
import multiprocessing
import os
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from ..config.schema import is_tape  # tenor coordinate 'tape': each loan's own tenor_months
from ..engine import lock
from ..results import metrics
from .fans import ltv_dscr_figure, price_fan_figure
from .style import (DPI, PLAIN_TEXT, baseline_scenario, default_tenor, fixed_grid, new_figure, panel_grid, pct_label,
                    plain_text, same_as, scenario_colors, scenario_styles, sorted_tenors, tenor_label)

CAUSE_COLORS = {"payment": "#d62728", "covenant": "#ff7f0e", "refinancing": "#9467bd", "exogenous": "#7f7f7f"}
# VaR/ES levels in hues far apart (Okabe-Ito blue, vermillion, black, reddish purple) over grey histograms
QUANTILE_COLORS = ("#0072b2", "#d55e00", "#000000", "#cc79a7")
HISTOGRAM_COLOR = "#9a9a9a"
RATE_SAME_ATOL = 0.005  # 0.5 percentage points of principal: default-rate curves called the same


def reference_quantile(ds: xr.Dataset, target: float = 0.99) -> float:
    """The VaR/ES quantile nearest to ``target`` (0.99 unless the run used other levels)."""
    return float(ds["quantile"].sel(quantile=target, method="nearest"))


def portfolio_principal(ds: xr.Dataset) -> float:
    """Total portfolio principal in USD: a ``principal`` variable when present, else recovered
    from ``loss / loss_rate``; NaN when no path lost anything (percentages are then 0)."""
    if "principal" in ds:
        return float(ds["principal"].sum())
    loss = np.asarray(ds["loss"].values, dtype=float).ravel()
    rate = np.asarray(ds["loss_rate"].values, dtype=float).ravel()
    ok = (rate > 0) & np.isfinite(loss) & np.isfinite(rate)
    if not ok.any():
        return math.nan
    return float(np.median(loss[ok] / rate[ok]))


def as_share(values, principal: float) -> np.ndarray:
    """USD -> share of principal (0 where the value is 0 and the principal is unknown)."""
    v = np.asarray(values, dtype=float)
    if math.isfinite(principal) and principal > 0:
        return v / principal
    return np.where(v == 0, 0.0, np.nan)


def worst_scenario(ds: xr.Dataset) -> str:
    """The scenario with the highest expected loss, averaged over tenors."""
    el = ds["expected_loss"].mean("tenor")
    return str(ds.scenario.values[int(np.nanargmax(el.values))]) if np.isfinite(el.values).any() \
        else str(ds.scenario.values[0])


def _legend_cols(fig: Figure, n: int, per_col_in: float = 1.7) -> int:
    """Legend columns that fit the figure width (about per_col_in inches per entry)."""
    return max(1, min(n, int(fig.get_figwidth() // per_col_in)))


def _power_of_ten(v: float, _pos=None) -> str:
    """A log-axis tick as plain text ('1e-3'); matplotlib's default is math text, which PLAIN_TEXT
    would print as its source."""
    return f"1e{round(math.log10(v))}" if v > 0 else ""


def _plain_log_y(ax) -> None:
    """Log y axis with a few decade ticks in plain text and no minor ticks (each minor tick costs
    layout time and most would be unlabelled)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=5))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(_power_of_ten))


# ----------------------------------------------------------------------------- (a) loss distribution

def loss_tail_tenors(ds: xr.Dataset) -> list[int]:
    """Tenors shown in the loss-distribution figure: all up to four, else the shortest and longest."""
    tenors = sorted_tenors(ds)
    return tenors if len(tenors) <= 4 else [tenors[0], tenors[-1]]


@plain_text
def loss_distribution_figure(ds: xr.Dataset, bins: int = 50) -> Figure:
    """Log-density histograms of the portfolio loss, one row per scenario and one column per tenor,
    with VaR (dashed) and ES (solid) at each quantile."""
    scenarios = [str(s) for s in ds.scenario.values]
    tenors = loss_tail_tenors(ds)
    qs = [float(q) for q in ds["quantile"].values]
    qcol = {q: QUANTILE_COLORS[i % len(QUANTILE_COLORS)] for i, q in enumerate(qs)}
    principal = portfolio_principal(ds)
    n_paths = ds.sizes["path"]
    S, T = len(scenarios), len(tenors)
    fig = new_figure(max(6.0, 3.6 * T + 0.8), 1.9 * S + 1.5, margins=(0.75, 0.15, 0.55, 0.95, 0.6, 0.42))
    axes = fixed_grid(fig, S, T, sharex="col")
    for j, k in enumerate(tenors):
        col = ds["loss"].sel(tenor=k).values / 1e6
        top = float(np.nanmax(col)) if np.isfinite(col).any() else 0.0
        edges = np.linspace(0.0, top * 1.0001 if top > 0 else 1.0, bins + 1)
        floor = 0.5 / (n_paths * (edges[1] - edges[0]))  # half of one path's density
        for i, s in enumerate(scenarios):
            ax = axes[i, j]
            cell = ds.sel(scenario=s, tenor=k)
            x = cell["loss"].values / 1e6
            w = cell["weight"].values if "weight" in cell else None  # importance sampling: weighted density
            finite = np.isfinite(x)
            x, w = x[finite], (None if w is None else w[finite])
            dens, _ = np.histogram(x, bins=edges, weights=w, density=True) if x.size else (np.zeros(bins), None)
            ax.stairs(np.where(dens > 0, dens, floor * 1e-3), edges, fill=True, color=HISTOGRAM_COLOR, alpha=0.45)
            _plain_log_y(ax)
            ax.set_ylim(bottom=floor)
            for q in qs:
                ax.axvline(float(cell["var"].sel(quantile=q)) / 1e6, color=qcol[q], ls="--", lw=1.2)
                ax.axvline(float(cell["es"].sel(quantile=q)) / 1e6, color=qcol[q], ls="-", lw=1.2)
            el = float(cell["expected_loss"])
            el_pct = float(as_share(el, principal)) * 100
            right = float(np.nanmedian(x)) < 0.5 * edges[-1] if x.size else True
            ax.text(0.98 if right else 0.02, 0.95, f"EL {el / 1e6:,.0f} USD m ({el_pct:.1f}% of principal)",
                    transform=ax.transAxes, ha="right" if right else "left", va="top", fontsize=8, bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none",
                                                                 alpha=0.8))
            ax.set_title(f"{s} · {tenor_label(k)}", fontsize=9)
            ax.tick_params(labelsize=8)
            if j == 0:
                ax.set_ylabel("density (1/USD m)", fontsize=8)
            if i == S - 1:
                ax.set_xlabel("portfolio loss (USD m)")
    handles = []
    for q in qs:
        handles.append(Line2D([], [], color=qcol[q], ls="--", label=f"VaR {pct_label(q)}"))
        handles.append(Line2D([], [], color=qcol[q], ls="-", label=f"ES {pct_label(q)}"))
    ncols = len(handles) if _legend_cols(fig, len(handles), 1.2) >= len(handles) else len(qs)
    fig.legend(handles=handles, loc="lower center", ncols=ncols, fontsize=8)
    fig.suptitle(f"Portfolio loss distribution ({n_paths:,} paths; log density)", y=1 - 0.12 / fig.get_figheight(),
                 va="top")
    return fig


# ----------------------------------------------------------------------------- (b) heatmaps

@plain_text
def risk_heatmap_figure(ds: xr.Dataset) -> Figure:
    """EL and VaR (99% or nearest) as % of portfolio principal, scenario x tenor, annotated."""
    scenarios = [str(s) for s in ds.scenario.values]
    tenors = sorted_tenors(ds)
    q = reference_quantile(ds)
    principal = portfolio_principal(ds)
    el = as_share(ds["expected_loss"].sel(tenor=tenors).values, principal) * 100
    el_se = as_share(ds["expected_loss_se"].sel(tenor=tenors).values, principal) * 100
    var = as_share(ds["var"].sel(tenor=tenors, quantile=q).values, principal) * 100
    var_se = as_share(ds["var_se"].sel(tenor=tenors, quantile=q).values, principal) * 100
    S, T = len(scenarios), len(tenors)
    fig = new_figure(max(7.0, 2 * (1.1 * T + 2.2)), 0.5 * S + 1.8)
    axes = fig.subplots(1, 2, squeeze=False)[0]
    for ax, data, se, title, cmap in ((axes[0], el, el_se, "Expected loss", "Oranges"),
                                      (axes[1], var, var_se, f"VaR {pct_label(q)}", "Reds")):
        vmax = float(np.nanmax(data)) if np.isfinite(data).any() and np.nanmax(data) > 0 else 1.0
        ax.imshow(np.nan_to_num(data, nan=0.0), cmap=cmap, vmin=0, vmax=vmax, aspect="auto")
        for i in range(S):
            for j in range(T):
                v, e = data[i, j], se[i, j]
                text = "n/a" if not np.isfinite(v) else (f"{v:.1f}%" + ("*" if metrics.noisy(v, e) else "")
                                                         + (f"\n± {metrics.se_text(e)}" if np.isfinite(e) else ""))
                dark = np.isfinite(v) and v > 0.6 * vmax
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
        ax.set_xticks(range(T), [tenor_label(k) for k in tenors], fontsize=8)
        ax.set_yticks(range(S), scenarios, fontsize=8)
        ax.set_xlabel("loan tenor")
        ax.set_title(f"{title} (% of portfolio principal)", fontsize=10)
    axes[1].tick_params(labelleft=False)
    noisy = metrics.noisy(el, el_se).any() or metrics.noisy(var, var_se).any()
    fig.suptitle("Loss by scenario and tenor (± 1 Monte Carlo standard error, percentage points)"
                 + (f"\n* noisy: standard error above {metrics.NOISY_SHARE:.0%} of the figure; more paths "
                    "needed (SE shrinks as 1/sqrt(paths))" if noisy else ""), fontsize=11)
    return fig


# ----------------------------------------------------------------------------- (e) defaults

@plain_text
def defaults_figure(ds: xr.Dataset) -> Figure:
    """Cumulative default rate by month (one panel per tenor), then default-cause shares as stacked
    bars per scenario and tenor."""
    scenarios = [str(s) for s in ds.scenario.values]
    tenors = sorted_tenors(ds)
    colors = scenario_colors(ds)
    styles = scenario_styles(ds)
    causes = [str(c) for c in ds.cause.values]
    months = ds.month.values
    S, T = len(scenarios), len(tenors)
    ncols = min(T, 4)
    nrows = math.ceil(T / ncols)
    fig = new_figure(max(9.0, 3.4 * ncols), 3.0 * nrows + 3.6)
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.0 * nrows, 3.6])
    axes = panel_grid(top, T, 4, sharey=True)
    rates = ds["default_rate"].values * 100
    rate_top = max(float(np.nanmax(rates)) * 1.05, 1.0) if np.isfinite(rates).any() else 1.0
    for ax, k in zip(axes, tenors):
        end = int(months[-1]) if is_tape(k) else min(int(k), int(months[-1]))
        for s in scenarios:
            ax.plot(months, ds["default_rate"].sel(scenario=s, tenor=k).values * 100, color=colors[s], lw=1.6,
                    ls=styles[s], label=s)
        ax.set_xlim(0, end)
        ax.set_ylim(0, rate_top)
        ax.set_title(tenor_label(k), fontsize=10)
        ax.set_xlabel("months after the valuation date", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0].set_ylabel("cumulative defaulted\nexposure (% of principal)", fontsize=8)
    same = same_as(ds["default_rate"], RATE_SAME_ATOL)
    top.legend(handles=[Line2D([], [], color=colors[s], ls=styles[s], lw=2,
                               label=s + (f"\n(same curve as {same[s]})" if s in same else "")) for s in scenarios],
               loc="outside right upper", fontsize=8, title_fontsize=7,
               title=f"same curve: within {RATE_SAME_ATOL * 100:g} pp\nat every month and tenor,\ndrawn on top"
               if same else None)
    top.suptitle("Cumulative default rate", fontsize=11)

    ax = bottom.subplots()
    gap = 0.8
    x, labels, centers = [], [], []
    pos = 0.0
    for s in scenarios:
        start = pos
        for k in tenors:
            x.append(pos)
            labels.append(tenor_label(k, short=True))
            pos += 1.0
        centers.append((start + pos - 1) / 2)
        pos += gap
    share = ds["default_share"].sel(scenario=scenarios, tenor=tenors).transpose("scenario", "tenor", "cause")
    vals = share.values.reshape(S * T, len(causes)) * 100
    base = np.zeros(S * T)
    for c_i, c in enumerate(causes):
        h = np.nan_to_num(vals[:, c_i])
        ax.bar(x, h, bottom=base, width=0.85, color=CAUSE_COLORS.get(c, None), label=c)
        base += h
    for xi, row in zip(x, vals):
        if not np.isfinite(row).any():
            ax.text(xi, 2, "no\ndefaults", ha="center", va="bottom", fontsize=6, color="0.4")
    ax.set_xticks(x, labels, fontsize=7, rotation=90 if S * T > 24 else 0)
    for c, s in zip(centers, scenarios):
        ax.text(c, -0.22 if S * T > 24 else -0.14, s, transform=ax.get_xaxis_transform(), ha="center", va="top",
                fontsize=8,
                rotation=20 if S > 4 else 0)
    ax.set_ylim(0, 100)
    ax.set_xlim(-0.7, pos - gap - 0.3)
    ax.set_ylabel("share of defaults (%)", fontsize=8)
    ax.tick_params(labelsize=8)
    bottom.legend(handles=[Patch(color=CAUSE_COLORS.get(c), label=c) for c in causes], loc="outside right upper",
                  fontsize=8, title="cause", title_fontsize=8)
    ax.set_title("Default causes by scenario and tenor (share of defaulted loans)", fontsize=11)
    return fig


# ----------------------------------------------------------------------------- (f) per loan

LOAN_BARS = 30  # loans drawn one by one in the per-loan figure; the rest share one "other loans" bar


def loan_groups(ds: xr.Dataset, scenario: str, tenor: int, top: int = LOAN_BARS) -> tuple[list[str], list[np.ndarray]]:
    """(labels, loan indices) of the bars of the per-loan figure: the ``top`` loans by EL in
    ``scenario`` at ``tenor``, one bar each, and all others together in one last bar."""
    el = np.nan_to_num(ds["el"].sel(scenario=scenario, tenor=tenor).values, nan=-np.inf)
    order = np.argsort(-el, kind="stable")
    if len(order) <= top + 1:
        return [str(ds.loan.values[i]) for i in order], [np.array([i]) for i in order]
    rest = order[top:]
    return ([str(ds.loan.values[i]) for i in order[:top]] + [f"other {len(rest):,} loans"],
            [np.array([i]) for i in order[:top]] + [rest])


@plain_text
def loan_figure(ds: xr.Dataset, tenor: int | None = None) -> Figure:
    """Per-loan EL (USD m) and PD (%) at every tenor (one bar per tenor, darker = longer) for the
    baseline and the worst scenario; the LOAN_BARS loans with the highest EL at the default tenor,
    the others summed (EL) or principal-weighted (PD) in one bar."""
    from matplotlib.colors import to_rgb

    k = default_tenor(ds) if tenor is None else tenor
    tenors = sorted_tenors(ds)
    shown = [baseline_scenario(ds)]
    worst = worst_scenario(ds)
    if worst not in shown:
        shown.append(worst)
    colors = scenario_colors(ds)
    p = ds["principal"].values if "principal" in ds else np.ones(ds.sizes["loan"])
    n_bars = min(ds.sizes["loan"], LOAN_BARS + 1)
    T = len(tenors)
    fig = new_figure(max(7.0, min(0.11 * n_bars * (T + 1) + 1.5, 14.0)), 3.6 * len(shown) + 0.6)
    axes = fig.subplots(2 * len(shown), 1, squeeze=False)[:, 0].reshape(len(shown), 2).T  # EL, PD rows per scenario
    width = 0.8 / T
    for j, s in enumerate(shown):
        labels, groups = loan_groups(ds, s, k)
        x = np.arange(len(groups))
        a_el, a_pd = axes[0, j], axes[1, j]
        base = np.array(to_rgb(colors[s]))
        for t_i, t in enumerate(tenors):
            f = 0.4 + 0.6 * t_i / max(T - 1, 1)  # the longest tenor in the scenario's colour, shorter ones paler
            shade = tuple(base * f + (1 - f))
            el = ds["el"].sel(scenario=s, tenor=t).values
            pd = ds["pd"].sel(scenario=s, tenor=t).values
            el_g = np.array([np.nansum(el[g]) for g in groups]) / 1e6
            pd_g = np.array([np.sum(pd[g] * p[g]) / np.sum(p[g]) for g in groups]) * 100
            off = (t_i - (T - 1) / 2) * width
            a_el.bar(x + off, el_g, width=width, color=shade, label=tenor_label(t))
            a_pd.bar(x + off, pd_g, width=width, color=shade, alpha=0.8)
        role = "baseline" if j == 0 and s == baseline_scenario(ds) else "worst scenario" if s == worst else ""
        a_el.set_title(f"{s}{f' ({role})' if role and role != s else ''} · expected loss at every tenor", fontsize=10)
        a_pd.set_title(f"{s} · probability of default by maturity", fontsize=10)
        a_el.set_ylabel("expected loss (USD m)", fontsize=9)
        a_pd.set_ylabel("probability of default (%)", fontsize=9)
        a_pd.set_ylim(0, 100)
        a_el.set_xticks(x, [])  # the PD panel below names the loans, in the same order
        a_pd.set_xticks(x, labels, rotation=90, fontsize=8 if len(groups) <= 20 else 7)
        for ax in (a_el, a_pd):
            ax.set_xlim(-0.6, len(groups) - 0.4)
            ax.grid(axis="y", alpha=0.3)
            ax.tick_params(axis="y", labelsize=8)
        a_el.legend(title="tenor", fontsize=7, title_fontsize=7, loc="upper right")
        a_pd.set_xlabel(f"loan (sorted by expected loss at {tenor_label(k)})", fontsize=9)
    others = ds.sizes["loan"] > LOAN_BARS + 1
    fig.suptitle("Expected loss and default probability by loan" + (
        f" (the {LOAN_BARS} largest by EL; the other loans: EL summed, PD principal-weighted)" if others else ""),
        fontsize=11)
    return fig


# ----------------------------------------------------------------------------- output

FIGURES: dict[str, tuple[Callable[[xr.Dataset], Figure], str]] = {
    "loss_distribution": (loss_distribution_figure, "Portfolio loss distribution with VaR and ES"),
    "risk_heatmap": (risk_heatmap_figure, "Expected loss and VaR by scenario and tenor"),
    "price_fans": (price_fan_figure, "Chip rental price fans"),
    "ltv_dscr_fans": (ltv_dscr_figure, "Portfolio LTV and DSCR fans"),
    "defaults": (defaults_figure, "Default rate and default causes"),
    "loans": (loan_figure, "Per-loan expected loss and default probability"),
}


def figure_filename(name: str) -> str:
    return f"fig_{name}.png"


def render_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    with rc_context(PLAIN_TEXT):  # tick labels made while drawing are plain text too
        fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def figure_pngs(ds: xr.Dataset, workers: int | None = None) -> dict[str, bytes]:
    """Every figure rendered to PNG bytes, keyed by name (see FIGURES), drawn by ``workers``
    processes at once (default: one per usable core, at most one per figure). The workers are
    forked from this process (they share ``ds``, read into memory first, without copying it), so
    they are used only on Linux with no other Python thread running; otherwise, with one core, with
    ``workers=1`` or when no process can be started, the figures are drawn here one after another.
    Either way each figure is drawn by the same code, and the bytes are the same."""
    n = _worker_count(workers)
    if n > 1:
        try:
            ready = ds.copy(deep=False).load()  # in memory first: the workers must not share an open file
            pool = multiprocessing.get_context("fork").Pool(n, initializer=_start_worker, initargs=(ready,))
        except OSError:  # out of processes or memory: draw them here
            pass
        else:
            try:
                pngs = dict(zip(FIGURES, pool.map(_named_png, FIGURES, chunksize=1)))  # each to the next free worker
                pool.close()
            except BaseException:
                pool.terminate()
                raise
            finally:
                pool.join()
            return pngs
    return {name: render_png(make(ds)) for name, (make, _) in FIGURES.items()}


def _worker_count(asked: int | None) -> int:
    if asked is None:
        asked = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if sys.platform != "linux" or threading.active_count() > 1:  # fork is safe only in a one-thread process
        return 1
    return max(1, min(asked, len(FIGURES)))


_worker_ds: xr.Dataset | None = None  # set in each figure worker only (inherited by fork, never pickled)


def _start_worker(ds: xr.Dataset) -> None:
    """A figure worker: Ctrl-C is the parent's to handle (it stops the workers), SIGTERM just ends it."""
    global _worker_ds
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _worker_ds = ds


def _named_png(name: str) -> bytes:
    return render_png(FIGURES[name][0](_worker_ds))


def write_figures(ds: xr.Dataset, out_dir, pngs: dict[str, bytes] | None = None) -> list[Path]:
    """Write every figure as ``out_dir/fig_<name>.png`` (each atomically); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs = figure_pngs(ds) if pngs is None else pngs
    paths = []
    for name, data in pngs.items():
        path = out / figure_filename(name)
        write_atomic(path, data)
        paths.append(path)
    return paths


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a unique temporary name next to ``path`` (permissions from the umask), then rename."""
    tmp = path.with_name(f"{lock.partial_prefix()}{uuid.uuid4().hex[:12]}-{path.name}")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
