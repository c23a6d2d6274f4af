"""Covenant mechanics of model v2 (model.covenant.cash_trap, max_cures, tape column cure_capacity) on a
deterministic one-loan case recomputed month by month, and the tape column's validation."""

import numpy as np
import pytest

from stress.config.compose import to_schema
from stress.config.portfolio import load_portfolio
from stress.engine import problem
from stress.errors import TapeError
from stress.pipeline import run

from support import config

# Fully contracted (CFADS and collateral deterministic), spot price 2.0 USD/h until month 9, then 1.0.
# The collateral is the spot-marked income value (market.valuation.method=spot) of the v1 market, on
# which the case was sized, so that the rules can be followed by hand; the covenant mechanics are the
# same under either valuation (the appraisal is tested in tests/test_appraisal.py).
SPOT_V1 = ["market=gpu_2026q4_v1", "market.valuation.method=spot"]
LOAN = dict(chip="H100", gpus=1000, age_months=30, principal=20e6, rate=0.10, contracted_share=1.0,
            contract_price=3.0, contract_months=100, reserve_months=0, dscr_min=1e-6, ltv_max=0.9, pd_annual=0.0,
            cure_capacity=0.4)
PRICE = [{"target": "price.all", "kind": "set", "value": 2.0, "end_month": 9},
         {"target": "price.all", "kind": "set", "value": 1.0, "start_month": 10}]


def _by_hand(prob, cfg, cash_trap: bool, max_cures: int):
    """The month-by-month rules for loan 0: default month (0: none), exposure, loss, equity injected,
    the months of the cures and why the last offer failed (or None)."""
    price = lambda t: 2.0 if t <= 9 else 1.0  # noqa: E731
    value = lambda t: prob.gpus_alive[0, t - 1] * max(  # noqa: E731
        price(t) * prob.value_income[0, t - 1] - prob.value_cost[0, t - 1], prob.scrap[0])
    balance, breach, capacity, cures, equity = 20e6, 0, 0.4 * 20e6, [], 0.0
    rate = prob.monthly_rate[0, 0, 0]
    for t in range(1, 37):
        limit = 0.9 * value(t)
        breached = balance > limit
        breach = breach + 1 if breached else 0
        if breach >= cfg.model.cure_months:
            cure = balance - limit
            if len(cures) < max_cures and cure <= capacity:
                balance, capacity, equity, breach, breached = limit, capacity - cure, equity + cure, 0, False
                cures.append(t)
            else:  # covenant default before the payment: the collateral is sold `lag` months later
                rec, lag = cfg.model.recovery, cfg.model.recovery.lag_months
                proceeds = value(t + lag) * (1 - rec.haircut) * (1 - rec.sale_cost)
                why = "capacity" if cure > capacity else "max_cures"
                return t, balance, balance - min(proceeds, balance) / (1 + rate) ** lag, equity, cures, why
        due = max(balance - prob.regular_balance[0, 0, t - 1], 0.0)
        cfads = prob.contract_revenue[0, t - 1] - prob.opex_base[0, 0, t - 1]
        excess = cfads - (balance * rate + due)
        assert excess > 0  # no payment default in this case
        balance -= due
        if cash_trap and breached:
            balance -= min(excess, balance)
        if balance <= 0:
            return 0, 0.0, 0.0, equity, cures, None
    return 0, 0.0, 0.0, equity, cures, None


def _case(tape, cash_trap: bool, max_cures: int, paths: int = 3):
    overrides = [*SPOT_V1, f"portfolio.path={tape([LOAN])}", "tenors=[36]", "model.channels=[payment,covenant]",
                 f"model.covenant.cash_trap={str(cash_trap).lower()}", f"model.covenant.max_cures={max_cures}",
                 f"mc.paths={paths}", "mc.fan_paths=0", "output.paths=true"]
    cfg = to_schema(config(overrides, scenarios={"two_prices": PRICE}))
    prob = problem.build_problem(cfg, load_portfolio(cfg.portfolio.path, cfg.market.chips.keys()))
    return cfg, _by_hand(prob, cfg, cash_trap, max_cures), run(cfg).isel(scenario=0, tenor=0)


def test_cures_until_the_capacity_runs_out_then_a_covenant_default(tape):
    """No cash trap. The breach from month 1 is cured in month cure_months (balance - 0.9 V); the cure
    prepays, so no principal is due until the schedule catches up and the LTV breaches again: a second
    cure; the price halving in month 10 breaches a third time and that cure exceeds the capacity left:
    covenant default on the opening balance net of the cures. Month, exposure, loss, equity_cure."""
    cfg, (month, exposure, loss, equity, cures, why), ds = _case(tape, cash_trap=False, max_cures=3)
    assert len(cures) == 2 and cures[0] == cfg.model.cure_months and why == "capacity" and month > 10
    assert (ds.default_month == month).all() and (ds.default_cause == 2).all()
    np.testing.assert_allclose(ds.default_rate.sel(month=month) * 20e6, exposure, rtol=1e-12)
    np.testing.assert_allclose(ds.el.item(), loss, rtol=1e-12)
    np.testing.assert_allclose(ds.equity_cure.item(), equity, rtol=1e-12)
    assert ds.equity_cure_se.item() == pytest.approx(0.0, abs=1e-6 * equity)  # the same on every path
    np.testing.assert_allclose(ds.equity_lost.item(), equity, rtol=1e-12)  # the loan defaults after its cures


def test_cash_trap_cures_by_itself_and_a_cure_saves_the_loan(tape):
    """Cash trap on: the excess cash of the breached months prepays principal, which cures the first
    breach without equity; the month-10 breach gets one equity cure that fits, and the trap then repays
    the loan before maturity: no default, loss 0, equity_cure as by hand."""
    cfg, (month, _, _, equity, cures, _), ds = _case(tape, cash_trap=True, max_cures=3)
    assert month == 0 and len(cures) == 1 and cures[0] > 10
    assert (ds.default_month == 0).all() and ds.el.item() == 0.0
    np.testing.assert_allclose(ds.equity_cure.item(), equity, rtol=1e-12)
    assert ds.equity_lost.item() == 0.0  # the loan is saved: nothing lost


def test_max_cures_limits_the_cures(tape):
    """max_cures=1: the second breach (month 3 on) cannot be cured and defaults."""
    cfg, (month, exposure, loss, _, cures, why), ds = _case(tape, cash_trap=False, max_cures=1)
    assert len(cures) == 1 and why == "max_cures" and month < 10
    assert (ds.default_month == month).all() and (ds.default_cause == 2).all()
    np.testing.assert_allclose(ds.el.item(), loss, rtol=1e-12)


def test_without_cures_the_first_breach_defaults(tape):
    """max_cures=0 (model v1): the breach of month 1 defaults in month cure_months, on the principal."""
    cfg = to_schema(config([*SPOT_V1, f"portfolio.path={tape([LOAN])}", "tenors=[36]", "model.channels=[payment,covenant]",
                            "model.covenant.cash_trap=false", "model.covenant.max_cures=0",
                            "mc.paths=2", "mc.fan_paths=0", "output.paths=true"], scenarios={"two_prices": PRICE}))
    prob = problem.build_problem(cfg, load_portfolio(cfg.portfolio.path, cfg.market.chips.keys()))
    month, exposure, loss, _, _, _ = _by_hand(prob, cfg, cash_trap=False, max_cures=0)
    ds = run(cfg).isel(scenario=0, tenor=0)
    assert month == cfg.model.cure_months and (ds.default_month == month).all()
    np.testing.assert_allclose(ds.el.item(), loss, rtol=1e-12)
    assert "equity_cure" not in ds


def test_cure_capacity_is_optional_and_validated(tape):
    chips = ["H100"]
    without = {k: v for k, v in LOAN.items() if k != "cure_capacity"}
    assert (load_portfolio(tape([without]), chips).cure_capacity == 0).all()
    assert load_portfolio(tape([LOAN]), chips).cure_capacity[0] == 0.4
    with pytest.raises(TapeError, match=r"line 3 \(loan_id 'L-2'\), column 'cure_capacity'"):
        load_portfolio(tape([LOAN, {**LOAN, "cure_capacity": "-0.1"}]), chips)

