"""Appraisal of the collateral from expected rents (model v2, ``market.valuation.method: appraisal``).

Value of loan i's fleet at appraisal month t (USD), N_i(t) its alive GPUs:
    V_i(t) = N_i(t) max(scrap_c, sum_{h=1..n_i} (d q_c)^h [ c_i 1{h <= h_i} (730 p_i - o_c)
                                     + (1 - c_i 1{h <= h_i}) max(0, 730 u_c E_c(t, h) - o_c) ])
with d = 1 / (1 + y/12), q_c = (1 - f_c)^(1/12) the monthly survival of a GPU, n_i = physical life
left (useful_life_months - age - t), h_i = contract months left, c_i and p_i the contracted share and
price, u_c the chip's reference utilisation and o_c the chip's reference opex per GPU-month at the
valuation's power price (shocked by the scenario at month t), PUE and opex_fixed.

E_c(t, h) is the appraiser's median spot price h months ahead: the trend and the launch schedule carry
on, the demand innovation and the chip noise revert at their AR(1) persistences, and the scenario's
price and demand shock maps of month t are held fixed:
    mu = log P0_c - g_c (t + h)/12 + kappa_c (a_D phi^h (D_t - phi^t D_0) + b_D) + sigma_c psi_c^h X_c(t) + J(t, t + h)
    E = max(0, a_P exp(mu) + b_P)
J counts a launch that has begun on this path by month t at its path month, and one that has not at
its scheduled month, or at t + 1 if that has passed.

Layout: the merchant term depends on the loan only through n_i and h_i, so one cumulative sum S(n)
over h per (cell, chip) serves every loan: merchant = S(n_i) - c_i S(min(h_i, n_i)), contract =
c_i (730 p_i - o_c) G_c(min(h_i, n_i)) with G_c(m) = sum_{h<=m} (d q_c)^h. Array-library generic
(``xp``). CUDA twins: ``appraisal_rent`` and ``appraisal_value`` in kernels/model.cuh, called by
``appraise_chips`` / ``loan_appraisal`` in kernels/engine.cu.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config.scenario import shocked_path
from ..config.schema import StressConfig
from .market import MarketParams
from .recovery import HOURS_PER_MONTH


@dataclass(frozen=True)
class AppraisalParams:
    """Host arrays of the appraisal: C chips, L loans, S scenarios, months 0..H, look-ahead W months."""

    every: int  # months between appraisals (0, every, 2 every, ...)
    gpus: np.ndarray  # (L,) GPUs at the valuation date
    discount: np.ndarray  # (C, W + 1) (d q_c)^h, h = 0..W
    annuity: np.ndarray  # (C, W + 1) G_c(m) = sum_{h=1..m} (d q_c)^h
    utilization: np.ndarray  # (C,) u_c
    opex: np.ndarray  # (S, C, H + 1) o_c at the scenario's valuation power price of month t, USD/GPU-month
    life: np.ndarray  # (L,) physical life left at the valuation date (life - age), months
    contract_months: np.ndarray  # (L,)
    contracted_share: np.ndarray  # (L,)
    contract_rent: np.ndarray  # (L,) 730 p_i, USD/GPU-month
    scrap: np.ndarray  # (L,) USD per GPU

    @property
    def window(self) -> int:
        return self.discount.shape[1] - 1


def build(cfg: StressConfig, tape, chips: tuple[str, ...], horizon: int) -> AppraisalParams:
    """Appraisal parameters for the market's chips and the tape's loans, months 0..horizon."""
    m = cfg.market
    v, idle = m.valuation, m.utilization.idle_power_share
    chip = [m.chips[c] for c in chips]
    life = np.array([m.chips[c].useful_life_months for c in tape.chip], dtype=np.int64) - tape.age_months
    window = max(int(life.max()), 1)
    h = np.arange(window + 1)
    d = 1.0 / (1.0 + v.discount_rate / 12.0)
    q = np.array([(1.0 - c.failure_rate) ** (1.0 / 12.0) for c in chip])
    discount = (d * q[:, None]) ** h[None, :]
    annuity = np.cumsum(np.where(h[None, :] > 0, discount, 0.0), axis=1)
    u = np.array([c.reference_utilization for c in chip])
    months = np.arange(horizon + 1)
    power = np.stack([shocked_path(sc.shocks, "power_price", v.power_price, months) for sc in cfg.scenario.values()])
    per_kwh = (np.array([c.power_kw for c in chip]) * v.pue * HOURS_PER_MONTH * (idle + (1.0 - idle) * u))
    opex = power[:, None, :] * per_kwh[None, :, None] + np.array([c.opex_fixed for c in chip])[None, :, None]
    return AppraisalParams(
        every=v.appraisal_months, gpus=tape.gpus.astype(float), discount=discount, annuity=annuity, utilization=u, opex=opex,
        life=life, contract_months=tape.contract_months.astype(np.int64),
        contracted_share=tape.contracted_share.astype(float),
        contract_rent=HOURS_PER_MONTH * tape.contract_price.astype(float),
        scrap=np.array([m.chips[c].scrap_value for c in tape.chip]))


def expected_prices(xp, mp: MarketParams, t: int, window: int, scen, dtilde, noise, launch_month):
    """E_c(t, h), h = 1..window, USD/GPU-h, shape (M, C, window), for M cells: scenario index
    ``scen`` (M,), demand innovation D_t - phi^t D_0 ``dtilde`` (M,), chip noise (M, C) and
    jittered launch months (M, N) of the cell's path."""
    h = xp.arange(1, window + 1, dtype=xp.float64)
    if t > 0:
        a_d, b_d = xp.asarray(mp.demand_a[:, t - 1])[scen], xp.asarray(mp.demand_b[:, t - 1])[scen]
        a_p, b_p = xp.asarray(mp.price_a[:, :, t - 1])[scen], xp.asarray(mp.price_b[:, :, t - 1])[scen]
    else:  # the valuation date: no shock yet
        a_d, b_d = xp.ones(scen.shape), xp.zeros(scen.shape)
        a_p, b_p = xp.ones((scen.shape[0], len(mp.chips))), xp.zeros((scen.shape[0], len(mp.chips)))
    demand = a_d[:, None] * (mp.phi ** h)[None, :] * dtilde[:, None] + b_d[:, None]  # (M, W)
    jump = xp.zeros(demand.shape)
    for n in range(mp.launch_month.shape[1]):
        path_month = launch_month[:, n]
        month = xp.where(path_month <= t, path_month, xp.maximum(xp.asarray(mp.launch_month[:, n])[scen], t + 1.0))
        elapsed = (t + h)[None, :] - month[:, None]
        ramp = mp.launch_ramp[n]
        share = (elapsed >= 0) if ramp == 0 else xp.clip(elapsed / ramp, 0.0, 1.0)
        jump += xp.asarray(mp.launch_log_step[:, n])[scen][:, None] * share
    psi = xp.asarray(mp.psi)[:, None] ** h[None, :]  # (C, W)
    trend = xp.asarray(mp.log_price0)[:, None] - xp.asarray(mp.trend_monthly)[:, None] * (t + h)[None, :]  # (C, W)
    # In place over the (M, C, W) array, in the order of the formula: trend + demand + noise + jump.
    price = xp.asarray(mp.kappa)[None, :, None] * demand[:, None, :]
    price += trend[None]
    price += (xp.asarray(mp.sigma)[:, None] * psi)[None] * noise[:, :, None]
    price += jump[:, None, :]
    xp.exp(price, out=price)
    price *= a_p[:, :, None]
    price += b_p[:, :, None]
    return xp.maximum(price, 0.0, out=price)


def appraise(xp, ap: AppraisalParams, mp: MarketParams, chip_of_loan, t: int, scen, dtilde, noise, launch_month,
             months_left=None, signed_rent=None):
    """Appraised value per alive GPU of every loan (M, L), USD, in the M cells of expected_prices.

    ``months_left`` (M, L) contract months after t and ``signed_rent`` (M, L) 730 x contract price, USD/GPU-month,
    of each cell's contract in force (stress.model.contract); None = the tape's signed contracts."""
    left = np.clip(ap.life - t, 0, ap.window)  # physical life left, months
    window = max(int(left.max()), 1)
    price = expected_prices(xp, mp, t, window, scen, dtilde, noise, launch_month)
    opex = xp.asarray(ap.opex[:, :, t])[scen]  # (M, C)
    u = xp.asarray(ap.utilization)[None, :, None]
    rent = price  # in place: max(730 u E - o, 0) (d q)^h
    rent *= HOURS_PER_MONTH * u
    rent -= opex[:, :, None]
    xp.maximum(rent, 0.0, out=rent)
    rent *= xp.asarray(ap.discount[:, 1:window + 1])[None]
    merchant = xp.zeros(rent.shape[:2] + (window + 1,))  # S(n), n = 0..W
    xp.cumsum(rent, axis=2, out=merchant[:, :, 1:])
    chip = xp.asarray(chip_of_loan)
    share = xp.asarray(ap.contracted_share)
    if months_left is None:
        contract = np.clip(np.minimum(ap.contract_months - t, left), 0, None)  # months of contract left in the life
        signed = merchant[:, chip, xp.asarray(contract)]
        annuity, signed_rent = xp.asarray(ap.annuity[chip_of_loan, contract]), xp.asarray(ap.contract_rent)
    else:  # each cell's own contract
        contract = xp.clip(xp.minimum(months_left, xp.asarray(left)), 0, None)
        signed = merchant[xp.arange(contract.shape[0])[:, None], chip[None, :], contract]
        annuity = xp.asarray(ap.annuity)[chip[None, :], contract]
    value = (merchant[:, chip, xp.asarray(left)] - share * signed
             + share * (signed_rent - opex[:, chip]) * annuity)
    return xp.maximum(value, xp.asarray(ap.scrap))
