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
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from . import lock, metrics
from .config import is_tape  # tenor coordinate 'tape': each loan's own tenor_months

DPI = 120
CAUSE_COLORS = {"payment": "#d62728", "covenant": "#ff7f0e", "refinancing": "#9467bd", "exogenous": "#7f7f7f"}
# VaR/ES levels in hues far apart (Okabe-Ito blue, vermillion, black, reddish purple) over grey histograms
QUANTILE_COLORS = ("#0072b2", "#d55e00", "#000000", "#cc79a7")
HISTOGRAM_COLOR = "#9a9a9a"
PRICE_SAME_ATOL = 0.005  # USD per GPU-hour: medians closer than this everywhere are called the same
RATE_SAME_ATOL = 0.005  # 0.5 percentage points of principal: default-rate curves called the same
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


def same_as(values: xr.DataArray, atol: float) -> dict[str, str]:
    """scenario -> the first earlier scenario whose curve it matches within ``atol`` everywhere
    (NaN matching NaN), so that a figure can say which curves lie on top of one another."""
    names = [str(s) for s in values.scenario.values]
    v = values.transpose("scenario", ...).values
    out = {}
    for i, s in enumerate(names):
        for j in range(i):
            a, b = v[i], v[j]
            both = np.isfinite(a) & np.isfinite(b)
            if np.array_equal(np.isfinite(a), np.isfinite(b)) and np.all(np.abs(a[both] - b[both]) <= atol):
                out[s] = out.get(names[j], names[j])
                break
    return out


def scenario_colors(ds: xr.Dataset) -> dict[str, tuple]:
    from matplotlib import colormaps

    names = [str(s) for s in ds.scenario.values]
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {s: cmap(i % cmap.N) for i, s in enumerate(names)}


def _new_figure(width: float, height: float, margins: tuple[float, ...] | None = None) -> Figure:
    """A figure of ``width`` x ``height`` inches with constrained layout, or, given ``margins``
    (left, right, top, bottom, wspace, hspace in inches), a fixed grid layout: a regular grid of
    many panels with known labels costs a third less to draw without the layout solver."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout=None if margins else "constrained")
    FigureCanvasAgg(fig)
    if margins:
        left, right, top, bottom, wspace, hspace = margins
        fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height)
        fig._fixed_gaps = (wspace, hspace)  # applied by _fixed_grid once the grid's shape is known
    return fig


def _fixed_grid(fig: Figure, nrows: int, ncols: int, **kw):
    """fig.subplots(nrows, ncols) with the inch gaps given to _new_figure (as fractions of a panel)."""
    wspace, hspace = fig._fixed_gaps
    sp = fig.subplotpars
    w = (sp.right - sp.left) * fig.get_figwidth()
    h = (sp.top - sp.bottom) * fig.get_figheight()
    panel_w = (w - wspace * (ncols - 1)) / ncols
    panel_h = (h - hspace * (nrows - 1)) / nrows
    kw.setdefault("gridspec_kw", {})
    kw["gridspec_kw"].update(wspace=wspace / panel_w, hspace=hspace / panel_h)
    return fig.subplots(nrows, ncols, squeeze=False, **kw)


def _legend_cols(fig: Figure, n: int, per_col_in: float = 1.7) -> int:
    """Legend columns that fit the figure width (about per_col_in inches per entry)."""
    return max(1, min(n, int(fig.get_figwidth() // per_col_in)))


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9, color="0.4")


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


def _grid(fig: Figure, n: int, max_cols: int, **kw):
    """n axes in a grid of at most max_cols columns; unused cells removed. Returns a flat list."""
    ncols = max(1, min(n, max_cols))
    nrows = math.ceil(n / ncols)
    make = _fixed_grid if hasattr(fig, "_fixed_gaps") else functools.partial(fig.subplots, squeeze=False)
    axes = np.atleast_1d(make(fig, nrows, ncols, **kw) if make is _fixed_grid else make(nrows, ncols, **kw)).ravel()
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
    qs = [float(q) for q in ds["quantile"].values]
    qcol = {q: QUANTILE_COLORS[i % len(QUANTILE_COLORS)] for i, q in enumerate(qs)}
    principal = portfolio_principal(ds)
    n_paths = ds.sizes["path"]
    S, T = len(scenarios), len(tenors)
    fig = _new_figure(max(6.0, 3.6 * T + 0.8), 1.9 * S + 1.5, margins=(0.75, 0.15, 0.55, 0.95, 0.6, 0.42))
    axes = _fixed_grid(fig, S, T, sharex="col")
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
    """Spot rental price of each chip family, one panel per chip: the baseline's quantile bands and
    every scenario's median, with the baseline's generation launches (dotted) and, where a scenario
    moves a launch, a marker in its colour at the top."""
    scenarios = [str(s) for s in ds.scenario.values]
    chips = [str(c) for c in ds.chip.values]
    base = baseline_scenario(ds)
    colors, styles = scenario_colors(ds), scenario_styles(ds)
    months = ds.month.values
    ncols = min(len(chips), 3)
    nrows = math.ceil(len(chips) / ncols)
    legend_rows = math.ceil((len(scenarios) + 4) / 3)
    width = max(7.0, 4.4 * ncols + 0.4)
    fig = _new_figure(width, 2.6 * nrows + 0.2 * legend_rows + 1.1,
                      margins=(0.65, 0.15, 0.55, 0.6 + 0.2 * legend_rows, 0.6, 0.5))
    axes = _grid(fig, len(chips), 3, sharex=True)
    has_fan = bool(np.isfinite(ds["price_fan"].values).any())
    base_launches = launch_months(ds, base)
    moved = {s: [(n, m) for (n, m, _), (_, m0, _) in zip(launch_months(ds, s), base_launches) if abs(m - m0) > 1e-9]
             for s in scenarios if s != base}
    pairs, median = [], None
    for ax, c in zip(axes, chips):
        fan = ds["price_fan"].sel(chip=c)
        pairs, median = _draw_fan(ax, months, fan.sel(scenario=base), colors[base], label=base)
        for s in scenarios:
            if s != base and median is not None:
                ax.plot(months, fan.sel(scenario=s, fan_quantile=median).values, color=colors[s], ls=styles[s], lw=1.4)
        top = float(np.nanmax(fan.values)) * 1.08 if has_fan else 1.0
        for name, m, jitter in base_launches:
            if not (months[0] - 1 <= m <= months[-1]):
                continue
            if jitter > 0:
                ax.axvspan(m - jitter, m + jitter, color="0.5", alpha=0.08, lw=0)
            ax.axvline(m, color="0.3", ls=":", lw=1)
            near_end = m > months[-1] - 0.04 * len(months)
            ax.text(m + (-0.6 if near_end else 0.6), top * 0.99, name, rotation=90, fontsize=7, va="top",
                    ha="right" if near_end else "left", color="0.25")
        for s, launches in moved.items():
            ms = [m for _, m in launches if months[0] - 1 <= m <= months[-1]]
            if ms:
                ax.plot(ms, [top] * len(ms), ls="none", marker="v", ms=6, color=colors[s], clip_on=False)
        if not has_fan:
            _no_data(ax, "no fan paths in this run (mc.fan_paths = 0)")
        ax.set_title(c, fontsize=10)
        ax.set_ylim(0, top)
        ax.set_xlim(0, months[-1])
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for i, ax in enumerate(axes):
        if i % ncols == 0:
            ax.set_ylabel("spot price (USD per GPU-hour)", fontsize=9)
        if i + ncols >= len(axes):  # nothing below: show the month axis
            ax.set_xlabel(_month_label(ds), fontsize=9)
            ax.tick_params(labelbottom=True)
    same = same_as(ds["price_fan"].sel(fan_quantile=median), PRICE_SAME_ATOL) if median is not None else {}
    handles = [Line2D([], [], color=colors[s], ls=styles[s], lw=2,
                      label=f"{s} median" + (f" (same curve as {same[s]})" if s in same else "")) for s in scenarios]
    handles += _band_legend_handles(pairs, median, color=colors[base])[1:]  # the bands (the median is above)
    handles.append(Line2D([], [], color="0.3", ls=":", label="generation launch, baseline (shaded: ± jitter)"))
    if any(moved.values()):
        handles.append(Line2D([], [], color="0.3", ls="none", marker="v", label="launch moved by the scenario"))
    fig.legend(handles=handles, loc="lower center", ncols=3, fontsize=8, frameon=False)
    fig.suptitle(f"Chip rental price: {base} quantile bands across simulated paths, median of every scenario",
                 fontsize=11, y=1 - 0.1 / fig.get_figheight(), va="top")
    return fig


# ----------------------------------------------------------------------------- (d) LTV / DSCR fans

def live_share(ds: xr.Dataset, tenor: int) -> tuple[xr.DataArray, xr.DataArray]:
    """(live, defaulted): shares of the portfolio principal, by scenario and month, in loans still
    live (neither matured nor defaulted) and in loans defaulted so far, at ``tenor``. Each loan's
    PD by maturity is spread over the months like the portfolio's cumulative default rate
    (exact at the start and at maturity); a loan matures in the month after which its scheduled
    balance is zero (at the tenor when the dataset has no schedule)."""
    months = ds.month.values
    rate = ds["default_rate"].sel(tenor=tenor)
    final = rate.isel(month=-1)
    timing = xr.where(final > 0, rate / final.where(final > 0), 0.0)  # share of the eventual defaults by month
    p = ds["principal"] if "principal" in ds else xr.ones_like(ds["pd"].isel(scenario=0, tenor=0))
    if "scheduled_balance" in ds:  # live in month m: balance after month m-1 is positive
        bal = ds["scheduled_balance"].sel(tenor=tenor).transpose("loan", "month").values
        before = np.concatenate([np.ones((bal.shape[0], 1)), bal[:, :-1]], axis=1)
        alive = xr.DataArray(before > 0, dims=("loan", "month"), coords={"month": months})
    else:
        end = months[-1] if is_tape(tenor) or tenor == 0 else tenor
        alive = xr.DataArray(np.broadcast_to(months <= end, (ds.sizes["loan"], len(months))), dims=("loan", "month"),
                             coords={"month": months})
    pd = ds["pd"].sel(tenor=tenor)
    total = float(p.sum())
    defaulted = (p * pd).sum("loan") * timing / total
    live = (p * alive * (1 - pd * timing)).sum("loan") / total
    return live.transpose("scenario", "month"), defaulted.transpose("scenario", "month")


def covenant_levels(ds: xr.Dataset, name: str, off: float) -> list[tuple[float, int, float]]:
    """(level, loans, share of principal) of each distinct covenant level in the loan coordinate
    ``name`` (ltv_max, dscr_min), largest principal first; levels at or beyond ``off`` switch the
    covenant off and are left out. Empty when the dataset has no such coordinate."""
    if name not in ds.coords:
        return []
    level = np.round(np.asarray(ds[name].values, dtype=float), 6)
    p = ds["principal"].values if "principal" in ds else np.ones(level.shape)
    out = [(float(v), int((level == v).sum()), float(p[level == v].sum() / p.sum()))
           for v in np.unique(level[np.isfinite(level) & (level < off)])]
    return sorted(out, key=lambda t: -t[2])


COVENANT_STYLES = (("k", (0, (4, 2))), ("0.3", (0, (1, 1.5))), ("0.5", (0, (6, 2, 1, 2))))  # the largest three groups
LTV_OFF, DSCR_OFF = 10.0, 100.0  # covenant levels at or above these are 'switched off' (the tape allows up to 1e6)


def _covenant_lines(axes, ds: xr.Dataset, name: str, off: float, scale: float, label, short) -> list:
    """Draw each covenant level (the three with most principal) on every axis; returns legend handles."""
    levels = covenant_levels(ds, name, off)
    handles = []
    for (level, n, share), (color, dash) in zip(levels, COVENANT_STYLES):
        for ax in axes:
            ax.axhline(level * scale, color=color, ls=dash, lw=1.0)
        handles.append(Line2D([], [], color=color, ls=dash, lw=1.0,
                              label=f"{label(level)}: {n} loan{'s' if n != 1 else ''}, {share:.0%} of principal"))
    rest = sorted(v for v, _, _ in levels[len(COVENANT_STYLES):])
    if rest:
        span = short(rest[0]) if len(rest) == 1 else f"{short(rest[0])} to {short(rest[-1])}"
        handles.append(Line2D([], [], color="none", label=f"  not drawn: {len(rest)} smaller groups at {span}"))
    return handles


@plain_text
def ltv_dscr_figure(ds: xr.Dataset, tenor: int | None = None) -> Figure:
    """Principal-weighted portfolio LTV and DSCR fans of the live loans, one row per scenario, for one
    tenor, with each loan group's covenant level; beside them the share of principal still live
    (the fans speak for that share only) and in default."""
    k = default_tenor(ds) if tenor is None else tenor
    scenarios = [str(s) for s in ds.scenario.values]
    colors = scenario_colors(ds)
    months = ds.month.values
    S = len(scenarios)
    ltv = ds["ltv_fan"].sel(tenor=k) * 100
    dscr = ds["dscr_fan"].sel(tenor=k)
    live, defaulted = live_share(ds, k)
    live_any = np.isfinite(ltv.values).any(axis=tuple(i for i in range(ltv.ndim) if ltv.dims[i] != "month"))
    last = int(months[live_any][-1]) if live_any.any() else int(months[-1])
    # y ranges: the outer bands, cut so that one extreme path does not flatten the rest
    ltv_top = float(np.nanmax(ltv.values)) if np.isfinite(ltv.values).any() else 100.0
    dvals = dscr.values[np.isfinite(dscr.values)]
    dscr_top = float(min(np.max(dvals), 3 * np.percentile(dvals, 75))) if dvals.size else 3.0
    bands, med = _fan_bands(ltv)
    n_cov = sum(min(len(covenant_levels(ds, n, off)), len(COVENANT_STYLES) + 1) for n, off in
                (("ltv_max", LTV_OFF), ("dscr_min", DSCR_OFF)))
    legend_rows = math.ceil((len(bands) + (med is not None) + max(n_cov, 1) + 2) / 3)
    fig = _new_figure(14.0, 2.1 * S + 1.2 + 0.2 * legend_rows,
                      margins=(0.6, 0.3, 0.5, 0.65 + 0.2 * legend_rows, 0.6, 0.4))
    axes = _fixed_grid(fig, S, 3, sharex=True, gridspec_kw={"width_ratios": [1, 1, 0.55]})
    pairs, median = [], None
    for i, s in enumerate(scenarios):
        a_ltv, a_dscr, a_live = axes[i]
        pairs, median = _draw_fan(a_ltv, months, ltv.sel(scenario=s), colors[s])
        _draw_fan(a_dscr, months, dscr.sel(scenario=s), colors[s])
        if not np.isfinite(ltv.sel(scenario=s).values).any():
            for ax in (a_ltv, a_dscr):
                _no_data(ax, "no fan paths in this run (mc.fan_paths = 0)")
        lv, dv = live.sel(scenario=s).values * 100, defaulted.sel(scenario=s).values * 100
        a_live.fill_between(months, 0, lv, color=colors[s], alpha=0.3, lw=0)
        a_live.plot(months, lv, color=colors[s], lw=1.6)
        a_live.plot(months, dv, color="k", lw=1.2, ls="--")
        a_live.set_ylim(0, 105)
        a_live.set_ylabel("% of principal", fontsize=8)
        at = int(np.searchsorted(months, last))
        end_share = float(lv[min(at, len(lv) - 1)])
        note = f"live loans only: {end_share:.0f}% of principal live at month {last}"
        for ax in (a_ltv, a_dscr):
            ax.text(0.99, 0.96, note, transform=ax.transAxes, ha="right", va="top", fontsize=7,
                    color="#b2182b" if end_share < 50 else "0.3",
                    bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.8))
        a_ltv.set_ylim(0, max(ltv_top * 1.05, 105))
        a_dscr.set_ylim(0, max(dscr_top * 1.05, 1.2))
        for ax, what in ((a_ltv, "LTV"), (a_dscr, "DSCR"), (a_live, "live / defaulted")):
            ax.set_title(f"{s} · {what}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
            ax.set_xlim(0, last)
        a_ltv.set_ylabel("LTV (%)", fontsize=8)
        a_dscr.set_ylabel("DSCR (×)", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel(_month_label(ds) if ax is not axes[-1][2] else "months", fontsize=9)
    handles = _band_legend_handles(pairs, median)
    covenants = _covenant_lines(axes[:, 0], ds, "ltv_max", LTV_OFF, 100, lambda v: f"LTV covenant {v:.0%}",
                                lambda v: f"{v:.0%}")
    covenants += _covenant_lines(axes[:, 1], ds, "dscr_min", DSCR_OFF, 1, lambda v: f"DSCR cash-sweep trigger {v:.2f}×",
                                 lambda v: f"{v:.2f}×")
    if not covenants:  # a dataset from before the covenant coordinates: the generic levels
        for a_ltv, a_dscr, _ in axes:
            a_ltv.axhline(100, color="k", ls="--", lw=0.8)
            a_dscr.axhline(1.0, color="k", ls="--", lw=0.8)
        covenants = [Line2D([], [], color="k", ls="--", lw=0.8, label="LTV 100% / DSCR 1.0 (no covenant levels stored)")]
    handles += covenants
    handles += [Patch(color="0.6", alpha=0.5, label="principal in live loans (%)"),
                Line2D([], [], color="k", ls="--", lw=1.2, label="principal in defaulted loans (%)")]
    fig.legend(handles=handles, loc="lower center", ncols=3, fontsize=8, frameon=False)
    fig.suptitle(f"Portfolio LTV and DSCR of live loans (principal-weighted), tenor {tenor_label(k)}; "
                 "gaps: all loans matured or defaulted", fontsize=11, y=1 - 0.1 / fig.get_figheight(), va="top")
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
    fig = _new_figure(max(7.0, min(0.11 * n_bars * (T + 1) + 1.5, 14.0)), 3.6 * len(shown) + 0.6)
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
