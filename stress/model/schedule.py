"""Contractual amortisation schedules, closed forms on a monthly grid.

All amounts in USD, rates are decimals per year (monthly rate = rate / 12), months t = 1..T.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PROFILES = ("annuity", "linear", "bullet", "balloon")
REFINANCED = ("bullet", "balloon")  # profiles whose last balance is refinanced at maturity


@dataclass(frozen=True)
class Schedule:
    """Schedules of L loans over months 1..T, arrays of shape (L, T).

    ``payment`` and ``balance`` are the contractual figures (the balloon or bullet is paid with
    the last instalment, so ``balance`` is 0 from maturity on). ``regular_balance`` is the balance
    the borrower must reach from its own cash flow: equal to ``balance`` except at maturity of a
    bullet or balloon loan, where the remaining part is refinanced instead of paid.
    """

    payment: np.ndarray
    balance: np.ndarray
    regular_balance: np.ndarray


def annuity_payment(principal, monthly_rate, n_months, residual=0.0):
    """Level payment that takes ``principal`` down to ``residual`` in ``n_months`` (USD/month)."""
    principal, r, n, residual = np.broadcast_arrays(*map(np.asarray, (principal, monthly_rate, n_months, residual)))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_growth = n * np.log1p(r)
        # expm1: (1 + r)^n - 1 stays accurate (not 0) for a rate as small as 1e-17
        level = (principal * np.exp(log_growth) - residual) * r / np.expm1(log_growth)
    return np.where(r == 0.0, (principal - residual) / n, level)


def annuity_balance(principal, monthly_rate, payment, months):
    """Balance after ``months`` level payments: P (1+r)^m - pay ((1+r)^m - 1) / r (USD)."""
    r = np.asarray(monthly_rate, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_growth = months * np.log1p(r)
        bal = principal * np.exp(log_growth) - payment * (np.expm1(log_growth) / r)
    return np.where(r == 0.0, principal - payment * months, bal)


def build(principal, annual_rate, tenor, amortization, balloon_pct, horizon: int) -> Schedule:
    """Schedules for loans with the given principal (USD), all-in annual rate, tenor (months),
    profile name and balloon share, over months 1..horizon. Inputs are arrays of length L."""
    principal = np.asarray(principal, dtype=float)[:, None]
    r = np.asarray(annual_rate, dtype=float)[:, None] / 12.0
    n = np.asarray(tenor, dtype=np.int64)[:, None]
    amort = np.asarray(amortization)[:, None]
    residual = np.where(amort == "balloon", np.asarray(balloon_pct, dtype=float)[:, None], 0.0) * principal
    residual = np.where(amort == "bullet", principal, residual)
    m = np.arange(1, horizon + 1)[None, :]
    before = m < n  # strictly before maturity
    at = m == n
    level = annuity_payment(principal, r, n, residual)
    level_bal = np.maximum(annuity_balance(principal, r, level, np.minimum(m, n)), 0.0)
    linear_bal = principal * np.maximum(1.0 - m / n, 0.0)
    regular = np.where(amort == "linear", linear_bal, level_bal)  # annuity and balloon
    regular = np.where(amort == "bullet", principal, regular)
    regular = np.where(before, regular, np.where(at, residual, 0.0))
    balance = np.where(before, regular, 0.0)
    opening = np.concatenate([principal, balance[:, :-1]], axis=1)
    interest = opening * r
    payment = np.where(m <= n, interest + opening - balance, 0.0)
    regular_balance = np.where(m <= n, regular, 0.0)
    return Schedule(payment=payment, balance=balance, regular_balance=regular_balance)
