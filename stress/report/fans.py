"""Fan charts: spot rental prices by chip, and LTV and DSCR of the live loans beside the share
of principal still live, with each loan group's covenant levels."""

from __future__ import annotations

import functools
import math

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..config.schema import is_tape  # tenor coordinate 'tape': each loan's own tenor_months
from .style import (baseline_scenario, default_tenor, fixed_grid, new_figure, panel_grid, pct_label, plain_text,
                    same_as, scenario_colors, scenario_styles, tenor_label)

PRICE_SAME_ATOL = 0.005  # USD per GPU-hour: medians closer than this everywhere are called the same


def run_config(ds: xr.Dataset):
    """The resolved config stored in ``attrs['config']`` as a read-only OmegaConf object, or None;
    parsed once per config text (every figure, the narrative and the workbook read it)."""
    text = ds.attrs.get("config")
    return _parsed_config(str(text)) if text else None


@functools.lru_cache(maxsize=4)
def _parsed_config(text: str):
    try:
        from omegaconf import OmegaConf

        cfg = OmegaConf.create(text)
        OmegaConf.set_readonly(cfg, True)  # shared by every caller: none may change it
    except Exception:  # noqa: BLE001 - a foreign or damaged attribute just means "no config"
        return None
    return cfg


def _shocked_scalar(shocks, target: str, base: float) -> float:
    """A scalar target after the scenario's shocks, applied in full (as stress.config.scenario)."""
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


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9, color="0.4")


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
    fig = new_figure(width, 2.6 * nrows + 0.2 * legend_rows + 1.1,
                      margins=(0.65, 0.15, 0.55, 0.6 + 0.2 * legend_rows, 0.6, 0.5))
    axes = panel_grid(fig, len(chips), 3, sharex=True)
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
    fig = new_figure(14.0, 2.1 * S + 1.2 + 0.2 * legend_rows,
                      margins=(0.6, 0.3, 0.5, 0.65 + 0.2 * legend_rows, 0.6, 0.4))
    axes = fixed_grid(fig, S, 3, sharex=True, gridspec_kw={"width_ratios": [1, 1, 0.55]})
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
