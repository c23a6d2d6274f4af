"""For each direction (price drop ``price.all mul 1 - x``; the first launch ``x`` months earlier;
utilisation drop ``utilization mul 1 - x``; base-rate rise ``base_rate add x``) and target
(portfolio EL / principal > ``el_limit``; VaR_q / principal > ``var_limit``; the largest loan
PD > ``pd_limit``), per tenor, the smallest x that breaches the limit: a grid of ``grid`` steps
per direction in one run, then bisection rounds (all open brackets in one run each).
``reverse_stress_lo/_hi`` is the final bracket on these paths (x_lo does not breach, x_hi
does); ``reverse_stress_se`` the Monte Carlo uncertainty by the delta method, the standard
error of the metric at the grid point above the crossing divided by the metric's slope over
the grid bracket. 0 = already breached without a shock; NaN = not breached within the range.
``breaching_loan``: for the pd target, the loan whose PD crosses first; with ``pd_new_breach``
only loans at or below ``pd_limit`` without the shock count (a book that already holds a broken
loan still gets an answer for the others).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..config.schema import ShockConfig
from .context import TARGETS, Context, log, make_shock, run_batch

DIRECTION_UNITS = {
    "price": "fraction of every chip's spot price (price.all mul 1 - x)",
    "launch": "months earlier (launch.<first>.month add -x)",
    "utilization": "fraction of utilisation (utilization mul 1 - x)",
    "rate": "base-rate rise, decimal per year (base_rate add x)",
}


# ------------------------------------------------------------------------------------ reverse stress

def _direction_shock(ctx: Context, direction: str, x: float) -> list[ShockConfig]:
    r = ctx.cfg.analyses.reverse
    if x == 0:
        return []
    if direction == "price":
        return [make_shock("price.all", "mul", 1.0 - x, r.ramp_months)]
    if direction == "utilization":
        return [make_shock("utilization", "mul", 1.0 - x, r.ramp_months)]
    if direction == "rate":
        return [make_shock("base_rate", "add", x, r.ramp_months)]
    first = min(ctx.cfg.market.launches, key=lambda launch: launch.month)
    return [make_shock(f"launch.{first.name}.month", "add", -x)]


def _reverse_metrics(ctx: Context, ds: xr.Dataset, eligible: np.ndarray | None):
    """Metrics (target, S, K), their standard errors, and the loan with the largest PD (S, K) among
    the ``eligible`` ones (K, L; None = all) from a run."""
    r = ctx.cfg.analyses.reverse
    total = float(ds.principal.sum())
    n = ds.sizes["path"]
    q = ds["quantile"].values[np.argmin(np.abs(ds["quantile"].values - r.var_quantile))]
    pd = ds.pd.values  # (S, K, L)
    if eligible is not None:
        pd = np.where(eligible[None], pd, -1.0)
    worst_loan = pd.argmax(axis=-1)
    worst = np.maximum(pd.max(axis=-1), 0.0)
    m = np.stack([ds.expected_loss.values / total, ds["var"].sel(quantile=q).values / total, worst])
    se = np.stack([ds.expected_loss_se.values / total, ds.var_se.sel(quantile=q).values / total,
                   np.sqrt(np.clip(worst, 0.0, 1.0) * (1.0 - np.clip(worst, 0.0, 1.0)) / n)])
    return m, se, worst_loan


def reverse(ctx: Context) -> xr.Dataset:
    r = ctx.cfg.analyses.reverse
    directions = [d for d in r.directions if d != "launch" or ctx.cfg.market.launches]
    skipped = [d for d in r.directions if d not in directions]
    top = {"price": r.price_max, "launch": r.launch_max, "utilization": r.utilization_max, "rate": r.rate_max}
    limits = np.array([r.el_limit, r.var_limit, r.pd_limit])
    D, G = len(directions), r.grid
    steps = np.array([np.linspace(0.0, top[d], G + 1) for d in directions])  # (D, G + 1)

    state = {}  # tenors, loans and (with pd_new_breach) the loans eligible for the pd target

    def evaluate(points: list[tuple[int, float]]):
        scen = {f"d{d}_{j:03d}": ctx.base_shocks + _direction_shock(ctx, directions[d], x)
                for j, (d, x) in enumerate(points)}
        ds = run_batch(ctx, scen)
        if not state:  # the grid run; its first scenario is the base
            state.update(tenors=ds.tenor.values, loans=ds.loan.values,
                         eligible=ds.pd.values[0] <= r.pd_limit if r.pd_new_breach else None)
        return _reverse_metrics(ctx, ds, state["eligible"])

    points = [(0, 0.0)] + [(d, steps[d, g]) for d in range(D) for g in range(1, G + 1)]
    m, se, wl = evaluate(points)  # (T, 1 + D G, K), wl (1 + D G, K)
    T3, _, K = m.shape
    curve = np.empty((D, T3, K, G + 1))
    curve_se = np.empty_like(curve)
    curve[:, :, :, 0], curve_se[:, :, :, 0] = m[None, :, 0], se[None, :, 0]
    curve[:, :, :, 1:] = m[:, 1:].reshape(T3, D, G, K).transpose(1, 0, 3, 2)
    curve_se[:, :, :, 1:] = se[:, 1:].reshape(T3, D, G, K).transpose(1, 0, 3, 2)
    worst_grid = np.empty((D, K, G + 1), dtype=int)
    worst_grid[:, :, 0] = wl[None, 0]
    worst_grid[:, :, 1:] = wl[1:].reshape(D, G, K).transpose(0, 2, 1)

    breach = curve > limits[None, :, None, None]  # (D, T, K, G + 1)
    hit = breach.any(-1)
    first = np.argmax(breach, axis=-1)  # first breaching grid index
    x_grid = np.broadcast_to(steps[:, None, None, :], breach.shape)
    hi = np.where(hit, np.take_along_axis(x_grid, first[..., None], -1)[..., 0], np.nan)
    top_arr = np.broadcast_to(steps[:, -1, None, None], hit.shape)
    lo = np.where(hit, np.take_along_axis(x_grid, np.maximum(first - 1, 0)[..., None], -1)[..., 0], top_arr)
    lo = np.where(hit & (first == 0), 0.0, lo)
    # delta method on the grid bracket: se(x) = se(metric at the breaching point) / slope
    m_hi = np.take_along_axis(curve, first[..., None], -1)[..., 0]
    s_hi = np.take_along_axis(curve_se, first[..., None], -1)[..., 0]
    m_lo = np.take_along_axis(curve, np.maximum(first - 1, 0)[..., None], -1)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (m_hi - m_lo) / (hi - lo)
        x_se = np.where(hit & (first > 0) & (slope > 0), s_hi / slope, np.nan)
    x_se = np.where(hit & (first == 0), 0.0, x_se)
    pd_t = TARGETS.index("pd")
    loan_hi = np.take_along_axis(worst_grid, first[:, pd_t, :, None], -1)[..., 0]  # (D, K) largest PD at hi

    span = steps[:, -1][:, None, None]
    for rnd in range(r.max_rounds):
        width = hi - lo
        open_ = hit & (first > 0) & (width > r.rel_tol * span) & ~(width < 0.25 * np.nan_to_num(x_se, nan=0.0))
        if not open_.any():
            break
        mid = 0.5 * (lo + hi)
        todo = sorted({(int(d), float(mid[d, t, k])) for d, t, k in zip(*np.nonzero(open_))})
        mm, _, wl = evaluate(todo)
        index = {p: j for j, p in enumerate(todo)}
        for d, t, k in zip(*np.nonzero(open_)):
            j = index[(int(d), float(mid[d, t, k]))]
            if mm[t, j, k] > limits[t]:
                hi[d, t, k] = mid[d, t, k]
                if t == pd_t:
                    loan_hi[d, k] = wl[j, k]
            else:
                lo[d, t, k] = mid[d, t, k]
        log.info("reverse: bisection round %d, %d brackets, %d scenarios", rnd + 1, int(open_.sum()), len(todo))

    value = np.where(hit, np.where(first == 0, 0.0, 0.5 * (lo + hi)), np.nan)
    not_hit = "the limit is not breached anywhere in the searched range (analyses.reverse.*_max)"
    dtk = ("direction", "target", "tenor")
    data = {
        "reverse_stress": (dtk, value, {"nan_means": not_hit, "long_name":
                           "smallest shock in the direction that breaches the target's limit (units: direction_units); "
                           "0 = breached without a shock"}),
        "reverse_stress_se": (dtk, x_se, {"nan_means": not_hit + ", or a flat metric over the grid bracket",
                                          "long_name": "Monte Carlo standard error of reverse_stress (delta method: "
                                          "SE of the metric / its slope over the grid bracket)"}),
        "reverse_stress_lo": (dtk, np.where(hit, lo, top_arr), {"long_name": "largest shock found not breaching "
                                                                 "(on these paths)"}),
        "reverse_stress_hi": (dtk, hi, {"nan_means": not_hit, "long_name": "smallest shock found breaching (on these paths)"}),
        "breaching_loan": (("direction", "tenor"), np.where(hit[:, pd_t], np.asarray(state["loans"])[loan_hi], ""),
                           {"long_name": "target pd: the loan whose PD crosses the limit first ('' = none)"}),
        "limit": (("target",), limits, {"units": "1", "long_name": "limit of each target (share of principal, or PD)"}),
        "grid_shock": (("direction", "step"), steps, {"long_name": "shock magnitudes of the grid run"}),
        "grid_metric": (dtk + ("step",), curve, {"units": "1", "long_name": "metric at each grid shock: EL / principal, "
                                                 "VaR / principal, largest loan PD"}),
        "grid_metric_se": (dtk + ("step",), curve_se, {"units": "1", "long_name": "standard error of grid_metric "
                                                       "(PD: binomial)"}),
    }
    coords = {"direction": directions, "target": list(TARGETS),
              "tenor": ("tenor", np.asarray(state["tenors"]), {"units": "month"}),
              "step": np.arange(G + 1),
              "direction_units": ("direction", [DIRECTION_UNITS[d] for d in directions])}
    ds = xr.Dataset({k: xr.Variable(d, v, a) for k, (d, v, a) in data.items()}, coords=coords)
    ds.attrs["targets"] = (f"el: portfolio EL / principal > {r.el_limit:g}; var: VaR {r.var_quantile:g} / principal > "
                           f"{r.var_limit:g}; pd: largest loan PD > {r.pd_limit:g}"
                           + (" among the loans at or below it without the shock" if r.pd_new_breach else ""))
    if skipped:
        ds.attrs["skipped_directions"] = f"{', '.join(skipped)}: the market has no launches"
    return ds
