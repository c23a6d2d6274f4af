"""One month of the debt waterfall and the default rules, for every live
(scenario, tenor, path, loan) cell at once, one array entry per cell (the engine keeps only the
cells still running: see stress/engine/montecarlo.py). Array-library generic: ``xp`` is numpy or cupy.

Order of the rules inside a month, which is also the priority of causes when several fire:
payment (CFADS plus reserve cannot pay the debt service), covenant (LTV above ``ltv_max`` for
``cure_months`` months in a row), refinancing (a bullet or balloon above ``refi_ltv_max`` at
maturity), exogenous (the Gaussian-copula draw falls below the cumulative PD). A default other
than refinancing pre-empts the month's payment, so its exposure is the opening balance; a
refinancing default happens after the last regular instalment, on the balance left.

The reserve pays any shortfall of CFADS against the debt service (CFADS can be negative: opex is
senior); a surplus first tops the reserve up to its target, the rest is released to the borrower
or, while the trailing three-month DSCR is below ``dscr_min`` (or, with ``Rules.cash_trap``, while
the LTV is above ``ltv_max``), swept to prepay principal.

Equity cures (``Rules.max_cures`` > 0): when the breach counter reaches ``cure_months`` the sponsor
injects x = balance - ltv_max x collateral, which prepays principal before interest and restarts the
counter, if x fits in the capacity left and fewer than ``max_cures`` cures were used; otherwise the
loan defaults (covenant) on the opening balance. Cures never count as lender loss. The CUDA twin of
``step`` is ``waterfall_month`` in kernels/model.cuh.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    cash_trap: bool = False  # while LTV > ltv_max all excess cash prepays principal
    max_cures: int = 0  # equity cures of an LTV breach over the life (0: a breach for cure_months defaults)

    @classmethod
    def from_channels(cls, channels, **kwargs) -> "Rules":
        return cls(**{c: c in channels for c in CAUSES[1:]}, **kwargs)


@dataclass
class LoanState:
    """Month-to-month state of the N loan cells the engine still simulates, shape (N,) each."""

    balance: object  # outstanding principal, USD
    reserve: object  # debt service reserve, USD
    active: object  # neither defaulted nor repaid
    breach: object  # consecutive months with LTV above ltv_max
    cfads1: object  # CFADS of the last two months
    cfads2: object
    service1: object  # debt service of the last two months
    service2: object
    cures: object = None  # equity cures used so far (int16); None without cures (Rules.max_cures = 0)
    capacity: object = None  # equity the sponsor can still inject, USD
    injected: object = None  # equity injected by this month's cure, USD (0 where none)

    def keep(self, mask) -> None:
        """Keep the cells where ``mask`` (N,) is true, in their order (the others have finished)."""
        names = ("balance", "reserve", "active", "breach", "cfads1", "cfads2", "service1", "service2")
        for name in names + (("cures", "capacity") if self.cures is not None else ()):
            setattr(self, name, getattr(self, name)[mask])


@dataclass(frozen=True)
class NewDefaults:
    """Loans that defaulted this month: index tuple into the state, and what the records keep."""

    index: tuple  # (positions,) of the defaulted cells among the N of the state
    cause: object  # int8, index into CAUSES
    exposure: object  # outstanding principal at default, USD
    reserve: object  # reserve balance at default, USD
    annual_rate: object  # loan rate at default, per year


def open_state(xp, principal, reserve_target, dtype, cure_capacity=None) -> LoanState:
    """State at the valuation date of N cells with ``principal`` and ``reserve_target`` (N,) USD:
    full principal, reserve funded to target, no history; with ``cure_capacity`` (N,) USD, no cure
    used yet and that much equity to inject."""
    shape = principal.shape
    cures = {} if cure_capacity is None else dict(
        cures=xp.zeros(shape, dtype=xp.int16), capacity=xp.asarray(cure_capacity, dtype=dtype).copy())
    return LoanState(**cures,
        balance=xp.asarray(principal, dtype=dtype).copy(),
        reserve=xp.asarray(reserve_target, dtype=dtype).copy(),
        active=xp.ones(shape, dtype=bool),
        breach=xp.zeros(shape, dtype=xp.int16),
        cfads1=xp.zeros(shape, dtype=dtype),
        cfads2=xp.zeros(shape, dtype=dtype),
        service1=xp.zeros(shape, dtype=dtype),
        service2=xp.zeros(shape, dtype=dtype),
    )


def step(xp, st: LoanState, t: int, rules: Rules, *, cfads, ltv_limit, refi_limit, monthly_rate,
         regular_balance, at_maturity, refinanced, reserve_target, dscr_min, exogenous_hit, cross=None):
    """Advance the N cells of ``st`` through month t; return (NewDefaults or None, debt service).

    Every input is one value per cell, (N,): cfads USD; ltv_limit = ltv_max x collateral and
    refi_limit = refi_ltv_max x collateral USD; monthly_rate; regular_balance USD; at_maturity
    bool, or None in a month where no loan matures; refinanced, dscr_min; reserve_target USD;
    exogenous_hit bool. ``cross``: with cross-default, (index, cause, active) -> (index, own cause,
    cause) spreading each borrower's defaults (``spread_to_borrower``). Cells that are no longer
    active are computed too (until the engine drops them) but never produce events; their balance
    and reserve are meaningless.
    """
    shape = st.balance.shape
    b0, r0 = st.balance, st.reserve
    breached = b0 > ltv_limit
    st.breach = (st.breach + 1) * breached
    if st.cures is not None and rules.covenant:  # a breach for cure_months: the sponsor brings the LTV
        cure = xp.maximum(b0 - ltv_limit, 0.0)      # back to ltv_max if the capacity and max_cures allow
        cured = (st.breach >= rules.cure_months) & (st.cures < rules.max_cures) & (cure <= st.capacity) & st.active
        st.injected = xp.where(cured, cure, 0.0)
        b0 = b0 - st.injected  # applied before interest
        st.capacity = st.capacity - st.injected
        st.cures = st.cures + cured
        st.breach = st.breach * ~cured
        breached = breached & ~cured
    elif st.cures is not None:  # without the covenant channel nobody cures
        st.injected = xp.zeros(shape, dtype=b0.dtype)
    due = xp.maximum(b0 - regular_balance, 0.0)
    service = b0 * monthly_rate + due
    cash = r0 + (cfads - service)  # reserve after the service is paid from CFADS; < 0: shortfall
    cap = xp.maximum(r0, reserve_target)
    r1 = xp.minimum(xp.maximum(cash, 0.0), cap)  # draw the reserve, or top it up to its target
    excess = xp.maximum(cash - cap, 0.0)  # released to the borrower, or swept if the covenant bites
    sweep = (cfads + st.cfads1 + st.cfads2) < dscr_min * (service + st.service1 + st.service2)
    if rules.cash_trap:
        sweep = sweep | breached
    b1 = b0 - due
    b1 = b1 - xp.minimum(excess, b1) * sweep

    payment_hit = cash < -ROUNDING * service
    event = payment_hit if rules.payment else xp.zeros(shape, dtype=bool)
    if rules.covenant:
        event = event | (st.breach >= rules.cure_months)
    if rules.exogenous:
        event = event | exogenous_hit
    refi_hit = None
    if rules.refinancing and at_maturity is not None:
        refi_hit = at_maturity & refinanced & (b1 > refi_limit)
        event = event | refi_hit
    idx = xp.nonzero(event & st.active)

    new = None
    if idx[0].size:
        cause = xp.zeros(idx[0].shape, dtype=xp.int8)  # lowest priority first, highest written last
        if rules.exogenous:
            cause[xp.broadcast_to(exogenous_hit, shape)[idx]] = EXOGENOUS
        if refi_hit is not None:
            cause[refi_hit[idx]] = REFINANCING
        if rules.covenant:
            cause[st.breach[idx] >= rules.cure_months] = COVENANT
        if rules.payment:
            cause[payment_hit[idx]] = PAYMENT
        own = cause
        if cross is not None:
            idx, own, cause = cross(idx, cause, st.active)
        refi_cause = own == REFINANCING  # a cross-default pre-empts the payment, like any other cause
        new = NewDefaults(index=idx, cause=cause,
                          exposure=xp.where(refi_cause, b1[idx], b0[idx]),
                          reserve=xp.where(refi_cause, r1[idx], r0[idx]),
                          annual_rate=12.0 * xp.broadcast_to(monthly_rate, shape)[idx])
        st.active[idx] = False
    st.active = st.active & (b1 > 0)  # the cash sweep may repay a loan before its maturity
    if at_maturity is not None:
        st.active = st.active & ~at_maturity  # repaid at par (or refinanced) at maturity
    st.balance, st.reserve = b1, r1
    st.cfads2, st.cfads1 = st.cfads1, cfads
    st.service2, st.service1 = st.service1, service
    return new, service


def spread_to_borrower(xp, borrower, flat, grid, idx, cause, active):
    """Cross-default of the cells at ``flat`` (N,), their index into the (S, K, P, L) ``grid``:
    the new defaults ``cause`` at positions ``idx`` spread to the live loans of their borrowers
    (``borrower`` one-hot (L, B)); returns (positions, own cause, cause) of every defaulting cell."""
    dense = xp.zeros(grid, dtype=xp.int8)
    dense.reshape(-1)[flat[idx]] = cause
    live = xp.zeros(grid, dtype=bool)
    live.reshape(-1)[flat] = active
    spread = _cross_default(xp, dense, live, borrower).reshape(-1)[flat]  # nonzero only on live or new cells
    idx = xp.nonzero(spread)
    return idx, dense.reshape(-1)[flat][idx], spread[idx]


def _cross_default(xp, cause, live, borrower):
    """Spread each borrower's highest-priority new default cause to all its live loans."""
    dtype = borrower.dtype
    spread = xp.zeros(cause.shape, dtype=xp.int8)
    for code in (EXOGENOUS, REFINANCING, COVENANT, PAYMENT):  # last write = highest priority
        hit = ((cause == code).astype(dtype) @ borrower) > 0  # (S, K, P, B)
        loans_hit = (hit.astype(dtype) @ borrower.T) > 0
        spread = xp.where(loans_hit, xp.int8(code), spread)
    return xp.where(live & (cause == 0), spread, cause)
