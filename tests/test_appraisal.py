"""The appraisal of expected rents (market.valuation.method=appraisal) against a brute-force sum over
the horizon, a closed-form annuity, and in the engine's LTV test and recovery."""

import math

import numpy as np
import pytest

from stress.config.compose import to_schema
from stress.config.portfolio import load_portfolio
from stress.engine import montecarlo, problem
from stress.model import market
from stress.pipeline import run

from support import config

SHOCKS = [{"target": "price.all", "kind": "mul", "value": 0.7, "start_month": 2, "ramp_months": 4},
          {"target": "price.H100", "kind": "add", "value": 0.3, "start_month": 3},
          {"target": "demand", "kind": "add", "value": -1.0, "start_month": 1, "ramp_months": 6},
          {"target": "power_price", "kind": "mul", "value": 1.5, "start_month": 2}]
LOANS = [dict(chip="H100", age_months=30, contracted_share=0.8, contract_months=20, contract_price=2.9),
         dict(chip="A100", age_months=70, contracted_share=0.0),
         dict(chip="B200", age_months=5, contracted_share=0.5, contract_months=70, contract_price=1.0),
         dict(chip="H100", age_months=130, contracted_share=0.5, contract_months=10)]  # beyond its 120-month life


def _problem(tape, overrides=(), loans=LOANS, scenarios=None):
    cfg = to_schema(config(["market.valuation.method=appraisal", "tenors=[36]", f"portfolio.path={tape(loans)}",
                            *overrides], scenarios=scenarios or {"base": [], "shocked": SHOCKS}))
    tape_ = load_portfolio(cfg.portfolio.path, cfg.market.chips.keys())
    return cfg, tape_, problem.build_problem(cfg, tape_)


def _brute_force(cfg, tape_, prob, state, t, s, p, i):
    """V per alive GPU of loan i in cell (s, p) at month t: the formula term by term, month by month."""
    mp, m = prob.market, cfg.market
    sc = list(cfg.scenario.values())[s]
    c = prob.chip_of_loan[i]
    name = mp.chips[c]
    chip = m.chips[name]
    if t > 0:
        a_d, b_d = mp.demand_a[s, t - 1], mp.demand_b[s, t - 1]
        a_p, b_p = mp.price_a[s, c, t - 1], mp.price_b[s, c, t - 1]
    else:
        a_d, b_d, a_p, b_p = 1.0, 0.0, 1.0, 0.0
    power = m.valuation.power_price
    for shock in sc.shocks:  # the valuation power price of month t under the scenario (mul shocks only here)
        if shock.target == "power_price" and t >= shock.start_month:
            power *= shock.value
    idle = m.utilization.idle_power_share
    u = chip.reference_utilization
    opex = chip.power_kw * m.valuation.pue * 730 * power * (idle + (1 - idle) * u) + chip.opex_fixed
    d = 1 / (1 + m.valuation.discount_rate / 12)
    q = (1 - chip.failure_rate) ** (1 / 12)
    dtilde = float(state.demand[p]) - mp.phi**t * float(state.demand0[p])
    left = chip.useful_life_months - int(tape_.age_months[i]) - t
    share, contract_left = float(tape_.contracted_share[i]), int(tape_.contract_months[i]) - t
    total = 0.0
    for h in range(1, max(left, 0) + 1):
        jump = 0.0
        for n, launch in enumerate(m.launches):
            path_month = float(state.launch_month[s, p, n])
            month = path_month if path_month <= t else max(mp.launch_month[s, n], t + 1)
            ramp = launch.ramp_months
            done = float(t + h >= month) if ramp == 0 else min(max((t + h - month) / ramp, 0.0), 1.0)
            jump += mp.launch_log_step[s, n] * done
        mu = (math.log(chip.price) - chip.trend * (t + h) / 12 + chip.demand_loading * (a_d * mp.phi**h * dtilde + b_d)
              + chip.volatility * chip.persistence**h * float(state.noise[p, c]) + jump)
        expected = max(0.0, a_p * math.exp(mu) + b_p)
        under_contract = share if h <= contract_left else 0.0
        rent = under_contract * (730 * float(tape_.contract_price[i]) - opex) + (1 - under_contract) * max(
            0.0, 730 * u * expected - opex)
        total += (d * q) ** h * rent
    return max(float(chip.scrap_value), total)


def test_fast_appraisal_equals_the_brute_force_sum(tape):
    """Every loan, every cell, months 0, 7 and 20 of random paths: the cumulative-sum layout equals
    the month-by-month sum of the formula to 1e-10 relative."""
    cfg, tape_, prob = _problem(tape)
    S, P = 2, 3
    paths = np.arange(P, dtype=np.int64)
    state = market.start(np, prob.market, 7, paths)
    for t in range(0, 21):
        if t:
            market.advance(np, prob.market, state, 7, paths, t, np.float64)
        if t not in (0, 7, 20):
            continue
        scen, path = np.repeat(np.arange(S), P), np.tile(paths, S)
        fast = montecarlo._appraise(np, prob, state, t, scen, path).reshape(S, P, -1)
        for s in range(S):
            for p in range(P):
                for i in range(len(LOANS)):
                    want = _brute_force(cfg, tape_, prob, state, t, s, p, i)
                    assert fast[s, p, i] == pytest.approx(want, rel=1e-10), (t, s, p, i)
    assert fast[:, :, 3].max() == cfg.market.chips["H100"].scrap_value  # no life left: scrap


def test_no_volatility_no_contracts_is_the_closed_form_annuity(tape):
    """Volatilities 0, no launches, no contracts: E(t, h) = P0 exp(-g (t + h)/12), so V per GPU is
    730 u P0 e^(-g t/12) r1 (1 - r1^n)/(1 - r1) - o r2 (1 - r2^n)/(1 - r2), r1 = d q e^(-g/12), r2 = d q."""
    chips = ("H100",)
    quiet = [f"market.chips.{c}.{k}=0" for c in chips for k in ("volatility", "demand_loading")]
    cfg, tape_, prob = _problem(tape, [*quiet, "market.launches=[]"],
                                loans=[dict(chip="H100", age_months=a, contracted_share=0.0) for a in (0, 40)],
                                scenarios={"base": []})
    paths = np.arange(2, dtype=np.int64)
    state = market.start(np, prob.market, 3, paths)
    chip, v = cfg.market.chips["H100"], cfg.market.valuation
    d, q = 1 / (1 + v.discount_rate / 12), (1 - chip.failure_rate) ** (1 / 12)
    idle, u = cfg.market.utilization.idle_power_share, chip.reference_utilization
    opex = chip.power_kw * v.pue * 730 * v.power_price * (idle + (1 - idle) * u) + chip.opex_fixed
    r1, r2 = d * q * math.exp(-chip.trend / 12), d * q
    for t in range(0, 13):
        if t:
            market.advance(np, prob.market, state, 3, paths, t, np.float64)
        got = montecarlo._appraise(np, prob, state, t, np.zeros(2, dtype=np.int64), paths)
        for i, age in enumerate((0, 40)):
            n = chip.useful_life_months - age - t
            assert 730 * u * chip.price * math.exp(-chip.trend * (t + n) / 12) > opex  # max(0, .) never binds
            want = (730 * u * chip.price * math.exp(-chip.trend * t / 12) * r1 * (1 - r1**n) / (1 - r1)
                    - opex * r2 * (1 - r2**n) / (1 - r2))
            np.testing.assert_allclose(got[:, i], want, rtol=1e-10)


def test_recovery_is_a_fresh_appraisal_of_the_sale_month(tape):
    """A loan whose LTV breaches from the start, cure_months=1, no payment or exogenous channel: the
    covenant default falls in month 1 on every path; its exposure is the principal and its recovery
    the fresh appraisal of the sale month (the brute-force sum above) x alive GPUs x (1 - haircut)
    x (1 - sale cost), discounted over the lag."""
    loan = dict(chip="H100", age_months=30, contracted_share=0.6, contract_months=30, contract_price=2.2,
                principal=5e8, ltv_max=0.9, reserve_months=0, rate=0.10)
    cfg, tape_, prob = _problem(tape, ["model.cure_months=1", "model.channels=[covenant]", "mc.paths=4",
                                       "mc.fan_paths=0", "output.paths=true"], loans=[loan])
    ds = run(cfg)
    assert (ds.default_month == 1).all() and (ds.default_cause == 2).all()
    lag, rec = cfg.model.recovery.lag_months, cfg.model.recovery
    sale = 1 + lag
    paths = np.arange(4, dtype=np.int64)
    state = market.start(np, prob.market, cfg.mc.seed, paths)
    for t in range(1, sale + 1):
        market.advance(np, prob.market, state, cfg.mc.seed, paths, t, np.float64)
    for s in range(2):
        for p in range(4):
            value = _brute_force(cfg, tape_, prob, state, sale, s, p, 0)
            proceeds = prob.gpus_alive[0, sale - 1] * value * (1 - rec.haircut) * (1 - rec.sale_cost)
            want = 5e8 - min(proceeds, 5e8) / (1 + 0.10 / 12) ** lag
            assert float(ds.loss.isel(scenario=s, path=p, tenor=0)) == pytest.approx(want, rel=1e-10)


def test_ltv_between_appraisals_uses_the_latest_one(tape):
    """One loan, no event possible (ltv_max huge, no sweep): the fan's LTV of month t is the opening
    scheduled balance over the alive GPUs x the appraisal of month 6 floor(t / 6)."""
    loan = dict(chip="H100", age_months=30, contracted_share=0.6, contract_months=30, contract_price=2.2,
                ltv_max=1e5, dscr_min=1e-6)
    cfg, tape_, prob = _problem(tape, ["model.channels=[covenant]", "mc.paths=2", "mc.fan_paths=1"], loans=[loan],
                                scenarios={"shocked": SHOCKS})
    ds = run(cfg)
    ltv = ds.ltv_fan.isel(scenario=0, tenor=0, fan_quantile=0).values
    paths = np.arange(1, dtype=np.int64)
    state = market.start(np, prob.market, cfg.mc.seed, paths)
    balance = np.concatenate([[tape_.principal[0]], ds.scheduled_balance.isel(tenor=0, loan=0).values])
    value = None
    for t in range(0, 37):
        if t:
            market.advance(np, prob.market, state, cfg.mc.seed, paths, t, np.float64)
        if t % 6 == 0:
            alive = tape_.gpus[0] if t == 0 else prob.gpus_alive[0, t - 1]
            value = alive * _brute_force(cfg, tape_, prob, state, t, 0, 0, 0)
        if t:
            assert ltv[t - 1] == pytest.approx(balance[t - 1] / value, rel=1e-10), t



def _dense_jump(mp, t, window, scen, launch_month):
    """J(t, t + h) (window, M) with every launch's share computed in every month ahead (the formula as written)."""
    jump = np.zeros((window, scen.shape[0]))
    ahead = t + np.arange(1, window + 1, dtype=np.float64)
    for n in range(mp.launch_month.shape[1]):
        month = np.where(launch_month[:, n] <= t, launch_month[:, n], np.maximum(mp.launch_month[scen, n], t + 1.0))
        elapsed = ahead[:, None] - month[None, :]
        ramp = mp.launch_ramp[n]
        share = (elapsed >= 0) if ramp == 0 else np.clip(elapsed / ramp, 0.0, 1.0)
        jump += mp.launch_log_step[scen, n][None, :] * share
    return jump


@pytest.mark.parametrize("ramps", [(6, 0, 3), (0, 0, 0), (1, 12, 5)])
def test_launch_jump_skips_only_months_where_every_share_is_0_or_1(tape, ramps):
    """launch_jump computes a share only where some cell is mid-ramp: bit for bit the sum of every
    month's share, at random and at integer launch months (elapsed exactly 0 or exactly the ramp) and
    at a fractional scheduled month, before, during and after the launches."""
    import dataclasses

    from stress.model import appraisal

    launches = "[" + ",".join(f"{{name:l{i},month:{m},step:0.{i + 1},ramp_months:{r},jitter_months:2}}"
                               for i, (m, r) in enumerate(zip((3, 10, 24), ramps))) + "]"
    _, _, prob = _problem(tape, [f"market.launches={launches}"])
    rng = np.random.default_rng(4)
    M = 400
    for kind in ("random", "integer", "fractional schedule"):  # a launch not yet begun counts from its scheduled month
        mp = prob.market if kind != "fractional schedule" else dataclasses.replace(
            prob.market, launch_month=prob.market.launch_month + np.array([[0.7], [1.9]]))
        scen = rng.integers(0, mp.launch_month.shape[0], M)
        launch_month = mp.launch_month[scen] + rng.uniform(-2, 2, (M, 3))
        if kind == "integer":
            launch_month = np.round(launch_month)
        for t in (0, 2, 3, 9, 14, 30):
            for window in (1, 7, 40):
                want = _dense_jump(mp, t, window, scen, launch_month)
                got = appraisal.launch_jump(np, mp, t, window, scen, launch_month)
                assert got.tobytes() == want.tobytes(), (kind, t, window)


@pytest.mark.parametrize("cells", [5, 600])
def test_appraising_the_loans_sold_equals_appraising_every_loan(tape, cells):
    """appraise(sales=(cell, loan)) computes only the chips and cells sold: bit for bit the same as
    the full (cells, loans) appraisal at those entries; with 600 cells the full appraisal adds its
    running sums a row at a time and the sales' use cumsum."""
    cfg, tape_, prob = _problem(tape, scenarios={"base": [], "shocked": SHOCKS})
    paths = np.arange(cells, dtype=np.int64)
    state = market.start(np, prob.market, 7, paths)
    rng = np.random.default_rng(1)
    for t in range(1, 14):
        market.advance(np, prob.market, state, 7, paths, t, np.float64)
        scen = rng.integers(0, 2, cells)
        full = montecarlo._appraise(np, prob, state, t, scen, paths)
        cell = rng.integers(0, cells, cells // 4 + 3)  # few sales: under ROW_SUMS_FROM cells a chip, unlike the full appraisal
        loan = rng.integers(0, len(LOANS), cell.shape[0])
        sold = montecarlo._appraise(np, prob, state, t, scen, paths, sales=(cell, loan))
        assert sold.tobytes() == full[cell, loan].tobytes(), t
