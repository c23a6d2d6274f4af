"""The CUDA sources against the numpy reference: kernels/*.cu compiled as host C++ (stress.engine.hostkernel)
must reproduce stress.model.rng bit for bit and stress.engine.montecarlo.simulate path by path; nvcc must compile
them for the GPU."""

from __future__ import annotations

import ctypes
import dataclasses
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from stress.config import schema, validate
from stress.config.compose import compose, to_schema
from stress.config.install import tape_path
from stress.config.portfolio import load_portfolio
from stress.config.schema import FacilityConfig, OfftakerConfig, ScenarioConfig, ShockConfig, TrancheConfig
from stress.engine import chunk, hostkernel, montecarlo, problem
from stress.model import rng

from support import KAT, NEAR_ZERO_RATE_LOAN, host_kernel, write_tape

pytestmark = pytest.mark.kernels

KERNELS = hostkernel.kernels_dir()
LOSS_RTOL = 1e-10  # float64 kernel vs numpy: numpy's SIMD exp, log and pow differ from libm's in the last bit


@pytest.fixture(scope="module")
def host():
    """Load a host-compiled kernel library, or skip the module's host tests without a compiler."""
    return host_kernel


def _ptr(a: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(a.ctypes.data)


# --- (a) Philox and the stream layout -----------------------------------------------------------


def test_philox_known_answers(host):
    lib = host("philox_check.cu")
    kat = np.array(KAT, dtype=np.uint32)
    assert kat.shape == (3, 10)
    words = np.zeros((len(kat), 4), dtype=np.uint32)
    lib.philox_words(_ptr(np.ascontiguousarray(kat[:, :6])), _ptr(words), ctypes.c_longlong(len(kat)))
    np.testing.assert_array_equal(words, kat[:, 6:])


def _numbers(lib, seed: int, tuples: np.ndarray):
    n = len(tuples)
    u, z, zb = np.empty(n), np.empty(n), np.empty(n)
    lib.philox_numbers(ctypes.c_uint64(seed), _ptr(tuples), _ptr(u), _ptr(z), _ptr(zb), ctypes.c_longlong(n))
    return u, z, zb


@pytest.mark.parametrize("seed", [20261125, 0x0123456789ABCDEF])
def test_uniforms_and_normals_match_stress_rng(host, seed):
    """6000 random (path, month, stream, index) tuples, 1000 per stream. Uniforms: bit-identical.
    Normals: bit-identical to Box-Muller through the C library (Python's math module calls the same
    libm as the host build); numpy's SIMD log (AVX-512 builds) differs from libm's in the last bit for
    about 0.2% of arguments, so stress.model.rng is matched bit for bit wherever numpy's log, cos and sin
    agree with libm's, and to 2 ulp elsewhere (1 ulp of log, through sqrt and the product)."""
    lib = host("philox_check.cu")
    r = np.random.default_rng(seed % 1000)
    n = 1000
    tuples = np.concatenate([
        np.stack([r.integers(0, 2**32, n), r.integers(0, 130, n), np.full(n, stream), r.integers(0, 4000, n)], 1)
        for stream in range(6)
    ]).astype(np.int64)
    u, z, z_block = _numbers(lib, seed, tuples)
    path, month, stream, index = tuples.T

    ref_u, ref_z = np.empty(len(tuples)), np.empty(len(tuples))
    for s in range(6):
        at = stream == s
        ref_u[at] = rng.uniforms(np, seed, path[at], month[at], s, index[at])
        ref_z[at] = rng.normals(np, seed, path[at], month[at], s, index[at])
    np.testing.assert_array_equal(u, ref_u)
    np.testing.assert_array_equal(z, z_block)  # normals4 (the engine's path) == normal_at

    # The Box-Muller pair of each index, through libm.
    pair = 4 * (index // 4) + (index % 4 & 2)
    ua = np.empty(len(tuples))
    ub = np.empty(len(tuples))
    for s in range(6):
        at = stream == s
        ua[at] = rng.uniforms(np, seed, path[at], month[at], s, pair[at])
        ub[at] = rng.uniforms(np, seed, path[at], month[at], s, pair[at] + 1)
    theta = ub * (2.0 * math.pi)
    libm_z = np.array([math.sqrt(math.log(a) * -2.0) * (math.sin(th) if i % 2 else math.cos(th))
                       for a, th, i in zip(ua, theta, index)])
    np.testing.assert_array_equal(z, libm_z)

    libm_agrees = ((np.log(ua) == [math.log(a) for a in ua]) & (np.cos(theta) == [math.cos(x) for x in theta])
                   & (np.sin(theta) == [math.sin(x) for x in theta]))
    np.testing.assert_array_equal(z[libm_agrees], ref_z[libm_agrees])
    assert np.all(np.abs(z - ref_z) <= 2 * np.spacing(np.abs(ref_z)))


# --- (b) nvcc ------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_kernels_compile_for_the_gpu(arch, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc (CUDA toolkit) not found on PATH: the GPU compile check needs it")
    sources = sorted(KERNELS.glob("*.cu"))
    assert sources, f"no .cu file in {KERNELS}"
    jobs = [(src, subprocess.Popen([nvcc, "-ptx", f"-arch={arch}", "-Werror", "all-warnings", str(src),
                                    "-o", str(tmp_path / f"{src.stem}.ptx")],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
            for src in sources]
    for src, job in jobs:
        output = job.communicate()[0]
        assert job.returncode == 0, f"nvcc -ptx -arch={arch} {src.name} failed:\n{output}"
        assert (tmp_path / f"{src.stem}.ptx").stat().st_size > 0


# --- (c) parity with the numpy engine -------------------------------------------------------------


def _assert_parity(ref: chunk.ChunkResult, got: chunk.ChunkResult, rtol: float = LOSS_RTOL):
    """Default month and cause identical for every path and loan; money to rtol; counts exact."""
    np.testing.assert_array_equal(got.default_month, ref.default_month)
    np.testing.assert_array_equal(got.default_cause, ref.default_cause)
    np.testing.assert_array_equal(got.loan_defaults, ref.loan_defaults)
    np.testing.assert_array_equal(got.cause_count, ref.cause_count)
    for name in ("loss", "loan_loss", "loan_lgd", "defaulted_exposure", "price", "ltv", "dscr"):
        a, b = getattr(ref, name), getattr(got, name)
        assert a.shape == b.shape, name
        np.testing.assert_array_equal(np.isnan(b), np.isnan(a), err_msg=name)
        np.testing.assert_allclose(b, a, rtol=rtol, atol=0, err_msg=name)
    for name in ("loan_equity", "loan_equity_sq", "loan_equity_lost", "loan_equity_lost_sq", "facility_loss",
                 "offtaker_defaults"):  # present with equity cures / facilities / offtakers only
        a, b = getattr(ref, name), getattr(got, name)
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_allclose(b, a, rtol=rtol, atol=0, err_msg=name)


@pytest.fixture(scope="module")
def example():
    """The bundled example: all 7 scenarios, tenors 36/60/84; paths 100..400 of seed 7 (a chunk that
    does not start at 0, with 60 of its paths in the first 160 = fan paths)."""
    cfg = to_schema(compose(["tenors=[36,60,84]"]))
    tape = load_portfolio(tape_path(cfg), cfg.market.chips.keys())
    prob = problem.build_problem(cfg, tape)
    assert prob.shape[:2] == (7, 3)
    args = dict(seed=7, start=100, stop=400, fan_paths=160, keep_paths=True)
    return prob, args, montecarlo.simulate(np, prob, **args)


def test_example_portfolio_matches_numpy(host, example):
    host("engine.cu")
    prob, args, ref = example
    got = hostkernel.simulate(prob, **args)
    _assert_parity(ref, got)
    assert 0 < (ref.default_month > 0).mean() < 1  # a test with something to compare
    assert np.all(ref.cause_count.sum((0, 1)) > 0)  # every cause occurs


def test_float32_kernel_within_monte_carlo_error(host, example):
    """float32 kernel on the same paths: the EL of each scenario x tenor within one standard error
    (s / sqrt(n) of the float64 losses) of the float64 EL and of numpy's float32 EL, the accuracy
    that n paths give anyway (on the example the gap is a few 1e-6 standard errors)."""
    host("engine.cu")
    prob, args, ref = example
    got = hostkernel.simulate(prob, **{**args, "dtype": np.float32})
    numpy32 = montecarlo.simulate(np, prob, **{**args, "dtype": np.float32})
    se = ref.loss.std(axis=-1, ddof=1) / math.sqrt(ref.loss.shape[-1])
    assert np.all(np.abs(got.loss.mean(-1) - ref.loss.mean(-1)) <= se)
    assert np.all(np.abs(got.loss.mean(-1) - numpy32.loss.mean(-1)) <= se)
    assert np.mean(got.default_month != ref.default_month) < 0.01  # the same defaults, nearly always


def test_grid_stride_over_several_threads(host, example):
    """Five emulated CUDA threads share the paths: per-path outputs identical, sums to rounding."""
    host("engine.cu")
    prob, args, _ = example
    args = {**args, "stop": 160}
    one = hostkernel.simulate(prob, **args)
    five = hostkernel.simulate(prob, **args, threads=5)
    for name in ("loss", "default_month", "default_cause", "loan_defaults", "cause_count", "price", "ltv", "dscr"):
        np.testing.assert_array_equal(getattr(five, name), getattr(one, name), err_msg=name)
    for name in ("loan_loss", "loan_lgd", "defaulted_exposure"):
        np.testing.assert_allclose(getattr(five, name), getattr(one, name), rtol=1e-13, err_msg=name)


# Random valid tapes and scenarios. Ranges are wide enough to reach every default cause, zero and
# negative spot prices (floored), fully contracted loans, reserves of zero, and PDs of 0 and 1.
AMORTIZATIONS = ("annuity", "linear", "bullet", "balloon")
PRICE_LIKE = {"add": (-1.5, 1.0), "mul": (0.3, 1.5), "set": (0.0, 4.0)}


def _random_tape(r: np.random.Generator, path: Path, chips, cures: np.random.Generator | None = None) -> Path:
    """A random tape; with ``cures``, a cure_capacity column drawn from that generator (so the other
    columns are those of the tape without it)."""
    n = int(r.integers(3, 13))
    borrowers = [f"B{i}" for i in range(int(r.integers(1, 4)))]
    header = ("loan_id,borrower,chip,gpus,age_months,principal,rate,rate_type,amortization,balloon_pct,"
              "tenor_months,contracted_share,contract_price,contract_months,power_price,pue,opex_fixed,"
              "reserve_months,dscr_min,ltv_max,pd_annual,asset_corr")
    lines = [header]
    for i in range(n):
        chip = str(r.choice(chips))
        gpus = int(r.integers(50, 20000))
        amort = str(r.choice(AMORTIZATIONS))
        principal = gpus * r.uniform(2e3, 2.5e4)
        pd = float(r.choice([0.0, 1.0, r.uniform(0, 0.15), r.uniform(0, 0.03)], p=[0.1, 0.05, 0.45, 0.4]))
        lines.append(",".join(str(x) for x in (
            f"L{i}", r.choice(borrowers), chip, gpus, int(r.integers(0, 60)), round(principal, 2),
            round(r.uniform(0.01, 0.16), 4), r.choice(["fixed", "floating"]), amort,
            round(r.uniform(0.05, 0.6), 3) if amort == "balloon" else "", int(r.integers(6, 85)),
            round(r.choice([0.0, 1.0, r.uniform(0, 1)]), 3), round(r.uniform(0.5, 5.0), 3), int(r.integers(0, 90)),
            round(r.uniform(0.03, 0.2), 4), round(r.uniform(1.0, 1.7), 3), round(r.uniform(0, 400), 1),
            round(r.choice([0.0, r.uniform(0, 8)]), 2), round(r.uniform(0.8, 1.6), 3), round(r.uniform(0.6, 1.6), 3),
            round(pd, 5), round(r.choice([0.0, 1.0, r.uniform(0, 0.6)], p=[0.1, 0.05, 0.85]), 3))))
    if cures is not None:
        lines = [lines[0] + ",cure_capacity"] + [f"{line},{round(float(cures.choice([0.0, cures.uniform(0, 0.6)])), 3)}"
                                                 for line in lines[1:]]
    path.write_text("\n".join(lines) + "\n")
    return path


def _append_column(tape_file: Path, name: str, cells: list) -> None:
    lines = tape_file.read_text().splitlines()
    tape_file.write_text("\n".join([f"{lines[0]},{name}"] + [f"{x},{c}" for x, c in zip(lines[1:], cells)]) + "\n")


def _random_facilities(r: np.random.Generator, tape_file: Path) -> dict:
    """A ``facility`` column (F0, F1 or blank = the loan itself) appended to the tape, and random
    tranches for F0, F1 and the first loan."""
    cells = [str(r.choice(["F0", "F1", ""])) for _ in tape_file.read_text().splitlines()[1:]]
    cells[0] = cells[1] = ""  # the first loan is its own facility, the second in none with tranches
    cells[2] = "F0"
    _append_column(tape_file, "facility", cells)
    facilities = {}
    for name in ["F0", "L0"] + (["F1"] if "F1" in cells else []):
        points = np.unique(np.round(np.concatenate([[0.0, 1.0], r.uniform(0, 1, int(r.integers(0, 3)))]), 3))
        facilities[name] = FacilityConfig(tranches=[TrancheConfig(name=f"T{i}", attachment=float(a), detachment=float(d))
                                                    for i, (a, d) in enumerate(zip(points[:-1], points[1:]))])
    return facilities


def _random_offtakers(r: np.random.Generator, tape_file: Path, cfg) -> None:
    """An ``offtaker`` column (O0..O2, self or blank) appended to the tape, random offtakers (PD, rho,
    demand loading, renewals) in the config, and in each scenario maybe a forced default, a PD
    multiplier or a renewal shock."""
    cells = [str(r.choice(["O0", "O1", "O2", "self", ""])) for _ in tape_file.read_text().splitlines()[1:]]
    cells[0], cells[1] = "O0", "self"
    _append_column(tape_file, "offtaker", cells)
    cfg.portfolio.offtakers = {
        name: OfftakerConfig(pd_annual=float(r.choice([0.0, 1.0, r.uniform(0.01, 0.4)])),
                             asset_corr=float(r.uniform(0, 1)), demand_loading=float(r.uniform(-1, 1)),
                             renewal_prob=float(r.choice([0.0, 1.0, r.uniform(0, 1)])),
                             renewal_months=int(r.integers(1, 30)), renewal_premium=float(r.uniform(-0.5, 0.5)))
        for name in ("O0", "O1", "O2", "O3")}
    cfg.portfolio.offtakers["self"] = OfftakerConfig(renewal_prob=float(r.uniform(0, 1)), renewal_months=6)
    for sc in cfg.scenario.values():
        if r.random() < 0.5:
            sc.shocks.append(ShockConfig(target=f"offtaker.O{r.integers(0, 3)}.default_month", kind="set",
                                         value=float(r.integers(1, 40))))
        if r.random() < 0.3:
            sc.shocks.append(ShockConfig(target="offtaker.O1.pd_multiplier", kind="mul", value=float(r.uniform(0, 3))))
        if r.random() < 0.3:
            sc.shocks.append(ShockConfig(target="renewal_prob", kind="set", value=float(r.uniform(0, 1))))


def _random_shock(r: np.random.Generator, cfg) -> ShockConfig:
    chips = list(cfg.market.chips)
    launches = [x.name for x in cfg.market.launches]
    target = str(r.choice([f"price.{r.choice(chips)}", "price.all", "demand", "utilization", "power_price",
                           "base_rate", "haircut", f"launch.{r.choice(launches)}.month",
                           f"launch.{r.choice(launches)}.step", "pd_multiplier"]))
    kind = str(r.choice(["add", "mul", "set"]))
    if target.startswith("price"):
        value = r.uniform(*PRICE_LIKE[kind])
    elif target == "demand":
        value = {"add": r.uniform(-2.5, 1.5), "mul": r.uniform(0, 2), "set": r.uniform(-3, 1)}[kind]
    elif target == "utilization":
        value = {"add": r.uniform(-0.5, 0.3), "mul": r.uniform(0.3, 1.3), "set": r.uniform(0, 1)}[kind]
    elif target == "power_price":
        value = {"add": r.uniform(-0.02, 0.1), "mul": r.uniform(0.7, 3), "set": r.uniform(0.02, 0.3)}[kind]
    elif target == "base_rate":
        value = {"add": r.uniform(-0.03, 0.06), "mul": r.uniform(0.5, 2.5), "set": r.uniform(0, 0.1)}[kind]
    elif target == "haircut":
        value = {"add": r.uniform(-0.1, 0.5), "mul": r.uniform(0.5, 3), "set": r.uniform(0, 1)}[kind]
    elif target.endswith(".month"):
        value = {"add": r.uniform(-6, 12), "mul": r.uniform(0.3, 2), "set": r.uniform(-2, 60)}[kind]
    elif target.endswith(".step"):
        value = {"add": r.uniform(-0.05, 0.3), "mul": r.uniform(0, 3), "set": r.uniform(0, 0.6)}[kind]
    else:  # pd_multiplier
        value = {"add": r.uniform(-0.5, 2), "mul": r.uniform(0, 4), "set": r.uniform(0, 3)}[kind]
    start = int(r.integers(1, 40))
    end = None if r.random() < 0.7 else start + int(r.integers(0, 40))
    return ShockConfig(target=target, kind=kind, value=float(value), start_month=start,
                       ramp_months=int(r.choice([0, r.integers(1, 18)])), end_month=end)


def _random_case(case: int, tmp_path: Path):
    """A random tape, 1-3 random scenarios, random tenors (or the tape's), channels and rules."""
    r = np.random.default_rng(1000 + case)
    cfg = to_schema(compose([]))
    with_cures = case % 5 in (1, 3, 4)  # model v2 covenant mechanics, on their own random numbers
    cures = np.random.default_rng(2000 + case) if with_cures else None
    tape_file = _random_tape(r, tmp_path / f"tape{case}.csv", list(cfg.market.chips), cures)
    if case % 3 != 2:  # residual value guarantees on some loans, on their own random numbers
        rvg = np.random.default_rng(6000 + case)
        _append_column(tape_file, "rvg_per_gpu", [round(float(rvg.choice([0.0, rvg.uniform(0, 2e4)])), 2)
                                                  for _ in tape_file.read_text().splitlines()[1:]])
    if case % 2 == 0:  # facilities with tranches, on their own random numbers
        cfg.portfolio.facilities = _random_facilities(np.random.default_rng(4000 + case), tape_file)
    cfg.scenario = {f"s{i}": ScenarioConfig(description="random", shocks=[_random_shock(r, cfg)
                                                                          for _ in range(int(r.integers(0, 5)))])
                    for i in range(int(r.integers(1, 4)))}
    if case % 4 == 2:  # spot prices driven below zero, hence floored, from a random month
        crash = ShockConfig(target="price.all", kind="add", value=-2.5, start_month=int(r.integers(1, 24)))
        cfg.scenario["s0"].shocks.append(crash)
    tape_tenors = r.random() < 0.25
    cfg.tenors = sorted(r.choice([12, 24, 36, 48, 60, 84], size=int(r.integers(1, 4)), replace=False).tolist())
    channels = list(schema.CHANNELS)
    cfg.model.channels = channels if case % 3 == 0 else [c for c in channels if r.random() < 0.6] or ["payment"]
    cfg.model.cross_default = case % 2 == 1
    cfg.model.cure_months = int(r.integers(1, 5))
    cfg.model.refi_ltv_max = float(r.uniform(0.4, 1.1))
    cfg.model.recovery.lag_months = int(r.choice([0, 1, 6, 9]))
    cfg.model.recovery.haircut = float(r.uniform(0, 0.5))
    cfg.model.recovery.sale_cost = float(r.uniform(0, 0.1))
    if case % 3 != 1:  # model v2 appraisal, on its own random numbers
        cfg.market.valuation.method = "appraisal"
        cfg.market.valuation.appraisal_months = int(np.random.default_rng(3000 + case).choice([1, 3, 6, 12]))
    if case % 3 != 0:  # wrong-way risk, on its own random numbers
        cfg.model.exogenous.demand_corr = float(np.random.default_rng(5000 + case).choice([-1.0, 1.0, 0.7, -0.3]))
    if case % 2 == 1 or case == 4:  # fire sales, on their own random numbers
        fire = np.random.default_rng(7000 + case)
        cfg.model.recovery.price_impact = float(fire.uniform(0.1, 0.8))
        cfg.model.recovery.market_depth = {c: float(fire.choice([math.inf, fire.uniform(5e3, 1.5e5)])) for c in cfg.market.chips}
    if case % 4 != 3:  # offtakers and renewals, on their own random numbers
        _random_offtakers(np.random.default_rng(8000 + case), tape_file, cfg)
    if with_cures:
        cfg.model.covenant.cash_trap = bool(cures.random() < 0.7)
        cfg.model.covenant.max_cures = int(cures.integers(1, 4))
    validate.validate(cfg)
    if tape_tenors:  # each loan's own tenor_months
        cfg.tenors = "tape"
    tape = load_portfolio(tape_file, cfg.market.chips.keys())
    seed = int(r.integers(0, 2**63)) * 2 + 1  # both key words in use
    with np.errstate(divide="ignore"):  # log1p(-pd) of a loan with pd_annual = 1
        return problem.build_problem(cfg, tape), seed


@pytest.mark.parametrize("case", range(10))
def test_random_portfolios_match_numpy(host, case, tmp_path):
    """Odd cases with cross-default; cases not divisible by 3 with a random subset of the channels;
    cases 2 and 6 with prices floored at zero; tape tenors in about a quarter of them; cases 1, 3, 4, 6,
    8 and 9 with equity cures (cure_capacity, max_cures) and mostly the cash trap; cases not 1 mod 3
    with the appraisal valuation; even cases with facilities (per-path facility losses); cases not
    divisible by 3 with wrong-way risk (model.exogenous.demand_corr); cases not 2 mod 3 with residual
    value guarantees (rvg_per_gpu); odd cases and case 4 with fire sales (market_depth, price_impact); cases
    not 3 mod 4 with offtakers (defaults, forced defaults, self contracts) and renewals."""
    host("engine.cu")
    prob, seed = _random_case(case, tmp_path)
    args = dict(seed=seed, start=37, stop=187, fan_paths=60, keep_paths=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ref = montecarlo.simulate(np, prob, **args)
    _assert_parity(ref, hostkernel.simulate(prob, **args))


def test_wrong_way_risk_matches_numpy(host):
    """model.exogenous.demand_corr on the example book, exogenous channel only: the kernel's pre-pass
    over the first 12 demand innovations gives numpy's default months on every path."""
    host("engine.cu")
    cfg = to_schema(compose(["tenors=[36,60]", "scenario=[baseline,ai_winter]",
                                                         "model.channels=[exogenous]", "model.exogenous.demand_corr=0.9"]))
    prob = problem.build_problem(cfg, load_portfolio(tape_path(cfg), cfg.market.chips.keys()))
    args = dict(seed=5, start=20, stop=220, fan_paths=0, keep_paths=True)
    ref = montecarlo.simulate(np, prob, **args)
    _assert_parity(ref, hostkernel.simulate(prob, **args))
    plain = montecarlo.simulate(np, dataclasses.replace(prob, demand_corr=0.0), **args)
    assert (ref.default_month > 0).sum() > 100 and not np.array_equal(ref.default_month, plain.default_month)


def test_near_zero_debt_service_has_no_dscr(host, tmp_path):
    """A loan owing ~1e-300 USD a month has no DSCR in either engine (the ratio would overflow)."""
    host("engine.cu")
    cfg = to_schema(compose(["tenors=tape"]))
    tape = load_portfolio(write_tape(tmp_path / "tape.csv", [NEAR_ZERO_RATE_LOAN]), cfg.market.chips.keys())
    prob = problem.build_problem(cfg, tape)
    args = dict(seed=11, start=0, stop=40, fan_paths=20, keep_paths=True)
    ref = montecarlo.simulate(np, prob, **args)
    got = hostkernel.simulate(prob, **args)
    assert not np.isinf(ref.dscr).any() and np.isnan(ref.dscr[..., 1:]).all()
    _assert_parity(ref, got)


def test_missing_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-g++")
    hostkernel.load.cache_clear()
    try:
        with pytest.raises(hostkernel.KernelBuildError, match="g\\+\\+ was not found"):
            hostkernel.load("engine.cu")
    finally:
        hostkernel.load.cache_clear()
