"""The calibration targets of conf/market/README.md on the shipped market (conf/market/gpu_2026q4.yaml).

These are properties of the chosen numbers, not of the code: if a recalibration breaks one, the
YAML comments and conf/market/README.md must say why.
"""

import numpy as np
import pytest

from stress import recovery, run
from stress.config import to_schema

from support import config


def test_ageing_families_lose_12_to_20_percent_a_year_in_the_median_path():
    ds = run(config(["scenario=[baseline]", "tenors=[84]", "mc.paths=400", "mc.fan_paths=400"]))
    cfg = to_schema(config())
    median = ds.price_fan.sel(scenario="baseline", fan_quantile=0.5)
    for chip in ds.chip.values:
        p0 = cfg.market.chips[str(chip)].price
        annual = 1 - (median.sel(chip=chip, month=84).item() / p0) ** (12 / 84)
        assert 0.12 <= annual <= 0.20, (chip, annual)


def test_a_new_gpu_is_valued_close_to_its_purchase_price():
    """Age 0, today's spot price: the income-approach value is within 15% of the purchase price."""
    cfg = to_schema(config())
    chips = list(cfg.market.chips)
    income, cost, scrap = recovery.valuation_factors(cfg, chips, np.zeros(len(chips)), np.array([0]))
    for i, chip in enumerate(chips):
        spec = cfg.market.chips[chip]
        value = max(spec.price * income[i, 0] - cost[i, 0], scrap[i])
        assert value == pytest.approx(spec.purchase_price, rel=0.15), (chip, value, spec.purchase_price)


def test_conservative_three_year_loan_is_safe_and_longer_tenors_are_not(tape):
    """A new B200 fleet at LTV 0.65, DSCR above 2, 90% contracted: baseline PD of the GPU
    channels (pd_annual = 0) in the low single digits at 36 months; clearly worse at 60; a tenor
    longer than the GPUs' 72-month life (84) is broken. With 2000 paths the PD's standard error
    is about 0.5 points; the 36-month bound, 6%, is "low single digits" plus two of them (the
    calibrated value is ~5%; at LTV 0.60 it is ~1.5%, at 0.70 ~12%: the LTV covenant bites)."""
    gpus, value = 1000, 41_600.0  # income-approach value of a new B200 today (conf/market/README.md)
    loan = dict(chip="B200", gpus=gpus, age_months=0, principal=0.65 * gpus * value, rate=0.09,
                amortization="annuity", contracted_share=0.9, contract_price=3.6, contract_months=36,
                power_price=0.08, pue=1.3, opex_fixed=320.0, reserve_months=3, dscr_min=1.2, ltv_max=0.85,
                pd_annual=0.0)
    ds = run(config([f"portfolio.path={tape([loan])}", "scenario=[baseline]", "tenors=[36,60,84]",
                     "mc.paths=2000", "mc.fan_paths=0"]))
    pd = ds.pd.sel(scenario="baseline").isel(loan=0).to_series()
    assert pd[36] < 0.06, pd
    assert pd[60] > 2 * pd[36] + 0.02, pd
    assert pd[84] > 0.5, pd
