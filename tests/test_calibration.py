"""The model v2 calibration targets of conf/market/README.md on the shipped market
(conf/market/gpu_2026q4.yaml, the appraisal valuation, cash trap on).

These are properties of the chosen numbers, not of the code: if a recalibration breaks one, the
YAML comments and conf/market/README.md must say why. Monte Carlo bounds are stated with their
standard errors; each test runs in a few seconds.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from stress.config.compose import to_schema
from stress.model import appraisal, market
from stress.pipeline import run

from support import V2_TAPE, config

# Families sold new at the valuation date (launched within four years); the A100's purchase price
# is its 2020 launch price, which no buyer pays for a new A100 at today's rents.
SOLD_NEW = ("H100", "H200", "B200", "GB200")


def _cfg(overrides=()):
    return to_schema(config(["scenario=[baseline]", *overrides]))


def _median_path_appraisal(cfg, chip: str, age: int, t: int) -> float:
    """Appraisal per GPU (USD) of an uncontracted GPU of ``age`` months at month t of the median path:
    no demand innovation, no chip noise, launches at their scheduled months."""
    chips, one = tuple(cfg.market.chips), np.zeros(1)
    p = market.build_params(cfg, max(t, 1))
    tape = SimpleNamespace(chip=np.array([chip]), age_months=np.array([age]), gpus=one + 1,
                           contract_months=one, contracted_share=one, contract_price=one)
    ap = appraisal.build(cfg, tape, chips, max(t, 1))
    return float(appraisal.appraise(np, ap, p, np.array([chips.index(chip)]), t, np.zeros(1, int), one,
                                    np.zeros((1, len(chips))), p.launch_month[:1].astype(float))[0, 0])


def _h100_log_prices(cfg, paths: int, months: int) -> np.ndarray:
    """log(P_t / P_0) of the H100, t = 1..months, shape (months, paths), baseline market simulation."""
    p, k = market.build_params(cfg, months), list(cfg.market.chips).index("H100")
    ids = np.arange(paths)
    state = market.start(np, p, cfg.mc.seed, ids)
    return np.array([np.log(market.advance(np, p, state, cfg.mc.seed, ids, t, np.float64)[1][0, :, k]
                            / cfg.market.chips["H100"].price) for t in range(1, months + 1)])


def test_ageing_families_lose_12_to_20_percent_a_year_in_the_median_path():
    ds = run(config(["scenario=[baseline]", "tenors=[84]", "mc.paths=400", "mc.fan_paths=400"]))
    cfg = _cfg()
    median = ds.price_fan.sel(scenario="baseline", fan_quantile=0.5)
    for chip in ds.chip.values:
        p0 = cfg.market.chips[str(chip)].price
        annual = 1 - (median.sel(chip=chip, month=84).item() / p0) ** (12 / 84)
        assert 0.12 <= annual <= 0.20, (chip, annual)


def test_one_year_h100_price_move_has_a_log_sd_of_0_25_to_0_40():
    """Simulated sd of log(P12/P0) over 20,000 paths (standard error sd/sqrt(2n) = 0.0014) agrees with
    the closed form sqrt(kappa^2 (1 - phi^24) + sigma^2 (1 - psi^24)) within 4 standard errors, and
    lies in the target range."""
    cfg, n = _cfg(), 20_000
    sd = _h100_log_prices(cfg, n, 12)[-1].std()
    h100 = cfg.market.chips["H100"]
    phi, psi = cfg.market.demand.persistence, h100.persistence
    closed = np.hypot(h100.demand_loading * np.sqrt(1 - phi**24), h100.volatility * np.sqrt(1 - psi**24))
    assert abs(sd - closed) < 4 * sd / np.sqrt(2 * n), (sd, closed)
    assert 0.25 <= sd <= 0.40, sd


def test_a_70_percent_fall_within_24_months_has_a_probability_of_0_1_to_5_percent():
    """H100 2023-24 (>8 -> <2 USD/h): a fall to 0.3 x today's price, and to 0.3 x a running peak,
    within 24 months, over 20,000 paths (values ~0.6% and ~2.4%, standard errors <= 0.11 points:
    both bounds are more than 4 of them away)."""
    r = _h100_log_prices(_cfg(), 20_000, 24)
    from_today = (r.min(axis=0) <= np.log(0.3)).mean()
    peak = np.maximum.accumulate(np.vstack([np.zeros(r.shape[1]), r]), axis=0)[:-1]
    from_peak = (r - peak <= np.log(0.3)).any(axis=0).mean()
    for prob in (from_today, from_peak):
        assert 0.001 <= prob <= 0.05, (from_today, from_peak)


def test_a_new_uncontracted_gpu_is_appraised_close_to_its_purchase_price():
    """Month 0, age 0, no contracts: within 15% of the purchase price for every family sold new; the
    discount rate that achieves it is a required return (0.20-0.35)."""
    cfg = _cfg()
    assert 0.20 <= cfg.market.valuation.discount_rate <= 0.35
    for chip in SOLD_NEW:
        value = _median_path_appraisal(cfg, chip, 0, 0)
        assert value == pytest.approx(cfg.market.chips[chip].purchase_price, rel=0.15), (chip, value)


def test_used_gpus_are_appraised_inside_the_observed_ranges():
    """Used H100 at 47 months 15-28k and A100 at 75 months 4-18k (2026 secondary market); a Hopper
    GPU at year 5 on the median path (the H100 fleet, 47 months old today, at month 13) above 10% of
    its cost."""
    cfg = _cfg()
    assert 15_000 <= _median_path_appraisal(cfg, "H100", 47, 0) <= 28_000
    assert 4_000 <= _median_path_appraisal(cfg, "A100", 75, 0) <= 18_000
    assert _median_path_appraisal(cfg, "H100", 47, 13) > 0.10 * cfg.market.chips["H100"].purchase_price


def _one_loan(tape, loan, tenors):
    ds = run(config([f"portfolio.path={tape([loan])}", "scenario=[baseline]", f"tenors={tenors}",
                     "mc.paths=2000", "mc.fan_paths=500"]))
    cell = ds.sel(scenario="baseline").isel(loan=0)
    return ds, cell.pd.to_series()


def test_a_contracted_loan_amortising_within_its_contract_term_has_a_low_covenant_pd(tape):
    """New GB200 fleet, 95% contracted for 60 months, annuity over 60 months at 0.70 of the purchase price, median DSCR
    above 2 in month 1, no exogenous channel: baseline covenant PD below 5% at 60 months. With 2000
    paths the standard error at 5% is 0.5 points (the value is ~0)."""
    loan = dict(chip="GB200", age_months=0, principal=0.70 * 1000 * 42_000.0, rate=0.10, amortization="annuity",
                contracted_share=0.95, contract_price=4.1, contract_months=60, power_price=0.072, pue=1.12,
                opex_fixed=220.0, reserve_months=6, dscr_min=1.25, ltv_max=0.9, pd_annual=0.0)
    ds, pd = _one_loan(tape, loan, "[60]")
    cell = ds.sel(scenario="baseline", tenor=60)
    assert cell.dscr_fan.sel(month=1, fan_quantile=0.5).item() > 2
    covenant = pd[60] * cell.default_share.sel(cause="covenant").fillna(0.0).item()
    assert covenant < 0.05, (pd[60], covenant)


def test_a_conservative_three_year_loan_is_safe_and_longer_tenors_are_not(tape):
    """New B200 fleet at LTV 0.70 of min(appraisal, cost) (the edge of "conservative"), 75% contracted
    for 36 months, median DSCR >= 1.5, no exogenous channel: baseline PD of the GPU channels below 5% at
    36 months (standard error 0.5 points at 5%; the value is ~0 because the contracts pay the debt
    service and the appraisal counts them); the same loan at 60 and 84 months, merchant after month
    36, is clearly worse (more than 4 standard errors, ~1 point each)."""
    cost = 40_000.0  # below today's appraisal of a new B200 (~41k, conf/market/README.md)
    loan = dict(chip="B200", age_months=0, principal=0.70 * 1000 * cost, rate=0.09, amortization="annuity",
                contracted_share=0.75, contract_price=3.6, contract_months=36, power_price=0.08, pue=1.3,
                opex_fixed=320.0, reserve_months=3, dscr_min=1.2, ltv_max=0.85, pd_annual=0.0)
    ds, pd = _one_loan(tape, loan, "[36,60,84]")
    assert ds.dscr_fan.sel(scenario="baseline", tenor=36, month=1, fan_quantile=0.5).item() >= 1.5
    assert pd[36] < 0.05, pd
    se = lambda p: np.sqrt(p * (1 - p) / 2000)  # noqa: E731
    assert pd[60] > pd[36] + 4 * se(pd[60]) and pd[84] > pd[60] + 4 * se(pd[84]), pd


def test_example_book_el_rises_with_tenor_and_84_month_pds_spread_out():
    """Example book, baseline, 400 paths: portfolio EL rises from 36 to 60 to 84 months by more than 4
    standard errors of the difference's larger term; at 84 months the loans' PDs are spread out (the
    standard error of a PD is at most 2.5 points): a quarter of the loans below 0.7, one below 0.3."""
    ds = run(config([f"portfolio.path={V2_TAPE}", "scenario=[baseline]", "tenors=[36,60,84]", "mc.paths=400",
                     "mc.fan_paths=0"]))
    cell = ds.sel(scenario="baseline")
    el, se = cell.expected_loss.to_series(), cell.expected_loss_se.to_series()
    for short, long in ((36, 60), (60, 84)):
        assert el[long] - el[short] > 4 * np.hypot(se[long], se[short]), (el, se)
    pd84 = cell.pd.sel(tenor=84).values
    assert (pd84 < 0.7).mean() >= 0.25 and pd84.min() < 0.3, np.sort(pd84)
