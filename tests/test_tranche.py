"""Facilities and tranches (tape column ``facility``, ``portfolio.facilities``): the tranche identity
on every path, tranches adding up to their facility, seniority, implied ratings, and that the
feature changes nothing else."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from stress import ConfigError
from stress.config.portfolio import load_portfolio
from stress.pipeline import run
from stress.results import rating

from support import EXAMPLE_TAPE, config

# the SPV loans in one facility, most neocloud loans in another, NEO-12 on its own (blank = itself)
FACILITY = {"SPV": "SPV", "NEO-01": "NEO", "NEO-02": "NEO", "NEO-03": "NEO", "NEO-04": "NEO", "NEO-05": "NEO",
            "NEO-08": "NEO", "NEO-09": "NEO"}
FACILITIES = {
    "SPV": {"tranches": [{"name": "mezzanine", "attachment": 0.0, "detachment": 0.2},
                         {"name": "senior", "attachment": 0.2, "detachment": 1.0}]},
    "NEO": {"tranches": [{"name": "junior", "attachment": 0.0, "detachment": 0.05},
                         {"name": "mezzanine", "attachment": 0.05, "detachment": 0.15},
                         {"name": "senior", "attachment": 0.15, "detachment": 1.0}]},
    "NEO-12": {"tranches": [{"name": "whole", "attachment": 0.0, "detachment": 1.0}]},
}
RUN = ["tenors=[36,84]", "mc.paths=400",  # every shipped scenario
       "mc.fan_paths=0", "quiet=true"]


def _tape(tmp_path, cure_capacity=None):
    lines = EXAMPLE_TAPE.read_text().splitlines()
    cure = ("", "") if cure_capacity is None else (",cure_capacity", f",{cure_capacity}")
    rows = [lines[0] + ",facility" + cure[0]]
    for line in lines[1:]:
        loan = line.split(",")[0]
        rows.append(f"{line},{FACILITY.get(loan.split('-')[0] if loan.startswith('SPV') else loan, '')}{cure[1]}")
    path = tmp_path / "tape.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _config(tmp_path, facilities=FACILITIES, extra=(), cure_capacity=None):
    cfg = config([*RUN, f"portfolio.path={_tape(tmp_path, cure_capacity)}", *extra])
    cfg.portfolio.facilities = OmegaConf.create(facilities)
    return cfg


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tranche")
    return run(_config(tmp)), run(config([*RUN, f"portfolio.path={_tape(tmp)}"]))


def test_tape_column_is_optional_and_blank_is_the_loan_itself(tmp_path):
    chips = ("A100", "H100", "H200", "B200", "GB200")
    tape = load_portfolio(_tape(tmp_path), chips)
    assert list(tape.facility[:5]) == ["SPV"] * 5 and tape.facility[list(tape.loan_id).index("NEO-12")] == "NEO-12"
    plain = load_portfolio(EXAMPLE_TAPE, chips)
    assert list(plain.facility) == list(plain.loan_id)


def test_tranche_identity_on_every_path(results):
    ds, _ = results
    for t in ds.tranche.values:
        cell = ds.sel(tranche=t)
        a, d = float(cell.attachment), float(cell.detachment)
        p_f = float(ds.facility_principal.sel(facility=str(cell.tranche_facility.values)))
        l_f = ds.facility_loss.sel(facility=str(cell.tranche_facility.values)).values
        want = np.minimum(np.maximum(l_f - a * p_f, 0.0), (d - a) * p_f)
        assert np.array_equal(cell.tranche_loss.values, want), t
    assert (ds.tranche_loss > 0).any()  # something to compare


def test_tranches_add_up_to_the_facility_and_facilities_to_their_loans(results):
    ds, _ = results
    total = ds.tranche_loss.groupby(ds.tranche_facility).sum("tranche").rename(tranche_facility="facility")
    np.testing.assert_allclose(total.transpose(*ds.facility_loss.dims).values,
                               ds.facility_loss.sel(facility=total.facility).values, rtol=1e-12, atol=1e-3)
    members = {f: [loan for loan in ds.loan.values if FACILITY.get(loan[:3] if loan.startswith("SPV") else loan,
                                                                     loan) == f] for f in ds.facility.values}
    for f, loans in members.items():  # mean facility loss = the sum of its loans' EL (same paths)
        np.testing.assert_allclose(ds.facility_loss.sel(facility=f).mean("path").values,
                                   ds.el.sel(loan=loans).sum("loan").values, rtol=1e-12)
        assert ds.facility_principal.sel(facility=f) == ds.principal.sel(loan=loans).sum()


def test_senior_el_per_unit_principal_is_at_most_the_mezzanine_in_every_scenario(results):
    ds, _ = results
    width = (ds.detachment - ds.attachment) * ds.facility_principal.sel(facility=ds.tranche_facility)
    el_rate = ds.tranche_el / width
    for f in ("SPV", "NEO"):
        senior, mezz = el_rate.sel(tranche=f"{f}/senior"), el_rate.sel(tranche=f"{f}/mezzanine")
        assert (senior <= mezz).all(), f
        assert (ds.tranche_pd.sel(tranche=f"{f}/senior") <= ds.tranche_pd.sel(tranche=f"{f}/mezzanine")).all()
    assert (el_rate.sel(tranche="NEO/mezzanine") <= el_rate.sel(tranche="NEO/junior")).all()
    assert (el_rate.sel(tranche="SPV/mezzanine") > 0).any()


def test_facilities_change_no_other_result(results):
    ds, plain = results
    assert "tranche_el" not in plain
    for name in plain.variables:
        want, got = plain[name].values, ds[name].values
        assert np.array_equal(want, got, equal_nan=want.dtype.kind == "f"), name


def test_tranche_measures_and_rating(results):
    ds, _ = results
    loss = ds.tranche_loss.sel(scenario="severely_adverse", tenor=84, tranche="SPV/mezzanine").values
    assert ds.tranche_el.sel(scenario="severely_adverse", tenor=84, tranche="SPV/mezzanine") == pytest.approx(loss.mean())
    assert ds.tranche_pd.sel(scenario="severely_adverse", tenor=84, tranche="SPV/mezzanine") == (loss > 0).mean()
    assert set(ds.tranche_rating.values.ravel()) <= set(rating.IDEALISED) | {rating.BELOW_TABLE}
    assert (ds.rating_horizon.sel(tenor=84) == 84).all()


def test_sponsor_equity_is_reported_beside_the_tranches(tmp_path):
    """With cures, each facility reports the equity its loans' sponsors injected and lost (the sums of
    equity_cure and equity_lost over its loans); lost equity is part of the injected equity."""
    ds = run(_config(tmp_path, extra=["model.covenant.max_cures=2", "market.valuation.method=spot"], cure_capacity=0.3))
    for f in ds.facility.values:
        loans = ds.loan.values[[FACILITY.get(x[:3] if x.startswith("SPV") else x, x) == f for x in ds.loan.values]]
        for name in ("equity_cure", "equity_lost"):
            np.testing.assert_allclose(ds[f"facility_{name}"].sel(facility=f), ds[name].sel(loan=loans).sum("loan"),
                                       rtol=1e-12)
    assert (ds.equity_lost <= ds.equity_cure * (1 + 1e-12)).all()
    assert (ds.facility_equity_cure > 0).any() and (ds.facility_equity_lost > 0).any()


def test_implied_rating_follows_the_idealised_table():
    five = np.full(4, 60)
    # 5-year Baa2 = 1.58%, Baa3 = 3.05%; 1-year Aaa = 0.0001%; above Caa's 48.75% at 5 years: below the table
    assert list(rating.implied_rating(np.array([0.0158, 0.0159, 0.0, 0.6]), five)) == ["Baa2", "Baa3", "Aaa", "Ca"]
    assert rating.idealised_rate(np.array([18]))[0, -1] == pytest.approx(np.sqrt(0.26 * 0.325))  # log-linear
    assert rating.idealised_rate(np.array([6]))[0, -1] == pytest.approx(0.13)  # linear from 0 below a year
    assert rating.idealised_rate(np.array([240]))[0, 0] == pytest.approx(1e-4)  # 10-year rate beyond


def test_bad_facilities_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"portfolio.facilities.SPV.tranches\[1\]: needs 0 <= attachment < detachment"):
        run(_config(tmp_path, {"SPV": {"tranches": [{"name": "a", "detachment": 0.5},
                                                    {"name": "b", "attachment": 0.6, "detachment": 0.5}]}}))
    with pytest.raises(ConfigError, match=r"no loan of the tape .* is in facility 'XYZ'"):
        run(_config(tmp_path, {"XYZ": {"tranches": [{"name": "a"}]}}))
