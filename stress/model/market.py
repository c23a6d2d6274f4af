"""Market factors shared by all loans of a path: AI demand, chip spot prices with
trend, noise and generation launches, and the utilisation of uncontracted GPUs.

``MarketParams`` is built once on the host from the config; ``start``/``advance``/``utilization``
are array-library generic (``xp`` is numpy or cupy) and run inside the month loop. Prices are
USD per GPU-hour, months count from the valuation date.

Spot price of family c on path p under scenario s (log):
    log P = log P0_c - trend_c t/12 + kappa_c (D_t - phi^t D_0) + sigma_c X_c(t) + J(t)
then the scenario's price shocks. D_t - phi^t D_0 is the demand innovation since the valuation
date (zero mean, variance 1 - phi^2t): every path starts at today's observed price P0 and the
median path follows the trend and the launches. A demand shock a D + b acts on the innovation in
the price (a (D_t - phi^t D_0) + b) and on the level in utilisation (a D_t + b). X_c starts at 0, a unit-variance AR(1) in the
long run. Utilisation sees the level D_t itself (stationary N(0, 1), D_0 included).

Importance sampling (``mc.importance_sampling``): the demand innovations e_t (t >= 1) are drawn
from the same Philox stream and then shifted, e_t -> e_t + m with m = ``demand_shift`` < 0, so the
stationary mean of D moves to m sqrt(1 + phi) / sqrt(1 - phi); the state accumulates the log
likelihood ratio -m e_t - m^2 / 2 of each month (e_t the unshifted normal). With m = 0 nothing
changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config.scenario import affine, shocked_scalar
from ..config.schema import StressConfig
from . import rng

FIRST_YEAR = 12  # months of demand innovations in the wrong-way factor W (first_year_factor)


def logit_intercept(target: float, u_max: float, spread: float) -> float:
    """Intercept a with E[u_max logistic(a + spread Z)] = target for Z ~ N(0,1) (Gauss-Hermite
    quadrature, 80 nodes, then bisection; |error| < 1e-12)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()

    def mean(a: float) -> float:
        return float(u_max * np.sum(weights / (1.0 + np.exp(-(a + spread * nodes)))))

    lo, hi = -50.0, 50.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mean(mid) < target else (lo, mid)
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class MarketParams:
    """Host arrays of the market model for S scenarios, C chip families, N launches, H months."""

    chips: tuple[str, ...]
    log_price0: np.ndarray  # (C,) log USD/GPU-h
    trend_monthly: np.ndarray  # (C,) log decline per month
    kappa: np.ndarray  # (C,) demand loading of log price
    sigma: np.ndarray  # (C,) scale of the chip noise
    psi: np.ndarray  # (C,) monthly persistence of the chip noise
    phi: float  # monthly persistence of demand
    launch_month: np.ndarray  # (S, N) scheduled month of each launch
    launch_log_step: np.ndarray  # (S, N) log(1 - step)
    launch_ramp: np.ndarray  # (N,) months
    launch_jitter: np.ndarray  # (N,) +/- months, uniform
    demand_a: np.ndarray  # (S, H) shock map of demand: a D + b
    demand_b: np.ndarray
    price_a: np.ndarray  # (S, C, H) shock map of the price level
    price_b: np.ndarray
    util_a: np.ndarray  # (S, H) shock map of utilisation
    util_b: np.ndarray
    u_max: float
    util_beta: float
    util_sigma: float
    util_intercept: np.ndarray  # (C,) logit intercept giving the reference mean utilisation
    demand_shift: float = 0.0  # importance sampling: mean of the shifted demand innovations (< 0: adverse)

    @property
    def horizon(self) -> int:
        return self.demand_a.shape[1]


def build_params(cfg: StressConfig, horizon: int) -> MarketParams:
    """Market parameters and scenario shock maps for months 1..horizon."""
    m = cfg.market
    chips = tuple(m.chips)
    chip = [m.chips[c] for c in chips]
    months = np.arange(1, horizon + 1)
    scen = list(cfg.scenario.values())
    u = m.utilization
    spread = float(np.hypot(u.demand_loading, u.idiosyncratic))

    def per_scenario(target: str):
        pairs = [affine(sc.shocks, target, months) for sc in scen]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    price_maps = []
    for c in chips:
        a_all, b_all = per_scenario("price.all")
        a_c, b_c = per_scenario(f"price.{c}")
        price_maps.append((a_c * a_all, a_c * b_all + b_c))  # price.all first, then price.<chip>
    demand_a, demand_b = per_scenario("demand")
    util_a, util_b = per_scenario("utilization")
    launch_month = np.array([[shocked_scalar(sc.shocks, f"launch.{x.name}.month", x.month)
                              for x in m.launches] for sc in scen]).reshape(len(scen), len(m.launches))
    launch_step = np.array([[shocked_scalar(sc.shocks, f"launch.{x.name}.step", x.step)
                             for x in m.launches] for sc in scen]).reshape(len(scen), len(m.launches))
    return MarketParams(
        chips=chips,
        log_price0=np.log([c.price for c in chip]),
        trend_monthly=np.array([c.trend for c in chip]) / 12.0,
        kappa=np.array([c.demand_loading for c in chip]),
        sigma=np.array([c.volatility for c in chip]),
        psi=np.array([c.persistence for c in chip]),
        phi=m.demand.persistence,
        launch_month=launch_month,
        launch_log_step=np.log1p(-np.clip(launch_step, 0.0, 1.0 - 1e-12)),
        launch_ramp=np.array([x.ramp_months for x in m.launches], dtype=float),
        launch_jitter=np.array([x.jitter_months for x in m.launches], dtype=float),
        demand_a=demand_a,
        demand_b=demand_b,
        price_a=np.stack([p[0] for p in price_maps], axis=1),
        price_b=np.stack([p[1] for p in price_maps], axis=1),
        util_a=util_a,
        util_b=util_b,
        u_max=u.u_max,
        util_beta=u.demand_loading,
        util_sigma=u.idiosyncratic,
        util_intercept=np.array([logit_intercept(c.reference_utilization, u.u_max, spread) for c in chip]),
        demand_shift=demand_innovation_shift(cfg),
    )


def demand_innovation_shift(cfg: StressConfig) -> float:
    """Importance sampling: the mean m of the shifted monthly demand innovations, chosen so that the
    stationary mean of D is -mc.is_shift_demand: m = -s sqrt((1 - phi) / (1 + phi)); 0 without IS."""
    if not cfg.mc.importance_sampling:
        return 0.0
    phi = cfg.market.demand.persistence
    return -cfg.mc.is_shift_demand * float(np.sqrt((1.0 - phi) / (1.0 + phi)))


@dataclass
class MarketState:
    """Per-path state carried from month to month (arrays of the engine's library)."""

    demand0: object  # (P,) D_0
    demand: object  # (P,) unshocked D_t
    noise: object  # (P, C) chip noise X_c(t)
    launch_month: object  # (S, P, N) jittered launch months
    log_weight: object = None  # (P,) importance sampling: log likelihood ratio of the innovations so far


def start(xp, params: MarketParams, seed: int, paths) -> MarketState:
    """State at month 0: D_0 ~ N(0,1) (stream 0, month 0), X = 0, jittered launch months
    (stream 5, month 0, one uniform per launch)."""
    d0 = rng.normals_block(xp, seed, paths, 0, rng.STREAM_DEMAND, 1)[:, 0]
    n = params.launch_month.shape[1]
    months = xp.asarray(params.launch_month)[:, None, :]
    if n:
        u = rng.uniforms(xp, seed, paths[:, None], 0, rng.STREAM_LAUNCH, xp.arange(n)[None, :])
        months = months + xp.asarray(params.launch_jitter)[None, None, :] * (2.0 * u[None] - 1.0)
    return MarketState(demand0=d0, demand=d0.copy(), noise=xp.zeros((paths.shape[0], len(params.chips))),
                       launch_month=months, log_weight=xp.zeros(paths.shape[0]) if params.demand_shift else None)


def first_year_factor(xp, params: MarketParams, seed: int, paths, demand0):
    """W = (D_12 - phi^12 D_0) / sqrt(1 - phi^24) (P,): the demand innovation over the first year,
    exactly N(0, 1), from the same Philox normals as months 1..12 of ``advance`` (shifted likewise
    under importance sampling). Wrong-way risk loads the copula's systematic factor on it."""
    d = demand0
    for t in range(1, FIRST_YEAR + 1):
        e = rng.normals_block(xp, seed, paths, t, rng.STREAM_DEMAND, 1)[:, 0]
        if params.demand_shift:
            e = e + params.demand_shift
        d = params.phi * d + np.sqrt(1.0 - params.phi**2) * e
    return (d - params.phi**FIRST_YEAR * demand0) / np.sqrt(1.0 - params.phi**(2 * FIRST_YEAR))


def advance(xp, params: MarketParams, state: MarketState, seed: int, paths, t: int, dtype):
    """Move the state to month t; return shocked demand (S, P) and spot prices (S, P, C)."""
    e = rng.normals_block(xp, seed, paths, t, rng.STREAM_DEMAND, 1)[:, 0]
    if params.demand_shift:  # importance sampling: same Philox normal, shifted after generation
        m = params.demand_shift
        state.log_weight = state.log_weight - m * e - 0.5 * m * m
        e = e + m
    state.demand = params.phi * state.demand + np.sqrt(1.0 - params.phi**2) * e
    eta = rng.normals_block(xp, seed, paths, t, rng.STREAM_PRICE, len(params.chips))
    psi = xp.asarray(params.psi)
    state.noise = psi * state.noise + xp.sqrt(1.0 - psi**2) * eta
    i = t - 1
    shock_a, shock_b = xp.asarray(params.demand_a[:, i, None]), xp.asarray(params.demand_b[:, i, None])
    demand = shock_a * state.demand[None, :] + shock_b
    innovation = shock_a * (state.demand - params.phi**t * state.demand0)[None, :] + shock_b  # since t = 0
    jump = xp.zeros(demand.shape)
    for n in range(params.launch_month.shape[1]):
        ramp = params.launch_ramp[n]
        elapsed = t - state.launch_month[:, :, n]
        share = (elapsed >= 0) if ramp == 0 else xp.clip(elapsed / ramp, 0.0, 1.0)
        jump = jump + xp.asarray(params.launch_log_step[:, n, None]) * share
    log_price = (xp.asarray(params.log_price0 - params.trend_monthly * t)[None, None, :]
                 + xp.asarray(params.kappa)[None, None, :] * innovation[:, :, None]
                 + xp.asarray(params.sigma)[None, None, :] * state.noise[None, :, :]
                 + jump[:, :, None])
    price = xp.asarray(params.price_a[:, None, :, i]) * xp.exp(log_price) + xp.asarray(params.price_b[:, None, :, i])
    return demand.astype(dtype), xp.maximum(price, 0.0).astype(dtype)


def utilization(xp, params: MarketParams, demand, chip_of_loan, seed: int, paths, t: int, dtype):
    """Utilisation of uncontracted GPUs (S, P, L): u_max logistic(a_c + beta D_t + sigma_u n_{i,t})
    with n from stream 2 (index = loan), then the scenario's utilisation shocks, clipped to [0, 1]."""
    n_loans = chip_of_loan.shape[0]
    noise = rng.normals_block(xp, seed, paths, t, rng.STREAM_UTILIZATION, n_loans).astype(dtype)
    intercept = xp.asarray(params.util_intercept[chip_of_loan], dtype=dtype)
    z = intercept[None, None, :] + (params.util_beta * demand)[:, :, None] + (params.util_sigma * noise)[None]
    u = params.u_max / (1.0 + xp.exp(-z))
    i = t - 1
    u = xp.asarray(params.util_a[:, i, None, None], dtype=dtype) * u + xp.asarray(params.util_b[:, i, None, None], dtype=dtype)
    return xp.clip(u, 0.0, 1.0)
