"""Answers beyond the loss distribution (``analysis=...``): breakeven prices and the longest safe
tenor, reverse stress tests, and sensitivities of EL, VaR and ES. Each returns an
``xarray.Dataset`` like the main run; ``analyze(cfg)`` dispatches on ``cfg.analysis`` and, when
``output.dir`` is set, writes ``output.dir/analysis_<name>.nc`` atomically.

Every analysis is a few batched engine runs on the same seed, so all scenarios of all runs see the
same random numbers path by path (common random numbers): a bisection step or a finite
difference compares the same paths, not two samples. The starting point is the first selected
scenario (``scenario=[...]``; ``baseline`` in the default config); the analyses add their own
shocks after its shocks (shocks on one target compose in the order listed, so a ``set`` added last
overrides the scenario's level).

breakeven
    Per loan and tenor, the flat spot rental price of the loan's chip (``price.<chip> set`` from
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
reverse
    For each direction (price drop ``price.all mul 1 - x``; the first launch ``x`` months earlier;
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
sensitivities
    Central finite differences (f(theta + h) - f(theta - h)) / 2h, on common random numbers, of
    EL, VaR and ES for: every chip price (``price.all mul 1 +/- h``), the launch steps (every
    ``launch.<generation>.step add +/- h``), ``base_rate``, ``utilization`` and ``haircut``
    (``add +/- h``), all as scenario shocks in one run; and the trend, demand loading and
    volatility of every chip (no shock target: the config values are bumped and the base scenario
    rerun on the same seed). Standard errors: EL from the paired per-path differences
    w (L+ - L-) / 2h; ES from the paired influence functions w ((L+ - VaR+)^+ - (L- - VaR-)^+)
    / ((1 - q) 2h) (the VaR terms have no first-order effect); VaR by batch means: the paths are cut
    into ``batches`` blocks, the difference quotient computed in each, SE = sd / sqrt(blocks) (NaN
    when a block expects fewer than one tail sample).

With ``mc.importance_sampling`` every metric is the weighted estimator (stress/metrics.py).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr
from omegaconf import DictConfig, OmegaConf

from . import backend as _backend
from . import engine, footprint, lock, metrics, results
from .config import ScenarioConfig, ShockConfig, StressConfig, is_tape, to_schema
from .portfolio import Portfolio, load_portfolio

log = logging.getLogger("stress")

FILE_SUFFIX = {"netcdf": ".nc", "zarr": ".zarr"}
TARGETS = ("el", "var", "pd")
PARAMETER_UNITS = {
    "price": "relative change of every chip's spot price (1 = +100%)",
    "trend": "annual log-price trend of every chip, 1/yr",
    "demand_loading": "log-price loading of every chip on the demand factor",
    "volatility": "scale of every chip's own log-price noise",
    "launch_step": "fractional price step of every future launch",
    "base_rate": "base rate, decimal per year",
    "utilization": "utilisation of uncontracted GPUs, absolute share",
    "haircut": "liquidation haircut, share",
}
CONFIG_BUMPS = ("trend", "demand_loading", "volatility")  # parameters without a shock target
DIRECTION_UNITS = {
    "price": "fraction of every chip's spot price (price.all mul 1 - x)",
    "launch": "months earlier (launch.<first>.month add -x)",
    "utilization": "fraction of utilisation (utilization mul 1 - x)",
    "rate": "base-rate rise, decimal per year (base_rate add x)",
}


# ------------------------------------------------------------------------------------ engine runs

@dataclasses.dataclass
class _Context:
    """What every batched run of an analysis shares."""

    cfg: StressConfig
    tape: Portfolio
    be: _backend.Backend
    runs: int = 0
    scenarios_run: int = 0

    @property
    def base_name(self) -> str:
        return next(iter(self.cfg.scenario))

    @property
    def base_shocks(self) -> list[ShockConfig]:
        return list(self.cfg.scenario[self.base_name].shocks)


def _shock(target: str, kind: str, value: float, ramp: int = 0) -> ShockConfig:
    return ShockConfig(target=target, kind=kind, value=float(value), start_month=1, ramp_months=int(ramp))


def _chunk(be, prob, seed: int, start: int, stop: int, dtype):
    """Paths [start, stop) on the run's backend (its own engine when it has one: the fused kernel
    on backend=cupy or host, which refuse importance sampling), no fans, no per-path detail."""
    if hasattr(be, "simulate"):
        return be.simulate(prob, seed, start, stop, 0, dtype=dtype, keep_paths=False)
    return engine.simulate(be.xp, prob, seed, start, stop, 0, dtype=dtype, keep_paths=False, to_host=be.to_host)


def _simulate(ctx: _Context, scenarios: dict[str, list[ShockConfig]], *, cfg: StressConfig | None = None,
              tape: Portfolio | None = None, channels=None, cross_default=None) -> xr.Dataset:
    """One batched engine run of ``scenarios`` (name -> shocks) on the seed of the config, with the
    results Dataset of the main run (weighted metrics under importance sampling), no fans."""
    from . import CELLS_PER_CHUNK

    c = copy.deepcopy(cfg or ctx.cfg)
    c.scenario = {name: ScenarioConfig(description=name, shocks=list(shocks)) for name, shocks in scenarios.items()}
    if channels is not None:
        c.model.channels = list(channels)
    if cross_default is not None:
        c.model.cross_default = cross_default
    c.mc.fan_paths = 0
    tape = tape if tape is not None else ctx.tape
    prob = engine.build_problem(c, tape)
    S, K, L = prob.shape
    chunk = c.mc.chunk_paths or max(1, CELLS_PER_CHUNK // (S * K * L))
    footprint.check(footprint.estimate(S, K, L, prob.months, c.mc.paths, chunk, 0, False, c.mc.importance_sampling),
                    c.mc.paths)
    dtype = np.dtype(c.precision)
    chunks = [_chunk(ctx.be, prob, c.mc.seed, a, min(a + chunk, c.mc.paths), dtype)
              for a in range(0, c.mc.paths, chunk)]
    ctx.runs += 1
    ctx.scenarios_run += S
    return results.build_dataset(prob, results.combine(chunks), c.quantiles, c.fan_quantiles, {"paths": c.mc.paths})


# ------------------------------------------------------------------------------------ breakeven

def _per_loan_market(ctx: _Context) -> tuple[StressConfig, Portfolio, list[str]]:
    """The config and tape with one copy of its chip family per loan, named ``CHIP#i``: the same
    parameters, so every loan's cash flows are unchanged, but a price shock can target one loan."""
    cfg = copy.deepcopy(ctx.cfg)
    names = [f"{chip}#{i}" for i, chip in enumerate(ctx.tape.chip)]
    cfg.market.chips = {name: copy.deepcopy(ctx.cfg.market.chips[chip]) for name, chip in zip(names, ctx.tape.chip)}
    tape = dataclasses.replace(ctx.tape, chip=np.array(names))
    return cfg, tape, names


def _bisect_price(ctx: _Context, evaluate: Callable[[np.ndarray], np.ndarray], spot: np.ndarray, target: float,
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


def breakeven(ctx: _Context) -> xr.Dataset:
    b = ctx.cfg.analyses.breakeven
    cfg, tape, names = _per_loan_market(ctx)
    spot = np.array([ctx.cfg.market.chips[c].price for c in ctx.tape.chip])
    fixed = [_shock("demand", "set", 0.0)] if b.fix_demand else []

    def evaluator(channels):
        def evaluate(levels: np.ndarray) -> np.ndarray:
            scen = {f"level{j:03d}": ctx.base_shocks + fixed + [_shock(f"price.{n}", "set", p) for n, p in zip(names, row)]
                    for j, row in enumerate(levels)}
            ds = _simulate(ctx, scen, cfg=cfg, tape=tape, channels=channels, cross_default=False)
            return ds.pd.values
        return evaluate

    pay = _bisect_price(ctx, evaluator(["payment"]), spot, b.payment_pd, "payment")
    channels = list(b.channels or ctx.cfg.model.channels)
    thr = _bisect_price(ctx, evaluator(channels), spot, b.pd_threshold, "PD threshold")
    main = _simulate(ctx, {n: list(s.shocks) for n, s in ctx.cfg.scenario.items()}, channels=channels)
    metric = main.pd if b.tenor_metric == "pd" else main.el / main.principal
    safe = (metric <= b.tenor_limit).values  # (S, K, L)
    tenors = np.asarray(main.tenor.values)
    run_safe = np.cumprod(safe, axis=1).astype(bool)  # safe at this and every shorter tenor
    months = results.loan_tenors(main).values  # (K, L): with tenors=tape, each loan's own
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


# ------------------------------------------------------------------------------------ reverse stress

def _direction_shock(ctx: _Context, direction: str, x: float) -> list[ShockConfig]:
    r = ctx.cfg.analyses.reverse
    if x == 0:
        return []
    if direction == "price":
        return [_shock("price.all", "mul", 1.0 - x, r.ramp_months)]
    if direction == "utilization":
        return [_shock("utilization", "mul", 1.0 - x, r.ramp_months)]
    if direction == "rate":
        return [_shock("base_rate", "add", x, r.ramp_months)]
    first = min(ctx.cfg.market.launches, key=lambda launch: launch.month)
    return [_shock(f"launch.{first.name}.month", "add", -x)]


def _reverse_metrics(ctx: _Context, ds: xr.Dataset, eligible: np.ndarray | None):
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


def reverse(ctx: _Context) -> xr.Dataset:
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
        ds = _simulate(ctx, scen)
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


# ------------------------------------------------------------------------------------ sensitivities

def _bump_shocks(ctx: _Context, parameter: str, h: float) -> list[ShockConfig]:
    if parameter == "price":
        return [_shock("price.all", "mul", 1.0 + h)]
    if parameter == "launch_step":
        return [_shock(f"launch.{x.name}.step", "add", h) for x in ctx.cfg.market.launches]
    return [_shock(parameter, "add", h)]  # base_rate, utilization, haircut


def _bumped_config(ctx: _Context, parameter: str, h: float) -> StressConfig:
    cfg = copy.deepcopy(ctx.cfg)
    for chip in cfg.market.chips.values():
        setattr(chip, parameter, getattr(chip, parameter) + h)
    return cfg


def _batch_var(loss_up, loss_dn, w, quantiles, batches: int) -> np.ndarray:
    """Batch-means standard error of (VaR(up) - VaR(dn)) over blocks of paths, (..., Q)."""
    n = loss_up.shape[-1]
    edges = np.linspace(0, n, batches + 1).astype(int)
    diffs = []
    for a, b in zip(edges[:-1], edges[1:]):
        ww = None if w is None else w[..., a:b]
        up = metrics.tail_measures(loss_up[..., a:b], quantiles, ww)["var"]
        dn = metrics.tail_measures(loss_dn[..., a:b], quantiles, ww)["var"]
        diffs.append(up - dn)
    se = np.std(diffs, axis=0, ddof=1) / math.sqrt(batches)
    too_few = (n / batches) * (1.0 - np.asarray(quantiles)) < 1.0
    return np.where(too_few, np.nan, se)


def sensitivities(ctx: _Context) -> xr.Dataset:
    s = ctx.cfg.analyses.sensitivities
    params = list(dict.fromkeys(s.parameters))
    if not ctx.cfg.market.launches and "launch_step" in params:
        params.remove("launch_step")
    quantiles = list(ctx.cfg.quantiles)
    scen = {"base": ctx.base_shocks}
    for p in params:
        if p not in CONFIG_BUMPS:
            h = getattr(s, p)
            scen[f"{p}+"] = ctx.base_shocks + _bump_shocks(ctx, p, h)
            scen[f"{p}-"] = ctx.base_shocks + _bump_shocks(ctx, p, -h)
    ds = _simulate(ctx, scen)
    w = ds.weight.values if "weight" in ds else None  # (K, P)
    pairs = {p: (ds.loss.sel(scenario=f"{p}+").values, ds.loss.sel(scenario=f"{p}-").values)
             for p in params if p not in CONFIG_BUMPS}
    for p in params:
        if p in CONFIG_BUMPS:
            h = getattr(s, p)
            up = _simulate(ctx, {"base": ctx.base_shocks}, cfg=_bumped_config(ctx, p, h))
            dn = _simulate(ctx, {"base": ctx.base_shocks}, cfg=_bumped_config(ctx, p, -h))
            pairs[p] = (up.loss.values[0], dn.loss.values[0])
    n = ds.sizes["path"]
    K, Q = ds.sizes["tenor"], len(quantiles)
    out = {k: np.full((len(params), K) + ((Q,) if k.startswith(("var", "es")) else ()), np.nan)
           for k in ("el", "el_se", "var", "var_se", "es", "es_se")}
    for i, p in enumerate(params):
        h = getattr(s, p)
        up, dn = pairs[p]  # (K, P)
        ww = 1.0 if w is None else w
        diff = ww * (up - dn) / (2 * h)
        out["el"][i] = diff.mean(-1)
        out["el_se"][i] = diff.std(-1, ddof=1) / math.sqrt(n)
        tu, td = metrics.tail_measures(up, quantiles, w), metrics.tail_measures(dn, quantiles, w)
        out["var"][i] = (tu["var"] - td["var"]) / (2 * h)
        out["es"][i] = (tu["es"] - td["es"]) / (2 * h)
        out["var_se"][i] = _batch_var(up, dn, w, quantiles, s.batches) / (2 * h)
        for j, q in enumerate(quantiles):
            inf_up = np.maximum(up - tu["var"][..., j, None], 0.0)
            inf_dn = np.maximum(dn - td["var"][..., j, None], 0.0)
            d_if = ww * (inf_up - inf_dn) / ((1.0 - q) * 2 * h)
            out["es_se"][i, :, j] = d_if.std(-1, ddof=1) / math.sqrt(n)
    base = ds.sel(scenario="base")
    pk, pkq = ("parameter", "tenor"), ("parameter", "tenor", "quantile")
    per = "USD per unit of the parameter (parameter_units)"
    few = "fewer than one expected tail sample per block of paths: raise mc.paths or lower analyses.sensitivities.batches"
    data = {
        "el_sensitivity": (pk, out["el"], {"units": per, "long_name": "dEL/dtheta, central difference"}),
        "el_sensitivity_se": (pk, out["el_se"], {"units": per, "long_name": "SE from paired per-path differences"}),
        "var_sensitivity": (pkq, out["var"], {"units": per, "long_name": "dVaR/dtheta, central difference"}),
        "var_sensitivity_se": (pkq, out["var_se"], {"units": per, "nan_means": few, "long_name":
                               f"SE by batch means over {s.batches} blocks of paths"}),
        "es_sensitivity": (pkq, out["es"], {"units": per, "long_name": "dES/dtheta, central difference"}),
        "es_sensitivity_se": (pkq, out["es_se"], {"units": per, "long_name":
                              "SE from paired influence functions w (L - VaR)^+ / (1 - q)"}),
        "bump": (("parameter",), np.array([getattr(s, p) for p in params]), {"long_name": "central-difference half-width h"}),
        "expected_loss": (("tenor",), base.expected_loss.values, {"units": "USD", "long_name": "EL at the base scenario"}),
        "var": (("tenor", "quantile"), base["var"].values, {"units": "USD", "long_name": "VaR at the base scenario"}),
        "es": (("tenor", "quantile"), base.es.values, {"units": "USD", "long_name": "ES at the base scenario"}),
        "principal": ((), float(ds.principal.sum()), {"units": "USD", "long_name": "portfolio principal"}),
    }
    coords = {"parameter": params, "tenor": ("tenor", ds.tenor.values, {"units": "month"}), "quantile": quantiles,
              "parameter_units": ("parameter", [PARAMETER_UNITS[p] for p in params]),
              "bump_kind": ("parameter", ["config value" if p in CONFIG_BUMPS else "scenario shock" for p in params])}
    return xr.Dataset({k: xr.Variable(d, v, a) for k, (d, v, a) in data.items()}, coords=coords)


# ------------------------------------------------------------------------------------ entry point

ANALYSES = {"breakeven": breakeven, "reverse": reverse, "sensitivities": sensitivities}


def output_path(out_dir: str, fmt: str, name: str) -> Path:
    return Path(out_dir) / f"analysis_{name}{FILE_SUFFIX[fmt]}"


def analyze(config: DictConfig | StressConfig) -> xr.Dataset:
    """Run the analysis named by ``analysis`` (``run``: the main run, ``stress.run``) and return its
    Dataset; with ``output.dir``, also write ``analysis_<name>.nc`` there (never overwriting unless
    ``output.overwrite``)."""
    from . import run

    cfg = to_schema(config)
    if cfg.analysis == "run":
        return run(cfg)
    if cfg.output.dir is None:
        return _analyze(cfg)
    with lock.held(cfg.output.dir):  # one run per output directory
        return _analyze(cfg)


def _analyze(cfg: StressConfig) -> xr.Dataset:
    from . import __version__, kernel_hash, tape_path

    path = None
    if cfg.output.dir is not None:
        path = output_path(cfg.output.dir, cfg.output.format, cfg.analysis)
        results.check_target(path, cfg.output.overwrite)
    tape = load_portfolio(tape_path(cfg), cfg.market.chips.keys())
    ctx = _Context(cfg=cfg, tape=tape, be=_backend.select(cfg.backend, cfg.mc.importance_sampling))
    started = time.perf_counter()
    ds = ANALYSES[cfg.analysis](ctx)
    elapsed = time.perf_counter() - started
    log.info("analysis=%s: %d engine runs, %d scenarios x %d paths on %s in %.1f s", cfg.analysis, ctx.runs,
             ctx.scenarios_run, cfg.mc.paths, ctx.be.device, elapsed)
    attrs = results.run_attributes(OmegaConf.to_yaml(OmegaConf.structured(cfg)), cfg.mc.seed, ctx.be.name,
                                   cfg.precision, cfg.mc.paths, __version__, kernel_hash())
    ds.attrs = {**attrs, "title": f"GPU-collateral credit stress test: analysis {cfg.analysis}",
                "analysis": cfg.analysis, "base_scenario": ctx.base_name, "portfolio": str(tape.source),
                "engine_runs": ctx.runs, "scenarios_simulated": ctx.scenarios_run,
                "importance_sampling": int(cfg.mc.importance_sampling), **ds.attrs,
                "method": _method(cfg.analysis)}
    if path is not None:
        ds.attrs["written_to"] = str(results.write_atomic(ds, path, cfg.output.format, cfg.output.overwrite))
    return ds


def _method(name: str) -> str:
    """The paragraph of this module's docstring on analysis ``name``, for the dataset's attributes."""
    text = __doc__.split(f"\n{name}\n", 1)[1]
    lines = []
    for line in text.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line.strip())
    return " ".join(x for x in lines if x)


# ------------------------------------------------------------------------------------ terminal

def _usd_m(x: float) -> str:
    return f"{x / 1e6:,.1f}"


def _price(x: float) -> str:
    return "fails at top" if not np.isfinite(x) else f"{x:.2f}"


def summary_tables(ds: xr.Dataset) -> list:
    """Rich tables summarising an analysis Dataset."""
    from rich.table import Table

    name = ds.attrs.get("analysis")
    tables = []
    tenor_label = lambda k: "tape" if is_tape(k) else f"{int(k)}m"  # noqa: E731
    if name == "breakeven":
        t = Table(title=f"Breakeven flat spot price, USD/GPU-h: 'pay' = {ds.attrs['payment_pd']:.0%} of paths miss a "
                        f"payment (payment channel), 'PD' = PD ({ds.attrs['pd_channels']}) reaches "
                        f"{ds.attrs['pd_threshold']:.0%} (floor: above it at any price); longest tenor "
                        f"with {ds.attrs['tenor_metric']} <= {ds.attrs['tenor_limit']:.0%}; base "
                        f"{ds.attrs['base_scenario']}, {ds.attrs['paths']} paths")
        for col in ("loan", "chip", "spot"):
            t.add_column(col, no_wrap=True, justify="left" if col != "spot" else "right")
        for k in ds.tenor.values:
            t.add_column(f"pay {tenor_label(k)}", justify="right", no_wrap=True)
        for k in ds.tenor.values:
            t.add_column(f"PD {tenor_label(k)}", justify="right", no_wrap=True)
        scen = list(ds.scenario.values)
        for s in scen:
            t.add_column(f"safe tenor {s}", justify="right", no_wrap=True)
        for i, loan in enumerate(ds.loan.values):
            cell = ds.isel(loan=i)
            t.add_row(str(loan), str(cell.chip.item()), f"{cell.spot_price.item():.2f}",
                      *[_price(v) for v in cell.breakeven_price.values],
                      *[_price(v) if np.isfinite(v) else f"floor {f:.0%}"
                        for v, f in zip(cell.pd_threshold_price.values, cell.pd_floor.values)],
                      *[f"{int(v)}" if v else "none" for v in cell.max_safe_tenor.values])
        tables.append(t)
    elif name == "reverse":
        t = Table(title=f"Reverse stress: smallest shock that breaches each limit (± MC standard error), "
                        f"base {ds.attrs['base_scenario']}, {ds.attrs['paths']} paths")
        t.add_column("direction", no_wrap=True)
        t.add_column("target", no_wrap=True)
        for k in ds.tenor.values:
            t.add_column(f"tenor {tenor_label(k)}", justify="right", no_wrap=True)
        fmt = {"price": lambda x: f"-{x:.1%}", "launch": lambda x: f"{x:.1f} months earlier",
               "utilization": lambda x: f"-{x:.1%}", "rate": lambda x: f"+{x * 1e4:.0f} bp"}
        se_fmt = {"price": lambda x: f"{x:.1%}", "launch": lambda x: f"{x:.1f}", "utilization": lambda x: f"{x:.1%}",
                  "rate": lambda x: f"{x * 1e4:.0f} bp"}
        labels = dict(zip(TARGETS, (f"EL > {ds.limit.sel(target='el').item():.0%}",
                                    f"VaR > {ds.limit.sel(target='var').item():.0%}",
                                    f"a PD > {ds.limit.sel(target='pd').item():.0%}")))
        for d in ds.direction.values:
            for g in ds.target.values:
                cells = []
                for k in ds.tenor.values:
                    c = ds.sel(direction=d, target=g, tenor=k)
                    x, se = c.reverse_stress.item(), c.reverse_stress_se.item()
                    who = f" ({ds.breaching_loan.sel(direction=d, tenor=k).item()})" if g == "pd" else ""
                    if not np.isfinite(x):
                        cells.append("not breached")
                    elif x == 0:
                        cells.append("already" + who)
                    else:
                        cells.append(f"{fmt[d](x)}" + (f" ± {se_fmt[d](se)}" if np.isfinite(se) else "") + who)
                t.add_row(str(d), labels[str(g)], *cells)
        tables.append(t)
    elif name == "sensitivities":
        q = float(ds["quantile"].sel(quantile=0.99, method="nearest"))
        t = Table(title=f"Sensitivities: change for a +h move of each parameter, USD m (± MC standard error), "
                        f"base {ds.attrs['base_scenario']}, {ds.attrs['paths']} paths")
        for col in ("parameter", "h", "tenor", "EL", "±", f"VaR {q:.1%}", "±", f"ES {q:.1%}", "±"):
            t.add_column(col, justify="left" if col in ("parameter",) else "right", no_wrap=True)
        for p in ds.parameter.values:
            h = ds.bump.sel(parameter=p).item()
            for k in ds.tenor.values:
                c = ds.sel(parameter=p, tenor=k)
                v = lambda name: c[name].sel(quantile=q).item() * h if "quantile" in c[name].dims else c[name].item() * h  # noqa: E731
                se = lambda name: "–" if not np.isfinite(v(name)) else _usd_m(v(name))  # noqa: E731
                t.add_row(str(p), f"{h:g}", tenor_label(k), _usd_m(v("el_sensitivity")), se("el_sensitivity_se"),
                          _usd_m(v("var_sensitivity")), se("var_sensitivity_se"),
                          _usd_m(v("es_sensitivity")), se("es_sensitivity_se"))
        tables.append(t)
    return tables


def cli_main(cfg: DictConfig) -> None:
    """The ``stress-test analysis=NAME`` job: analyse, write, print (exit code 2 on a user error)."""
    from rich.console import Console

    from .errors import StressError

    try:
        ds = analyze(cfg)
    except StressError as exc:
        print(f"stress-test: error: {exc}", file=sys.stderr)
        sys.exit(2)
    if not cfg.quiet:
        console = Console()
        if not console.is_terminal:
            console = Console(width=160)
        for table in summary_tables(ds):
            console.print(table)
        if "written_to" in ds.attrs:
            console.print(f"Analysis written to {ds.attrs['written_to']}")
