"""Liquidation after default against hand-computed cases: residual value guarantees (tape column
rvg_per_gpu) and fire sales (model.recovery.market_depth, price_impact)."""

from __future__ import annotations

import numpy as np
import pytest

from stress import TapeError, run
from stress.portfolio import load_portfolio

from support import config

NO_REVENUE = {"no_revenue": [{"target": "price.all", "kind": "set", "value": 0.0}]}
BROKE = dict(reserve_months=0, contracted_share=0.0, power_price=0.0, opex_fixed=0.0)  # misses its first payment


def _run(tape, loans, extra=()):
    cfg = config([f"portfolio.path={tape(loans)}", "tenors=[36]", "model.channels=[payment]", "mc.paths=20",
                  "mc.fan_paths=0", "quiet=true", *extra], scenarios=NO_REVENUE)
    return cfg, run(cfg).sel(scenario="no_revenue", tenor=36)


def _expected_loss(cfg, gpus, per_gpu_net, exposure=20e6, rate=0.10):
    """Loss of a loan that defaults in month 1 on its full principal: its alive GPUs sold lag months
    later at per_gpu_net USD each, capped at the exposure, discounted at the loan rate."""
    lag = cfg.model.recovery.lag_months
    alive = gpus * (1 - cfg.market.chips.H100.failure_rate) ** ((1 + lag) / 12)
    return exposure - min(alive * per_gpu_net, exposure) / (1 + rate / 12) ** lag


def test_residual_value_guarantee_floors_the_proceeds_per_gpu(tape):
    """A rent of zero leaves the scrap value: net scrap, a guarantee below it (no effect), one above
    it (the floor pays), and one so large that the recovery is capped at the exposure."""
    cfg = config()
    rec, scrap = cfg.model.recovery, cfg.market.chips.H100.scrap_value
    net_scrap = scrap * (1 - rec.haircut) * (1 - rec.sale_cost)
    guarantees = [0.0, 0.5 * net_scrap, 5000.0, 1e5]
    cfg, ds = _run(tape, [dict(BROKE, rvg_per_gpu=g) for g in guarantees])
    assert (ds.pd == 1).all()
    for i, g in enumerate(guarantees):
        np.testing.assert_allclose(ds.el.isel(loan=i).item(), _expected_loss(cfg, 1000, max(net_scrap, g)), rtol=1e-9)
    assert ds.el.isel(loan=3).item() == pytest.approx(20e6 * (1 - (1 + 0.10 / 12) ** -cfg.model.recovery.lag_months))


def test_rvg_column_is_optional_and_validated(tape):
    chips = ("A100", "H100", "H200", "B200", "GB200")
    assert (load_portfolio(tape([{}]), chips).rvg_per_gpu == 0).all()
    with pytest.raises(TapeError, match=r"line 3 \(loan_id 'L-2'\), column 'rvg_per_gpu'"):
        load_portfolio(tape([dict(rvg_per_gpu=100), dict(rvg_per_gpu=-1)]), chips)
