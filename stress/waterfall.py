"""One month of the debt waterfall and the default rules (DESIGN 2.3), for every
(scenario, tenor, path, loan) cell at once. Array-library generic: ``xp`` is numpy or cupy.

Order of the rules inside a month, which is also the priority of causes when several fire:
payment (CFADS plus reserve cannot pay the debt service), covenant (LTV above ``ltv_max`` for
``cure_months`` months in a row), refinancing (a bullet or balloon above ``refi_ltv_max`` at
maturity), exogenous (the Gaussian-copula draw falls below the cumulative PD). A default other
than refinancing pre-empts the month's payment, so its exposure is the opening balance; a
refinancing default happens after the last regular instalment, on the balance left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CAUSES = ("none", "payment", "covenant", "refinancing", "exogenous")
PAYMENT, COVENANT, REFINANCING, EXOGENOUS = 1, 2, 3, 4
ROUNDING = 1e-9  # a payment short by less than this share of the debt service counts as paid


@dataclass(frozen=True)
class Rules:
    """Model switches and thresholds that do not depend on the loan."""

    payment: bool = True
    covenant: bool = True
    refinancing: bool = True
    exogenous: bool = True
    cure_months: int = 3
    refi_ltv_max: float = 0.8
    cross_default: bool = False

    @classmethod
    def from_channels(cls, channels, **kwargs) -> "Rules":
        return cls(**{c: c in channels for c in CAUSES[1:]}, **kwargs)


@dataclass
class LoanState:
    """State of every loan cell, shape (S, K, P, L); default records are filled at default."""

    balance: object  # outstanding principal, USD
    reserve: object  # debt service reserve, USD
    active: object  # neither defaulted nor repaid
    breach: object  # consecutive months with LTV above ltv_max
    cfads1: object  # CFADS of the last two months, (S, 1, P, L)
    cfads2: object
    service1: object  # debt service of the last two months
    service2: object
    default_month: object  # 1-based month of default, 0 = none (int16)
    cause: object  # index into CAUSES (int8)
    exposure: object  # exposure at default, USD
    reserve_at_default: object  # reserve balance at default, USD
    rate_at_default: object  # annual loan rate at default
    loss: object = field(default=None)  # loss, USD, filled when the collateral is sold


def open_state(xp, shape, principal, reserve_target, dtype) -> LoanState:
    """State at the valuation date: full principal, reserve funded to target, no history."""
    s, k, p, n = shape
    zeros = lambda sh=shape: xp.zeros(sh, dtype=dtype)  # noqa: E731
    return LoanState(
        balance=xp.broadcast_to(xp.asarray(principal, dtype=dtype), shape).copy(),
        reserve=xp.broadcast_to(xp.asarray(reserve_target, dtype=dtype)[None, :, None, :], shape).copy(),
        active=xp.ones(shape, dtype=bool),
        breach=xp.zeros(shape, dtype=xp.int16),
        cfads1=zeros((s, 1, p, n)),
        cfads2=zeros((s, 1, p, n)),
        service1=zeros(),
        service2=zeros(),
        default_month=xp.zeros(shape, dtype=xp.int16),
        cause=xp.zeros(shape, dtype=xp.int8),
        exposure=zeros(),
        reserve_at_default=zeros(),
        rate_at_default=zeros(),
        loss=zeros(),
    )


def step(xp, st: LoanState, t: int, rules: Rules, *, cfads, collateral, monthly_rate, regular_balance,
         at_maturity, refinanced, reserve_target, dscr_min, ltv_max, exogenous_hit, borrower=None):
    """Advance every active loan through month t; return the mask of new defaults.

    cfads (S,1,P,L) USD; collateral (S,1,P,L) USD; monthly_rate (S,1,1,L); regular_balance and
    at_maturity (1,K,1,L); refinanced, dscr_min, ltv_max (L,); reserve_target (1,K,1,L);
    exogenous_hit (S,1,P,L) bool; borrower: one-hot (L, B) matrix when cross-default is on.
    """
    live = st.active
    b0, r0 = st.balance, st.reserve
    due = xp.maximum(b0 - regular_balance, 0.0)
    service = b0 * monthly_rate + due
    surplus = cfads - service
    short = xp.maximum(-surplus, 0.0)
    covered = short <= r0 + ROUNDING * service
    gap = xp.maximum(reserve_target - r0, 0.0)
    r1 = xp.where(surplus >= 0, r0 + xp.minimum(surplus, gap), xp.maximum(r0 - short, 0.0))
    excess = xp.maximum(surplus - gap, 0.0)
    trailing_breach = (cfads + st.cfads1 + st.cfads2) < dscr_min * (service + st.service1 + st.service2)
    b1 = b0 - due
    b1 = b1 - xp.where(trailing_breach, xp.minimum(excess, b1), 0.0)
    st.breach = xp.where(b0 > ltv_max * collateral, st.breach + 1, 0).astype(xp.int16)

    cause = xp.zeros(live.shape, dtype=xp.int8)
    if rules.exogenous:
        cause = xp.where(exogenous_hit, EXOGENOUS, cause).astype(xp.int8)
    if rules.refinancing:
        refi = at_maturity & refinanced & (b1 > rules.refi_ltv_max * collateral)
        cause = xp.where(refi, REFINANCING, cause).astype(xp.int8)
    if rules.covenant:
        cause = xp.where(st.breach >= rules.cure_months, COVENANT, cause).astype(xp.int8)
    if rules.payment:
        cause = xp.where(covered, cause, PAYMENT).astype(xp.int8)
    cause = xp.where(live, cause, 0).astype(xp.int8)
    if borrower is not None:
        cause = _cross_default(xp, cause, live, borrower)
    new = cause > 0
    refi_cause = cause == REFINANCING

    st.default_month = xp.where(new, t, st.default_month).astype(xp.int16)
    st.cause = xp.where(new, cause, st.cause).astype(xp.int8)
    st.exposure = xp.where(new, xp.where(refi_cause, b1, b0), st.exposure)
    st.reserve_at_default = xp.where(new, xp.where(refi_cause, r1, r0), st.reserve_at_default)
    st.rate_at_default = xp.where(new, 12.0 * monthly_rate, st.rate_at_default)
    paying = live & ~new
    st.balance = xp.where(paying, b1, b0)
    st.reserve = xp.where(paying, r1, r0)
    st.active = paying & ~at_maturity
    st.cfads2, st.cfads1 = st.cfads1, cfads
    st.service2, st.service1 = st.service1, service
    return new, service


def _cross_default(xp, cause, live, borrower):
    """Spread each borrower's highest-priority new default cause to all its live loans."""
    dtype = borrower.dtype
    spread = xp.zeros(cause.shape, dtype=xp.int8)
    for code in (EXOGENOUS, REFINANCING, COVENANT, PAYMENT):  # last write = highest priority
        hit = ((cause == code).astype(dtype) @ borrower) > 0  # (S, K, P, B)
        loans_hit = (hit.astype(dtype) @ borrower.T) > 0
        spread = xp.where(loans_hit, code, spread).astype(xp.int8)
    return xp.where(live & (cause == 0), spread, cause).astype(xp.int8)
