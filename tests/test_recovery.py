"""Liquidation after default against hand-computed cases: residual value guarantees (tape column
rvg_per_gpu) and fire sales (model.recovery.market_depth, price_impact)."""

from __future__ import annotations

import numpy as np
import pytest

from stress import TapeError
from stress.config.portfolio import load_portfolio
from stress.pipeline import run

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


def test_fire_sale_discounts_the_gpus_sold_together(tape):
    """Two H100 loans missing their first payment sell in the same month: with depth 1,500 GPUs and
    impact 0.3 each alone keeps 1 - 0.3 x alive / 1500 of its proceeds, both together 1 - 0.3 (the
    book sells more than the market absorbs); an A100 loan sold beside them is not touched, and an
    infinite depth changes nothing."""
    fire = ["model.recovery.price_impact=0.3", "+model.recovery.market_depth.H100=1500"]
    h100, a100 = dict(BROKE), dict(BROKE, chip="A100")
    cfg, alone = _run(tape, [h100], fire)
    _, together = _run(tape, [h100, h100, a100], fire)
    _, plain = _run(tape, [h100, h100, a100])
    rec, lag = cfg.model.recovery, cfg.model.recovery.lag_months
    net_scrap = cfg.market.chips.H100.scrap_value * (1 - rec.haircut) * (1 - rec.sale_cost)
    alive = 1000 * (1 - cfg.market.chips.H100.failure_rate) ** ((1 + lag) / 12)
    np.testing.assert_allclose(alone.el.item(), _expected_loss(cfg, 1000, net_scrap * (1 - 0.3 * alive / 1500)), rtol=1e-12)
    for i in (0, 1):
        np.testing.assert_allclose(together.el.isel(loan=i).item(), _expected_loss(cfg, 1000, net_scrap * 0.7), rtol=1e-12)
    recovered = lambda ds, i: 20e6 - ds.el.isel(loan=i).item()  # noqa: E731 (discounted, per 1000 GPUs)
    assert recovered(together, 0) / recovered(plain, 0) == pytest.approx(0.7, rel=1e-12)
    assert recovered(alone, 0) / recovered(plain, 0) == pytest.approx(1 - 0.3 * alive / 1500, rel=1e-12)
    assert together.el.isel(loan=2).item() == plain.el.isel(loan=2).item()
    _, deep = _run(tape, [h100, h100, a100], ["model.recovery.price_impact=0.3", "+model.recovery.market_depth.H100=inf"])
    assert np.array_equal(deep.loss.values, plain.loss.values) and np.array_equal(deep.el.values, plain.el.values)
