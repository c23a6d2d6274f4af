"""The problem of a run: every array the month loop needs, built once from the typed config
and the loan tape (scenario x tenor x loan), shared by every backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..config.portfolio import Portfolio
from ..config.scenario import shocked_path, shocked_scalar
from ..config.schema import TAPE, StressConfig, uses_tape_tenors
from ..errors import ConfigError
from ..model import appraisal, contract, market, recovery, schedule, tranche, waterfall


@dataclass(frozen=True)
class Problem:
    """Everything the month loop needs, as host (numpy) arrays.

    Shapes: S scenarios, K tenors, L loans, C chips, T loan months (longest tenor), H = T + lag
    market months. Money in USD, rates per month unless named annual.
    """

    scenarios: tuple[str, ...]
    tenors: tuple[int, ...] | tuple[str]  # months, ascending; or ("tape",): each loan's tape_tenor
    loans: tuple[str, ...]
    borrowers: tuple[str, ...]  # (L,) the tape's borrower of each loan (reporting group)
    loan_chips: tuple[str, ...]  # (L,) the tape's chip family of each loan
    months: int
    lag: int
    market: market.MarketParams
    rules: waterfall.Rules
    chip_of_loan: np.ndarray  # (L,) index into market.chips
    principal: np.ndarray  # (L,)
    cure_capacity: np.ndarray  # (L,) equity the sponsor can inject over the life, USD
    dscr_min: np.ndarray  # (L,)
    ltv_max: np.ndarray  # (L,)
    refinanced: np.ndarray  # (L,) bullet or balloon
    borrower: Optional[np.ndarray]  # (L, B) one-hot, only with cross-default
    copula_load: np.ndarray  # (L,) sqrt(rho)
    tape_tenor: np.ndarray  # (L,) the tape's tenor_months (simulated only with tenors=tape)
    tenor: np.ndarray  # (K, L) months
    reserve_target: np.ndarray  # (K, L) USD
    regular_balance: np.ndarray  # (K, L, T) USD after the month's regular payment
    scheduled_payment: np.ndarray  # (K, L, T) contractual payment at the baseline rate
    scheduled_balance: np.ndarray  # (K, L, T)
    monthly_rate: np.ndarray  # (S, L, T)
    exogenous_threshold: np.ndarray  # (S, L, T) Phi^-1 of the cumulative PD
    gpus_alive: np.ndarray  # (L, H)
    contract_revenue: np.ndarray  # (L, H)
    merchant_hours: np.ndarray  # (L, H) GPU-hours of uncontracted alive GPUs
    opex_base: np.ndarray  # (S, L, H) opex not proportional to utilisation
    opex_slope: np.ndarray  # (S, L, H) opex per unit of utilisation
    value_income: np.ndarray  # (L, H) collateral value per USD/GPU-h of spot price
    value_cost: np.ndarray  # (L, H)
    scrap: np.ndarray  # (L,)
    rvg: Optional[np.ndarray]  # (L,) residual value guarantee, USD per alive GPU; None when no loan has one
    inverse_depth: Optional[np.ndarray]  # (C,) fire sale: 1 / market_depth of each family (0 = infinite); None = no impact
    price_impact: float
    haircut: np.ndarray  # (S, H)
    sale_cost: float
    appraisal: Optional[appraisal.AppraisalParams] = None  # valuation method appraisal; None = spot (value_income/cost)
    importance_sampling: bool = False  # results carry likelihood-ratio weights (ChunkResult.weight)
    is_shift_copula: float = 0.0  # IS: the copula systematic factor is drawn as Z - is_shift_copula
    demand_corr: float = 0.0  # wrong-way risk: the copula's systematic factor is r W + sqrt(1 - r^2) Z0
    facilities: tuple[str, ...] = ()  # (Fa,) facilities with tranches (portfolio.facilities), in config order
    facility_of_loan: Optional[np.ndarray] = None  # (L,) index into facilities, -1 = none; None without facilities
    tranches: tuple[tranche.Tranche, ...] = ()  # every facility's tranches, facility by facility
    contracts: Optional[contract.ContractParams] = None  # offtakers and renewals; None = the tape's signed schedule

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.scenarios), len(self.tenors), len(self.loans)


def build_problem(cfg: StressConfig, tape: Portfolio) -> Problem:
    """Set up the batched problem for all selected scenarios and tenors."""
    scen = list(cfg.scenario.values())
    tape_tenors = uses_tape_tenors(cfg.tenors)
    tenors = (TAPE,) if tape_tenors else tuple(sorted(int(k) for k in cfg.tenors))  # ascending: see simulate
    tenor = np.array([tape.tenor_months] if tape_tenors else [np.full(len(tape), k) for k in tenors], dtype=np.int64)
    months = int(tenor.max())
    lag = cfg.model.recovery.lag_months
    horizon = months + lag
    t_loan = np.arange(1, months + 1)
    t_all = np.arange(1, horizon + 1)
    params = market.build_params(cfg, horizon)
    chip_index = {c: i for i, c in enumerate(params.chips)}
    chip_of_loan = np.array([chip_index[c] for c in tape.chip])
    floating = tape.rate_type == "floating"

    base_rates = np.stack([shocked_path(sc.shocks, "base_rate", cfg.market.base_rate, t_loan) for sc in scen])
    annual = np.where(floating[None, :, None], base_rates[:, None, :] + tape.rate[None, :, None], tape.rate[None, :, None])
    rate0 = np.where(floating, cfg.market.base_rate + tape.rate, tape.rate)
    scheds = [schedule.build(tape.principal, rate0, tenor[k], tape.amortization, tape.balloon_pct, months)
              for k in range(len(tenors))]
    reserve_target = np.stack([tape.reserve_months * s.payment[:, 0] for s in scheds])

    pd_mult = np.array([shocked_scalar(sc.shocks, "pd_multiplier", 1.0) for sc in scen])
    pd = np.clip(tape.pd_annual[None, :] * pd_mult[:, None], 0.0, 1.0)
    with np.errstate(divide="ignore"):  # pd = 1: log1p(-1) = -inf gives a cumulative PD of 1, as it should
        cumulative_pd = -np.expm1(np.log1p(-pd)[:, :, None] * t_loan[None, None, :] / 12.0)
    from scipy.special import ndtri  # imported here: `import stress` stays light

    threshold = ndtri(np.where(pd[:, :, None] >= 1.0, 1.0, cumulative_pd))

    alive = tape.gpus[:, None] * (1.0 - np.array([cfg.market.chips[c].failure_rate for c in tape.chip]))[:, None] ** (t_all[None, :] / 12.0)
    contracted = tape.contracted_share[:, None] * alive * (t_all[None, :] <= tape.contract_months[:, None])
    contracted_hours, merchant_hours, opex_base, opex_slope = contract.cash_flow_tables(cfg, tape, alive, contracted)
    income, cost, scrap = recovery.valuation_factors(cfg, tape.chip, tape.age_months, t_all)
    haircut = np.clip(np.stack([shocked_path(sc.shocks, "haircut", cfg.model.recovery.haircut, t_all) for sc in scen]), 0.0, 1.0)

    offtakers = (np.asarray(tape.offtaker) != "").any()
    if cfg.mc.importance_sampling and (cfg.model.exogenous.demand_corr or offtakers) and horizon < market.FIRST_YEAR:
        raise ConfigError(f"model.exogenous.demand_corr or a tape with offtakers, with mc.importance_sampling, needs a "
                          f"horizon (longest tenor + model.recovery.lag_months) of at least {market.FIRST_YEAR} months, "
                          f"got {horizon}")
    facilities, facility_of_loan, tranches = tranche.facilities(cfg.portfolio.facilities, tape)
    depth = cfg.model.recovery.market_depth
    inverse_depth = np.array([1.0 / depth[c] if c in depth else 0.0 for c in params.chips])
    borrower = None
    if cfg.model.cross_default:
        names, index = np.unique(tape.borrower, return_inverse=True)
        borrower = np.eye(len(names))[index]

    return Problem(
        scenarios=tuple(cfg.scenario),
        tenors=tenors,
        loans=tuple(tape.loan_id),
        borrowers=tuple(str(b) for b in tape.borrower),
        loan_chips=tuple(str(c) for c in tape.chip),
        months=months,
        lag=lag,
        market=params,
        rules=waterfall.Rules.from_channels(cfg.model.channels, cure_months=cfg.model.cure_months,
                                            refi_ltv_max=cfg.model.refi_ltv_max,
                                            cross_default=cfg.model.cross_default,
                                            cash_trap=cfg.model.covenant.cash_trap,
                                            max_cures=cfg.model.covenant.max_cures),
        chip_of_loan=chip_of_loan,
        principal=tape.principal.astype(float),
        cure_capacity=tape.cure_capacity * tape.principal,
        dscr_min=tape.dscr_min,
        ltv_max=tape.ltv_max,
        refinanced=np.isin(tape.amortization, schedule.REFINANCED),
        borrower=borrower,
        copula_load=np.sqrt(tape.asset_corr),
        tape_tenor=np.asarray(tape.tenor_months, dtype=np.int64),
        tenor=tenor,
        reserve_target=reserve_target,
        regular_balance=np.stack([s.regular_balance for s in scheds]),
        scheduled_payment=np.stack([s.payment for s in scheds]),
        scheduled_balance=np.stack([s.balance for s in scheds]),
        monthly_rate=annual / 12.0,
        exogenous_threshold=threshold,
        gpus_alive=alive,
        contract_revenue=contracted_hours * tape.contract_price[:, None],
        merchant_hours=merchant_hours,
        opex_base=opex_base,
        opex_slope=opex_slope,
        value_income=income,
        value_cost=cost,
        scrap=scrap,
        rvg=tape.rvg_per_gpu.astype(float) if (tape.rvg_per_gpu > 0).any() else None,
        inverse_depth=inverse_depth if cfg.model.recovery.price_impact > 0 and inverse_depth.any() else None,
        price_impact=cfg.model.recovery.price_impact,
        haircut=haircut,
        sale_cost=cfg.model.recovery.sale_cost,
        appraisal=(appraisal.build(cfg, tape, params.chips, horizon)
                   if cfg.market.valuation.method == "appraisal" else None),
        importance_sampling=cfg.mc.importance_sampling,
        is_shift_copula=cfg.mc.is_shift_copula if cfg.mc.importance_sampling else 0.0,
        demand_corr=cfg.model.exogenous.demand_corr,
        facilities=facilities,
        facility_of_loan=facility_of_loan,
        tranches=tranches,
        contracts=contract.build(cfg, tape, alive, horizon),
    )
