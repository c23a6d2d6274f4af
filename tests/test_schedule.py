"""Amortisation schedules against their closed forms and a month-by-month recursion."""

import numpy as np
import pytest

from stress.model import schedule

RATES = [0.0, 0.06, 0.12, 0.15]
TENORS = [12, 36, 60, 84]


def recursion(principal, rate, tenor, profile, balloon_pct, horizon):
    """Independent reference: iterate the loan month by month."""
    r = rate / 12
    bal = principal
    pay, after = [], []
    residual = {"balloon": balloon_pct * principal, "bullet": principal}.get(profile, 0.0)
    if profile in ("annuity", "balloon"):
        level = (principal - residual / (1 + r) ** tenor) * (r / (1 - (1 + r) ** -tenor) if r else 1 / tenor)
    for m in range(1, horizon + 1):
        if m > tenor:
            pay.append(0.0)
            after.append(0.0)
            continue
        interest = bal * r
        if profile in ("annuity", "balloon"):
            principal_part = level - interest
        elif profile == "linear":
            principal_part = principal / tenor
        else:
            principal_part = 0.0
        if m == tenor:
            principal_part = bal  # the last instalment clears the loan (balloon/bullet included)
        bal -= principal_part
        pay.append(interest + principal_part)
        after.append(bal)
    return np.array(pay), np.array(after)


@pytest.mark.parametrize("profile", schedule.PROFILES)
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("tenor", TENORS)
def test_schedule_matches_recursion(profile, rate, tenor):
    principal, balloon = 1_000_000.0, 0.3
    s = schedule.build([principal], [rate], [tenor], [profile], [balloon if profile == "balloon" else 0.0], 96)
    pay, bal = recursion(principal, rate, tenor, profile, balloon, 96)
    np.testing.assert_allclose(s.payment[0], pay, rtol=1e-10, atol=1e-6)
    np.testing.assert_allclose(s.balance[0], bal, rtol=1e-10, atol=1e-6)
    # principal repaid adds up to the principal
    np.testing.assert_allclose(s.payment[0].sum() - (s.payment[0] - np.diff(np.r_[principal, s.balance[0]]) * -1).sum(),
                               s.payment[0].sum() - (pay - (np.r_[principal, bal[:-1]] - bal)).sum(), rtol=1e-12)


def test_annuity_textbook_value():
    # 100,000 USD at 6% over 360 months: 599.55 USD a month (standard mortgage table)
    assert schedule.annuity_payment(100_000.0, 0.06 / 12, 360) == pytest.approx(599.55, abs=0.005)


def test_level_payment_is_level_and_regular_balance_leaves_balloon():
    s = schedule.build([1e6, 1e6], [0.09, 0.09], [48, 48], ["annuity", "balloon"], [0.0, 0.4], 60)
    assert np.ptp(s.payment[0, :48]) < 1e-8
    assert np.ptp(s.payment[1, :47]) < 1e-8
    assert s.regular_balance[1, 47] == pytest.approx(4e5)
    assert s.balance[1, 47] == 0.0 and s.regular_balance[0, 47] == pytest.approx(0.0, abs=1e-6)
    assert s.payment[1, 47] == pytest.approx(s.payment[1, 0] + 4e5)


def test_bullet_pays_interest_only_then_principal():
    s = schedule.build([1e6], [0.12], [36], ["bullet"], [0.0], 40)
    np.testing.assert_allclose(s.payment[0, :35], 1e4)
    assert s.payment[0, 35] == pytest.approx(1e6 + 1e4)
    assert (s.payment[0, 36:] == 0).all() and s.regular_balance[0, 35] == 1e6
