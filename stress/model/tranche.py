"""Facilities and their tranches: which loans share a capital structure, the tranche losses of a
path.

A facility is a set of loans (tape column ``facility``; blank = the loan itself) whose debt is cut
into static slices by attachment A and detachment D on the facility's principal at the valuation
date P_f (``portfolio.facilities``). On a path with lenders' loss L_f on the facility's loans the
tranche loses

    L_t = min(max(L_f - A P_f, 0), (D - A) P_f)        USD

(no sequential paydown in this version: the slices stay fixed over the life). The sponsor's equity
below the debt is not a tranche: cures (``equity_cure``) stand for it.

The tranche results and their implied ratings are stress.results.rating.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class Tranche:
    """One slice of a facility's debt: attachment and detachment as shares of its principal."""

    facility: int  # index into Problem.facilities
    name: str
    attachment: float
    detachment: float


def facilities(declared: dict, tape) -> tuple[tuple[str, ...], np.ndarray | None, tuple[Tranche, ...]]:
    """(facility names, facility index of each loan (-1 = none) or None, tranches) of the facilities
    declared in ``portfolio.facilities``; ConfigError for a declared facility no loan of the tape has."""
    if not declared:
        return (), None, ()
    names = tuple(declared)
    missing = [f for f in names if not (tape.facility == f).any()]
    if missing:
        raise ConfigError(f"portfolio.facilities: no loan of the tape {tape.source} is in facility "
                          f"{', '.join(map(repr, missing))} (tape column 'facility'; blank = the loan's own loan_id)")
    index = {f: i for i, f in enumerate(names)}
    of_loan = np.array([index.get(f, -1) for f in tape.facility], dtype=np.int64)
    tranches = tuple(Tranche(index[f], t.name, float(t.attachment), float(t.detachment))
                     for f in names for t in declared[f].tranches)
    return names, of_loan, tranches


def tranche_loss(facility_loss: np.ndarray, facility_principal: np.ndarray, tranches) -> np.ndarray:
    """Losses (..., Tr) of the tranches from the facility losses (..., Fa), USD:
    min(max(L_f - A P_f, 0), (D - A) P_f)."""
    f = np.array([t.facility for t in tranches])
    low = np.array([t.attachment for t in tranches]) * facility_principal[f]
    width = np.array([t.detachment - t.attachment for t in tranches]) * facility_principal[f]
    return np.minimum(np.maximum(facility_loss[..., f] - low, 0.0), width)
