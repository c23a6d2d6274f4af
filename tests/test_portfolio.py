"""Loan tape reading and validation (stress.config.portfolio)."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stress.config import portfolio
from stress.config import portfolio as portfolio_module
from stress.config.portfolio import COLUMNS, OPTIONAL, Portfolio, load_portfolio
from stress.errors import TapeError

EXAMPLE = Path(__file__).parents[1] / "conf" / "portfolio" / "example_loans.csv"
CHIPS = {"A100", "H100", "H200", "B200", "GB200"}

# Lines of two loans of the example tape (header = line 1).
NEO_01, NEO_02 = 7, 8


def example_rows() -> list[list[str]]:
    """The example tape as text cells, header first."""
    with EXAMPLE.open(newline="", encoding="utf-8") as f:
        return [row for row in csv.reader(f)]


def set_cell(rows: list[list[str]], loan_id: str, column: str, value: str) -> None:
    """Overwrite one cell of the loan `loan_id` in place."""
    (row,) = [row for row in rows[1:] if row[0] == loan_id]
    row[rows[0].index(column)] = value


def write(path: Path, rows: list[list[str]], newline: str = "\n", encoding: str = "utf-8") -> Path:
    with path.open("w", newline="", encoding=encoding) as f:
        csv.writer(f, lineterminator=newline).writerows(rows)
    return path


def problems(path: Path) -> list[str]:
    """The problem lines of the TapeError raised for `path`, after checking the message head."""
    with pytest.raises(TapeError) as info:
        load_portfolio(path, CHIPS)
    head, *lines = str(info.value).splitlines()
    count = len(lines)
    assert head == f"{path}: {count} problem{'' if count == 1 else 's'} in the loan tape:"
    assert all(line.startswith("  ") for line in lines)
    return [line.strip() for line in lines]


def tape_problems(tmp_path: Path, rows: list[list[str]]) -> list[str]:
    return problems(write(tmp_path / "tape.csv", rows))


def error(path: Path) -> str:
    """The message of the TapeError raised for a tape that cannot be read at all."""
    with pytest.raises(TapeError) as info:
        load_portfolio(path, CHIPS)
    return str(info.value)


def assert_same(a: Portfolio, b: Portfolio) -> None:
    for name in (*COLUMNS, "line"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        assert np.array_equal(x, y), name


# --- the example tape ------------------------------------------------------------------------


def test_example_tape_loads():
    p = load_portfolio(EXAMPLE, CHIPS)
    assert len(p) == 30
    assert p.source == str(EXAMPLE)
    assert list(p.line) == list(range(2, 32))
    assert len(set(p.loan_id)) == 30
    assert set(p.chip) == CHIPS
    assert set(p.rate_type) == {"fixed", "floating"}
    assert set(p.amortization) == {"annuity", "linear", "bullet", "balloon"}
    for name in ("loan_id", "borrower", "chip", "rate_type", "amortization"):
        assert getattr(p, name).dtype == object
        assert all(type(v) is str for v in getattr(p, name))
    for name in ("gpus", "age_months", "tenor_months", "contract_months", "line"):
        assert getattr(p, name).dtype == np.int64
    for name in ("principal", "rate", "balloon_pct", "pue", "pd_annual", "asset_corr"):
        assert getattr(p, name).dtype == np.float64
    balloon = p.amortization == "balloon"
    assert np.all((p.balloon_pct[balloon] >= 0.2) & (p.balloon_pct[balloon] <= 0.5))
    assert np.all(p.balloon_pct[~balloon] == 0)
    borrowers, counts = np.unique(p.borrower.astype(str), return_counts=True)
    assert len(borrowers) >= 5 and counts.min() >= 2 and counts.max() <= 4
    assert p.loan_id[NEO_01 - 2] == "NEO-01"


def test_portfolio_is_frozen_and_read_only():
    p = load_portfolio(EXAMPLE, CHIPS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.rate = p.rate * 2  # type: ignore[misc]
    with pytest.raises(ValueError):
        p.rate[0] = 0.5


def test_portfolio_fields_are_the_design_columns():
    names = [f.name for f in dataclasses.fields(Portfolio)]
    assert names == ["source", *COLUMNS, *OPTIONAL, "line"]
    assert len(COLUMNS) == 22 and list(OPTIONAL) == ["cure_capacity", "facility", "rvg_per_gpu", "offtaker"]


@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_parquet_loads_to_identical_arrays(tmp_path, suffix):
    path = tmp_path / f"tape{suffix}"
    pd.read_csv(EXAMPLE).to_parquet(path)
    assert_same(load_portfolio(path, CHIPS), load_portfolio(EXAMPLE, CHIPS))


def test_parquet_ignores_the_pandas_index(tmp_path):
    path = tmp_path / "tape.parquet"
    pd.read_csv(EXAMPLE).iloc[[6, 5]].to_parquet(path)  # non-range index -> __index_level_0__
    p = load_portfolio(path, CHIPS)
    assert list(p.loan_id) == ["NEO-02", "NEO-01"]
    assert list(p.line) == [2, 3]


def test_txt_extension_reads_as_csv(tmp_path):
    path = tmp_path / "TAPE.TXT"
    path.write_bytes(EXAMPLE.read_bytes())
    assert_same(load_portfolio(path, CHIPS), load_portfolio(EXAMPLE, CHIPS))


def test_text_is_stripped_and_enums_are_case_insensitive(tmp_path):
    rows = example_rows()
    set_cell(rows, "NEO-01", "rate_type", " Floating ")
    set_cell(rows, "NEO-01", "amortization", "ANNUITY")
    set_cell(rows, "NEO-01", "chip", "h100")
    set_cell(rows, "NEO-01", "borrower", "  Northwind Cloud  ")
    set_cell(rows, "NEO-01", "gpus", " 16000.0 ")
    p = load_portfolio(write(tmp_path / "tape.csv", rows), CHIPS)
    i = NEO_01 - 2
    assert (p.rate_type[i], p.amortization[i], p.chip[i]) == ("floating", "annuity", "H100")
    assert p.borrower[i] == "Northwind Cloud"
    assert p.gpus[i] == 16000


# --- header problems -----------------------------------------------------------------------


def test_missing_columns(tmp_path):
    df = pd.read_csv(EXAMPLE, dtype=str, keep_default_na=False).drop(columns=["dscr_min", "pue"])
    path = tmp_path / "tape.csv"
    df.to_csv(path, index=False)
    assert problems(path) == ["line 1 (header): missing columns 'pue', 'dscr_min'"]


@pytest.mark.parametrize("typo, meant", [("rat", "rate"), ("contract_prise", "contract_price"),
                                         ("Contract Price", "contract_price")])
def test_misspelt_column_is_reported_once_with_the_name_meant(tmp_path, typo, meant):
    rows = example_rows()
    at = rows[0].index(meant)
    rows[0][at] = typo
    assert tape_problems(tmp_path, rows) == [
        f"line 1 (header): unknown column {typo!r} (column {at + 1}): did you mean {meant!r}?"]


def test_misspelt_optional_column_gets_a_suggestion(tmp_path):
    rows = example_rows()
    for row in rows:
        row.append("cure_capcity" if row is rows[0] else "0")
    assert tape_problems(tmp_path, rows) == [
        f"line 1 (header): unknown column 'cure_capcity' (column {len(rows[0])}): did you mean 'cure_capacity'?"]


def test_a_column_unlike_any_missing_one_is_unknown_and_the_missing_one_listed(tmp_path):
    rows = example_rows()
    rows[0][rows[0].index("rate")] = "note"
    assert tape_problems(tmp_path, rows) == [
        "line 1 (header): missing columns 'rate'",
        "line 1 (header): unknown columns 'note' (column 7); the expected columns are "
        + ", ".join(COLUMNS) + " (optional: cure_capacity, facility, rvg_per_gpu, offtaker)",
    ]


def test_extra_column_is_an_error(tmp_path):
    rows = example_rows()
    for row in rows:
        row.append("note" if row is rows[0] else "")
    (problem,) = tape_problems(tmp_path, rows)
    assert problem.startswith("line 1 (header): unknown columns 'note' (column 24); ")
    assert "loan_id, borrower, chip" in problem


def test_duplicated_column(tmp_path):
    rows = example_rows()
    for row in rows:
        row.append(row[6])  # a second 'rate'
    assert tape_problems(tmp_path, rows) == [
        "line 1 (header): duplicated columns 'rate' (columns 7, 24)"
    ]


# --- cell problems -------------------------------------------------------------------------


def test_non_numeric_cell(tmp_path):
    rows = example_rows()
    set_cell(rows, "NEO-01", "rate", "abc")
    assert tape_problems(tmp_path, rows) == [
        "line 7 (loan_id 'NEO-01'), column 'rate': must be a number, got 'abc'"
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "must be a number, got an empty cell"),
        ("  ", "must be a number, got an empty cell"),
        ("nan", "must be a finite number, got 'nan'"),
        ("NaN", "must be a finite number, got 'NaN'"),
        ("inf", "must be a finite number, got 'inf'"),
        ("-Infinity", "must be a finite number, got '-Infinity'"),
    ],
)
def test_missing_and_non_finite_numbers(tmp_path, value, message):
    rows = example_rows()
    set_cell(rows, "NEO-02", "principal", value)
    assert tape_problems(tmp_path, rows) == [
        f"line 8 (loan_id 'NEO-02'), column 'principal': {message}"
    ]


@pytest.mark.parametrize("column", ["gpus", "age_months", "tenor_months", "contract_months"])
def test_integers_must_be_whole(tmp_path, column):
    rows = example_rows()
    set_cell(rows, "SPV-01", column, "12.5")
    assert tape_problems(tmp_path, rows) == [
        f"line 2 (loan_id 'SPV-01'), column '{column}': must be a whole number, got '12.5'"
    ]


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("gpus", "0", "must be > 0"),
        ("age_months", "-1", "must be >= 0"),
        ("principal", "-5e6", "must be >= 1 (USD; less is surely a unit mistake)"),
        ("rate", "-0.01", "must be in [0, 1] (decimal per year, e.g. 0.12 for 12%)"),
        ("tenor_months", "0", "must be > 0"),
        ("contracted_share", "1.2", "must be in [0, 1] (a decimal, e.g. 0.25 for 25%)"),
        ("contract_price", "-1", "must be >= 0"),
        ("contract_months", "-3", "must be >= 0"),
        ("power_price", "-0.01", "must be >= 0"),
        ("pue", "0.9", "must be >= 1"),
        ("opex_fixed", "-10", "must be >= 0"),
        ("reserve_months", "-1", "must be >= 0"),
        ("dscr_min", "0", "must be > 0"),
        ("ltv_max", "-0.8", "must be > 0"),
        ("pd_annual", "2", "must be in [0, 1] (decimal per year, e.g. 0.02 for 2%)"),
        ("asset_corr", "1.5", "must be in [0, 1]"),
    ],
)
def test_out_of_range(tmp_path, column, value, rule):
    rows = example_rows()
    set_cell(rows, "MER-01", column, value)
    assert tape_problems(tmp_path, rows) == [
        f"line 19 (loan_id 'MER-01'), column '{column}': {rule}, got '{value}'"
    ]


def test_rate_in_percent_gets_a_hint(tmp_path):
    rows = example_rows()
    set_cell(rows, "MER-01", "rate", "14")
    (problem,) = tape_problems(tmp_path, rows)
    assert problem.startswith("line 19 (loan_id 'MER-01'), column 'rate': ")
    assert "decimal per year, e.g. 0.12" in problem
    assert problem.endswith("got '14'")


def test_balloon_pct_must_be_below_one(tmp_path):
    rows = example_rows()
    set_cell(rows, "SPV-01", "balloon_pct", "1")
    assert tape_problems(tmp_path, rows) == [
        "line 2 (loan_id 'SPV-01'), column 'balloon_pct': must be in [0, 1) "
        "(a decimal, e.g. 0.25 for 25%), got '1'"
    ]


def test_unknown_chip_lists_the_known_chips(tmp_path):
    rows = example_rows()
    set_cell(rows, "NEO-04", "chip", "H300")
    assert tape_problems(tmp_path, rows) == [
        "line 10 (loan_id 'NEO-04'), column 'chip': must be a chip of the market config "
        "(A100, B200, GB200, H100, H200), got 'H300'"
    ]


def test_unknown_amortization_and_rate_type(tmp_path):
    rows = example_rows()
    set_cell(rows, "NEO-04", "amortization", "french")
    set_cell(rows, "NEO-04", "rate_type", "")
    assert tape_problems(tmp_path, rows) == [
        "line 10 (loan_id 'NEO-04'), column 'rate_type': must be one of (fixed, floating), "
        "got an empty cell",
        "line 10 (loan_id 'NEO-04'), column 'amortization': must be one of "
        "(annuity, linear, bullet, balloon), got 'french'",
    ]


def test_balloon_pct_on_an_annuity_loan(tmp_path):
    rows = example_rows()
    set_cell(rows, "NEO-01", "balloon_pct", "0.3")
    assert tape_problems(tmp_path, rows) == [
        "line 7 (loan_id 'NEO-01'), column 'balloon_pct': must be 0 or empty unless amortization "
        "is 'balloon' (this loan is 'annuity'), got '0.3'"
    ]


def test_balloon_pct_zero_on_a_non_balloon_loan_is_fine(tmp_path):
    rows = example_rows()
    set_cell(rows, "NEO-01", "balloon_pct", "0")
    assert load_portfolio(write(tmp_path / "tape.csv", rows), CHIPS).balloon_pct[NEO_01 - 2] == 0


def test_balloon_loan_needs_balloon_pct(tmp_path):
    rows = example_rows()
    set_cell(rows, "NEO-04", "balloon_pct", "")
    assert tape_problems(tmp_path, rows) == [
        "line 10 (loan_id 'NEO-04'), column 'balloon_pct': must be given for a balloon loan"
    ]


def test_duplicate_loan_id_names_both_lines(tmp_path):
    rows = example_rows()
    set_cell(rows, "NEO-02", "loan_id", "NEO-01")
    assert tape_problems(tmp_path, rows) == [
        "line 8 (loan_id 'NEO-01'), column 'loan_id': duplicate of line 7"
    ]


def test_missing_loan_id_and_borrower(tmp_path):
    rows = example_rows()
    set_cell(rows, "NEO-01", "borrower", " ")
    set_cell(rows, "NEO-01", "loan_id", "")
    assert tape_problems(tmp_path, rows) == [
        "line 7 (no loan_id), column 'loan_id': must not be empty",
        "line 7 (no loan_id), column 'borrower': must not be empty",
    ]


def test_row_with_wrong_number_of_cells(tmp_path):
    rows = example_rows()
    rows[NEO_02 - 1] = rows[NEO_02 - 1][:-1]
    assert tape_problems(tmp_path, rows) == [
        "line 8 (loan_id 'NEO-02'): has 22 cells, the header has 23"
    ]


def test_all_problems_are_reported_at_once(tmp_path):
    rows = example_rows()
    set_cell(rows, "MER-01", "pue", "abc")
    set_cell(rows, "SPV-01", "chip", "TPU")
    set_cell(rows, "NEO-02", "gpus", "-4")
    assert tape_problems(tmp_path, rows) == [
        "line 2 (loan_id 'SPV-01'), column 'chip': must be a chip of the market config "
        "(A100, B200, GB200, H100, H200), got 'TPU'",
        "line 8 (loan_id 'NEO-02'), column 'gpus': must be > 0, got '-4'",
        "line 19 (loan_id 'MER-01'), column 'pue': must be a number, got 'abc'",
    ]


def test_header_and_cell_problems_are_reported_together(tmp_path):
    rows = example_rows()
    set_cell(rows, "NEO-01", "rate", "x")
    set_cell(rows, "NEO-01", "pue", "x")  # not checked below: the column is unknown
    rows[0][rows[0].index("pue")] = "PUE"
    assert tape_problems(tmp_path, rows) == [
        "line 1 (header): unknown column 'PUE' (column 16): did you mean 'pue'?",
        "line 7 (loan_id 'NEO-01'), column 'rate': must be a number, got 'x'",
    ]


def test_decimal_comma_export_quotes_a_few_cells_and_counts_them(tmp_path):
    """A European spreadsheet export (';' and decimal commas in every loan's rate, pue and power
    price): one head line with the count, three example cells, one '... and N more'."""
    rows = example_rows()
    decimals = [rows[0].index(c) for c in ("rate", "pue", "power_price")]
    for row in rows[1:]:
        for c in decimals:
            row[c] = row[c].replace(".", ",")
    path = tmp_path / "tape.csv"
    path.write_text("\n".join(";".join(row) for row in rows) + "\n", encoding="utf-8")
    head, *lines = error(path).splitlines()
    n = 3 * (len(rows) - 1)
    assert head.startswith(f"{path}: the file seems to use ';' separators and decimal commas")
    assert head.endswith(f"; {n} cells with a decimal comma, for example:")
    assert len(lines) == portfolio.MAX_EXAMPLES + 1 and lines[-1] == f"  ... and {n - 3} more"
    assert lines[0].startswith("  line 2 (loan_id 'SPV-01'), column 'rate': decimal comma in '0,")


def test_long_lists_of_problems_are_cut_but_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(portfolio_module, "MAX_LISTED", 5)
    rows = example_rows()
    for row in rows[1:]:
        row[rows[0].index("rate")] = "x"
    path = write(tmp_path / "tape.csv", rows)
    head, *lines = error(path).splitlines()
    assert head == f"{path}: 30 problems in the loan tape:"
    assert len(lines) == 6
    assert lines[0] == "  line 2 (loan_id 'SPV-01'), column 'rate': must be a number, got 'x'"
    assert lines[-1] == "  ... and 25 more"


# --- line numbers --------------------------------------------------------------------------


def with_blank_lines(rows: list[list[str]]) -> list[str]:
    """Text lines of the tape with a blank line after the header, a whitespace-only line before
    SPV-02 and two blank lines before NEO-01 (the example's cells contain no commas or quotes)."""
    lines = [",".join(row) for row in rows]
    return [lines[0], "", lines[1], "   ", *lines[2:6], "", "", *lines[6:], ""]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_blank_lines_keep_line_numbers_right(tmp_path, newline):
    path = tmp_path / "tape.csv"
    rows = example_rows()
    path.write_bytes(newline.join(with_blank_lines(rows)).encode())
    p = load_portfolio(path, CHIPS)
    assert len(p) == 30
    assert list(p.line[:6]) == [3, 5, 6, 7, 8, 11]
    assert p.line[-1] == 35

    set_cell(rows, "NEO-01", "rate", "abc")
    path.write_bytes(newline.join(with_blank_lines(rows)).encode())
    assert problems(path) == [
        "line 11 (loan_id 'NEO-01'), column 'rate': must be a number, got 'abc'"
    ]


def test_quoted_cell_spanning_lines_keeps_line_numbers_right(tmp_path):
    rows = example_rows()
    set_cell(rows, "SPV-01", "borrower", "Halcyon\nCompute SPV")
    set_cell(rows, "SPV-02", "rate", "abc")
    assert tape_problems(tmp_path, rows) == [
        "line 4 (loan_id 'SPV-02'), column 'rate': must be a number, got 'abc'"
    ]


def test_byte_order_mark_in_header(tmp_path):
    path = write(tmp_path / "tape.csv", example_rows(), encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbfloan_id,")
    assert_same(load_portfolio(path, CHIPS), load_portfolio(EXAMPLE, CHIPS))


def test_parquet_problems_use_row_number_plus_one(tmp_path):
    df = pd.read_csv(EXAMPLE)
    df.loc[5, "rate"] = np.nan  # NEO-01, the 6th loan: "line 7" as in the CSV
    df.loc[5, "chip"] = "H300"
    path = tmp_path / "tape.parquet"
    df.to_parquet(path)
    assert problems(path) == [
        "line 7 (loan_id 'NEO-01'), column 'chip': must be a chip of the market config "
        "(A100, B200, GB200, H100, H200), got 'H300'",
        "line 7 (loan_id 'NEO-01'), column 'rate': must be a number, got an empty cell",
    ]


# --- files that cannot be read -------------------------------------------------------------


def test_empty_file(tmp_path):
    path = tmp_path / "tape.csv"
    path.write_bytes(b"")
    assert error(path) == f"{path}: the file is empty"


def test_blank_lines_only(tmp_path):
    path = tmp_path / "tape.csv"
    path.write_text("\n  \n\n")
    assert error(path) == f"{path}: the file is empty"


def test_empty_parquet_file(tmp_path):
    path = tmp_path / "tape.parquet"
    path.write_bytes(b"")
    assert error(path) == f"{path}: the file is empty"


def test_header_only(tmp_path):
    path = write(tmp_path / "tape.csv", example_rows()[:1] + [[], []])
    assert error(path) == f"{path}: the tape has a header but no loans"


def test_parquet_header_only(tmp_path):
    path = tmp_path / "tape.parquet"
    pd.read_csv(EXAMPLE).iloc[:0].to_parquet(path)
    assert error(path) == f"{path}: the tape has a header but no loans"


def test_binary_garbage_csv(tmp_path):
    path = tmp_path / "tape.csv"
    path.write_bytes(bytes(range(256)) * 4)
    message = error(path)
    assert message.startswith(f"{path}: not a UTF-8 text file (undecodable byte at offset 128)")


def test_nul_bytes_csv(tmp_path):
    path = tmp_path / "tape.csv"
    path.write_bytes(b"loan_id,borrower\x00\x01\x02\n")
    assert error(path) == (
        f"{path}: contains NUL bytes; this is binary data, not a CSV text file"
    )


def test_parquet_file_with_csv_extension(tmp_path):
    path = tmp_path / "tape.csv"
    pd.read_csv(EXAMPLE).to_parquet(path)
    assert error(path).startswith(f"{path}: not a UTF-8 text file")


def test_binary_garbage_parquet(tmp_path):
    path = tmp_path / "tape.parquet"
    path.write_bytes(EXAMPLE.read_bytes())
    assert error(path).startswith(f"{path}: not a readable Parquet file (")


def test_unsupported_extension(tmp_path):
    path = tmp_path / "tape.xlsx"
    path.write_bytes(b"PK\x03\x04")
    assert error(path) == (
        f"{path}: unsupported loan tape format '.xlsx'; "
        "use CSV (.csv, .txt) or Parquet (.parquet, .pq)"
    )


def test_no_extension(tmp_path):
    assert "unsupported loan tape format '(no extension)'" in error(tmp_path / "tape")


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "tape.csv"
    assert error(path) == f"{path}: no such file"


def test_directory(tmp_path):
    path = tmp_path / "tape.csv"
    path.mkdir()
    assert error(path) == f"{path}: not a file"
