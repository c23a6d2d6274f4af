"""Collateral value (income approach) and liquidation proceeds after default.

Value of one GPU at month t:
    V(t) = max(scrap, P(t) 730 u_ref A(n_t, y + g) - opex A(n_t, y))
with n_t the useful life left (months), y the valuation discount rate, g the chip's price trend
and A(n, r) = (1 - (1 + r/12)^-n) / (r/12) the monthly annuity factor. USD per GPU.
"""

from __future__ import annotations

import numpy as np

from ..config.schema import StressConfig

HOURS_PER_MONTH = 730.0


def annuity_factor(n_months, annual_rate):
    """Present value of 1 USD a month for n months at ``annual_rate`` (0 for n <= 0)."""
    n = np.maximum(np.asarray(n_months, dtype=float), 0.0)
    r = np.asarray(annual_rate, dtype=float) / 12.0
    with np.errstate(divide="ignore", invalid="ignore"):
        a = -np.expm1(-n * np.log1p(r)) / r  # accurate for tiny r, where 1 - (1 + r)^-n rounds to 0
    return np.where(r == 0.0, n, a)


def reference_opex(cfg: StressConfig, chip: str) -> float:
    """Monthly operating cost of one GPU assumed by the valuation, USD per GPU per month."""
    v, u, c = cfg.market.valuation, cfg.market.utilization, cfg.market.chips[chip]
    draw = u.idle_power_share + (1.0 - u.idle_power_share) * v.utilization
    return c.power_kw * v.pue * HOURS_PER_MONTH * v.power_price * draw + c.opex_fixed


def valuation_factors(cfg: StressConfig, chips, age_months, months) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per loan (L,) and month (M,): ``income`` (USD per USD/GPU-h of spot price) and ``cost`` (USD)
    such that V = max(scrap, price * income - cost); and ``scrap`` (L,), USD per GPU."""
    m = cfg.market
    y = m.valuation.discount_rate
    life = np.array([m.chips[c].useful_life_months for c in chips], dtype=float)
    trend = np.array([m.chips[c].trend for c in chips])
    opex = np.array([reference_opex(cfg, c) for c in chips])
    left = life[:, None] - np.asarray(age_months, dtype=float)[:, None] - np.asarray(months)[None, :]
    income = HOURS_PER_MONTH * m.valuation.utilization * annuity_factor(left, y + trend[:, None])
    cost = opex[:, None] * annuity_factor(left, y)
    scrap = np.array([m.chips[c].scrap_value for c in chips])
    return income, cost, scrap


def collateral_value(xp, price, income, cost, scrap):
    """Collateral value per GPU (USD) for spot prices ``price`` (USD/GPU-h), broadcasting."""
    return xp.maximum(price * income - cost, scrap)


def fire_sale_keep(xp, cell, chip, gpus, inverse_depth, price_impact: float):
    """Share of the proceeds kept by each of this month's sales, 1 - price_impact x min(1, sold / depth):
    ``sold`` = the GPUs ``gpus`` (float64) of the sale's chip family sold by all sales of the same
    ``cell`` (scenario, tenor, path) this month, summed in sale order; ``inverse_depth`` (C,) = 1 / depth."""
    _, group = xp.unique(cell * inverse_depth.shape[0] + chip, return_inverse=True)
    group = group.reshape(-1)
    sold = xp.bincount(group, weights=gpus)[group]
    return 1.0 - price_impact * xp.minimum(1.0, sold * inverse_depth[chip])


def liquidation_proceeds(xp, gpus_alive, value, haircut, sale_cost, reserve, exposure, annual_rate, lag_months: int,
                         floor=None, keep=None):
    """Recovery (USD, at the default date): alive GPUs sold at value (1 - haircut)(1 - sale_cost),
    times the fire-sale ``keep`` (fire_sale_keep; None = no impact), at least ``floor`` USD per alive
    GPU (a residual value guarantee; None = none), plus the reserve balance, capped at the exposure,
    discounted over the lag at the loan rate."""
    sale = gpus_alive * value * (1.0 - haircut) * (1.0 - sale_cost)
    if keep is not None:
        sale = sale * keep
    if floor is not None:  # max(alive x net, alive x floor) = alive x max(net, floor): the same bits unfloored
        sale = xp.maximum(sale, gpus_alive * floor)
    return xp.minimum(sale + reserve, exposure) * (1.0 + annual_rate / 12.0) ** (-lag_months)
