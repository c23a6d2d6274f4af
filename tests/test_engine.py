"""The engine against hand-computed cases, closed forms and invariances."""

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from stress.pipeline import run

from support import assert_se_matches_seed_spread, config

FAST = ["mc.paths=300", "mc.fan_paths=20"]


def test_no_revenue_defaults_when_the_reserve_runs_out(tape):
    """No revenue, no opex and a reserve of k months of a level payment: the reserve pays months
    1..k, the payment in month k+1 fails, on every path."""
    loans = [dict(reserve_months=k, contracted_share=0.0, power_price=0.0, opex_fixed=0.0, rate=0.09 + 0.01 * k)
             for k in (0, 1, 3, 7)]
    cfg = config([f"portfolio.path={tape(loans)}", "tenors=[36]", "model.channels=[payment]", "output.paths=true",
                  *FAST], scenarios={"no_revenue": [{"target": "price.all", "kind": "set", "value": 0.0}]})
    ds = run(cfg)
    months = ds.default_month.sel(scenario="no_revenue", tenor=36)
    for i, k in enumerate((0, 1, 3, 7)):
        assert (months.isel(loan=i) == k + 1).all(), f"reserve of {k} months"
    assert (ds.default_cause == 1).all()  # payment
    assert (ds.pd == 1).all()
    # exposure = the scheduled balance before the missed payment; recovery = the alive GPUs sold at
    # their scrap value (a zero rent is worth nothing) after the lag, discounted at the loan rate
    chip = cfg.market.chips.H100
    rec = cfg.model.recovery
    for i, k in enumerate((0, 1, 3, 7)):
        loan = ds.isel(loan=i).sel(scenario="no_revenue", tenor=36)
        exposure = 20e6 if k == 0 else float(loan.scheduled_balance.sel(month=k))
        sold = k + 1 + rec.lag_months
        alive = 1000 * (1 - chip.failure_rate) ** (sold / 12)
        proceeds = alive * chip.scrap_value * (1 - rec.haircut) * (1 - rec.sale_cost)
        rate = 0.09 + 0.01 * k
        expected = exposure - min(proceeds, exposure) / (1 + rate / 12) ** rec.lag_months
        np.testing.assert_allclose(loan.el.item(), expected, rtol=1e-9)


def _exact_mixture_pmf(n_loans, p, rho):
    """Default-count distribution of the one-factor Gaussian copula (Vasicek) with n_loans
    identical loans: the binomial mixed over the systematic factor (Gauss-Hermite, 200 nodes)."""
    z, w = np.polynomial.hermite_e.hermegauss(200)
    w = w / w.sum()
    pz = stats.norm.cdf((stats.norm.ppf(p) - np.sqrt(rho) * z) / np.sqrt(1 - rho))
    k = np.arange(n_loans + 1)
    return (stats.binom.pmf(k[:, None], n_loans, pz[None, :]) * w[None, :]).sum(axis=1)


@pytest.mark.parametrize("n_loans,paths,demand_corr", [(40, 4000, 0.0), (40, 4000, 1.0), (40, 4000, -0.6),
                                                       pytest.param(400, 20000, 0.0, marks=pytest.mark.slow)])
def test_exogenous_channel_follows_vasicek(tape, n_loans, paths, demand_corr):
    """Only the exogenous channel, identical bullet loans, no recovery: the number of defaults
    by maturity follows the one-factor Gaussian copula law, also with wrong-way risk
    (model.exogenous.demand_corr: the systematic factor r W + sqrt(1 - r^2) Z0 stays N(0, 1)
    unconditionally). Chi-square goodness of fit on bins with >= 20 expected paths; the test fails
    at the 0.1% level. No cash trap: it would prepay principal whenever the LTV is breached, so a
    default would no longer lose the whole principal."""
    pd_annual, rho, tenor = 0.03, 0.25, 36
    loans = [dict(amortization="bullet", pd_annual=pd_annual, asset_corr=rho, reserve_months=0)] * n_loans
    cfg = config([f"portfolio.path={tape(loans)}", f"tenors=[{tenor}]", "model.channels=[exogenous]",
                  "model.recovery.haircut=1.0", "model.covenant.cash_trap=false", f"mc.paths={paths}",
                  "mc.fan_paths=0", f"model.exogenous.demand_corr={demand_corr}"],
                 scenarios={"base": []})
    ds = run(cfg)
    defaults = np.rint(ds.loss_rate.sel(scenario="base", tenor=tenor).values * n_loans).astype(int)
    p = 1 - (1 - pd_annual) ** (tenor / 12)
    expected = _exact_mixture_pmf(n_loans, p, rho) * paths
    observed = np.bincount(defaults, minlength=n_loans + 1)
    # merge the tail into bins with at least 20 expected counts
    edges, acc = [0], 0.0
    for k, e in enumerate(expected):
        acc += e
        if acc >= 20:
            edges.append(k + 1)
            acc = 0.0
    edges[-1] = n_loans + 1
    obs = np.add.reduceat(observed, edges[:-1])
    exp = np.add.reduceat(expected, edges[:-1])
    chi2 = ((obs - exp) ** 2 / exp).sum()
    assert stats.chi2.sf(chi2, len(obs) - 1) > 1e-3, (obs, exp.round(1))
    # the mean default fraction is the cumulative PD, within 4 standard errors
    frac = defaults / n_loans
    assert abs(frac.mean() - p) < 4 * frac.std(ddof=1) / np.sqrt(paths)


def test_same_seed_same_dataset():
    cfg = config(["scenario=[baseline,ai_winter]", "tenors=[36]", *FAST])
    a, b = run(cfg), run(cfg)
    a.attrs.pop("created"), b.attrs.pop("created")
    xr.testing.assert_identical(a, b)
    c = run(config(["scenario=[baseline,ai_winter]", "tenors=[36]", "mc.seed=1", *FAST]))
    assert not np.array_equal(a.loss.values, c.loss.values)


def test_chunk_size_changes_no_path():
    base = ["scenario=[baseline,rental_price_collapse]", "tenors=[36,60]", "output.paths=true", "mc.paths=120",
            "mc.fan_paths=20"]
    whole = run(config(base + ["mc.chunk_paths=120"]))
    for chunk in (1, 7, 37):
        part = run(config(base + [f"mc.chunk_paths={chunk}"]))
        np.testing.assert_array_equal(part.loss.values, whole.loss.values)
        np.testing.assert_array_equal(part.default_month.values, whole.default_month.values)
        np.testing.assert_array_equal(part.default_cause.values, whole.default_cause.values)
        for name in ("pd", "default_share", "price_fan"):
            np.testing.assert_array_equal(part[name].values, whole[name].values)
        for name in ("el", "lgd", "default_rate", "ltv_fan"):
            np.testing.assert_allclose(part[name].values, whole[name].values, rtol=1e-12)


def test_scenario_and_tenor_subsets_change_no_path():
    full = run(config(["scenario=[baseline,ai_winter,rate_shock]", "tenors=[36,60,84]", "output.paths=true", *FAST]))
    sub = run(config(["scenario=[rate_shock]", "tenors=[60]", "output.paths=true", *FAST]))
    cell = dict(scenario="rate_shock", tenor=60)
    np.testing.assert_array_equal(sub.default_month.sel(cell).values, full.default_month.sel(cell).values)
    np.testing.assert_allclose(sub.loss.sel(cell).values, full.loss.sel(cell).values, rtol=1e-13)
    np.testing.assert_allclose(sub.price_fan.sel(scenario="rate_shock").values,
                               full.price_fan.sel(scenario="rate_shock", month=sub.month).values, rtol=1e-13)


def test_expected_loss_standard_error_matches_seed_spread():
    """Across 12 independent seeds, the sample variance of EL agrees with the mean reported SE^2:
    (n - 1) s^2 / se^2 ~ chi2(n - 1); accepted inside its central 99.9% interval."""
    els, ses = [], []
    for seed in range(12):
        ds = run(config(["scenario=[baseline]", "tenors=[60]", "mc.paths=250", "mc.fan_paths=0", f"mc.seed={seed}"]))
        els.append(ds.expected_loss.item())
        ses.append(ds.expected_loss_se.item())
    assert_se_matches_seed_spread(els, ses)


def test_adverse_scenarios_lose_at_least_the_baseline():
    """On common random numbers, each shipped adverse scenario's EL minus the baseline's is
    >= -3 standard errors of the paired difference, at every tenor."""
    ds = run(config(["mc.paths=400", "mc.fan_paths=0"]))
    base = ds.loss.sel(scenario="baseline")
    for s in ds.scenario.values:
        diff = ds.loss.sel(scenario=s) - base
        se = diff.std("path", ddof=1) / np.sqrt(diff.sizes["path"])
        assert (diff.mean("path") >= -3 * se - 1e-6).all(), (s, diff.mean("path").values, se.values)


def test_losses_are_bounded_by_exposure():
    ds = run(config(["mc.paths=200", "output.paths=true", "mc.fan_paths=0"]))
    assert (ds.loss >= 0).all()
    assert (ds.loss_rate <= 1).all()
    assert ((ds.pd >= 0) & (ds.pd <= 1)).all()
    lgd = ds.lgd.values
    assert np.nanmin(lgd) >= 0 and np.nanmax(lgd) <= 1
    dm = ds.default_month
    assert ((dm >= 0) & (dm <= ds.tenor)).all()
    assert ((ds.default_cause > 0) == (dm > 0)).all()


def test_cross_default_ties_a_borrowers_loans(tape):
    """Two loans of one borrower: a loan with no revenue defaults on payment in month 1 and
    drags the healthy one with it; a loan of another borrower is untouched."""
    healthy = dict(contracted_share=1.0, contract_price=5.0, contract_months=60, pd_annual=0.0, ltv_max=1e4)
    loans = [dict(borrower="A", contracted_share=0.0, reserve_months=0, pd_annual=0.0, ltv_max=1e4, opex_fixed=1e4),
             dict(borrower="A", **healthy), dict(borrower="B", **healthy)]
    common = [f"portfolio.path={tape(loans)}", "tenors=[36]", "output.paths=true", *FAST]
    scen = {"base": [{"target": "price.all", "kind": "set", "value": 0.0}]}
    tied = run(config(common + ["model.cross_default=true"], scen)).default_month.sel(scenario="base", tenor=36)
    free = run(config(common, scen)).default_month.sel(scenario="base", tenor=36)
    assert (tied.isel(loan=0) == 1).all() and (tied.isel(loan=1) == 1).all() and (tied.isel(loan=2) == 0).all()
    assert (free.isel(loan=0) == 1).all() and (free.isel(loan=1) == 0).all()


def test_cross_default_exposure_is_the_opening_balance(tape):
    """A bullet loan that cannot refinance at maturity drags its borrower's annuity loan, in its
    last month, into default: the annuity's exposure is its opening balance (the cross-default
    pre-empts the payment), never the zero left after it. The contracts end at maturity, so the
    appraisal of month 36 has only the merchant rents at the zero price left (scrap value)."""
    common = dict(borrower="A", pd_annual=0.0, contracted_share=1.0, contract_price=5.0, contract_months=36,
                  ltv_max=1e4)
    loans = [dict(amortization="bullet", **common), dict(amortization="annuity", **common)]
    scen = {"base": [{"target": "price.all", "kind": "set", "value": 0.0, "start_month": 36}]}
    ds = run(config([f"portfolio.path={tape(loans)}", "tenors=[36]", "model.cross_default=true",
                     "model.channels=[refinancing]", "output.paths=true", *FAST], scen))
    cell = ds.sel(scenario="base", tenor=36)
    assert (cell.default_month == 36).all() and (cell.default_cause == 3).all()  # refinancing, spread
    last_instalment = float(cell.scheduled_balance.isel(loan=1).sel(month=35))
    assert np.isfinite(cell.lgd).all()
    assert cell.el.isel(loan=1).item() <= last_instalment and cell.el.isel(loan=1).item() > 0


def test_a_loan_swept_to_zero_is_repaid(tape):
    """Huge cash flow and a DSCR covenant that always bites: the sweep repays the loan in its first
    month; a 99%-a-year exogenous PD can then only strike in that month."""
    loans = [dict(contracted_share=1.0, contract_price=50.0, dscr_min=1e3, pd_annual=0.99, asset_corr=0.0,
                  ltv_max=1e4)]
    ds = run(config([f"portfolio.path={tape(loans)}", "tenors=[60]", "model.channels=[exogenous]",
                     "output.paths=true", "mc.paths=2000", "mc.fan_paths=0"], {"base": []}))
    pd_first_month = 1 - (1 - 0.99) ** (1 / 12)  # 0.32
    months = ds.default_month.sel(scenario="base", tenor=60).values
    assert set(np.unique(months)) <= {0, 1}
    p = (months == 1).mean()
    assert abs(p - pd_first_month) < 4 * np.sqrt(pd_first_month * (1 - pd_first_month) / months.size)
