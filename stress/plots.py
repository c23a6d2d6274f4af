"""Figures of a results Dataset, drawn with matplotlib's object API on the Agg canvas.

Every ``*_figure(ds)`` function takes the Dataset and returns a ``matplotlib.figure.Figure``; no
pyplot state is touched, so figures never leak between calls or threads. ``write_figures`` saves
them all as PNG files. All text is drawn as plain text (no math text, no TeX), since labels come from
user data (loan ids, borrowers, scenario names) and a ``$`` must not be parsed. Monetary values are shown in USD m, rates in % (of the portfolio principal
where stated), prices in USD per GPU-hour and time in months after the valuation date.
"""

from __future__ import annotations

import io
import math
import os
import functools
import uuid
from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from . import lock, metrics
from .config import is_tape  # tenor coordinate 'tape': each loan's own tenor_months

DPI = 120
CAUSE_COLORS = {"payment": "#d62728", "covenant": "#ff7f0e", "refinancing": "#9467bd", "exogenous": "#7f7f7f"}
QUANTILE_COLORS = ("#e69f00", "#d55e00", "#7a0019", "#3b0008")
PLAIN_TEXT = {"text.parse_math": False, "text.usetex": False}  # user labels are text, never math or TeX


def plain_text(make: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build the figure with PLAIN_TEXT in force: each Text keeps these settings when drawn later."""
    @functools.wraps(make)
    def build(*args, **kwargs) -> Figure:
        with rc_context(PLAIN_TEXT):
            return make(*args, **kwargs)
    return build


# ----------------------------------------------------------------------------- helpers shared with report.py

def tenor_label(tenor, short: bool = False) -> str:
    if is_tape(tenor) or int(tenor) == 0:  # 0: the tape tenor in datasets written before tenors=tape
        return "tape" if short else "tape tenors"
    return f"{int(tenor)}m" if short else f"{int(tenor)} months"


def pct_label(q: float) -> str:
    """0.99 -> '99%', 0.999 -> '99.9%'."""
    return f"{float(q) * 100:.10g}%"


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


def baseline_scenario(ds: xr.Dataset) -> str:
    names = [str(s) for s in ds.scenario.values]
    return "baseline" if "baseline" in names else names[0]


def worst_scenario(ds: xr.Dataset) -> str:
    """The scenario with the highest expected loss, averaged over tenors."""
    el = ds["expected_loss"].mean("tenor")
    return str(ds.scenario.values[int(np.nanargmax(el.values))]) if np.isfinite(el.values).any() \
        else str(ds.scenario.values[0])


def default_tenor(ds: xr.Dataset) -> int:
    """The tenor used by single-tenor figures: the loan tape's own tenors when run, else the middle
    one (the lower of the two middle ones), where neither run-off nor the end of the chips' useful
    life dominates as it does at the longest tenor."""
    tenors = sorted_tenors(ds)
    return next((k for k in tenors if is_tape(k)), tenors[(len(tenors) - 1) // 2])


def sorted_tenors(ds: xr.Dataset) -> list:
    """Tenors from shortest to longest (months as int; the tape tenors, 'tape', first)."""
    return sorted((str(t) if is_tape(t) else int(t) for t in ds.tenor.values), key=lambda t: -1 if is_tape(t) else t)


def run_config(ds: xr.Dataset):
    """The resolved config stored in ``attrs['config']`` as an OmegaConf object, or None."""
    text = ds.attrs.get("config")
    if not text:
        return None
    try:
        from omegaconf import OmegaConf

        cfg = OmegaConf.create(str(text))
    except Exception:  # noqa: BLE001 - a foreign or damaged attribute just means "no config"
        return None
    return cfg


def _shocked_scalar(shocks, target: str, base: float) -> float:
    """A scalar target after the scenario's shocks, applied in full (as stress.scenario)."""
    x = float(base)
    for s in shocks or ():
        if s.get("target") != target:
            continue
        v = float(s.get("value"))
        kind = s.get("kind", "mul")
        x = x + v if kind == "add" else x * v if kind == "mul" else v
    return x


def launch_months(ds: xr.Dataset, scenario: str) -> list[tuple[str, float, float]]:
    """(name, month, jitter) of each generation launch under ``scenario`` (shocks applied)."""
    cfg = run_config(ds)
    if cfg is None:
        return []
    try:
        launches = list(cfg.market.launches)
        sc = cfg.scenario.get(scenario) if "scenario" in cfg else None
        shocks = list(sc.shocks) if sc is not None and "shocks" in sc else []
        out = []
        for launch in launches:
            name = str(launch.name)
            month = _shocked_scalar(shocks, f"launch.{name}.month", float(launch.month))
            out.append((name, month, float(launch.get("jitter_months", 0.0) or 0.0)))
        return out
    except Exception:  # noqa: BLE001
        return []


def scenario_styles(ds: xr.Dataset) -> dict[str, str]:
    """Line styles cycling by scenario, so that scenarios with identical results stay visible."""
    return {str(s): ("-", "--", ":", "-.")[i % 4] for i, s in enumerate(ds.scenario.values)}


def scenario_colors(ds: xr.Dataset) -> dict[str, tuple]:
    from matplotlib import colormaps

    names = [str(s) for s in ds.scenario.values]
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {s: cmap(i % cmap.N) for i, s in enumerate(names)}


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _legend_cols(fig: Figure, n: int, per_col_in: float = 1.7) -> int:
    """Legend columns that fit the figure width (about per_col_in inches per entry)."""
    return max(1, min(n, int(fig.get_figwidth() // per_col_in)))


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9, color="0.4")


def _grid(fig: Figure, n: int, max_cols: int, **kw):
    """n axes in a grid of at most max_cols columns; unused cells removed. Returns a flat list."""
    ncols = max(1, min(n, max_cols))
    nrows = math.ceil(n / ncols)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False, **kw)).ravel()
    for ax in axes[n:]:
        fig.delaxes(ax)
    return list(axes[:n])


def _fan_bands(ds_fan: xr.DataArray) -> tuple[list[tuple[float, float]], float | None]:
    """Symmetric quantile pairs (outermost first) and the median, from the fan_quantile coord."""
    qs = sorted(float(q) for q in ds_fan.fan_quantile.values)
    med = min(qs, key=lambda q: abs(q - 0.5))
    median = med if abs(med - 0.5) < 1e-9 else None
    rest = [q for q in qs if q != median]
    pairs = [(rest[i], rest[-1 - i]) for i in range(len(rest) // 2)]
    return pairs, median


def _draw_fan(ax, months, fan: xr.DataArray, color, scale: float = 1.0, label: str | None = None,
              outer_lines: bool = False):
    """Bands (outer lighter) and median of a (month, fan_quantile) array; NaN months are gaps.
    ``outer_lines``: draw the outer bands as thin lines instead of fills (for overlaid fans)."""
    pairs, median = _fan_bands(fan)
    alphas = np.linspace(0.12, 0.30, max(len(pairs), 1))
    for n, ((lo, hi), a) in enumerate(zip(pairs, alphas)):
        y0 = fan.sel(fan_quantile=lo).values * scale
        y1 = fan.sel(fan_quantile=hi).values * scale
        if outer_lines and n < len(pairs) - 1:
            for y in (y0, y1):
                ax.plot(months, y, color=color, lw=0.7, ls=(0, (2, 2)), alpha=0.8)
            continue
        ok = np.isfinite(y0) & np.isfinite(y1)
        ax.fill_between(months, y0, y1, where=ok, color=color, alpha=float(a), linewidth=0, interpolate=False)
    if median is not None:
        ax.plot(months, fan.sel(fan_quantile=median).values * scale, color=color, lw=1.6, label=label)
    return pairs, median


def _band_legend_handles(pairs, median, color="0.35", outer_lines: bool = False) -> list:
    alphas = np.linspace(0.12, 0.30, max(len(pairs), 1))
    handles = []
    if median is not None:
        handles.append(Line2D([], [], color=color, lw=1.6, label="median"))
    for n, ((lo, hi), a) in enumerate(zip(pairs, alphas)):
        label = f"{pct_label(lo)}–{pct_label(hi)}"
        if outer_lines and n < len(pairs) - 1:
            handles.append(Line2D([], [], color=color, lw=0.7, ls=(0, (2, 2)), label=label))
        else:
            handles.append(Patch(color=color, alpha=float(a) + 0.1, label=label))
    return handles


def _valuation_date(ds: xr.Dataset) -> str:
    cfg = run_config(ds)
    try:
        return str(cfg.market.valuation_date) if cfg is not None else ""
    except Exception:  # noqa: BLE001
        return ""


def _month_label(ds: xr.Dataset) -> str:
    date = _valuation_date(ds)
    return f"months after the valuation date ({date})" if date and date != "?" else "months after the valuation date"


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
    colors = scenario_colors(ds)
    qs = [float(q) for q in ds["quantile"].values]
    qcol = {q: QUANTILE_COLORS[min(i, len(QUANTILE_COLORS) - 1)] for i, q in enumerate(qs)}
    principal = portfolio_principal(ds)
    n_paths = ds.sizes["path"]
    S, T = len(scenarios), len(tenors)
    fig = _new_figure(max(6.0, 3.6 * T + 0.8), 1.9 * S + 1.5)
    axes = fig.subplots(S, T, squeeze=False, sharex="col")
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
            ax.stairs(np.where(dens > 0, dens, floor * 1e-3), edges, fill=True, color=colors[s], alpha=0.35)
            ax.stairs(np.where(dens > 0, dens, floor * 1e-3), edges, color=colors[s], lw=1.0)
            ax.set_yscale("log")
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
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols, fontsize=8)
    fig.suptitle(f"Portfolio loss distribution ({n_paths:,} paths; log density)")
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
    fig = _new_figure(max(7.0, 2 * (1.1 * T + 2.2)), 0.5 * S + 1.8)
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


# ----------------------------------------------------------------------------- (c) price fans

@plain_text
def price_fan_figure(ds: xr.Dataset) -> Figure:
    """Spot rental price fans of every chip family, one panel per scenario, with launch months."""
    scenarios = [str(s) for s in ds.scenario.values]
    chips = [str(c) for c in ds.chip.values]
    months = ds.month.values
    from matplotlib import colormaps

    cmap = colormaps["Dark2" if len(chips) <= 8 else "tab20"]
    ccol = {c: cmap(i % cmap.N) for i, c in enumerate(chips)}
    ncols = min(len(scenarios), 3)
    nrows = math.ceil(len(scenarios) / ncols)
    fig = _new_figure(max(7.0, 4.6 * ncols + 0.4), 3.3 * nrows + 1.2)
    axes = _grid(fig, len(scenarios), 3, sharex=True, sharey=True)
    pairs, median = [], None
    has_fan = bool(np.isfinite(ds["price_fan"].values).any())
    top = float(np.nanmax(ds["price_fan"].values)) if has_fan else 1.0
    for ax, s in zip(axes, scenarios):
        for c in chips:
            pairs, median = _draw_fan(ax, months, ds["price_fan"].sel(scenario=s, chip=c), ccol[c], label=c,
                                      outer_lines=True)
        for name, m, jitter in launch_months(ds, s):
            if not (months[0] - 1 <= m <= months[-1]):
                continue
            if jitter > 0:
                ax.axvspan(m - jitter, m + jitter, color="0.5", alpha=0.08, lw=0)
            ax.axvline(m, color="0.3", ls=":", lw=1)
            near_end = m > months[-1] - 0.04 * len(months)
            ax.text(m + (-0.6 if near_end else 0.6), top * 1.02, name, rotation=90, fontsize=7, va="top",
                    ha="right" if near_end else "left", color="0.25")
        if not has_fan:
            _no_data(ax, "no fan paths in this run (mc.fan_paths = 0)")
        ax.set_title(s, fontsize=10)
        ax.set_ylim(0, top * 1.05)
        ax.set_xlim(0, months[-1])
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for i, ax in enumerate(axes):
        if i % ncols == 0:
            ax.set_ylabel("spot price (USD per GPU-hour)", fontsize=9)
        if i + ncols >= len(axes):  # nothing below: show the month axis
            ax.set_xlabel(_month_label(ds), fontsize=9)
            ax.tick_params(labelbottom=True)
    handles = [Line2D([], [], color=ccol[c], lw=2, label=c) for c in chips]
    handles += _band_legend_handles(pairs, median, outer_lines=True)
    handles.append(Line2D([], [], color="0.3", ls=":", label="generation launch (shaded: ± jitter)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=_legend_cols(fig, len(handles), 1.9), fontsize=8)
    fig.suptitle("Chip rental price fans (quantiles across simulated paths)", fontsize=11)
    return fig


# ----------------------------------------------------------------------------- (d) LTV / DSCR fans

@plain_text
def ltv_dscr_figure(ds: xr.Dataset, tenor: int | None = None) -> Figure:
    """Principal-weighted portfolio LTV and DSCR fans, one row per scenario, for one tenor."""
    k = default_tenor(ds) if tenor is None else tenor
    scenarios = [str(s) for s in ds.scenario.values]
    colors = scenario_colors(ds)
    months = ds.month.values
    S = len(scenarios)
    ltv = ds["ltv_fan"].sel(tenor=k) * 100
    dscr = ds["dscr_fan"].sel(tenor=k)
    live = np.isfinite(ltv.values).any(axis=tuple(i for i in range(ltv.ndim) if ltv.dims[i] != "month"))
    last = int(months[live][-1]) if live.any() else int(months[-1])
    # y ranges: the outer bands, cut so that one extreme path does not flatten the rest
    ltv_top = float(np.nanmax(ltv.values)) if np.isfinite(ltv.values).any() else 100.0
    dvals = dscr.values[np.isfinite(dscr.values)]
    dscr_top = float(min(np.max(dvals), 3 * np.percentile(dvals, 75))) if dvals.size else 3.0
    fig = _new_figure(11.0, 2.1 * S + 1.4)
    axes = fig.subplots(S, 2, squeeze=False, sharex=True)
    pairs, median = [], None
    for i, s in enumerate(scenarios):
        a_ltv, a_dscr = axes[i]
        pairs, median = _draw_fan(a_ltv, months, ltv.sel(scenario=s), colors[s])
        _draw_fan(a_dscr, months, dscr.sel(scenario=s), colors[s])
        if not np.isfinite(ltv.sel(scenario=s).values).any():
            for ax in (a_ltv, a_dscr):
                _no_data(ax, "no fan paths in this run (mc.fan_paths = 0)")
        a_ltv.axhline(100, color="k", ls="--", lw=0.8)
        a_dscr.axhline(1.0, color="k", ls="--", lw=0.8)
        a_ltv.set_ylim(0, max(ltv_top * 1.05, 105))
        a_dscr.set_ylim(0, max(dscr_top * 1.05, 1.2))
        for ax, what in ((a_ltv, "LTV"), (a_dscr, "DSCR")):
            ax.set_title(f"{s} · {what}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
            ax.set_xlim(0, last)
        a_ltv.set_ylabel("LTV (%)", fontsize=8)
        a_dscr.set_ylabel("DSCR (×)", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel(_month_label(ds), fontsize=9)
    handles = _band_legend_handles(pairs, median)
    handles += [Line2D([], [], color="k", ls="--", lw=0.8, label="LTV 100% / DSCR 1.0")]
    fig.legend(handles=handles, loc="outside lower center", ncols=_legend_cols(fig, len(handles), 2.0), fontsize=8)
    fig.suptitle(f"Portfolio LTV and DSCR of live loans (principal-weighted), tenor {tenor_label(k)}; "
                 "gaps: all loans matured or defaulted", fontsize=11)
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
    fig = _new_figure(max(9.0, 3.4 * ncols), 3.0 * nrows + 3.6)
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.0 * nrows, 3.6])
    axes = _grid(top, T, 4, sharey=True)
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
    top.legend(handles=[Line2D([], [], color=colors[s], ls=styles[s], lw=2, label=s) for s in scenarios],
               loc="outside right upper", fontsize=8)
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

@plain_text
def loan_figure(ds: xr.Dataset, tenor: int | None = None) -> Figure:
    """Per-loan EL (USD m) and PD (%) for the baseline and the worst scenario, loans sorted by EL."""
    k = default_tenor(ds) if tenor is None else tenor
    shown = [baseline_scenario(ds)]
    worst = worst_scenario(ds)
    if worst not in shown:
        shown.append(worst)
    colors = scenario_colors(ds)
    L = ds.sizes["loan"]
    fig = _new_figure(max(7.0, min(0.22 * L + 1.0, 14.0) * len(shown) + 0.6), 6.4)
    axes = fig.subplots(2, len(shown), squeeze=False)
    for j, s in enumerate(shown):
        el = ds["el"].sel(scenario=s, tenor=k)
        order = np.argsort(-np.nan_to_num(el.values, nan=-np.inf), kind="stable")
        loans = [str(v) for v in ds.loan.values[order]]
        x = np.arange(L)
        a_el, a_pd = axes[0, j], axes[1, j]
        a_el.bar(x, el.values[order] / 1e6, color=colors[s])
        a_pd.bar(x, ds["pd"].sel(scenario=s, tenor=k).values[order] * 100, color=colors[s], alpha=0.7)
        role = "baseline" if j == 0 and s == baseline_scenario(ds) else "worst scenario" if s == worst else ""
        a_el.set_title(f"{s}{f' ({role})' if role and role != s else ''} · {tenor_label(k)}", fontsize=10)
        a_el.set_ylabel("expected loss (USD m)", fontsize=9)
        a_pd.set_ylabel("probability of default (%)", fontsize=9)
        a_pd.set_ylim(0, 100)
        fs = 8 if L <= 30 else 6 if L <= 60 else 4
        for ax in (a_el, a_pd):
            ax.set_xticks(x, loans, rotation=90, fontsize=fs)
            ax.set_xlim(-0.6, L - 0.4)
            ax.grid(axis="y", alpha=0.3)
            ax.tick_params(axis="y", labelsize=8)
        a_pd.set_xlabel("loan (sorted by expected loss)", fontsize=9)
    fig.suptitle("Expected loss and default probability by loan", fontsize=11)
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


def figure_pngs(ds: xr.Dataset) -> dict[str, bytes]:
    """Every figure rendered to PNG bytes, keyed by name (see FIGURES)."""
    return {name: render_png(make(ds)) for name, (make, _) in FIGURES.items()}


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
