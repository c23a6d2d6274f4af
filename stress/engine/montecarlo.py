"""The Monte Carlo engine: the month loop over a chunk of paths of one batched problem (every
scenario x tenor on common random numbers, stress.engine.problem).

``simulate`` runs paths [start, stop) and returns per-path losses, per-loan sums and fan samples.
It is array-library generic: the same code runs on numpy (the reference) and on cupy.

Importance sampling (``mc.importance_sampling``, Glasserman and Li 2005): the copula systematic
factor and the demand innovations are drawn from the same Philox streams and then shifted to the
adverse side (Z -> Z - a; market.py for demand). Each path carries the likelihood ratio of its
shifted normals, per tenor: tenor k only sees the market up to its last month + the liquidation
lag, so its weight multiplies the ratios of those months only (a smaller variance than the ratio
of the whole horizon, and still unbiased because the later factors have mean 1). The per-loan and
per-month sums are weighted; ``ChunkResult.weight`` (K, P) goes to the metrics. Without IS no
line of the plain computation changes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..model import appraisal, contract, market, recovery, rng, waterfall
from .chunk import ChunkResult
from .problem import Problem

MIN_SERVICE = 0.01  # USD a month: with less than a cent due a loan has no DSCR (its ratio would overflow)
COMPACT_BELOW = 0.75  # the month loop drops finished cells once fewer than this share of those it holds are live


@dataclass
class DefaultRecords:
    """What is kept of each (scenario, tenor, path, loan) cell once it defaults, shape (S, K, P, L)."""

    month: object  # 1-based month of default, 0 = none (int16)
    cause: object  # index into waterfall.CAUSES (int8)
    exposure: object  # USD
    reserve: object  # reserve balance at default, USD
    annual_rate: object  # loan rate at default, for discounting the recovery
    loss: object  # USD, filled when the collateral is sold

    @classmethod
    def empty(cls, xp, shape, dtype) -> "DefaultRecords":
        zeros = lambda: xp.zeros(shape, dtype=dtype)  # noqa: E731
        return cls(month=xp.zeros(shape, dtype=xp.int16), cause=xp.zeros(shape, dtype=xp.int8),
                   exposure=zeros(), reserve=zeros(), annual_rate=zeros(), loss=zeros())

    def add(self, idx: tuple, new: waterfall.NewDefaults, t: int) -> tuple:
        """Record this month's defaults at ``idx`` (s, k, p, l) of the records; return ``idx``."""
        self.month[idx] = t
        self.cause[idx] = new.cause
        self.exposure[idx] = new.exposure
        self.reserve[idx] = new.reserve
        self.annual_rate[idx] = new.annual_rate
        return idx


@dataclass
class LiveCells:
    """The (scenario, tenor, path, loan) cells the month loop still simulates, in C order of the
    (S, K, P, L) grid, and what each needs of the problem: one entry per cell. Cells whose loan has
    defaulted or been repaid are dropped (``keep``), so finished loans cost nothing."""

    grid: tuple  # (S, K, P, L)
    flat: object  # index into the grid
    spl: object  # index into (S, P, L) arrays (market and cash flow of the cell's path)
    sl: object  # index into (S, L) arrays
    kl: object  # index into (K, L) arrays
    tenor: object  # maturity month
    exogenous_month: object  # first month the copula draw is at or below the default threshold (T + 1: never)
    reserve_target: object  # USD
    dscr_min: object
    ltv_max: object
    refinanced: object  # bullet or balloon
    fan: object  # positions of the cells of the fan paths p < F ...
    fan_flat: object  # ... and their index into (S, K, F, L)

    @classmethod
    def every(cls, xp, prob: Problem, P: int, F: int, exogenous_month, dtype) -> "LiveCells":
        """All S x K x P x L cells; ``exogenous_month`` (S, P, L)."""
        S, K, L = prob.shape
        grid = (S, K, P, L)
        s, k, p, l = (xp.arange(n, dtype=xp.int64).reshape([-1 if d == i else 1 for d in range(4)])
                      for i, n in enumerate(grid))
        cell = lambda a, dt=None: xp.broadcast_to(a if dt is None else xp.asarray(a, dtype=dt), grid).reshape(-1)  # noqa: E731
        fan = (xp.arange(S * K)[:, None, None] * P * L + xp.arange(F * L).reshape(1, F, L)).reshape(-1)
        return cls(grid=grid, flat=xp.arange(S * K * P * L, dtype=xp.int64), spl=cell((s * P + p) * L + l),
                   sl=cell(s * L + l), kl=cell(k * L + l), tenor=cell(prob.tenor[None, :, None, :], xp.int64),
                   exogenous_month=cell(exogenous_month[:, None]),
                   reserve_target=cell(prob.reserve_target[None, :, None, :], dtype), dscr_min=cell(prob.dscr_min, dtype),
                   ltv_max=cell(prob.ltv_max, dtype), refinanced=cell(prob.refinanced, bool), fan=fan,
                   fan_flat=xp.arange(S * K * F * L, dtype=xp.int64))

    def keep(self, xp, mask) -> "LiveCells":
        """The cells where ``mask`` (N,) is true."""
        fields = {name: xp.compress(mask, getattr(self, name)) for name in self.__dataclass_fields__
                  if name not in ("grid", "fan", "fan_flat")}
        is_fan = xp.zeros(mask.shape, dtype=bool)
        is_fan[self.fan] = True
        fan_flat = xp.zeros(mask.shape, dtype=xp.int64)
        fan_flat[self.fan] = self.fan_flat
        kept = xp.compress(mask, is_fan)
        return LiveCells(grid=self.grid, **fields, fan=xp.flatnonzero(kept),
                         fan_flat=xp.compress(kept, xp.compress(mask, fan_flat)))


def simulate(xp, prob: Problem, seed: int, start: int, stop: int, fan_paths: int,
             dtype=np.float64, keep_paths: bool = False, to_host=np.asarray) -> ChunkResult:
    """Run paths [start, stop) through months 1..T (+ the liquidation lag) on library ``xp``."""
    S, K, L = prob.shape
    T, H = prob.months, prob.months + prob.lag
    P = stop - start
    F = max(0, min(fan_paths, stop) - start)
    dev = lambda a, dt=dtype: xp.asarray(a, dtype=dt)  # noqa: E731
    paths = xp.arange(start, stop, dtype=xp.int64)
    chip = prob.chip_of_loan
    cp = prob.contracts
    mstate = market.start(xp, prob.market, seed, paths)
    eps = rng.normals_block(xp, seed, paths, 0, rng.STREAM_COPULA_IDIO, L)
    z = rng.normals_block(xp, seed, paths, 0, rng.STREAM_COPULA_SYS, 1)
    if prob.importance_sampling:  # same Philox normal, shifted after generation
        shift = -prob.is_shift_copula
        log_lr0 = -shift * z[:, 0] - 0.5 * shift * shift
        z = z + shift
        log_lr = xp.zeros((K, P))
        weight_month = prob.tenor.max(axis=1) + prob.lag  # (K,) last market month each tenor sees
        if prob.demand_corr or cp is not None:  # W uses the shifted innovations of months 1..12: their ratios belong in the weight
            weight_month = np.maximum(weight_month, market.FIRST_YEAR)
    z0 = z[:, 0]
    w_year = market.first_year_factor(xp, prob.market, seed, paths, mstate.demand0) if prob.demand_corr or cp is not None else None
    if prob.demand_corr:  # wrong-way risk: Z = r W + sqrt(1 - r^2) Z0, still N(0, 1)
        r = prob.demand_corr
        z = r * w_year[:, None] + np.sqrt(1.0 - r * r) * z
    if cp is not None:  # offtakers: one latent variable each, their default months, the contracts in force
        eta = rng.normals_block(xp, seed, paths, 0, rng.STREAM_OFFTAKER, cp.drawn) if cp.drawn else xp.zeros((P, 0))
        offtaker_month = contract.default_months(xp, cp, contract.latent(xp, cp, w_year, z0, eta))  # (S, P, O)
        deals = contract.ContractState.start(xp, cp, offtaker_month, (S, P, L))
    load = dev(prob.copula_load, np.float64)
    copula = (load * z + xp.sqrt(1.0 - load**2) * eps)[None, None]  # (1, 1, P, L), float64

    cures = prob.rules.max_cures > 0
    cells = LiveCells.every(xp, prob, P, F, _exogenous_month(xp, prob, copula), dtype)
    per_cell = lambda a: xp.broadcast_to(dev(a), cells.grid).reshape(-1)  # noqa: E731  (L,) -> every cell
    st = waterfall.open_state(xp, per_cell(prob.principal), cells.reserve_target, dtype,
                              cure_capacity=per_cell(prob.cure_capacity) if cures else None)
    equity = xp.zeros((S, K, P, L), dtype=xp.float64) if cures else None  # injected per cell, USD
    rec = DefaultRecords.empty(xp, (S, K, P, L), dtype)
    borrower = dev(prob.borrower) if prob.borrower is not None else None
    pending = {}  # month of sale -> index tuple of the loans that defaulted `lag` months before
    weight = dev(prob.principal)
    price_fan = np.full((S, F, len(prob.market.chips), T), np.nan)
    ltv_fan = np.full((S, K, F, T), np.nan)
    dscr_fan = np.full((S, K, F, T), np.nan)

    ap = prob.appraisal
    if ap is not None:  # the appraisal at the valuation date serves the LTV tests until the next one
        every_cell = (xp.repeat(xp.arange(S), P), xp.tile(xp.arange(P), S))
        signed = None if cp is None else (deals.months_left(xp, cp, 0), recovery.HOURS_PER_MONTH * deals.price)
        appraised = (dev(ap.gpus) * _appraise(xp, prob, mstate, 0, *every_cell, signed).reshape(S, P, L)).astype(dtype)
    for t in range(1, H + 1):
        i = t - 1
        demand, price = market.advance(xp, prob.market, mstate, seed, paths, t, dtype)
        if prob.importance_sampling:
            for k in np.flatnonzero(weight_month == t):
                log_lr[k] = log_lr0 if mstate.log_weight is None else log_lr0 + mstate.log_weight
        loan_price = price[:, :, chip]  # (S, P, L)
        if ap is None:
            value = recovery.collateral_value(xp, loan_price, dev(prob.value_income[:, i]),
                                              dev(prob.value_cost[:, i]), dev(prob.scrap))
        if t <= T:
            util = market.utilization(xp, prob.market, demand, chip, seed, paths, t, dtype)
            if cp is None:
                cfads = _cfads(dev(prob.contract_revenue[:, i]), dev(prob.opex_base[:, :, i])[:, None, :], util,
                               dev(prob.merchant_hours[:, i]), loan_price, dev(prob.opex_slope[:, :, i])[:, None, :])
            else:  # each cell's contract is on (its rent, its offtaker alive) or off (every GPU at spot)
                cfads = xp.where(deals.on(t),
                                 _cfads((xp.asarray(cp.hours_on[:, i]) * deals.price).astype(dtype),
                                        dev(cp.base_on[:, :, i])[:, None, :], util, dev(cp.merchant_on[:, i]), loan_price,
                                        dev(cp.slope_on[:, :, i])[:, None, :]),
                                 _cfads(xp.zeros((), dtype=dtype), dev(cp.base_off[:, :, i])[:, None, :], util, dev(cp.merchant_off[:, i]),
                                        loan_price, dev(cp.slope_off[:, :, i])[:, None, :]))
            if ap is not None and t % ap.every == 0:
                signed = None if cp is None else (deals.months_left(xp, cp, t), recovery.HOURS_PER_MONTH * deals.price)
                appraised = (dev(prob.gpus_alive[:, i]) * _appraise(xp, prob, mstate, t, *every_cell, signed
                                                                    ).reshape(S, P, L)).astype(dtype)
            collateral = dev(prob.gpus_alive[:, i]) * value if ap is None else appraised  # (S, P, L)
            cell_collateral = xp.take(collateral, cells.spl)
            if F:
                opening, was_live = xp.take(st.balance, cells.fan), xp.take(st.active, cells.fan)  # step() replaces both
            cross = None if borrower is None else functools.partial(
                waterfall.spread_to_borrower, xp, borrower, cells.flat, cells.grid)
            new, service = waterfall.step(
                xp, st, t, prob.rules, cfads=xp.take(cfads, cells.spl), ltv_limit=cells.ltv_max * cell_collateral,
                refi_limit=prob.rules.refi_ltv_max * cell_collateral,
                monthly_rate=xp.take(dev(prob.monthly_rate[:, :, i]), cells.sl),
                regular_balance=xp.take(dev(prob.regular_balance[:, :, i]), cells.kl),
                at_maturity=cells.tenor == t if (prob.tenor == t).any() else None,
                exogenous_hit=cells.exogenous_month <= t, cross=cross, refinanced=cells.refinanced,
                dscr_min=cells.dscr_min, reserve_target=cells.reserve_target)
            if cures:
                equity.reshape(-1)[cells.flat] += st.injected
            if new is not None:
                idx = xp.unravel_index(cells.flat[new.index[0]], cells.grid)
                pending[t + prob.lag] = rec.add(idx, new, t)
            if F:
                price_fan[:, :, :, i] = to_host(price[:, :F])
                _fan_month(xp, cells, (S, K, F, L), opening, was_live, service[cells.fan], collateral[:, None, :F],
                           cfads[:, None, :F], weight, ltv_fan[:, :, :, i], dscr_fan[:, :, :, i], to_host)
            live = st.active
            if int(xp.count_nonzero(live)) < COMPACT_BELOW * live.size:
                st.keep(live)
                cells = cells.keep(xp, live)
        idx = pending.pop(t, None)
        if idx is not None:  # collateral of the loans that defaulted `lag` months ago is sold now
            s_, k_, p_, l_ = idx
            if ap is None:
                sold = value[s_, p_, l_]
            else:  # a fresh appraisal at the sale month, of the (scenario, path) cells with a sale only
                sales, which = xp.unique(s_.astype(xp.int64) * P + p_, return_inverse=True)
                signed = None if cp is None else (deals.months_left(xp, cp, t, sale=True),
                                                  recovery.HOURS_PER_MONTH * deals.price)
                sold = _appraise(xp, prob, mstate, t, sales // P, sales % P, signed,
                                 sales=(which.reshape(-1), l_)).astype(dtype)
            proceeds = recovery.liquidation_proceeds(
                xp, dev(prob.gpus_alive[:, i])[l_], sold, dev(prob.haircut[:, i])[s_], prob.sale_cost,
                rec.reserve[idx], rec.exposure[idx], rec.annual_rate[idx], prob.lag,
                floor=None if prob.rvg is None else dev(prob.rvg)[l_],
                keep=None if prob.inverse_depth is None else recovery.fire_sale_keep(
                    xp, (s_.astype(xp.int64) * K + k_) * P + p_, xp.asarray(chip)[l_],
                    dev(prob.gpus_alive[:, i], np.float64)[l_], dev(prob.inverse_depth, np.float64),
                    prob.price_impact).astype(dtype))
            rec.loss[idx] = rec.exposure[idx] - proceeds
        if cp is not None:
            deals.renew(xp, cp, seed, paths, t, loan_price)

    res = _chunk_result(xp, rec, start, T, price_fan, ltv_fan, dscr_fan, keep_paths, to_host,
                        lr=xp.exp(log_lr) if prob.importance_sampling else None)
    if cp is not None:  # paths on which each offtaker defaults within each tenor's last month
        hit = offtaker_month[:, None] <= xp.asarray(prob.tenor.max(axis=1))[None, :, None, None]  # (S, K, P, O)
        res.offtaker_defaults = to_host(hit.sum(2) if not prob.importance_sampling else
                                        (hit * xp.exp(log_lr)[None, :, :, None]).sum(2))
    if prob.facilities:
        res.facility_loss = to_host(xp.stack([rec.loss[..., np.flatnonzero(prob.facility_of_loan == f)].sum(-1, dtype=xp.float64)
                                              for f in range(len(prob.facilities))], axis=-1))
    if cures:
        cell = equity if not prob.importance_sampling else equity * xp.exp(log_lr)[None, :, :, None]
        res.loan_equity, res.loan_equity_sq = to_host(cell.sum(2)), to_host((cell * cell).sum(2))
        lost = xp.where(rec.month > 0, cell, 0.0)  # injected before a default: the sponsor loses it
        res.loan_equity_lost, res.loan_equity_lost_sq = to_host(lost.sum(2)), to_host((lost * lost).sum(2))
    return res


def _exogenous_month(xp, prob: Problem, copula):
    """(S, P, L) int16: the first month t <= T at which the cell's copula draw (1, 1, P, L) is at or
    below its exogenous default threshold (S, L, T), T + 1 when it never is. A live loan defaults
    at that month (exogenous), so the month's test ``copula <= threshold`` is ``month <= t``."""
    S, _, L = prob.shape
    T = prob.months
    first = xp.full((S,) + copula.shape[2:], T + 1, dtype=xp.int16)
    for i in range(T - 1, -1, -1):  # from the last month back: the earliest hit is written last
        hit = copula[0, 0] <= xp.asarray(prob.exogenous_threshold[:, :, i])[:, None, :]
        first[hit] = i + 1
    return first


def _fan_month(xp, cells: LiveCells, shape, opening, was_live, service, collateral, cfads, weight, ltv_out, dscr_out,
               to_host) -> None:
    """One month of the LTV and DSCR fans (S, K, F) into ``ltv_out`` and ``dscr_out``: the
    principal-weighted means over the loans live at the start of the month, from the fan cells'
    opening balance, liveness and debt service (positions ``cells.fan``)."""
    live = xp.zeros(shape, dtype=bool)
    live.reshape(-1)[cells.fan_flat] = was_live
    dense_opening, dense_service = xp.zeros(shape, dtype=opening.dtype), xp.zeros(shape, dtype=service.dtype)
    dense_opening.reshape(-1)[cells.fan_flat] = opening
    dense_service.reshape(-1)[cells.fan_flat] = service
    w = xp.where(live, weight, 0.0)
    wsum = w.sum(-1)
    serviced = live & (dense_service >= MIN_SERVICE)  # nothing (or under a cent) due: no DSCR
    w_dscr = xp.where(serviced, weight, 0.0)
    w_dscr_sum = w_dscr.sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ltv = xp.where(live, dense_opening / collateral, 0.0)
        dscr = xp.where(serviced, cfads / xp.where(serviced, dense_service, 1.0), 0.0)  # no 1/1e-300 overflow
        ltv_out[...] = to_host(xp.where(wsum > 0, (w * ltv).sum(-1) / wsum, xp.nan))
        dscr_out[...] = to_host(xp.where(w_dscr_sum > 0, (w_dscr * dscr).sum(-1) / w_dscr_sum, xp.nan))


def _cfads(revenue, opex_base, util, merchant_hours, price, opex_slope):
    """CFADS = contract revenue - opex not proportional to utilisation + u (merchant GPU-hours x spot
    price - opex per unit of utilisation), USD (broadcasting)."""
    return revenue - opex_base + util * (merchant_hours * price - opex_slope)


def _appraise(xp, prob: Problem, mstate: market.MarketState, t: int, scen, path, signed=None, sales=None):
    """Appraised value per alive GPU (M, L), USD, at month t of the cells (scenario ``scen``, path
    ``path``) (M,), from the market state of month t; ``signed`` = (contract months left, 730 x contract
    price), each (S, P, L), of the contracts in force (None: the tape's); with ``sales``
    (appraisal.appraise), (Q,) of the loans sold only."""
    dtilde = mstate.demand - prob.market.phi**t * mstate.demand0
    launches = mstate.launch_month.shape
    launch_month = xp.broadcast_to(mstate.launch_month, (launches[0], dtilde.shape[0], launches[2]))  # (S, 1, 0) without launches
    months_left, rent = (None, None) if signed is None else (signed[0][scen, path], signed[1][scen, path])
    return appraisal.appraise(xp, prob.appraisal, prob.market, prob.chip_of_loan, t, scen, dtilde[path],
                              mstate.noise[path], launch_month[scen, path], months_left, rent, sales=sales)


def _chunk_result(xp, rec: DefaultRecords, start, T, price_fan, ltv_fan, dscr_fan, keep_paths, to_host,
                  lr=None) -> ChunkResult:
    """Per-path losses and the sums over the chunk's paths. With importance sampling every sum is
    weighted by the path's likelihood ratio for its tenor, ``lr`` (K, P)."""
    S, K = rec.month.shape[:2]
    defaulted = rec.month > 0
    cell = 1.0 if lr is None else xp.broadcast_to(lr[None, :, :, None], defaulted.shape)
    w = None if lr is None else cell[defaulted]
    month_index = xp.where(defaulted, rec.month.astype(xp.int64) - 1, 0)
    flat = (xp.arange(S * K).reshape(S, K, 1, 1) * T + month_index)[defaulted]
    exposure = rec.exposure[defaulted].astype(xp.float64)
    exposure_by_month = xp.bincount(flat, weights=exposure if w is None else exposure * w, minlength=S * K * T)
    cause_flat = (xp.arange(S * K).reshape(S, K, 1, 1) * 4 + rec.cause.astype(xp.int64) - 1)[defaulted]
    causes = xp.bincount(cause_flat, weights=w, minlength=S * K * 4)
    with np.errstate(divide="ignore", invalid="ignore"):
        lgd = xp.where(defaulted, rec.loss / rec.exposure, 0.0)
    return ChunkResult(
        start=start,
        loss=to_host(rec.loss.sum(-1, dtype=xp.float64)),
        loan_loss=to_host((rec.loss * cell).sum(2, dtype=xp.float64)),
        loan_defaults=to_host(defaulted.sum(2) if lr is None else (defaulted * cell).sum(2)),
        loan_lgd=to_host((lgd * cell).sum(2, dtype=xp.float64)),
        defaulted_exposure=to_host(exposure_by_month.reshape(S, K, T)),
        cause_count=to_host(causes.reshape(S, K, 4)),
        price=price_fan,
        ltv=ltv_fan,
        dscr=dscr_fan,
        default_month=to_host(rec.month) if keep_paths else None,
        default_cause=to_host(rec.cause) if keep_paths else None,
        weight=None if lr is None else to_host(lr),
    )
