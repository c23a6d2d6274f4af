"""The columns of a loan tape: the parser of each cell (text, a choice, a bounded number), the sanity
limit of each number and the dtype it is stored in. A cell that cannot be used raises ``BadCell``,
whose message completes "line L (loan_id X), column 'c': "."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Sequence

import numpy as np

from .schema import MAX_MONTHS  # longest tenor and age, months

RATE_TYPES = ("fixed", "floating")
AMORTIZATIONS = ("annuity", "linear", "bullet", "balloon")

# Largest accepted value of a column: far beyond any real GPU loan, small enough that sums over a
# large book stay finite in float32. A value above it is reported as a likely typo.
LIMITS = {
    "gpus": 1e8,  # GPUs pledged by one loan (the largest clusters hold a few 100,000)
    "age_months": MAX_MONTHS,
    "principal": 1e13,  # USD (the largest GPU financings are about 1e10)
    "tenor_months": MAX_MONTHS,
    "contract_price": 1e3,  # USD per GPU-hour (an H100 rents for about 2)
    "contract_months": 2 * MAX_MONTHS,
    "power_price": 10.0,  # USD per kWh (industrial power costs about 0.08)
    "pue": 10.0,
    "opex_fixed": 1e6,  # USD per GPU per month
    "reserve_months": MAX_MONTHS,
    "dscr_min": 1e6,  # a large value is fine: it switches the covenant off
    "ltv_max": 1e6,
    "cure_capacity": 10.0,  # share of principal (a sponsor injecting 10x the loan is surely a typo)
    "rvg_per_gpu": 1e6,  # USD per GPU (a new GB200 costs about 6e4)
}
_COMMA_NUMBER = re.compile(r"[+-]?[\d.]*\d,[\d,.]*")  # a number-like cell with a comma

_Parser = Callable[[str], str | int | float]


class BadCell(ValueError):
    """A cell that cannot be used; the message completes "line L (loan_id X), column 'c': "."""


def got(raw: str) -> str:
    """The cell as quoted in a message."""
    return f"got {raw!r}" if raw else "got an empty cell"


def _text(raw: str) -> str:
    """Free text that must not be empty."""
    if not raw:
        raise BadCell("must not be empty")
    return raw


def _choice(names: Sequence[str], described: str) -> _Parser:
    """Text from `names`, matched case-insensitively and returned as spelled in `names`."""
    canonical = {name.casefold(): name for name in names}
    listed = ", ".join(names)

    def parse(raw: str) -> str:
        try:
            return canonical[raw.casefold()]
        except KeyError:
            raise BadCell(f"must be {described} ({listed}), {got(raw)}") from None

    return parse


def _number(
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    hint: str = "",
    empty: float | None = None,
    limit: float = math.inf,
) -> _Parser:
    """A finite number within the bounds (inclusive unless open), returned as float, or as int
    when `integer` (then it must be a whole number). `empty`: value of an empty cell, if allowed.
    `limit`: sanity limit above the bounds (a larger value is taken for a typo).
    """
    if high == math.inf:
        bounds = f"{'>' if low_open else '>='} {low:g}"
    else:
        bounds = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    hint = f" ({hint})" if hint else ""

    def parse(raw: str) -> int | float:
        if not raw and empty is not None:
            return empty
        try:
            value = float(raw)
        except ValueError:
            if _COMMA_NUMBER.fullmatch(raw):
                raise BadCell(f"must be a number with '.' as the decimal point and no thousands "
                               f"separators, {got(raw)}") from None
            if raw.endswith("%"):
                raise BadCell(f"must be a plain number{hint or ''}, not a percentage, {got(raw)}") from None
            raise BadCell(f"must be a number, {got(raw)}") from None
        if not math.isfinite(value):
            raise BadCell(f"must be a finite number, {got(raw)}")
        if value > limit:
            raise BadCell(f"must be at most {limit:g} (a sanity limit; this looks like a typo), {got(raw)}")
        if integer and not (value.is_integer() and abs(value) < 2**53):
            raise BadCell(f"must be a whole number, {got(raw)}")
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if too_low or too_high:
            raise BadCell(f"must be {bounds}{hint}, {got(raw)}")
        return int(value) if integer else value

    return parse


def column_parsers(chips: Collection[str]) -> dict[str, tuple[_Parser, type]]:
    """Parser and numpy dtype of every column, in docs/loan-tape.md order."""
    share = "a decimal, e.g. 0.25 for 25%"
    return {
        "loan_id": (_text, object),
        "borrower": (_text, object),
        "chip": (_choice(sorted(chips), "a chip of the market config"), object),
        "gpus": (_number(0, low_open=True, integer=True, limit=LIMITS["gpus"]), np.int64),
        "age_months": (_number(0, integer=True, limit=LIMITS["age_months"]), np.int64),
        "principal": (_number(1, hint="USD; less is surely a unit mistake", limit=LIMITS["principal"]),
                      np.float64),
        # >= 0: a negative all-in rate would discount recoveries upwards and fund a negative reserve
        "rate": (_number(0, 1, hint="decimal per year, e.g. 0.12 for 12%"), np.float64),
        "rate_type": (_choice(RATE_TYPES, "one of"), object),
        "amortization": (_choice(AMORTIZATIONS, "one of"), object),
        "balloon_pct": (_number(0, 1, high_open=True, hint=share, empty=0.0), np.float64),
        "tenor_months": (_number(0, low_open=True, integer=True, limit=LIMITS["tenor_months"]), np.int64),
        "contracted_share": (_number(0, 1, hint=share), np.float64),
        "contract_price": (_number(0, limit=LIMITS["contract_price"]), np.float64),
        "contract_months": (_number(0, integer=True, limit=LIMITS["contract_months"]), np.int64),
        "power_price": (_number(0, limit=LIMITS["power_price"]), np.float64),
        "pue": (_number(1, limit=LIMITS["pue"]), np.float64),
        "opex_fixed": (_number(0, limit=LIMITS["opex_fixed"]), np.float64),
        "reserve_months": (_number(0, limit=LIMITS["reserve_months"]), np.float64),
        "dscr_min": (_number(0, low_open=True, limit=LIMITS["dscr_min"]), np.float64),
        "ltv_max": (_number(0, low_open=True, limit=LIMITS["ltv_max"]), np.float64),
        "pd_annual": (_number(0, 1, hint="decimal per year, e.g. 0.02 for 2%"), np.float64),
        "asset_corr": (_number(0, 1), np.float64),
        "cure_capacity": (_number(0, limit=LIMITS["cure_capacity"], hint=share), np.float64),
        "facility": (str, object),  # free text; blank = the loan itself (filled in by _validate)
        "rvg_per_gpu": (_number(0, limit=LIMITS["rvg_per_gpu"], hint="USD per GPU", empty=0.0), np.float64),
        "offtaker": (str, object),  # free text; blank = none, self = the borrower (checked against portfolio.offtakers)
    }
