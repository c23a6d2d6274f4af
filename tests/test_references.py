"""Each model function against a reference of its own, written out in the test, not against the other
engine: a mistake made in stress/*.py and kernels/*.cu(h) alike fails here, where the parity tests of
test_kernels.py cannot see it.

Most cases run a hand-made Problem whose market is deterministic (no chip noise, no demand loading
unless asked, shock maps chosen), so that the fans of one path can be computed by hand; they run on
the numpy engine and on the host-compiled kernel. Money and rates are powers of two where a test sits
exactly on a boundary, so that both sides of a comparison are exact in float64.
"""

from __future__ import annotations

import copy
import ctypes
import dataclasses
import functools
import math

import numpy as np
import pytest
from scipy.special import ndtri

from stress.config import validate
from stress.config.compose import compose, to_schema
from stress.config.portfolio import load_portfolio
from stress.config.schema import LaunchConfig, ScenarioConfig, ShockConfig
from stress.engine import chunk, hostkernel, montecarlo
from stress.engine.problem import Problem, build_problem
from stress.model import rng

from support import KAT, host_kernel, write_tape

ENGINES = ("numpy", "kernel")
B = 2.0**20  # principal, USD
R = 2.0**-7  # monthly rate: the interest B R = 8192 USD is exact
T = 12  # tenor, months
PATHS = 4  # every path is the same on a deterministic market


def run(engine_name: str, prob: Problem, seed: int = 5) -> chunk.ChunkResult:
    """Paths 0..PATHS-1 of ``prob`` (all of them fan paths) on numpy or on the host-compiled kernel."""
    args = dict(seed=seed, start=0, stop=PATHS, fan_paths=PATHS, keep_paths=True)
    if engine_name == "numpy":
        with np.errstate(divide="ignore", invalid="ignore"):
            return montecarlo.simulate(np, prob, **args)
    host_kernel()
    return hostkernel.simulate(prob, **args)


@functools.lru_cache(maxsize=1)
def _bundled():
    """The covenant rule on its own: no cash trap and no cures (their references are in test_covenant.py)."""
    return to_schema(compose(["tenors=[]", "model.recovery.lag_months=0",
                                                          "model.covenant.cash_trap=false", "model.covenant.max_cures=0"]))


def base_config(launches=(), shocks=()):
    """The bundled config, one scenario with ``shocks``, the tape's tenors, no liquidation lag."""
    cfg = copy.deepcopy(_bundled())
    cfg.market.launches = list(launches)
    cfg.scenario = {"s": ScenarioConfig(description="reference", shocks=list(shocks))}
    validate.validate(cfg)
    return cfg


def problem(tmp_path, cfg=None, *, cfads=0.0, collateral=2.0**40, dscr_min=1.0, ltv_max=0.5, reserve=0.0,
            merchant_hours=0.0, **fields) -> Problem:
    """One bullet loan of principal B at monthly rate R for T months on a deterministic market: CFADS =
    ``cfads`` (USD a month, scalar or (T,)) plus utilisation x ``merchant_hours`` x spot price, collateral
    ``collateral`` USD (scalar or (T,)), no exogenous default, flat spot prices. ``fields`` replace
    further Problem fields; ``market_*`` ones replace MarketParams fields."""
    cfg = cfg or base_config()
    tape = load_portfolio(write_tape(tmp_path / "tape.csv", [dict(amortization="bullet", tenor_months=T)]),
                          cfg.market.chips.keys())
    prob = build_problem(cfg, tape)
    S, H = len(prob.scenarios), prob.months + prob.lag
    per_month = lambda x: np.broadcast_to(np.asarray(x, dtype=float), (T,))[None, :]  # noqa: E731
    m = prob.market
    flat = dict(kappa=np.zeros_like(m.kappa), sigma=np.zeros_like(m.sigma), trend_monthly=np.zeros_like(m.trend_monthly))
    market = dataclasses.replace(m, **{**flat, **{k[7:]: v for k, v in fields.items() if k.startswith("market_")}})
    regular = np.full((1, 1, T), B)
    regular[..., -1] = 0.0
    return dataclasses.replace(
        prob, market=market, appraisal=None, principal=np.array([B]), dscr_min=np.array([dscr_min]),
        ltv_max=np.array([ltv_max]), reserve_target=np.array([[reserve]]), regular_balance=regular,
        monthly_rate=np.full((S, 1, T), R), exogenous_threshold=np.full((S, 1, T), -np.inf),
        gpus_alive=per_month(collateral), value_income=np.zeros((1, H)), value_cost=np.zeros((1, H)),
        scrap=np.array([1.0]), contract_revenue=per_month(cfads), opex_base=np.zeros((S, 1, H)),
        opex_slope=np.zeros((S, 1, H)), merchant_hours=np.full((1, H), merchant_hours),
        **{k: v for k, v in fields.items() if not k.startswith("market_")})


def one_path(fan: np.ndarray) -> np.ndarray:
    """Path 0 of an LTV or DSCR fan (S, K, F, T), scenario 0 and tenor 0, after checking that every
    path has the same one."""
    paths = fan[0, 0]
    np.testing.assert_array_equal(paths, np.broadcast_to(paths[:1], paths.shape))
    return paths[0]


# --- the cash sweep: trailing three-month DSCR < dscr_min -------------------------------------------


@pytest.mark.parametrize("engine_name", ENGINES)
def test_dscr_exactly_at_dscr_min_sweeps_nothing(engine_name, tmp_path):
    """CFADS 10240 against interest 8192: the trailing DSCR is 1.25 = dscr_min exactly every month, so
    nothing is swept and the opening balance stays B until maturity (LTV fan = B / collateral)."""
    res = run(engine_name, problem(tmp_path, cfads=10240.0, dscr_min=1.25))
    collateral = 2.0**40
    np.testing.assert_array_equal(one_path(res.ltv), np.full(T, B / collateral))
    np.testing.assert_array_equal(one_path(res.dscr)[:-1], np.full(T - 1, 1.25))


@pytest.mark.parametrize("engine_name", ENGINES)
def test_dscr_half_a_dollar_below_dscr_min_sweeps_the_excess(engine_name, tmp_path):
    """CFADS 10239.5: the DSCR of month 1 is below 1.25, so the excess 10239.5 - 8192 = 2047.5 (no
    reserve to top up) prepays principal: month 2 opens at B - 2047.5."""
    res = run(engine_name, problem(tmp_path, cfads=10239.5, dscr_min=1.25))
    ltv = one_path(res.ltv)
    collateral = 2.0**40
    assert ltv[0] == B / collateral
    assert ltv[1] == (B - 2047.5) / collateral


# --- the LTV covenant: a breach for cure_months months defaults ------------------------------------


@pytest.mark.parametrize("engine_name", ENGINES)
def test_covenant_default_exactly_at_cure_months(engine_name, tmp_path):
    """ltv_max 0.5, cure_months 3. Collateral 2^20 (limit 2^19 < B: breach) in months 1-2, 2^21 in
    month 3 (limit = B exactly: no breach, the count restarts), 2^20 from month 4: the third month of
    the new breach, month 6, defaults (covenant), on the opening balance B."""
    collateral = np.array([2.0**20, 2.0**20, 2.0**21] + [2.0**20] * (T - 3))
    prob = problem(tmp_path, cfads=2.0**20, collateral=collateral)
    prob = dataclasses.replace(prob, rules=dataclasses.replace(prob.rules, cure_months=3))
    res = run(engine_name, prob)
    np.testing.assert_array_equal(res.default_month, 6)
    np.testing.assert_array_equal(res.default_cause, 2)  # covenant
    assert res.defaulted_exposure[0, 0, 5] == PATHS * B


@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("cure_months", [1, 2, 4])
def test_covenant_breach_from_month_one(engine_name, cure_months, tmp_path):
    prob = problem(tmp_path, cfads=2.0**20, collateral=2.0**20)
    prob = dataclasses.replace(prob, rules=dataclasses.replace(prob.rules, cure_months=cure_months))
    np.testing.assert_array_equal(run(engine_name, prob).default_month, cure_months)


# --- launches: the price step in force from the (shocked) launch month ------------------------------


def _launch_problem(tmp_path, ramp: int, shocks=()):
    launch = LaunchConfig(name="X", month=5.0, step=0.25, ramp_months=ramp, jitter_months=0.0)
    return problem(tmp_path, base_config([launch], shocks))


@pytest.mark.parametrize("engine_name", ENGINES)
def test_launch_without_ramp_steps_the_price_in_its_month(engine_name, tmp_path):
    """A launch at month 5 with step 0.25 and no ramp: the flat price P0 is 0.75 P0 from month 5 on."""
    prob = _launch_problem(tmp_path, ramp=0)
    p0 = np.exp(prob.market.log_price0)
    share = (np.arange(1, T + 1) >= 5).astype(float)
    price = run(engine_name, prob).price[0, :, :, :]  # (F, C, T)
    np.testing.assert_allclose(price, np.broadcast_to(p0[:, None] * 0.75**share, price.shape), rtol=1e-14)


@pytest.mark.parametrize("engine_name", ENGINES)
def test_launch_ramp_and_month_shock(engine_name, tmp_path):
    """The same launch with a 4-month ramp, moved 2 months later by a ``launch.X.month add 2`` shock:
    the share of the step is 0 up to month 7, then (t - 7) / 4, 1 from month 11."""
    shock = ShockConfig(target="launch.X.month", kind="add", value=2.0)
    prob = _launch_problem(tmp_path, ramp=4, shocks=[shock])
    p0 = np.exp(prob.market.log_price0)
    share = np.array([0, 0, 0, 0, 0, 0, 0, 0.25, 0.5, 0.75, 1, 1])
    price = run(engine_name, prob).price[0]
    np.testing.assert_allclose(price, np.broadcast_to(p0[:, None] * 0.75**share, price.shape), rtol=1e-14)


@pytest.mark.parametrize("engine_name", ENGINES)
def test_launch_jitter_moves_each_path_by_its_uniform(engine_name, tmp_path):
    """Jitter 2 months: path p launches at 5 + 2 (2 u_p - 1), u_p the uniform of stream 5, month 0,
    index 0 (Philox, checked against its known answers below); with a 4-month ramp the share is
    clip((t - launch) / 4, 0, 1)."""
    launch = LaunchConfig(name="X", month=5.0, step=0.25, ramp_months=4, jitter_months=2.0)
    prob = problem(tmp_path, base_config([launch]))
    seed = 5
    u = np.array([(int(w) + 0.5) * 2.0**-32 for w in (rng.philox4x32(np, p, 0, 5, 0, *rng.seed_key(seed))[0]
                                                      for p in range(PATHS))])
    month = 5.0 + 2.0 * (2.0 * u - 1.0)
    share = np.clip((np.arange(1, T + 1)[None, :] - month[:, None]) / 4.0, 0.0, 1.0)
    p0 = np.exp(prob.market.log_price0)
    price = run(engine_name, prob, seed).price[0]  # (F, C, T)
    np.testing.assert_allclose(price, p0[None, :, None] * 0.75 ** share[:, None, :], rtol=1e-14)


# --- utilisation and price against a known demand path ----------------------------------------------

DEMAND = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 1.5, -1.5, 0.5, -0.5, 3.0, -3.0, 0.0])  # shocked D_t, t = 1..12


@pytest.mark.parametrize("engine_name", ENGINES)
def test_utilisation_and_price_follow_a_known_demand_path(engine_name, tmp_path):
    """A ``set`` demand map (a = 0, b = D_t) fixes the shocked demand at DEMAND. With no utilisation
    noise, u_t = u_max / (1 + exp(-(a_c + beta D_t))); with demand loading kappa = 0.1 the price is
    P0 exp(kappa D_t) (the innovation is b as well). CFADS = u_t x 10^5 GPU-h x price, so the DSCR fan
    is that over the interest B R. Utilisation rises with demand (beta > 0)."""
    cfg = base_config()
    n_chips = len(cfg.market.chips)
    zeros, demand = np.zeros((1, T)), DEMAND[None, :]
    prob = problem(tmp_path, cfg, merchant_hours=1e5, dscr_min=0.0, reserve=2.0**40,
                   market_demand_a=zeros, market_demand_b=demand, market_kappa=np.full(n_chips, 0.1),
                   market_util_sigma=0.0)
    m = prob.market
    c = prob.chip_of_loan[0]
    assert m.util_beta > 0
    util = m.u_max / (1.0 + np.exp(-(m.util_intercept[c] + m.util_beta * DEMAND)))
    price = np.exp(m.log_price0[c]) * np.exp(0.1 * DEMAND)
    res = run(engine_name, prob)
    np.testing.assert_allclose(res.price[0, 0, c], price, rtol=1e-13)
    np.testing.assert_allclose(one_path(res.dscr)[:-1], (util * 1e5 * price / (B * R))[:-1], rtol=1e-13)
    assert util[4] > util[2] > util[0]  # the reference itself: more demand, more utilisation


# --- Philox and Box-Muller lanes: the kernel against the known answers ------------------------------


def _box_muller(words) -> list[float]:
    """Lanes 0-3 from a block's four words: u = (x + 0.5) 2^-32; lanes 0 and 2 are
    sqrt(-2 ln u_a) cos(2 pi u_b), lanes 1 and 3 the sine, on the pairs (u0, u1) and (u2, u3)."""
    u = [(x + 0.5) * 2.0**-32 for x in words]
    out = []
    for a, b in ((u[0], u[1]), (u[2], u[3])):
        r = math.sqrt(-2.0 * math.log(a))
        out += [r * math.cos(2.0 * math.pi * b), r * math.sin(2.0 * math.pi * b)]
    return out


def _kat_at_counter(row):
    """A known-answer row as (seed, path, month, stream, block, words) of the project's stream layout."""
    c0, c1, c2, c3, k0, k1 = row[:6]
    return k1 << 32 | k0, c0, c1, c2, c3, row[6:]


KAT_BLOCKS = [KAT[0], KAT[2]]  # the all-ones row's block ffffffff has indices beyond 32 bits


@pytest.mark.parametrize("row", KAT_BLOCKS, ids=["zeros", "pi"])
def test_kernel_uniforms_and_normals_are_the_known_answers(row):
    """philox.cuh's uniform_at, normal_at and normals4 at a known-answer counter: the uniforms are the
    KAT words' (x + 0.5) 2^-32 exactly, the normals Box-Muller of them (same libm: to 1 ulp)."""
    lib = host_kernel("philox_check.cu")
    seed, path, month, stream, block, words = _kat_at_counter(row)
    tuples = np.array([[path, month, stream, 4 * block + lane] for lane in range(4)], dtype=np.int64)
    u, z, zb = np.empty(4), np.empty(4), np.empty(4)
    ptr = lambda a: ctypes.c_void_p(a.ctypes.data)  # noqa: E731
    lib.philox_numbers(ctypes.c_uint64(seed), ptr(tuples), ptr(u), ptr(z), ptr(zb), ctypes.c_longlong(4))
    assert u.tolist() == [(x + 0.5) * 2.0**-32 for x in words]
    np.testing.assert_allclose(z, _box_muller(words), rtol=2e-16, atol=0)
    np.testing.assert_array_equal(zb, z)


def test_numpy_block_normals_are_the_known_answers():
    """rng.normals_block (the engine's path) at block 0 of the all-zero counter and key."""
    seed, path, month, stream, block, words = _kat_at_counter(KAT[0])
    z = rng.normals_block(np, seed, path, month, stream, 4)
    np.testing.assert_allclose(z, _box_muller(words), rtol=1e-14, atol=0)


# --- every scalar shock target, and every path target, by value -------------------------------------

SCALAR_CASES = [  # (kind, value, base -> expected)
    ("add", 3.0, lambda x: x + 3.0),
    ("mul", 2.0, lambda x: x * 2.0),
    ("set", 7.0, lambda x: 7.0),
]


@pytest.mark.parametrize("kind, value, expected", SCALAR_CASES, ids=[c[0] for c in SCALAR_CASES])
def test_launch_month_shock_value(kind, value, expected, tmp_path):
    """launch.X.month: the month 5 becomes 8, 10 or 7, in full whatever start_month and ramp say."""
    launch = LaunchConfig(name="X", month=5.0, step=0.25, ramp_months=0)
    shock = ShockConfig(target="launch.X.month", kind=kind, value=value, start_month=4, ramp_months=6)
    prob = problem(tmp_path, base_config([launch], [shock]))
    assert prob.market.launch_month[0, 0] == expected(5.0)


@pytest.mark.parametrize("kind, value, step", [("add", 0.125, 0.375), ("mul", 2.0, 0.5), ("set", 0.125, 0.125)])
def test_launch_step_shock_value(kind, value, step, tmp_path):
    launch = LaunchConfig(name="X", month=5.0, step=0.25, ramp_months=0)
    shock = ShockConfig(target="launch.X.step", kind=kind, value=value, start_month=9, ramp_months=3)
    prob = problem(tmp_path, base_config([launch], [shock]))
    assert prob.market.launch_log_step[0, 0] == math.log1p(-step)


@pytest.mark.parametrize("kind, value, multiplier", [("add", 0.5, 1.5), ("mul", 3.0, 3.0), ("set", 0.25, 0.25)])
def test_pd_multiplier_shock_value(kind, value, multiplier, tmp_path):
    """pd_multiplier (base 1): the tape's 2% PD becomes 3%, 6% or 0.5%; the exogenous threshold of month
    12 is Phi^-1 of that (one year of the annual PD)."""
    cfg = base_config(shocks=[ShockConfig(target="pd_multiplier", kind=kind, value=value, start_month=30)])
    tape = load_portfolio(write_tape(tmp_path / "tape.csv", [dict(pd_annual=0.02)]), cfg.market.chips.keys())
    prob = build_problem(cfg, tape)
    np.testing.assert_allclose(prob.exogenous_threshold[0, 0, 11], ndtri(0.02 * multiplier), rtol=1e-12)


def test_scalar_shocks_compose_in_order(tmp_path):
    """add 3 then mul 2 on month 5: (5 + 3) 2 = 16, not 5 x 2 + 3."""
    launch = LaunchConfig(name="X", month=5.0, step=0.25, ramp_months=0)
    shocks = [ShockConfig(target="launch.X.month", kind="add", value=3.0),
              ShockConfig(target="launch.X.month", kind="mul", value=2.0)]
    assert problem(tmp_path, base_config([launch], shocks)).market.launch_month[0, 0] == 16.0


def _weight(t, start=3, ramp=4):
    """w(t) of a shock starting at month 3 with a 4-month ramp: 1/4, 2/4, 3/4, 1 in months 3..6."""
    return np.clip((np.asarray(t, dtype=float) - start + 1) / ramp, 0.0, 1.0)


PATH_CASES = {  # target -> (value per kind, Problem quantity as a function of the shocked baseline)
    "demand": dict(add=-1.0, mul=0.5, set=-2.0),
    "utilization": dict(add=-0.25, mul=0.5, set=0.5),
    "price.all": dict(add=-0.5, mul=0.5, set=1.0),
    "base_rate": dict(add=0.02, mul=2.0, set=0.06),
    "haircut": dict(add=0.25, mul=2.0, set=0.5),
    "power_price": dict(add=0.04, mul=1.5, set=0.25),
}


def _shocked(kind: str, value: float, base, w):
    """x -> x + v w (add), x (1 + (v - 1) w) (mul), x (1 - w) + v w (set)."""
    return {"add": base + value * w, "mul": base * (1.0 + (value - 1.0) * w),
            "set": base * (1.0 - w) + value * w}[kind]


@pytest.mark.parametrize("kind", ["add", "mul", "set"])
@pytest.mark.parametrize("target", sorted(PATH_CASES))
def test_path_shock_value(target, kind, tmp_path):
    """Each path target's shock map, read back from the Problem at months 1..8 against the formula
    with the ramp weight written out: a x + b applied to x = 1 and x = 0 (demand, utilisation and
    price maps), or to the baseline base rate, haircut and power price."""
    value = PATH_CASES[target][kind]
    cfg = base_config(shocks=[ShockConfig(target=target, kind=kind, value=value, start_month=3, ramp_months=4)])
    tape = load_portfolio(write_tape(tmp_path / "tape.csv", [dict(rate_type="floating", rate=0.03)]),
                          cfg.market.chips.keys())
    prob = build_problem(cfg, tape)
    t = np.arange(1, 9)
    w, i = _weight(t), t - 1
    m = prob.market
    if target in ("demand", "utilization", "price.all"):
        a, b = {"demand": (m.demand_a[0], m.demand_b[0]), "utilization": (m.util_a[0], m.util_b[0]),
                "price.all": (m.price_a[0, 0], m.price_b[0, 0])}[target]
        np.testing.assert_allclose(a[i] + b[i], _shocked(kind, value, 1.0, w), rtol=1e-15, atol=1e-15)
        np.testing.assert_allclose(b[i], _shocked(kind, value, 0.0, w), rtol=1e-15, atol=1e-15)
    elif target == "base_rate":
        annual = 12.0 * prob.monthly_rate[0, 0, i] - 0.03
        np.testing.assert_allclose(annual, _shocked(kind, value, cfg.market.base_rate, w), rtol=1e-13)
    elif target == "haircut":
        np.testing.assert_allclose(prob.haircut[0, i], _shocked(kind, value, cfg.model.recovery.haircut, w),
                                   rtol=1e-15)
    else:  # power_price: the utilisation-proportional opex is linear in it (tape power price 0.08)
        base = build_problem(base_config(), tape).opex_slope[0, 0, i]
        np.testing.assert_allclose(prob.opex_slope[0, 0, i], base * _shocked(kind, value, 0.08, w) / 0.08,
                                   rtol=1e-13)
