"""Loan tape -> validated struct of arrays, one entry per loan.

A tape is a UTF-8 CSV file (``.csv``, ``.txt``; comma-separated, header first) or a Parquet file
(``.parquet``, ``.pq``), one row per loan. Validation collects every problem and raises a single
:class:`~stress.errors.TapeError` naming the file, and for each problem the line, the loan and the
column, so that a user can fix the whole tape in one go.

Only one CSV dialect is read: ',' between cells and '.' as the decimal point, no thousands
separators. A file whose header splits on ';', tab or '|' instead is refused with a message that
says so, counts the cells written with a decimal comma and quotes a few: guessing would risk reading
"20.000.000" (twenty million in a European spreadsheet) as 20. Numbers also have sanity limits
(``tape_columns.LIMITS``) far beyond any real loan, so that a typo (or 1e308) cannot overflow the engine.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import NoReturn

import numpy as np

from ..errors import TapeError
from .tape_columns import BadCell, column_parsers, got

CSV_SUFFIXES = (".csv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
MAX_LISTED = 100  # problems spelled out in one TapeError; the count in its first line covers all
MAX_EXAMPLES = 3  # decimal-comma cells quoted when another separator is refused; the count covers all
OTHER_SEPARATORS = {";": "';'", "\t": "tab", "|": "'|'"}  # refused, with a message that says so
_DECIMAL_COMMA = re.compile(r"[+-]?(\d{1,3}(\.\d{3})+|\d+),\d+")  # 0,12 or 1.234,5 (European)


# Unnamed pandas index written by DataFrame.to_parquet when the index is not a plain range.
_PANDAS_INDEX = re.compile(r"__index_level_\d+__")


@dataclass(frozen=True, eq=False)
class Portfolio:
    """A validated loan tape: one read-only numpy array per tape column, in tape order."""

    source: str  # the tape's path, as given
    loan_id: np.ndarray  # str, unique
    borrower: np.ndarray  # str; cross-default group
    chip: np.ndarray  # str; a GPU family of the market config
    gpus: np.ndarray  # int64; GPUs pledged as collateral
    age_months: np.ndarray  # int64; fleet age at the valuation date, months
    principal: np.ndarray  # float64; outstanding at the valuation date, USD
    rate: np.ndarray  # float64; fixed coupon, or spread over the base rate, decimal per year
    rate_type: np.ndarray  # str; "fixed" or "floating"
    amortization: np.ndarray  # str; "annuity", "linear", "bullet" or "balloon"
    balloon_pct: np.ndarray  # float64; share of principal left at maturity, 0..1 (0 unless balloon)
    tenor_months: np.ndarray  # int64; tenor when the tenor dimension is not swept, months
    contracted_share: np.ndarray  # float64; share of GPUs under take-or-pay contracts, 0..1
    contract_price: np.ndarray  # float64; price under those contracts, USD per GPU-hour
    contract_months: np.ndarray  # int64; months until the contracts end
    power_price: np.ndarray  # float64; site electricity price, USD per kWh
    pue: np.ndarray  # float64; site power usage effectiveness, >= 1
    opex_fixed: np.ndarray  # float64; staff, space, maintenance, USD per GPU per month
    reserve_months: np.ndarray  # float64; debt service reserve at start, months of debt service
    dscr_min: np.ndarray  # float64; cash-sweep trigger on the trailing 3-month DSCR
    ltv_max: np.ndarray  # float64; LTV above this (for cure_months) is an event of default
    pd_annual: np.ndarray  # float64; exogenous default probability, decimal per year
    asset_corr: np.ndarray  # float64; Gaussian-copula correlation of the exogenous channel, 0..1
    cure_capacity: np.ndarray  # float64; optional (missing = 0): equity the sponsor can inject over the life, share of principal
    facility: np.ndarray  # str; optional (missing or blank = the loan itself): the facility whose tranches share the loan's losses
    rvg_per_gpu: np.ndarray  # float64; optional (missing = 0): residual value guarantee, floor on net sale proceeds per alive GPU, USD
    offtaker: np.ndarray  # str; optional (missing or blank = none): the counterparty of the loan's contracts, a name of portfolio.offtakers or self
    line: np.ndarray  # int64; line of the loan in the tape (header = 1; Parquet: row number + 1)

    def __len__(self) -> int:
        """Number of loans."""
        return len(self.loan_id)


OPTIONAL = {"cure_capacity": "0", "facility": "", "rvg_per_gpu": "0", "offtaker": ""}  # columns a tape may leave out, with the cell that stands in for them
COLUMNS: tuple[str, ...] = tuple(
    f.name for f in fields(Portfolio) if f.name not in ("source", "line", *OPTIONAL)
)  # the tape's required columns, in docs/loan-tape.md order

@dataclass(frozen=True)
class _Table:
    """Raw tape: header names and, per loan, its line in the file and its cells as text."""

    header_line: int
    header: list[str]
    rows: list[tuple[int, list[str]]]
    unreadable: dict[tuple[int, int], str] = field(default_factory=dict)  # (line, position) -> why


def load_portfolio(path: str | Path, chips: Collection[str]) -> Portfolio:
    """Read and validate a loan tape; `chips` are the GPU families known to the market config.

    Raises TapeError if the file cannot be read or if any cell is invalid (all problems listed).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise TapeError(
            f"{path}: unsupported loan tape format {path.suffix or '(no extension)'!r}; "
            f"use CSV ({', '.join(CSV_SUFFIXES)}) or Parquet ({', '.join(PARQUET_SUFFIXES)})"
        )
    if not path.is_file():
        raise TapeError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    if path.stat().st_size == 0:
        raise TapeError(f"{path}: the file is empty")
    table = _read_csv(path) if suffix in CSV_SUFFIXES else _read_parquet(path)
    if not table.rows:
        raise TapeError(f"{path}: the tape has a header but no loans")
    return _validate(str(path), table, chips)


def _read_csv(path: Path) -> _Table:
    """Cells as raw text; blank lines are skipped but still counted in the line numbers."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TapeError(f"{path}: cannot read the file ({err.strerror or err})") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise TapeError(f"{path}: a UTF-16 text file; save the tape as UTF-8 CSV or as Parquet")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise TapeError(
            f"{path}: not a UTF-8 text file (undecodable byte at offset {err.start}); "
            "save the tape as UTF-8 CSV or as Parquet"
        ) from None
    if "\x00" in text:
        raise TapeError(f"{path}: contains NUL bytes; this is binary data, not a CSV text file")
    records = _records(path, text, ",")
    if not records:
        raise TapeError(f"{path}: the file is empty")
    _refuse_other_separators(path, text, records[0][1])
    (header_line, header), *rows = records
    return _Table(header_line, [name.strip() for name in header], rows)


def _records(path: Path, text: str, delimiter: str) -> list[tuple[int, list[str]]]:
    """Non-blank CSV records with the line on which each begins."""
    records: list[tuple[int, list[str]]] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    start = 1  # line on which the next record begins (a quoted cell may span several lines)
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                records.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as err:
        raise TapeError(f"{path}: line {start}: not valid CSV ({err})") from None
    return records


def _known(names: Sequence[str]) -> int:
    return len({name.strip() for name in names} & set(COLUMNS))


def _refuse_other_separators(path: Path, text: str, header: list[str]) -> None:
    """Stop with a clear message when the header splits into the tape's columns on another
    separator than ',' (a spreadsheet export in a locale with decimal commas, or a TSV file),
    with the number of cells that use a decimal comma and the first ``MAX_EXAMPLES`` of them."""
    if _known(header) >= 2:
        return
    for sep, word in OTHER_SEPARATORS.items():
        try:
            records = _records(path, text, sep)
        except TapeError:
            continue
        names = [name.strip() for name in records[0][1]]
        if _known(names) < 2 or _known(names) <= _known(header):
            continue
        id_at = names.index("loan_id") if "loan_id" in names else None
        commas = []
        for line, cells in records[1:]:
            loan = cells[id_at].strip() if id_at is not None and id_at < len(cells) else ""
            where = f"line {line} ({f'loan_id {loan!r}' if loan else 'no loan_id'})"
            for name, cell in zip(names, cells):
                if (name in COLUMNS or name in OPTIONAL) and _DECIMAL_COMMA.fullmatch(cell.strip()):
                    commas.append(f"{where}, column {name!r}: decimal comma in {cell.strip()!r}")
        decimals = " and decimal commas" if commas else ""
        head = (
            f"{path}: the file seems to use {word} separators{decimals} (its header splits into "
            f"{_known(names)} tape columns on {word}); a tape must be comma-separated with '.' as "
            "the decimal point and no thousands separators: export it again as CSV with ',' "
            "separators, or save it as Parquet"
        )
        more = [f"... and {len(commas) - MAX_EXAMPLES} more"] if len(commas) > MAX_EXAMPLES else []
        raise TapeError("\n".join([head + (f"; {len(commas)} cell{'s' if len(commas) > 1 else ''} with a decimal "
                                           f"comma, for example:" if commas else ""),
                                    *(f"  {c}" for c in commas[:MAX_EXAMPLES] + more)]))


def _read_parquet(path: Path) -> _Table:
    """Cells converted to text (null -> empty) so that CSV and Parquet share one validation."""
    import pyarrow as pa  # imported here: only Parquet tapes need it
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as file:  # not pq.read_table: it fails on duplicated column names
            table = file.read()
    except (pa.ArrowException, OSError, ValueError, TypeError, IndexError, MemoryError) as err:
        # pyarrow reports damaged files as ArrowInvalid/OSError, some as other built-in errors
        raise TapeError(f"{path}: not a readable Parquet file ({_short(err)})") from None
    keep = [i for i, name in enumerate(table.column_names) if not _PANDAS_INDEX.fullmatch(name)]
    header = [table.column_names[i].strip() for i in keep]
    unreadable: dict[tuple[int, int], str] = {}
    columns = []
    for position, i in enumerate(keep):
        column = table.column(i)
        try:
            columns.append(column.to_pylist())
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            values = []
            for number in range(len(column)):  # find the values that cannot be converted
                try:
                    values.append(column[number].as_py())
                except (pa.ArrowException, ValueError, TypeError, OverflowError) as err:
                    values.append(None)
                    unreadable[number + 2, position] = (f"a {column.type} value that cannot be read "
                                                        f"({_short(err)})")
            columns.append(values)
    rows = []
    for number, values in enumerate(zip(*columns)):
        cells = []
        for position, value in enumerate(values):
            try:
                cells.append(_cell(value))
            except UnicodeDecodeError:
                cells.append("?")
                unreadable[number + 2, position] = f"binary data that is not UTF-8 text, got {value[:40]!r}"
        rows.append((number + 2, cells))
    return _Table(1, header, rows, unreadable)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__


def _cell(value: object) -> str:
    """A Parquet value as the text a CSV cell would hold (null -> empty)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8")  # UnicodeDecodeError: reported by the caller
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _check_header(table: _Table, problems: list[str]) -> dict[str, int]:
    """Report missing, unknown and duplicated columns; return the position of each usable column."""
    positions: dict[str, list[int]] = {}
    for position, name in enumerate(table.header):
        positions.setdefault(name, []).append(position)
    where = f"line {table.header_line} (header)"
    missing = [name for name in COLUMNS if name not in positions]
    unknown = [(name, p) for name, ps in positions.items() if name not in COLUMNS and name not in OPTIONAL for p in ps]
    absent = missing + [name for name in OPTIONAL if name not in positions]
    for name, p in list(unknown):  # a misspelt column: reported once, with the name it should have
        match = _closest(name, absent)
        if match is not None:
            problems.append(f"{where}: unknown column {name!r} (column {p + 1}): did you mean {match!r}?")
            unknown.remove((name, p))
            absent.remove(match)
            if match in missing:
                missing.remove(match)
    if missing:
        problems.append(f"{where}: missing columns {', '.join(map(repr, missing))}")
    if unknown:
        problems.append(
            f"{where}: unknown columns {', '.join(f'{name!r} (column {p + 1})' for name, p in unknown)}; "
            f"the expected columns are {', '.join(COLUMNS)} (optional: {', '.join(OPTIONAL)})"
        )
    duplicated = [
        f"{name!r} (columns {', '.join(str(p + 1) for p in ps)})"
        for name, ps in positions.items()
        if len(ps) > 1
    ]
    if duplicated:
        problems.append(f"{where}: duplicated columns {', '.join(duplicated)}")
    return {name: ps[0] for name, ps in positions.items() if (name in COLUMNS or name in OPTIONAL) and len(ps) == 1}


def _closest(name: str, candidates: Sequence[str]) -> str | None:
    """The column ``name`` was probably meant to be: one of ``candidates`` equal to it but for case,
    spaces and dashes, or the closest by difflib's ratio (at least 0.75), if any."""
    key = lambda n: re.sub(r"[\s\-]+", "_", n.strip().lower())  # noqa: E731
    same = [c for c in candidates if key(c) == key(name)]
    if same:
        return same[0]
    close = difflib.get_close_matches(key(name), list(candidates), n=1, cutoff=0.75)
    return close[0] if close else None


def _validate(source: str, table: _Table, chips: Collection[str]) -> Portfolio:
    """Parse every cell, check the cross-column rules, build the Portfolio or raise one error."""
    schema = column_parsers(chips)
    problems: list[str] = []
    index = _check_header(table, problems)
    parsed: list[dict[str, str | int | float]] = []
    first_line: dict[str, int] = {}  # loan_id -> line where it first appears
    for line, raw_cells in table.rows:
        cells = [cell.strip() for cell in raw_cells]
        id_at = index.get("loan_id")
        loan_id = cells[id_at] if id_at is not None and id_at < len(cells) else ""
        where = f"line {line} ({f'loan_id {loan_id!r}' if loan_id else 'no loan_id'})"
        if len(cells) != len(table.header):
            problems.append(f"{where}: has {len(cells)} cells, the header has {len(table.header)}")
            continue
        row: dict[str, str | int | float] = {}
        for name, position in index.items():
            try:
                if (line, position) in table.unreadable:
                    raise BadCell(table.unreadable[line, position])
                row[name] = schema[name][0](cells[position])
            except BadCell as bad:
                problems.append(f"{where}, column {name!r}: {bad}")
        if loan_id in first_line:
            problems.append(f"{where}, column 'loan_id': duplicate of line {first_line[loan_id]}")
        elif loan_id:
            first_line[loan_id] = line
        if "amortization" in row and "balloon_pct" in row:
            balloon = _check_balloon(
                row["amortization"], row["balloon_pct"], cells[index["balloon_pct"]]
            )
            if balloon:
                problems.append(f"{where}, column 'balloon_pct': {balloon}")
        for name, cell in OPTIONAL.items():
            if name not in index and name not in table.header:
                row[name] = schema[name][0](cell)
        row["facility"] = row.get("facility") or loan_id
        parsed.append(row)
    if problems:
        _fail(source, problems)
    arrays = {
        name: _frozen(np.array([row[name] for row in parsed], dtype=dtype))
        for name, (_, dtype) in schema.items()
    }
    lines = _frozen(np.array([line for line, _ in table.rows], dtype=np.int64))
    return Portfolio(source=source, line=lines, **arrays)


def _check_balloon(amortization: object, value: object, raw: str) -> str | None:
    """balloon_pct is required on balloon loans and must be 0 or empty on all others."""
    if amortization == "balloon":
        return None if raw else "must be given for a balloon loan"
    if value != 0:
        return (
            f"must be 0 or empty unless amortization is 'balloon' "
            f"(this loan is {amortization!r}), {got(raw)}"
        )
    return None


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _fail(source: str, problems: list[str]) -> NoReturn:
    count = len(problems)
    listed = problems[:MAX_LISTED]
    if count > MAX_LISTED:
        listed.append(f"... and {count - MAX_LISTED} more")
    head = f"{source}: {count} problem{'' if count == 1 else 's'} in the loan tape:"
    raise TapeError("\n".join([head, *(f"  {problem}" for problem in listed)]))
