"""What every figure shares: labels, scenario colours and line styles, panel grids, drawn with
matplotlib's object API on the Agg canvas.

Every ``*_figure(ds)`` function takes the Dataset and returns a ``matplotlib.figure.Figure``; no
pyplot state is touched, so figures never leak between calls or threads. ``write_figures`` saves
them all as PNG files. All text is drawn as plain text (no math text, no TeX), since labels come from
user data (loan ids, borrowers, scenario names) and a ``$`` must not be parsed. Monetary values are shown in USD m, rates in % (of the portfolio principal
where stated), prices in USD per GPU-hour and time in months after the valuation date.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np
import xarray as xr
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..config.schema import is_tape  # tenor coordinate 'tape': each loan's own tenor_months

DPI = 120
PLAIN_TEXT = {"text.parse_math": False, "text.usetex": False}  # user labels are text, never math or TeX
# Titles sit at the top of their axes (no axis is labelled on top, and no tick offset text is drawn
# that a title would have to clear), so matplotlib need not measure every axis again to place them.
FIXED_TITLES = {"axes.titley": 1.0, "axes.formatter.useoffset": False}


def plain_text(make: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build the figure with PLAIN_TEXT and FIXED_TITLES in force: each Text and Axes keeps these
    settings when drawn later."""
    @functools.wraps(make)
    def build(*args, **kwargs) -> Figure:
        with rc_context({**PLAIN_TEXT, **FIXED_TITLES}):
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


def baseline_scenario(ds: xr.Dataset) -> str:
    names = [str(s) for s in ds.scenario.values]
    return "baseline" if "baseline" in names else names[0]


def default_tenor(ds: xr.Dataset) -> int:
    """The tenor used by single-tenor figures: the loan tape's own tenors when run, else the middle
    one (the lower of the two middle ones), where neither run-off nor the end of the chips' useful
    life dominates as it does at the longest tenor."""
    tenors = sorted_tenors(ds)
    return next((k for k in tenors if is_tape(k)), tenors[(len(tenors) - 1) // 2])


def sorted_tenors(ds: xr.Dataset) -> list:
    """Tenors from shortest to longest (months as int; the tape tenors, 'tape', first)."""
    return sorted((str(t) if is_tape(t) else int(t) for t in ds.tenor.values), key=lambda t: -1 if is_tape(t) else t)


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


def new_figure(width: float, height: float, margins: tuple[float, ...] | None = None) -> Figure:
    """A figure of ``width`` x ``height`` inches with constrained layout, or, given ``margins``
    (left, right, top, bottom, wspace, hspace in inches), a fixed grid layout: a regular grid of
    many panels with known labels costs a third less to draw without the layout solver."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout=None if margins else "constrained")
    FigureCanvasAgg(fig)
    if margins:
        left, right, top, bottom, wspace, hspace = margins
        fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height)
        fig._fixed_gaps = (wspace, hspace)  # applied by fixed_grid once the grid's shape is known
    return fig


def fixed_grid(fig: Figure, nrows: int, ncols: int, **kw):
    """fig.subplots(nrows, ncols) with the inch gaps given to new_figure (as fractions of a panel)."""
    wspace, hspace = fig._fixed_gaps
    sp = fig.subplotpars
    w = (sp.right - sp.left) * fig.get_figwidth()
    h = (sp.top - sp.bottom) * fig.get_figheight()
    panel_w = (w - wspace * (ncols - 1)) / ncols
    panel_h = (h - hspace * (nrows - 1)) / nrows
    kw.setdefault("gridspec_kw", {})
    kw["gridspec_kw"].update(wspace=wspace / panel_w, hspace=hspace / panel_h)
    return fig.subplots(nrows, ncols, squeeze=False, **kw)


def panel_grid(fig: Figure, n: int, max_cols: int, **kw):
    """n axes in a grid of at most max_cols columns; unused cells removed. Returns a flat list."""
    ncols = max(1, min(n, max_cols))
    nrows = math.ceil(n / ncols)
    make = fixed_grid if hasattr(fig, "_fixed_gaps") else functools.partial(fig.subplots, squeeze=False)
    axes = np.atleast_1d(make(fig, nrows, ncols, **kw) if make is fixed_grid else make(nrows, ncols, **kw)).ravel()
    for ax in axes[n:]:
        fig.delaxes(ax)
    return list(axes[:n])
