"""Offtakers and contract renewals (stress.model.contract) against month-by-month references of
their own, on the numpy engine and the host-compiled kernel: a tenant that fails in month m, a
third-party contract that survives the borrower's default, renewals that never fail or never
happen, and the offtaker's default frequency against its PD."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from stress import ConfigError, TapeError
from stress.config.schema import OfftakerConfig
from stress.pipeline import run

from support import config as _config
from support import host_kernel

ENGINES = ("numpy", "host")
H100 = "market.chips.H100"
DETERMINISTIC = [f"{H100}.trend=0", f"{H100}.volatility=0", f"{H100}.demand_loading=0", "market.launches=[]",
                 "market.utilization.idiosyncratic=0", "market.utilization.demand_loading=0"]
NO_SPOT = {"no_spot": [{"target": "price.all", "kind": "set", "value": 0.0}]}  # only contracts pay
# A loan that its contract alone carries: all GPUs contracted, no opex, no reserve, no exogenous default.
CARRIED = dict(contracted_share=1.0, contract_price=1.0, contract_months=36, power_price=0.0, opex_fixed=0.0,
               reserve_months=0, pd_annual=0.0, dscr_min=0.5, ltv_max=1e6)  # no covenant, no cash trap


def config(overrides=(), scenarios=None, offtakers=None):
    """support.config with ``portfolio.offtakers`` replaced by {name: OfftakerConfig keyword dict}."""
    cfg = _config(overrides, scenarios)
    if offtakers is not None:
        cfg.portfolio.offtakers = {name: OfftakerConfig(**keys) for name, keys in offtakers.items()}
    return cfg


SAFE = {"T": dict(pd_annual=0.0)}  # a tenant that never defaults of its own


def _run(tape, loans, engine, extra=(), scenarios=NO_SPOT, paths=8, offtakers=SAFE):
    if engine == "host":
        host_kernel()
    cfg = config([f"portfolio.path={tape(loans)}", "tenors=[36]", f"mc.paths={paths}", "mc.fan_paths=8", "quiet=true",
                  f"backend={engine}", "market.valuation.appraisal_months=1", *DETERMINISTIC, *extra],
                 scenarios=scenarios, offtakers=offtakers)
    return cfg, run(cfg).isel(scenario=0).sel(tenor=36)


def _appraisal_terms(cfg):
    """(730 x reference opex o, G(n) = sum_{h<=n} (d q)^h for n = 0..120, scrap) of an H100 under the
    appraisal, USD per GPU and month, from the config's numbers."""
    chip, v, u = cfg.market.chips.H100, cfg.market.valuation, cfg.market.utilization
    draw = u.idle_power_share + (1 - u.idle_power_share) * chip.reference_utilization
    opex = chip.power_kw * v.pue * 730 * v.power_price * draw + chip.opex_fixed
    dq = (1 - chip.failure_rate) ** (1 / 12) / (1 + v.discount_rate / 12)
    return opex, np.concatenate([[0.0], np.cumsum(dq ** np.arange(1, 121))]), chip.scrap_value


def _alive(cfg, t):
    return 1000 * (1 - cfg.market.chips.H100.failure_rate) ** (np.asarray(t) / 12)


@pytest.mark.parametrize("engine", ENGINES)
def test_offtaker_failing_in_month_m_stops_the_rent_and_leaves_the_appraisal(engine, tape):
    """The tenant T of a loan carried by its contract fails in month 10 on every path: until month 9
    the DSCR is the rent over the annuity payment and the appraisal counts the contract's months left;
    in month 10 the rent stops (no spot income), the loan misses its payment, and the collateral sold
    six months later is worth its scrap value."""
    m = 10
    shocks = {"no_spot": NO_SPOT["no_spot"] + [{"target": "offtaker.T.default_month", "kind": "set", "value": m}]}
    cfg, ds = _run(tape, [dict(CARRIED, offtaker="T")], engine, scenarios=shocks)
    opex, annuity, scrap = _appraisal_terms(cfg)
    t = np.arange(1, m + 1)
    payment = ds.scheduled_payment.isel(loan=0).values[:m]
    opening = np.concatenate([[20e6], ds.scheduled_balance.isel(loan=0).values[:m - 1]])
    rent = np.where(t < m, _alive(cfg, t) * 730 * 1.0, 0.0)
    per_gpu = np.where(t < m, np.maximum((730 * 1.0 - opex) * annuity[36 - t], scrap), scrap)
    median = dict(fan_quantile=0.5)
    np.testing.assert_allclose(ds.dscr_fan.sel(**median).values[:m], rent / payment, rtol=1e-10)
    np.testing.assert_allclose(ds.ltv_fan.sel(**median).values[:m], opening / (_alive(cfg, t) * per_gpu), rtol=1e-10)
    assert np.isnan(ds.ltv_fan.sel(**median).values[m:]).all()  # the loan is gone after month m
    assert ds.pd.item() == 1 and ds.default_share.sel(cause="payment").item() == 1
    assert ds.default_rate.values[m - 2] == 0 and ds.default_rate.values[m - 1] > 0  # it defaults in month m
    rec, lag = cfg.model.recovery, cfg.model.recovery.lag_months
    proceeds = _alive(cfg, m + lag) * scrap * (1 - rec.haircut) * (1 - rec.sale_cost) / (1 + 0.10 / 12) ** lag
    np.testing.assert_allclose(ds.el.item(), opening[-1] - proceeds, rtol=1e-10)
    np.testing.assert_allclose(ds.offtaker_default_prob.sel(offtaker="T").item(), 1.0)
    np.testing.assert_allclose(ds.offtaker_el.sel(offtaker="T").item(), ds.el.item())


@pytest.mark.parametrize("engine", ENGINES)
def test_third_party_contract_survives_the_borrowers_default(engine, tape):
    """Three loans that default exogenously in month 1 (pd_annual = 1): with a live third-party
    contract the sale appraisal six months later counts its 29 months left at face, (730 p - o) G(29)
    per GPU; a self contract ends with the borrower and the GPUs sell at scrap; a blank offtaker is
    today's treatment (the contract counts, like the third party's)."""
    loans = [dict(CARRIED, pd_annual=1.0, offtaker=o) for o in ("T", "self", "")]
    cfg, ds = _run(tape, loans, engine)
    opex, annuity, scrap = _appraisal_terms(cfg)
    rec, lag = cfg.model.recovery, cfg.model.recovery.lag_months
    net = (1 - rec.haircut) * (1 - rec.sale_cost) * _alive(cfg, 1 + lag) / (1 + 0.10 / 12) ** lag
    contract = max((730 * 1.0 - opex) * annuity[36 - 1 - lag], scrap)
    assert (ds.pd == 1).all() and (ds.default_share.sel(cause="exogenous") == 1).all()
    np.testing.assert_allclose(ds.el.values, 20e6 - net * np.array([contract, scrap, contract]), rtol=1e-10)
    assert list(ds.offtaker.values) == ["T", "self"] and list(ds.loan_offtaker.values) == ["T", "self", ""]
    assert np.isnan(ds.offtaker_default_prob.sel(offtaker="self").item())
    np.testing.assert_allclose(ds.offtaker_revenue_share.values, [1 / 3, 1 / 3], rtol=1e-12)


CONSTANT_SPOT = {"flat": [{"target": "price.all", "kind": "set", "value": 2.0}]}


@pytest.mark.parametrize("engine", ENGINES)
def test_renewals_that_never_fail_are_a_contract_that_never_ends(engine, tape):
    """Spot flat at the contract price 2.0: a 12-month contract renewed with probability 1 for 600
    months at the spot price x (1 + 0) gives, path by path, the results of a contract to month 1200
    (spot valuation: the collateral does not see contracts); loans with an exogenous channel and
    random utilisation on the merchant half."""
    loan = dict(contracted_share=0.5, contract_price=2.0, pd_annual=0.05)
    spot = ["market.valuation.method=spot", "output.paths=true"]
    always = {"T": dict(pd_annual=0.0, renewal_prob=1.0, renewal_months=600)}
    run_it = lambda months, offtakers: _run(tape, [dict(loan, contract_months=months, offtaker="T")], engine, spot,  # noqa: E731
                                            CONSTANT_SPOT, paths=200, offtakers=offtakers)[1]
    renewed, endless, ending = run_it(12, always), run_it(1200, always), run_it(12, SAFE)
    assert renewed.pd.item() > 0
    for name in ("loss", "el", "pd", "default_month", "dscr_fan", "ltv_fan"):
        np.testing.assert_array_equal(renewed[name].values, endless[name].values, err_msg=name)
    assert not np.array_equal(renewed.dscr_fan.values, ending.dscr_fan.values)  # the renewal matters


@pytest.mark.parametrize("engine", ENGINES)
def test_a_renewal_is_priced_at_the_last_months_spot_times_the_premium(engine, tape):
    """A loan carried by a 12-month contract at 1.0 USD/GPU-h, spot flat at 2.0, renewed for 6 months
    at a premium of 25% with probability 1: the rent is 730 x 1.0 per alive GPU to month 12 and
    730 x 2.0 x 1.25 from month 13 on, month by month in the DSCR."""
    terms = {"T": dict(pd_annual=0.0, renewal_prob=1.0, renewal_months=6, renewal_premium=0.25)}
    cfg, ds = _run(tape, [dict(CARRIED, contract_months=12, offtaker="T")], engine, scenarios=CONSTANT_SPOT,
                   offtakers=terms)
    t = np.arange(1, 37)
    rent = _alive(cfg, t) * 730 * np.where(t <= 12, 1.0, 2.0 * 1.25)
    np.testing.assert_allclose(ds.dscr_fan.sel(fan_quantile=0.5).values, rent / ds.scheduled_payment.isel(loan=0).values,
                               rtol=1e-10)


@pytest.mark.parametrize("engine", ENGINES)
def test_no_renewals_and_a_safe_offtaker_are_todays_results(engine, tape):
    """An offtaker that never defaults and never renews (renewal_prob = 0) gives exactly the results of
    the same tape without the offtaker column, path by path, for the same seed; so does a run whose
    config declares offtakers that the tape does not use."""
    loans = [dict(contract_months=12), dict(chip="B200", contracted_share=0.9, contract_months=24)]
    common = ["mc.paths=100", "scenario=[baseline,ai_winter]", "tenors=[36,60]", "output.paths=true", "quiet=true",
              f"backend={engine}"]
    if engine == "host":
        host_kernel()
    today = run(config([f"portfolio.path={tape(loans, 'plain.csv')}", *common]))
    named = run(config([f"portfolio.path={tape([dict(x, offtaker='T') for x in loans], 'named.csv')}", *common],
                       offtakers={"T": dict(pd_annual=0.0, renewal_prob=0.0)}))
    unused = run(config([f"portfolio.path={tape(loans, 'plain.csv')}", *common], offtakers={"T": dict(pd_annual=0.5)}))
    assert int((today.default_month > 0).sum()) > 20
    for name in today.data_vars:
        np.testing.assert_array_equal(named[name].values, today[name].values, err_msg=name)
    xr.testing.assert_identical(unused.drop_attrs(), today.drop_attrs())


@pytest.mark.parametrize("engine", ENGINES)
def test_offtaker_default_frequency_matches_its_pd(engine, tape):
    """Two offtakers, annual PD 5% and 20%, loaded on the demand factor and the copula factor: the
    share of 4,000 paths on which each defaults within 12, 36 and 60 months is 1 - (1 - pd)^(T/12)
    within 4 standard errors sqrt(p (1 - p) / n) (Y_o is N(0, 1) whatever rho and l)."""
    if engine == "host":
        host_kernel()
    offtakers = {"A": dict(pd_annual=0.05, asset_corr=0.9, demand_loading=0.3),
                 "B": dict(pd_annual=0.2, asset_corr=0.8, demand_loading=-0.5)}
    cfg = config([f"portfolio.path={tape([dict(offtaker='A'), dict(offtaker='B')])}", "tenors=[12,36,60]",
                  "mc.paths=4000", "mc.fan_paths=0", "scenario=[baseline]", "quiet=true", f"backend={engine}"],
                 offtakers=offtakers)
    got = run(cfg).offtaker_default_prob.sel(scenario="baseline")
    n = 4000
    for name, pd in (("A", 0.05), ("B", 0.2)):
        for tenor in (12, 36, 60):
            p = 1 - (1 - pd) ** (tenor / 12)
            assert abs(got.sel(offtaker=name, tenor=tenor).item() - p) < 4 * np.sqrt(p * (1 - p) / n), (name, tenor)


def test_offtakers_are_checked(tape):
    with pytest.raises(TapeError, match=r"line 2 \(loan_id 'L-1'\), column 'offtaker': unknown offtaker 'X'"):
        run(config([f"portfolio.path={tape([dict(offtaker='X')])}", "mc.paths=2", "quiet=true"]))
    bad = [({"T": dict(asset_corr=0.5)}, "portfolio.offtakers.T.pd_annual: is required"),
           ({"T": dict(pd_annual=2.0)}, r"portfolio.offtakers.T.pd_annual: must be in \[0, 1\]"),
           ({"self": dict(pd_annual=0.1)}, "portfolio.offtakers.self: self .* has no default of its own")]
    for offtakers, message in bad:
        with pytest.raises(ConfigError, match=message):
            run(config(["mc.paths=2", "quiet=true"], offtakers=offtakers))
    for shock, message in (({"target": "offtaker.T.default_month", "kind": "add", "value": 3}, "takes kind set"),
                           ({"target": "offtaker.U.default_month", "kind": "set", "value": 3}, "unknown offtaker 'U'")):
        with pytest.raises(ConfigError, match=message):
            run(config(["mc.paths=2", "quiet=true"], scenarios={"s": [shock]}, offtakers={"T": dict(pd_annual=0.1)}))
