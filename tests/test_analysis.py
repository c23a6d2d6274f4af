"""Issue 8, answers beyond the loss distribution: breakeven prices and safe tenors, reverse stress
tests, sensitivities, importance sampling and the historical H100 replay.

Statistical assertions state their tolerance in standard errors; exact ones are deterministic
cases (flat prices, no noise) checked against a closed form."""

import math
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from stress import analyze
from stress.config.compose import to_schema
from stress.errors import ConfigError
from stress.model.market import logit_intercept
from stress.pipeline import run
from stress.results import metrics

from support import assert_se_matches_seed_spread, config

FAST = ["mc.fan_paths=0", "backend=numpy"]


# ------------------------------------------------------------------------------- breakeven

def _flat_loan_cfg(tape, extra=()):
    """One H100 annuity loan with no contracts, reserve, sweep, GPU failures or exogenous risk; with
    the demand factor fixed and no utilisation noise, every month's cash flow is the same number."""
    loans = [dict(contracted_share=0.0, contract_months=0, reserve_months=0, dscr_min=0.01, pd_annual=0.0,
                  rate=0.12, principal=15e6, gpus=1000, ltv_max=1e6)]
    return config([f"portfolio.path={tape(loans)}", "tenors=[36,60]", "mc.paths=8", "analysis=breakeven",
                   "market.chips.H100.failure_rate=0", "market.utilization.idiosyncratic=0",
                   "analyses.breakeven.tol=0.001", "analyses.breakeven.channels=[payment]", *FAST, *extra],
                  scenarios={"base": []})


def test_breakeven_price_matches_the_closed_form(tape):
    """Flat price p, constant utilisation u: CFADS = gpus (u (730 p - f (1 - idle)) - f idle - opex_fixed)
    with f = kW x PUE x 730 x power price; the loan misses its level payment A exactly when
    CFADS < A, so p* = ((A / gpus + f idle + opex_fixed) / u + f (1 - idle)) / 730. Bisection on
    common random numbers must bracket p* within analyses.breakeven.tol."""
    cfg = _flat_loan_cfg(tape)
    ds = analyze(cfg)
    c = to_schema(cfg)
    m, chip = c.market, c.market.chips["H100"]
    u = m.utilization.u_max / (1 + math.exp(-logit_intercept(chip.reference_utilization, m.utilization.u_max,
                                                              m.utilization.demand_loading)))
    f = chip.power_kw * 1.3 * 730 * 0.08  # support.LOAN: pue 1.3, power_price 0.08
    idle = m.utilization.idle_power_share
    for k in (36, 60):
        r = 0.12 / 12
        payment = 15e6 * r / (1 - (1 + r) ** -k)
        p_star = ((payment / 1000 + f * idle + 100.0) / u + f * (1 - idle)) / 730
        cell = ds.sel(tenor=k, loan="L-1")
        assert cell.breakeven_price_lo.item() <= p_star <= cell.breakeven_price_hi.item(), (k, p_star)
        assert cell.breakeven_price_hi.item() - cell.breakeven_price_lo.item() <= 0.001 + 1e-12
        # with the payment channel only, the PD threshold is crossed at the same price
        assert cell.pd_threshold_price_lo.item() <= p_star <= cell.pd_threshold_price_hi.item()
        # grid curve: every path fails below p*, none above
        below = cell.grid_price.values < p_star
        assert (cell.payment_pd_curve.values[below] == 1).all() and (cell.payment_pd_curve.values[~below] == 0).all()
    assert ds.attrs["analysis"] == "breakeven" and ds.attrs["base_scenario"] == "base"


def test_breakeven_extremes_and_max_safe_tenor(tape):
    """A loan fully contracted for its whole life at a high price services its debt at any spot
    price (breakeven 0); one without revenue cost cover fails even at 2x spot (NaN, censored).
    max_safe_tenor is the longest tenor whose metric, from the same seed as stress.run, is within
    the limit at it and every shorter tenor."""
    loans = [dict(contracted_share=1.0, contract_price=6.0, contract_months=120, pd_annual=0.0),
             dict(contracted_share=0.0, opex_fixed=5000.0, pd_annual=0.0),
             dict(pd_annual=0.01)]
    common = [f"portfolio.path={tape(loans)}", "tenors=[36,60,84]", "mc.paths=64", *FAST,
              "analyses.breakeven.tol=0.05", "analyses.breakeven.grid=5"]
    ds = analyze(config(common + ["analysis=breakeven", "scenario=[baseline,ai_winter]"]))
    assert (ds.breakeven_price.sel(loan="L-1") == 0).all()
    assert ds.breakeven_price.sel(loan="L-2").isnull().all() and ds.breakeven_price_hi.sel(loan="L-2").isnull().all()
    assert (ds.breakeven_price_lo.sel(loan="L-2") == 2 * ds.spot_price.sel(loan="L-2")).all()
    ref = run(config(common + ["scenario=[baseline,ai_winter]"]))
    np.testing.assert_array_equal(ds.tenor_metric.values, ref.pd.values)
    limit = ds.attrs["tenor_limit"]
    for s in ds.scenario.values:
        for loan in ds.loan.values:
            ok = [k for k in ds.tenor.values if (ref.pd.sel(scenario=s, loan=loan, tenor=slice(None, k)) <= limit).all()]
            assert ds.max_safe_tenor.sel(scenario=s, loan=loan).item() == (max(ok) if ok else 0), (s, loan)


# ------------------------------------------------------------------------------- reverse stress

REVERSE = ["scenario=[baseline]", "tenors=[36]", "analysis=reverse", *FAST]


def test_reverse_stress_brackets_the_breach_on_common_random_numbers():
    """At the final bracket, a plain run of the base scenario plus the shock does not breach the
    limit at x_lo and breaches it at x_hi (same seed, so exactly the paths the bisection saw)."""
    cfg = config(REVERSE + ["mc.paths=200", "analyses.reverse.directions=[price,rate]", "analyses.reverse.el_limit=0.02"])
    ds = analyze(cfg)
    cell = ds.sel(direction="price", target="el", tenor=36)
    lo, hi = cell.reverse_stress_lo.item(), cell.reverse_stress_hi.item()
    assert 0 < lo < hi and (hi - lo <= 0.01 * 0.9 + 1e-12 or hi - lo < 0.25 * cell.reverse_stress_se.item())
    assert lo <= cell.reverse_stress.item() <= hi and cell.reverse_stress_se.item() > 0
    el = {}
    for x in (lo, hi):
        shock = [{"target": "price.all", "kind": "mul", "value": 1 - x, "start_month": 1, "ramp_months": 12}]
        r = run(config(["tenors=[36]", "mc.paths=200", *FAST], scenarios={"s": shock}))
        el[x] = r.expected_loss.item() / r.principal.sum().item()
    assert el[lo] <= 0.02 < el[hi]
    assert ds.breaching_loan.dims == ("direction", "tenor")
    # loans re-scheduled past their GPUs' life are above the 25% PD limit without a shock
    assert ds.reverse_stress.sel(direction="price", target="pd", tenor=36).item() == 0
    assert ds.breaching_loan.sel(direction="price", tenor=36).item() in ("NEO-11", "MER-04", "MER-10")
    # the grid metric rises with the price drop on common random numbers
    assert np.all(np.diff(ds.grid_metric.sel(direction="price", target="el", tenor=36).values) >= -1e-12)


def test_reverse_stress_standard_error_matches_seed_spread():
    """Across 8 seeds, the spread of the reverse-stress price drop agrees with the reported delta-
    method standard errors: (n - 1) s^2 / mean(se^2) inside the central 99.9% of chi2(n - 1)."""
    xs, ses = [], []
    for seed in range(8):
        ds = analyze(config(REVERSE + ["mc.paths=150", f"mc.seed={seed}", "analyses.reverse.directions=[price]",
                                       "analyses.reverse.el_limit=0.02"]))
        cell = ds.sel(direction="price", target="el", tenor=36)
        xs.append(cell.reverse_stress.item())
        ses.append(cell.reverse_stress_se.item())
    assert_se_matches_seed_spread(xs, ses)


# ------------------------------------------------------------------------------- sensitivities

def test_haircut_sensitivity_is_exact_when_every_loan_defaults(tape):
    """No revenue (price set to 0): every loan defaults on payment in month 1 and its collateral
    sells at scrap value after the lag, so EL is linear in the haircut with slope
    alive x scrap x (1 - sale cost) / (1 + r/12)^lag per loan (uncapped proceeds); VaR and ES,
    with no randomness, have the same slope. Fixed-rate loans do not depend on the base rate."""
    loans = [dict(reserve_months=0, contracted_share=0.0, pd_annual=0.0, rate=0.09 + 0.01 * i) for i in range(3)]
    cfg = config([f"portfolio.path={tape(loans)}", "tenors=[36]", "mc.paths=40", "analysis=sensitivities",
                  "analyses.sensitivities.parameters=[haircut,base_rate]", "model.channels=[payment]", *FAST],
                 scenarios={"dead": [{"target": "price.all", "kind": "set", "value": 0.0}]})
    ds = analyze(cfg)
    c = to_schema(cfg)
    chip, rec = c.market.chips["H100"], c.model.recovery
    alive = 1000 * (1 - chip.failure_rate) ** ((1 + rec.lag_months) / 12)
    slope = sum(alive * chip.scrap_value * (1 - rec.sale_cost) / (1 + (0.09 + 0.01 * i) / 12) ** rec.lag_months
                for i in range(3))
    h = ds.sel(parameter="haircut", tenor=36)
    np.testing.assert_allclose(h.el_sensitivity.item(), slope, rtol=1e-9)
    np.testing.assert_allclose(h.var_sensitivity.values, slope, rtol=1e-9)
    np.testing.assert_allclose(h.es_sensitivity.values, slope, rtol=1e-9)
    assert h.el_sensitivity_se.item() == pytest.approx(0.0, abs=1e-6 * slope)
    assert (ds.sel(parameter="base_rate")[["el_sensitivity", "var_sensitivity", "es_sensitivity"]]
            .to_array() == 0).all()


def test_sensitivities_of_the_example_portfolio_have_the_expected_signs():
    """Higher prices lower EL, a steeper trend or deeper launch steps raise it (each by more than 3
    standard errors of the paired differences); config bumps and shock bumps share the seed."""
    ds = analyze(config(["scenario=[baseline]", "tenors=[60]", "mc.paths=200", "analysis=sensitivities",
                         "analyses.sensitivities.parameters=[price,trend,launch_step]", *FAST]))
    el = ds.el_sensitivity.sel(tenor=60)
    se = ds.el_sensitivity_se.sel(tenor=60)
    assert el.sel(parameter="price") < -3 * se.sel(parameter="price")
    assert el.sel(parameter="trend") > 3 * se.sel(parameter="trend")
    assert el.sel(parameter="launch_step") > 3 * se.sel(parameter="launch_step")
    assert list(ds.bump_kind.values) == ["scenario shock", "config value", "scenario shock"]
    # too few paths per block for a 99.9% VaR batch-means error: NaN, by the documented rule
    assert ds.var_sensitivity_se.sel(quantile=0.999).isnull().all()


@pytest.mark.slow
def test_sensitivity_standard_error_matches_seed_spread():
    """Across 10 seeds, the spread of dEL/dprice agrees with the paired-difference standard error
    (chi-square, central 99.9%)."""
    vals, ses = [], []
    for seed in range(10):
        ds = analyze(config(["scenario=[baseline]", "tenors=[60]", "mc.paths=200", "analysis=sensitivities",
                             f"mc.seed={seed}", "analyses.sensitivities.parameters=[price]", *FAST]))
        vals.append(ds.el_sensitivity.item())
        ses.append(ds.el_sensitivity_se.item())
    assert_se_matches_seed_spread(vals, ses)


# ------------------------------------------------------------------------------- importance sampling

def test_weighted_estimators_reduce_to_the_plain_ones_and_recover_a_normal_tail():
    """With unit weights the weighted VaR/EL equal the plain estimators, and the weighted VaR SE (the
    interval between the VaR at levels q -/+ one SE of the exceedance) estimates what the plain exact
    bootstrap does: within 15% on 3,001 exponential samples (each is off the true SE by a few %); sampling N(a, 1) with
    likelihood ratios phi(x) / phi(x - a) recovers the N(0, 1) 99.9% VaR (3.090) and ES (3.367):
    over 200 replications of 4000 samples the z-scores have |mean| < 0.25 and sd in (0.75, 1.3)."""
    rng = np.random.default_rng(3)
    x = rng.exponential(1.0, size=(2, 3001))
    plain, unit = metrics.tail_measures(x, [0.95, 0.99]), metrics.tail_measures(x, [0.95, 0.99], np.ones(3001))
    np.testing.assert_array_equal(plain["var"], unit["var"])
    np.testing.assert_allclose(plain["var_se"], unit["var_se"], rtol=0.15)
    np.testing.assert_allclose(plain["es"], unit["es"], rtol=1e-12)
    np.testing.assert_array_equal(metrics.expected_loss(x)[0], metrics.expected_loss(x, np.ones(3001))[0])
    a, q = 3.0, 0.999
    z = rng.standard_normal((200, 4000)) + a
    w = np.exp(-a * z + 0.5 * a * a)
    out = metrics.tail_measures(z, [q], w)
    var, es = stats.norm.ppf(q), stats.norm.pdf(stats.norm.ppf(q)) / (1 - q)
    for key, truth in (("var", var), ("es", es)):
        score = (out[key][:, 0] - truth) / out[f"{key}_se"][:, 0]
        assert abs(score.mean()) < 0.25 and 0.75 < score.std() < 1.3, (key, score.mean(), score.std())


def _vasicek_tape(tape, n_loans=100):
    """Exogenous channel only, bullet loans of distinct sizes (losses near-continuous), pd 3%, rho 0.25."""
    loans = [dict(amortization="bullet", pd_annual=0.03, asset_corr=0.25, reserve_months=0,
                  principal=10e6 * (1 + i / n_loans)) for i in range(n_loans)]
    return tape(loans)


def test_importance_sampling_is_unbiased(tape):
    """Expected loss of a Vasicek-like book (no recovery, so EL = cumulative PD x principal exactly):
    the IS estimate (copula shift 2) is within 4 of its standard errors of the exact value and within
    4 combined standard errors of a plain estimate on another seed; the weights average 1."""
    common = [f"portfolio.path={_vasicek_tape(tape, 40)}", "tenors=[36]", "model.channels=[exogenous]",
              "model.recovery.haircut=1.0", "mc.paths=4000", *FAST]
    plain = run(config(common + ["mc.seed=11"], scenarios={"base": []}))
    weighted = run(config(common + ["mc.seed=12", "mc.importance_sampling=true", "mc.is_shift_copula=2"],
                          scenarios={"base": []}))
    diff = weighted.expected_loss.item() - plain.expected_loss.item()
    assert abs(diff) < 4 * math.hypot(weighted.expected_loss_se.item(), plain.expected_loss_se.item())
    exact = (1 - 0.97 ** 3) * weighted.principal.sum().item()
    assert abs(weighted.expected_loss.item() - exact) < 4 * weighted.expected_loss_se.item()
    n = 4000
    assert weighted.weight.dims == ("tenor", "path")
    w = weighted.weight.values.ravel()
    assert abs(w.mean() - 1) < 4 * w.std(ddof=1) / math.sqrt(n)


def test_importance_sampling_is_unbiased_with_wrong_way_risk(tape):
    """model.exogenous.demand_corr=0.9 with shifted demand innovations and copula factor: the 6-month
    tenor's weight must carry the ratios of the first year's innovations (W uses them), so both tenors'
    IS expected losses are within 4 standard errors of the exact cumulative PD x principal."""
    common = [f"portfolio.path={_vasicek_tape(tape, 40)}", "tenors=[6,24]", "model.channels=[exogenous]",
              "model.recovery.haircut=1.0", "model.recovery.lag_months=0", "mc.paths=4000", *FAST,
              "model.exogenous.demand_corr=0.9", "mc.importance_sampling=true", "mc.is_shift_copula=1.5",
              "mc.is_shift_demand=1.5"]
    weighted = run(config(common + ["mc.seed=12"], scenarios={"base": []}))
    for tenor in (6, 24):
        cell = weighted.sel(tenor=tenor, scenario="base")
        exact = (1 - 0.97 ** (tenor / 12)) * weighted.principal.sum().item()
        assert abs(cell.expected_loss.item() - exact) < 4 * cell.expected_loss_se.item(), tenor


def test_importance_sampling_cuts_tail_standard_errors(tape):
    """Same book, same number of paths: the IS standard errors of the 99.9% VaR and ES are below the
    plain ones (factor 2 at least), and the two VaR estimates agree within 4 combined SEs."""
    common = [f"portfolio.path={_vasicek_tape(tape)}", "tenors=[36]", "model.channels=[exogenous]",
              "model.recovery.haircut=1.0", "mc.paths=3000", *FAST]
    plain = run(config(common, scenarios={"base": []})).sel(quantile=0.999)
    weighted = run(config(common + ["mc.importance_sampling=true", "mc.is_shift_copula=2.5"],
                          scenarios={"base": []})).sel(quantile=0.999)
    for name in ("var", "es"):
        assert weighted[f"{name}_se"].item() < 0.5 * plain[f"{name}_se"].item(), name
    gap = abs(weighted["var"].item() - plain["var"].item())
    assert gap < 4 * math.hypot(weighted.var_se.item(), plain.var_se.item())


def test_importance_sampling_with_zero_shift_reproduces_the_plain_run():
    """The shift is applied after generation: with zero shifts every weight is 1 and the weighted
    estimators give the plain numbers (the raw Philox stream is untouched)."""
    base = ["scenario=[baseline,ai_winter]", "tenors=[36,60]", "mc.paths=150", "mc.fan_paths=0", "backend=numpy"]
    a = run(config(base))
    b = run(config(base + ["mc.importance_sampling=true", "mc.is_shift_copula=0", "mc.is_shift_demand=0"]))
    assert (b.weight == 1).all()
    np.testing.assert_array_equal(a.loss.values, b.loss.values)
    for name in ("expected_loss", "pd", "el", "var", "default_rate"):
        np.testing.assert_allclose(b[name].values, a[name].values, rtol=1e-12, err_msg=name)
    c = run(config(base + ["mc.importance_sampling=true"]))
    assert not np.array_equal(a.loss.values, c.loss.values)  # the default shifts move the paths


# ------------------------------------------------------------------------------- historical replay

def test_h100_replay_follows_the_observed_price_path():
    """market=h100_2023, portfolio=h100_2023 (found in the bundled conf/), the replay scenario:
    the H100 price is set, so every fan quantile is the cited point at its month."""
    ds = run(config(["market=h100_2023", "portfolio=h100_2023", "scenario=[baseline,h100_replay_2023]",
                     "tenors=[48]", "mc.paths=40", "mc.fan_paths=20", "backend=numpy"]))
    assert ds.sizes["loan"] == 10 and set(ds.chip.values) == {"H100"}
    fan = ds.price_fan.sel(scenario="h100_replay_2023", chip="H100")
    points = {7: 8.00, 13: 2.85, 21: 2.99, 33: 1.70, 35: 1.70, 38: 2.35, 40: 2.95, 42: 2.42, 47: 2.50}
    for month, price in points.items():
        np.testing.assert_allclose(fan.sel(month=month).values, price, rtol=1e-12, err_msg=str(month))
    np.testing.assert_allclose(fan.sel(month=1).values, 4.70 + (8.00 - 4.70) / 7, rtol=1e-12)
    assert (ds.expected_loss.sel(scenario="h100_replay_2023") > 0).all()


# ------------------------------------------------------------------------------- entry points

def test_analyze_run_is_run_and_bad_analysis_keys_are_config_errors():
    cfg = config(["scenario=[baseline]", "tenors=[36]", "mc.paths=30", *FAST])
    a, b = run(cfg), analyze(cfg)
    a.attrs.pop("created"), b.attrs.pop("created")
    xr.testing.assert_identical(a, b)
    for bad, key in ((["analysis=tornado"], "analysis"),
                     (["analysis=reverse", "analyses.reverse.var_quantile=0.98"], "var_quantile"),
                     (["analysis=sensitivities", "analyses.sensitivities.parameters=[price,moon]"], "parameters"),
                     (["analysis=breakeven", "analyses.breakeven.channels=[payment,telepathy]"], "channels"),
                     (["mc.is_shift_copula=-1"], "is_shift_copula")):
        with pytest.raises(ConfigError, match=key):
            to_schema(config(bad))


@pytest.mark.parametrize("name,bad", [("reverse", "analyses.reverse.var_quantile=0.999"),
                                      ("sensitivities", "analyses.sensitivities.batches=1"),
                                      ("breakeven", "analyses.breakeven.grid=1")])
def test_analysis_keys_are_checked_only_when_that_analysis_runs(name, bad):
    """quantiles=[0.95] is a plain run's business; only analysis=reverse needs var_quantile among them."""
    to_schema(config(["quantiles=[0.95]", bad]))
    with pytest.raises(ConfigError, match=bad.split("=")[0].replace(".", r"\.")):
        to_schema(config(["quantiles=[0.95]", bad, f"analysis={name}"]))


def test_cli_writes_the_analysis_and_refuses_to_overwrite(tmp_path):
    args = [sys.executable, "-m", "stress.cli", "analysis=sensitivities", "scenario=[baseline]", "tenors=[36]",
            "mc.paths=60", "analyses.sensitivities.parameters=[price,haircut]", f"output.dir={tmp_path / 'out'}"]
    r = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Sensitivities" in r.stdout and "haircut" in r.stdout and "analysis_sensitivities.nc" in r.stdout
    with xr.open_dataset(tmp_path / "out" / "analysis_sensitivities.nc") as ds:
        assert list(ds.parameter.values) == ["price", "haircut"] and ds.attrs["analysis"] == "sensitivities"
        assert "Central finite differences" in ds.attrs["method"] and "mc:" in ds.attrs["config"]
    assert not (tmp_path / "out" / "results.nc").exists()
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".partial")] == []
    r = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "already exists" in r.stderr and "Traceback" not in r.stderr
