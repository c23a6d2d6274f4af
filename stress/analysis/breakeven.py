"""Per loan and tenor, the flat spot rental price of the loan's chip (``price.<chip> set`` from
month 1 on, so the price path is deterministic; with ``fix_demand`` also ``demand set 0``, so
only the loan-level utilisation noise and the exogenous copula stay random) at which
(a) ``breakeven_price``: a share ``payment_pd`` of the paths misses a payment, with the
payment channel alone: the price below which the loan cannot service its debt;
(b) ``pd_threshold_price``: the PD with ``model.channels`` reaches ``pd_threshold``.
Each loan gets its own copy of its chip family in the market (same parameters; a name per loan),
so one scenario can hold a different price level for every loan: a grid of levels
0 .. ``max_multiple`` x today's spot price in one run, then bisection rounds, each one run with at
most one scenario per tenor. The bracket is the highest failing and the next safe level.
Cross-default is off here (a loan's own breakeven). ``max_safe_tenor``: per selected scenario
and loan, the longest swept tenor whose PD (or EL / principal) stays <= ``tenor_limit`` at that
and every shorter tenor (0: not even the shortest), from one run of the selected scenarios.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Callable

import numpy as np
import xarray as xr

from ..config.portfolio import Portfolio
from ..config.schema import StressConfig
from ..results import dataset
from .context import Context, log, make_shock, run_batch

# ------------------------------------------------------------------------------------ breakeven

def _per_loan_market(ctx: Context) -> tuple[StressConfig, Portfolio, list[str]]:
    """The config and tape with one copy of its chip family per loan, named ``CHIP#i``: the same
    parameters, so every loan's cash flows are unchanged, but a price shock can target one loan."""
    cfg = copy.deepcopy(ctx.cfg)
    names = [f"{chip}#{i}" for i, chip in enumerate(ctx.tape.chip)]
    cfg.market.chips = {name: copy.deepcopy(ctx.cfg.market.chips[chip]) for name, chip in zip(names, ctx.tape.chip)}
    tape = dataclasses.replace(ctx.tape, chip=np.array(names))
    return cfg, tape, names


def _bisect_price(ctx: Context, evaluate: Callable[[np.ndarray], np.ndarray], spot: np.ndarray, target: float,
                  what: str) -> dict[str, np.ndarray]:
    """Flat price levels where the PD returned by ``evaluate`` crosses ``target``, per tenor and loan.

    ``evaluate(levels (J, L)) -> pd (J, K, L)`` runs J scenarios, loan i at price levels[j, i].
    Returns lo, hi (K, L): lo the highest level found failing (PD >= target), hi the next safe
    level (lo = hi = 0 when safe at price 0; hi = NaN when failing at the top of the grid), the
    grid curve (K, L, G) and the grid levels (L, G)."""
    b = ctx.cfg.analyses.breakeven
    mult = np.linspace(0.0, b.max_multiple, b.grid)
    grid = spot[None, :] * mult[:, None]  # (G, L)
    pd = evaluate(grid)  # (G, K, L)
    fails = pd >= target
    K, L = pd.shape[1:]
    any_fail = fails.any(axis=0)
    top = b.grid - 1 - np.argmax(fails[::-1], axis=0)  # highest failing grid index
    lo = np.where(any_fail, np.take_along_axis(grid, top, axis=0), 0.0)
    hi = np.where(any_fail, np.take_along_axis(grid, np.minimum(top + 1, b.grid - 1), axis=0), 0.0)
    hi = np.where(any_fail & (top == b.grid - 1), np.nan, hi)
    for r in range(b.max_rounds):
        open_ = np.isfinite(hi) & (hi - lo > b.tol)
        if not open_.any():
            break
        mid = 0.5 * (lo + hi)
        per_loan = [np.unique(mid[open_[:, i], i]) for i in range(L)]
        J = max(len(m) for m in per_loan)
        levels = np.tile(spot, (J, 1))  # loans with nothing open sit at today's price
        for i, m in enumerate(per_loan):
            if len(m):
                levels[:, i] = np.concatenate([m, np.full(J - len(m), m[0])])
        pd_mid = evaluate(levels)  # (J, K, L)
        for k, i in zip(*np.nonzero(open_)):
            j = int(np.flatnonzero(levels[:, i] == mid[k, i])[0])
            if pd_mid[j, k, i] >= target:
                lo[k, i] = mid[k, i]
            else:
                hi[k, i] = mid[k, i]
        log.info("breakeven (%s): bisection round %d, %d brackets, %d scenarios", what, r + 1, int(open_.sum()), J)
    return {"lo": lo, "hi": hi, "curve": np.moveaxis(pd, 0, -1), "grid": grid.T}


def breakeven(ctx: Context) -> xr.Dataset:
    b = ctx.cfg.analyses.breakeven
    cfg, tape, names = _per_loan_market(ctx)
    spot = np.array([ctx.cfg.market.chips[c].price for c in ctx.tape.chip])
    fixed = [make_shock("demand", "set", 0.0)] if b.fix_demand else []

    def evaluator(channels):
        def evaluate(levels: np.ndarray) -> np.ndarray:
            scen = {f"level{j:03d}": ctx.base_shocks + fixed + [make_shock(f"price.{n}", "set", p) for n, p in zip(names, row)]
                    for j, row in enumerate(levels)}
            ds = run_batch(ctx, scen, cfg=cfg, tape=tape, channels=channels, cross_default=False)
            return ds.pd.values
        return evaluate

    pay = _bisect_price(ctx, evaluator(["payment"]), spot, b.payment_pd, "payment")
    channels = list(b.channels or ctx.cfg.model.channels)
    thr = _bisect_price(ctx, evaluator(channels), spot, b.pd_threshold, "PD threshold")
    main = run_batch(ctx, {n: list(s.shocks) for n, s in ctx.cfg.scenario.items()}, channels=channels)
    metric = main.pd if b.tenor_metric == "pd" else main.el / main.principal
    safe = (metric <= b.tenor_limit).values  # (S, K, L)
    tenors = np.asarray(main.tenor.values)
    run_safe = np.cumprod(safe, axis=1).astype(bool)  # safe at this and every shorter tenor
    months = dataset.loan_tenors(main).values  # (K, L): with tenors=tape, each loan's own
    last = np.maximum(run_safe.sum(axis=1) - 1, 0)  # (S, L) index of the longest safe tenor
    max_safe = np.where(run_safe.any(axis=1), np.take_along_axis(months, last, axis=0), 0)

    def mid(res):
        return np.where(np.isfinite(res["hi"]), 0.5 * (res["lo"] + res["hi"]), np.nan)

    usd_h = "USD per GPU-hour"
    censored = ("the loan fails even at the top of the price grid (analyses.breakeven.max_multiple x today's spot); "
                "for pd_threshold_price typically because pd_floor is already above the threshold")
    kl = ("tenor", "loan")
    data = {
        "breakeven_price": (kl, mid(pay), {"units": usd_h, "nan_means": censored, "long_name":
                            f"flat spot price below which {b.payment_pd:.0%} or more of the paths miss a payment "
                            "(payment channel only); 0 = serviceable at any spot price"}),
        "breakeven_price_lo": (kl, pay["lo"], {"units": usd_h, "long_name": "highest price found failing"}),
        "breakeven_price_hi": (kl, pay["hi"], {"units": usd_h, "nan_means": censored,
                                               "long_name": "lowest price found safe"}),
        "pd_threshold_price": (kl, mid(thr), {"units": usd_h, "nan_means": censored, "long_name":
                               f"flat spot price below which the PD ({', '.join(channels)}) is "
                               f">= {b.pd_threshold:.1%}; 0 = below the threshold at any spot price"}),
        "pd_threshold_price_lo": (kl, thr["lo"], {"units": usd_h, "long_name": "highest price found at or above the threshold"}),
        "pd_threshold_price_hi": (kl, thr["hi"], {"units": usd_h, "nan_means": censored,
                                                  "long_name": "lowest price found below the threshold"}),
        "pd_floor": (kl, thr["curve"][..., -1], {"units": "1", "long_name": "PD at the top of the price grid: what "
                     "no spot price removes (mostly the exogenous channel)"}),
        "spot_price": (("loan",), spot, {"units": usd_h, "long_name": "spot price of the loan's chip at the valuation date"}),
        "grid_price": (("loan", "level"), pay["grid"], {"units": usd_h, "long_name": "flat price levels of the grid run"}),
        "payment_pd_curve": (kl + ("level",), pay["curve"], {"units": "1", "long_name":
                             "share of paths with a payment default at each grid price (payment channel only)"}),
        "pd_curve": (kl + ("level",), thr["curve"], {"units": "1", "long_name":
                     "PD by maturity at each grid price (model.channels)"}),
        "max_safe_tenor": (("scenario", "loan"), max_safe.astype(np.int64), {"units": "month", "long_name":
                           f"longest swept tenor with {b.tenor_metric} <= {b.tenor_limit:g} at it and every shorter "
                           "tenor (0: none; with tenors=tape, the loan's tape_tenor if it is safe)"}),
        "tenor_metric": (("scenario", "tenor", "loan"), metric.values, {"units": "1", "long_name":
                         f"PD by maturity ({', '.join(channels)})" if b.tenor_metric == "pd" else "EL / loan principal"}),
    }
    coords = {"tenor": ("tenor", tenors, {"units": "month"}), "loan": list(main.loan.values),
              "scenario": list(main.scenario.values), "level": np.arange(b.grid),
              "chip": ("loan", np.asarray(ctx.tape.chip, dtype=str)),
              "grid_multiple": ("level", np.linspace(0.0, b.max_multiple, b.grid),
                                {"long_name": "grid level / today's spot price"})}
    ds = xr.Dataset({k: xr.Variable(d, v, a) for k, (d, v, a) in data.items()}, coords=coords)
    ds.attrs.update(payment_pd=b.payment_pd, pd_threshold=b.pd_threshold, tenor_metric=b.tenor_metric,
                    tenor_limit=b.tenor_limit, pd_channels=", ".join(channels))
    return ds
