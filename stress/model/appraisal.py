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


CELLS_PER_BLOCK = 1 << 17  # (months ahead) x cells of one block of the appraisal: its arrays stay in the CPU's cache
ROW_SUMS_FROM = 256  # cells from which rent_sums adds a row at a time


def launch_jump(xp, mp: MarketParams, t: int, window: int, scen, launch_month):
    """J(t, t + h), h = 1..window, (window, M): the log price steps of the launches for M cells,
    scenario ``scen`` (M,) and jittered launch months (M, N) of the cell's path.

    A launch's share is computed only in the months ahead where it is between 0 and 1 for some
    cell; before (all 0) it adds nothing, after (all 1) it adds its step: the same sums, bit for bit,
    as the share of every month (elapsed months rounded the same way bound every cell's)."""
    jump = xp.zeros((window, scen.shape[0]))
    if not mp.launch_month.shape[1]:
        return jump
    ahead = t + xp.arange(1, window + 1, dtype=xp.float64)  # t + h
    month = xp.where(launch_month <= t, launch_month, xp.maximum(xp.asarray(mp.launch_month)[scen], t + 1.0))  # (M, N)
    ramp = xp.asarray(mp.launch_ramp)
    sudden = ramp == 0
    first = ahead[:, None] - month.min(axis=0)[None, :]  # (W, N): the earliest launch month bounds every cell's elapsed months
    last = ahead[:, None] - month.max(axis=0)[None, :]
    begun = xp.count_nonzero(xp.where(sudden, first < 0, first <= 0), axis=0).tolist()  # leading months where all shares are 0
    done = xp.count_nonzero(xp.where(sudden, last < 0, last / xp.where(sudden, 1.0, ramp) < 1.0), axis=0).tolist()  # then all 1
    steps = xp.asarray(mp.launch_log_step)[scen]  # (M, N)
    for n in range(mp.launch_month.shape[1]):
        step = steps[:, n]
        if done[n] > begun[n]:
            elapsed = ahead[begun[n]:done[n], None] - month[None, :, n]
            share = (elapsed >= 0) if mp.launch_ramp[n] == 0 else xp.clip(elapsed / mp.launch_ramp[n], 0.0, 1.0)
            jump[begun[n]:done[n]] += step[None, :] * share
        jump[done[n]:] += step[None, :]
    return jump


def demand_term(xp, mp: MarketParams, t: int, window: int, scen, dtilde):
    """a_D phi^h (D_t - phi^t D_0) + b_D, h = 1..window, (window, M): the reverted demand innovation
    of M cells, scenario index ``scen`` (M,), ``dtilde`` = D_t - phi^t D_0 (M,), under the demand
    shock of month t (none at the valuation date)."""
    h = xp.arange(1, window + 1, dtype=xp.float64)
    if t > 0:
        a_d, b_d = xp.asarray(mp.demand_a[:, t - 1])[scen], xp.asarray(mp.demand_b[:, t - 1])[scen]
    else:
        a_d, b_d = xp.ones(scen.shape), xp.zeros(scen.shape)
    return (mp.phi ** h)[:, None] * a_d[None, :] * dtilde[None, :] + b_d[None, :]


def expected_prices(xp, mp: MarketParams, t: int, chip: int, window: int, scen, noise, demand, jump):
    """E_c(t, h), h = 1..window, USD/GPU-h, shape (window, M), of chip family ``chip`` for M cells:
    scenario index ``scen`` (M,), the chip's noise (M,), and the demand term (demand_term) and launch
    jump (launch_jump) of the cell's path, each at least ``window`` months ahead."""
    h = xp.arange(1, window + 1, dtype=xp.float64)
    if t > 0:
        a_p, b_p = xp.asarray(mp.price_a[:, chip, t - 1])[scen], xp.asarray(mp.price_b[:, chip, t - 1])[scen]
    else:  # the valuation date: no shock yet
        a_p, b_p = xp.ones(scen.shape), xp.zeros(scen.shape)
    # In place over the (W, M) array, in the order of the formula: trend + demand + noise + jump.
    price = demand[:window] * float(mp.kappa[chip])
    price += (float(mp.log_price0[chip]) - float(mp.trend_monthly[chip]) * (t + h))[:, None]
    price += (float(mp.sigma[chip]) * float(mp.psi[chip]) ** h)[:, None] * noise[None, :]
    price += jump[:window]
    xp.exp(price, out=price)
    price *= a_p[None, :]
    price += b_p[None, :]
    return xp.maximum(price, 0.0, out=price)


def rent_sums(xp, ap: AppraisalParams, mp: MarketParams, t: int, chip: int, window: int, scen, noise, demand, jump,
              opex):
    """S_c(n) = sum_{h=1..n} (d q_c)^h max(0, 730 u_c E_c(t, h) - o_c), n = 0..window, (window + 1, M),
    USD per GPU, for the cells of expected_prices and their opex o_c (M,)."""
    rent = expected_prices(xp, mp, t, chip, window, scen, noise, demand, jump)  # in place: max(730 u E - o, 0) (d q)^h
    rent *= HOURS_PER_MONTH * float(ap.utilization[chip])
    rent -= opex[None, :]
    xp.maximum(rent, 0.0, out=rent)
    rent *= xp.asarray(ap.discount[chip, 1:window + 1])[:, None]
    sums = xp.zeros((window + 1, scen.shape[0]))
    if scen.shape[0] >= ROW_SUMS_FROM:  # the same running sums, a row at a time: numpy's cumsum along axis 0
        for h in range(window):         # costs ~4 ns a value, a row add ~1 us plus 0.1 ns a value
            xp.add(sums[h], rent[h], out=sums[h + 1])
    else:
        xp.cumsum(rent, axis=0, out=sums[1:])
    return sums


def appraise(xp, ap: AppraisalParams, mp: MarketParams, chip_of_loan, t: int, scen, dtilde, noise, launch_month,
             months_left=None, signed_rent=None, sales=None):
    """Appraised value per alive GPU, USD, in M cells: scenario index ``scen`` (M,), demand innovation
    D_t - phi^t D_0 ``dtilde`` (M,), chip noise (M, C) and jittered launch months (M, N) of the cell's
    path. Of every loan (M, L); with ``sales`` = (cell, loan) (Q,) each, of loan ``loan[q]`` in cell
    ``cell[q]`` only (Q,), computing only the chips and cells sold. Cells are taken a block at a time.
    ``months_left`` (M, L) contract months after t and ``signed_rent`` (M, L) 730 x contract price,
    USD/GPU-month, of each cell's contract in force (stress.model.contract); None = the tape's signed
    contracts."""
    left = np.clip(ap.life - t, 0, ap.window)  # physical life left, months
    M, L = scen.shape[0], len(chip_of_loan)
    if months_left is None:  # the tape's contracts, the same in every cell
        contract = xp.broadcast_to(xp.asarray(np.clip(np.minimum(ap.contract_months - t, left), 0, None)), (M, L))
        signed_rent = xp.broadcast_to(xp.asarray(ap.contract_rent), (M, L))
    else:  # each cell's own contract
        contract = xp.clip(xp.minimum(months_left, xp.asarray(left)), 0, None)  # months of contract left in the life
    annuity = xp.asarray(ap.annuity)[xp.asarray(chip_of_loan)[None, :], contract]  # (M, L)
    opex = xp.asarray(ap.opex[:, :, t])[scen]  # (M, C)
    chips = [c for c in range(len(mp.chips)) if (chip_of_loan == c).any()]
    windows = {c: int(left[chip_of_loan == c].max()) for c in chips}  # the longest life left of the chip's loans

    def sums(cells, chips):  # {chip: (window + 1, cells)} of the cells (index array), a block at a time
        out = {c: [] for c in chips}
        window = max(1, max(windows[c] for c in chips))
        block = max(1, CELLS_PER_BLOCK // window)
        for a in range(0, cells.shape[0], block):
            i = cells[a:a + block]
            demand, jump = demand_term(xp, mp, t, window, scen[i], dtilde[i]), launch_jump(xp, mp, t, window, scen[i], launch_month[i])
            for c in chips:
                out[c].append(rent_sums(xp, ap, mp, t, c, windows[c], scen[i], noise[i, c], demand, jump, opex[i, c]))
        return {c: xp.concatenate(out[c], axis=1) for c in chips}

    if sales is None:
        cell, loan = slice(None), slice(None)
        at_life, at_contract = xp.zeros((M, L)), xp.zeros((M, L))
        for c, s in sums(xp.arange(M), chips).items():
            mine = np.flatnonzero(chip_of_loan == c)
            at_life[:, mine] = s[xp.asarray(left[mine])].T
            at_contract[:, mine] = s[contract[:, mine], xp.arange(M)[:, None]]
    else:
        cell, loan = sales
        at_life, at_contract = xp.zeros(loan.shape), xp.zeros(loan.shape)
        sold_chip = xp.asarray(chip_of_loan)[loan]
        for c in chips:
            mine = xp.flatnonzero(sold_chip == c)
            if mine.size:
                cells, which = xp.unique(cell[mine], return_inverse=True)
                s = sums(cells, [c])[c]
                which = which.reshape(-1)
                at_life[mine] = s[xp.asarray(left)[loan[mine]], which]
                at_contract[mine] = s[contract[cell[mine], loan[mine]], which]
    chip = xp.asarray(chip_of_loan)[loan]
    share = xp.asarray(ap.contracted_share)[loan]
    value = (at_life - share * at_contract
             + share * (signed_rent[cell, loan] - opex[cell, chip]) * annuity[cell, loan])
    return xp.maximum(value, xp.asarray(ap.scrap)[loan])
