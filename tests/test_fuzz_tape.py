"""Loan tape fuzzing (issue 7): whatever the file holds, load_portfolio either returns a valid
Portfolio (and a tiny run on it works) or raises one TapeError that names the file and, for each
problem, the line (with the loan) and the column. Never another exception.

Hypothesis runs derandomized (the same examples on every machine); `slow` marks the long ones.
CSV dialect decision (stress/config/portfolio.py): only ',' separators and '.' decimals are read; a
';' or tab separated file is refused with a message saying so and listing the decimal commas.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import stress
from stress.config.portfolio import COLUMNS, load_portfolio
from stress.config.tape_columns import LIMITS
from stress.errors import TapeError

from support import LOAN, examples

CHIPS = ("A100", "H100", "H200", "B200", "GB200")
TEXT_COLUMNS = ("loan_id", "borrower", "chip", "rate_type", "amortization")
NUMBER_COLUMNS = tuple(c for c in COLUMNS if c not in TEXT_COLUMNS)
INTEGER_COLUMNS = ("gpus", "age_months", "tenor_months", "contract_months")


FAST = examples(150)  # parsing only: milliseconds per example
RUNS = examples(40)  # each example also runs the engine (~0.2 s)
LONG = examples(400)  # the `slow` variants of the parsing tests
LONG_RUNS = examples(80)

# Messages of a tape that cannot be read at all (no cells to point at).
FILE_LEVEL = re.compile(
    r": (the file is empty|the tape has a header but no loans|not a UTF-8 text file|a UTF-16 text file"
    r"|contains NUL bytes|line \d+: not valid CSV|the file seems to use .* separators"
    r"|not a readable Parquet file)"
)
PROBLEM = re.compile(r"^  line (\d+)(?: \((header|loan_id '.*'|loan_id \".*\"|no loan_id)\))?(, column '(\w+)')?: (.+)$")


def base_rows(n: int = 3) -> list[dict[str, str]]:
    """A valid tape of n loans as text cells: one each of annuity, balloon, bullet, ..."""
    profiles = [dict(), dict(amortization="balloon", balloon_pct="0.3", chip="B200", rate_type="floating",
                             rate="0.05"),
                dict(amortization="bullet", chip="A100", tenor_months="24", age_months="40"),
                dict(amortization="linear", chip="GB200", gpus="72")]
    rows = []
    for i in range(n):
        row = {k: ("" if v == "" else str(v)) for k, v in LOAN.items()}
        row.update(profiles[i % len(profiles)], loan_id=f"L-{i + 1}", borrower=f"B-{i % 2}")
        rows.append(row)
    return rows


def to_csv(rows: list[list[str]], sep: str = ",", newline: str = "\n") -> bytes:
    buf = io.StringIO()
    csv.writer(buf, delimiter=sep, lineterminator=newline).writerows(rows)
    return buf.getvalue().encode("utf-8")


def table_rows(rows: list[dict[str, str]], columns=COLUMNS) -> list[list[str]]:
    return [list(columns)] + [[row.get(c, "") for c in columns] for row in rows]


def parquet_bytes(columns: dict[str, pa.Array] | pa.Table) -> bytes:
    table = columns if isinstance(columns, pa.Table) else pa.table(columns)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def text_table(rows: list[list[str]]) -> pa.Table:
    """A Parquet table of string columns (duplicate names allowed) from text rows, header first."""
    header, *body = rows
    arrays = [pa.array([r[i] if i < len(r) else None for r in body], pa.string()) for i in range(len(header))]
    return pa.Table.from_arrays(arrays, names=list(header))


def load(data: bytes, suffix: str):
    """load_portfolio on a file holding `data`: (Portfolio, None) or (None, TapeError message)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"tape{suffix}"
        path.write_bytes(data)
        try:
            return load_portfolio(path, CHIPS), None
        except TapeError as exc:
            message = str(exc)
            assert_clear(message, path)
            return None, message.replace(str(path), "TAPE")


def assert_clear(message: str, path: Path) -> None:
    """A TapeError names the file; either the file as a whole cannot be read, or every problem
    line names its line and loan (or the header) and, for a cell, its column."""
    assert message.startswith(f"{path}: "), message
    head, *lines = message.splitlines()
    if FILE_LEVEL.search(head):
        lines = [line for line in lines if not line.startswith("  ... and ")]
        assert all(PROBLEM.match(line) and "column '" in line for line in lines), message
        return
    count = int(re.search(r": (\d+) problems? in the loan tape:$", head).group(1))
    assert count >= 1 and 1 <= len(lines) <= count + 1, message
    for line in lines:
        if line.startswith("  ... and "):
            continue
        m = PROBLEM.match(line)
        assert m, f"unclear problem line {line!r} in\n{message}"
        if m.group(2) == "header":
            assert "columns" in m.group(5) or re.fullmatch(r"unknown column .+ \(column \d+\): did you mean '\w+'\?", m.group(5)), line
        else:
            assert m.group(4) or "cells, the header has" in m.group(5), line


def assert_valid(p) -> None:
    """What downstream code relies on in a loaded Portfolio."""
    assert len(p) >= 1 and len(set(p.loan_id)) == len(p)
    for name in NUMBER_COLUMNS:
        values = getattr(p, name).astype(float)
        assert np.isfinite(values).all(), name
        assert (values <= LIMITS.get(name, 1.0)).all(), name
    assert (p.gpus > 0).all() and (p.principal > 0).all() and (p.tenor_months > 0).all()
    assert (p.pue >= 1).all() and ((0 <= p.pd_annual) & (p.pd_annual <= 1)).all()
    assert set(p.chip) <= set(CHIPS)


_BASE_CFG = None


def tiny_run(p, path: Path):
    """stress.run with 8 paths, one scenario, the tape's own tenors: finite, sane results."""
    global _BASE_CFG
    if _BASE_CFG is None:
        _BASE_CFG = stress.compose(["scenario=[baseline]", "tenors=tape", "mc.paths=8", "mc.fan_paths=4", "quiet=true"])
    cfg = copy.deepcopy(_BASE_CFG)
    cfg.portfolio.path = str(path)
    ds = stress.run(cfg)
    assert ds.sizes["loan"] == len(p)
    loss_rate = ds.loss_rate.values
    assert np.isfinite(loss_rate).all() and (loss_rate >= -1e-9).all() and (loss_rate <= 1 + 1e-9).all()
    assert ((ds.pd.values >= 0) & (ds.pd.values <= 1)).all()
    assert (ds.el.values <= ds.principal.values * (1 + 1e-9)).all()
    return ds


# ------------------------------------------------------------------------------ strategies

GARBAGE_TEXT = st.one_of(
    st.sampled_from(["abc", "", " ", "nan", "NaN", "inf", "-inf", "Infinity", "1e308", "-1e308", "1e309",
                     "0,12", "1.234,5", "20,000,000", "12%", "$5", "0x10", "None", "null", "True", "--1",
                     "1e", ".", "-", "+", "１２", "\u00a0", "'", '"', "1;2", "\t", "é", "L-1", "H100", "\u202e",
                     "x" * 5000, "9" * 400]),
    st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
)

# A value that is invalid in every numeric column: not a number, not finite, or beyond every bound.
BAD_NUMBER = st.sampled_from(["abc", "nan", "inf", "-inf", "1e308", "-1e308", "1e309", "0,12", "20,000",
                              "12%", "", "x", "1e", "--1", "True"])


@st.composite
def cell_mutations(draw, n_rows: int):
    """1..4 (row, column, value) replacements with arbitrary text."""
    k = draw(st.integers(1, 4))
    return [(draw(st.integers(0, n_rows - 1)), draw(st.sampled_from(COLUMNS)), draw(GARBAGE_TEXT))
            for _ in range(k)]


# ------------------------------------------------------------------------------ CSV fuzzing


@FAST
@given(n=st.integers(1, 4), data=st.data())
def test_known_bad_numbers_are_reported_at_their_line_and_column(n, data):
    rows = base_rows(n)
    picks = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(NUMBER_COLUMNS), BAD_NUMBER),
                               min_size=1, max_size=3, unique_by=lambda t: (t[0], t[1])))
    for i, column, value in picks:
        rows[i][column] = value
    if any(c == "balloon_pct" and v == "" for _, c, v in picks):  # empty is fine except on balloon loans
        picks = [(i, c, v) for i, c, v in picks if not (c == "balloon_pct" and v == "" and
                                                         rows[i]["amortization"] != "balloon")]
        assume(picks)
    fmt = data.draw(st.sampled_from(["csv", "parquet"]))
    table = table_rows(rows)
    blob = to_csv(table) if fmt == "csv" else parquet_bytes(text_table(table))
    portfolio, message = load(blob, f".{fmt}")
    assert portfolio is None, picks
    for i, column, _ in picks:
        assert f"line {i + 2} (loan_id 'L-{i + 1}'), column '{column}': " in message, (picks, message)


@FAST
@given(n=st.integers(1, 4), data=st.data())
def test_arbitrary_cells_load_or_fail_clearly(n, data):
    rows = base_rows(n)
    for i, column, value in data.draw(cell_mutations(n)):
        rows[i][column] = value
    fmt = data.draw(st.sampled_from(["csv", "parquet"]))
    table = table_rows(rows)
    blob = to_csv(table) if fmt == "csv" else parquet_bytes(text_table(table))
    portfolio, _ = load(blob, f".{fmt}")
    if portfolio is not None:
        assert_valid(portfolio)


@FAST
@given(data=st.data())
def test_header_damage(data):
    rows = base_rows(3)
    columns = list(COLUMNS)
    action = data.draw(st.sampled_from(["drop", "duplicate", "rename", "shuffle", "extra"]))
    victim = data.draw(st.sampled_from(COLUMNS))
    table = table_rows(rows)
    at = columns.index(victim)
    if action == "drop":
        table = [r[:at] + r[at + 1:] for r in table]
    elif action == "duplicate":
        table = [r + [r[at]] for r in table]
    elif action == "rename":
        new = data.draw(st.text(min_size=0, max_size=10).filter(lambda s: s.strip() not in COLUMNS))
        table[0][at] = new
    elif action == "shuffle":
        order = data.draw(st.permutations(range(len(columns))))
        table = [[r[j] for j in order] for r in table]
    else:
        table = [r + ["note" if k == 0 else "x"] for k, r in enumerate(table)]
    fmt = data.draw(st.sampled_from(["csv", "parquet"]))
    blob = to_csv(table) if fmt == "csv" else parquet_bytes(text_table(table))
    portfolio, message = load(blob, f".{fmt}")
    if action == "shuffle":
        assert portfolio is not None, message
        assert list(portfolio.loan_id) == ["L-1", "L-2", "L-3"]
    else:
        assert portfolio is None
        word = {"drop": "missing", "duplicate": "duplicated", "rename": "missing", "extra": "unknown"}[action]
        assert f"line 1 (header): {word} columns " in message and repr(victim if action != "extra" else "note") in message


@FAST
@given(n=st.integers(2, 6), data=st.data())
def test_duplicate_loan_ids_name_both_lines(n, data):
    rows = base_rows(n)
    i, j = sorted(data.draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True)))
    rows[j]["loan_id"] = data.draw(st.sampled_from([rows[i]["loan_id"], f" {rows[i]['loan_id']} "]))
    fmt = data.draw(st.sampled_from(["csv", "parquet"]))
    table = table_rows(rows)
    blob = to_csv(table) if fmt == "csv" else parquet_bytes(text_table(table))
    _, message = load(blob, f".{fmt}")
    assert f"line {j + 2} (loan_id 'L-{i + 1}'), column 'loan_id': duplicate of line {i + 2}" in message


@FAST
@given(blob=st.one_of(st.binary(max_size=600), st.binary(min_size=1, max_size=40).map(lambda b: b * 50)),
       suffix=st.sampled_from([".csv", ".txt", ".parquet", ".pq"]))
def test_binary_garbage(blob, suffix):
    portfolio, _ = load(blob, suffix)
    assert portfolio is None


@FAST
@given(data=st.data())
def test_damaged_files(data):
    """Truncated or bit-flipped versions of a valid CSV or Parquet tape."""
    rows = table_rows(base_rows(3))
    fmt = data.draw(st.sampled_from(["csv", "parquet"]))
    blob = bytearray(to_csv(rows) if fmt == "csv" else parquet_bytes(text_table(rows)))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    else:
        for _ in range(data.draw(st.integers(1, 8))):
            at = data.draw(st.integers(0, len(blob) - 1))
            blob[at] = data.draw(st.integers(0, 255))
    portfolio, _ = load(bytes(blob), f".{fmt}")
    if portfolio is not None:
        assert_valid(portfolio)


@FAST
@given(sep=st.sampled_from([";", "\t", "|"]), commas=st.booleans(), bom=st.booleans(), n=st.integers(1, 3))
def test_other_separators_and_decimal_commas_are_refused_clearly(sep, commas, bom, n):
    rows = base_rows(n)
    if commas:
        for row in rows:
            for c in ("rate", "power_price", "pue"):
                row[c] = row[c].replace(".", ",")
    blob = (b"\xef\xbb\xbf" if bom else b"") + to_csv(table_rows(rows), sep=sep)
    portfolio, message = load(blob, ".csv")
    assert portfolio is None
    word = {";": "';'", "\t": "tab", "|": "'|'"}[sep]
    assert f"TAPE: the file seems to use {word} separators" in message
    assert ("decimal comma" in message) == commas
    if commas:
        assert "line 2 (loan_id 'L-1'), column 'rate': decimal comma in '0,1'" in message


def test_decimal_comma_in_a_comma_separated_file():
    rows = base_rows(2)
    rows[1]["principal"] = "20000000,5"
    _, message = load(to_csv(table_rows(rows)), ".csv")
    assert ("line 3 (loan_id 'L-2'), column 'principal': must be a number with '.' as the decimal point "
            "and no thousands separators, got '20000000,5'") in message


@FAST
@given(bom=st.booleans(), newline=st.sampled_from(["\n", "\r\n", "\r"]), blank=st.booleans(),
       padding=st.booleans(), case=st.booleans())
def test_harmless_variations_load_identically(bom, newline, blank, padding, case):
    rows = table_rows(base_rows(3))
    reference, _ = load(to_csv(rows), ".csv")
    if padding:
        rows = [rows[0]] + [[f"  {c} " for c in r] for r in rows[1:]]
    if case:
        rows = [rows[0]] + [[c.upper() if k in (2, 7, 8) else c for k, c in enumerate(r)] for r in rows[1:]]
    text = to_csv(rows, newline=newline)
    if blank:
        text = text.replace(newline.encode(), (newline * 2).encode(), 1)
    portfolio, message = load((b"\xef\xbb\xbf" if bom else b"") + text, ".csv")
    assert portfolio is not None, message
    for name in COLUMNS:
        assert np.array_equal(getattr(portfolio, name), getattr(reference, name)), name


def test_empty_and_header_only_files():
    for suffix in (".csv", ".parquet"):
        assert load(b"", suffix)[1] == "TAPE: the file is empty"
    assert load(b"\xef\xbb\xbf", ".csv")[1] == "TAPE: the file is empty"
    assert load(to_csv(table_rows([])), ".csv")[1] == "TAPE: the tape has a header but no loans"
    assert load(parquet_bytes(text_table(table_rows([]))), ".parquet")[1] == "TAPE: the tape has a header but no loans"
    assert "UTF-16" in load(to_csv(table_rows(base_rows(1))).decode().encode("utf-16"), ".csv")[1]


# ------------------------------------------------------------------------------ Parquet types


def typed_column(kind: str, values: list[str], n: int) -> pa.Array:
    """The column's values stored as another Parquet type."""
    if kind == "float":
        out = []
        for v in values:
            try:
                out.append(float(v))
            except ValueError:
                out.append(None)
        return pa.array(out, pa.float64())
    if kind == "int":
        return pa.array([int(float(v)) if re.fullmatch(r"-?\d+(\.0+)?", v.strip()) else None for v in values],
                        pa.int64())
    if kind == "bool":
        return pa.array([i % 2 == 0 for i in range(n)], pa.bool_())
    if kind == "binary":
        return pa.array([v.encode() for v in values], pa.binary())
    if kind == "latin1":
        return pa.array([b"\xe9" + v.encode() for v in values], pa.binary())
    if kind == "timestamp":
        return pa.array([1_700_000_000_000_000 + i for i in range(n)], pa.timestamp("us"))
    if kind == "date_out_of_range":
        return pa.array([2**31 - 1] * n, pa.date32())
    if kind == "list":
        return pa.array([[1, 2]] * n, pa.list_(pa.int64()))
    if kind == "struct":
        return pa.array([{"a": 1}] * n, pa.struct([("a", pa.int64())]))
    if kind == "null":
        return pa.nulls(n)
    if kind == "dictionary":
        return pa.array(values, pa.string()).dictionary_encode()
    if kind == "decimal":
        from decimal import Decimal, InvalidOperation

        out = []
        for v in values:
            try:
                out.append(Decimal(v).quantize(Decimal("0.000001")))
            except (InvalidOperation, ValueError):
                out.append(None)
        return pa.array(out, pa.decimal128(38, 6))
    if kind == "huge_uint":
        return pa.array([2**64 - 1] * n, pa.uint64())
    if kind == "float_special":
        return pa.array([math.nan, math.inf, -math.inf, 1e308, -0.0][:n] + [1.0] * max(0, n - 5), pa.float64())
    return pa.array(values, pa.string())


PARQUET_KINDS = ["string", "float", "int", "bool", "binary", "latin1", "timestamp", "date_out_of_range", "list",
                 "struct", "null", "dictionary", "decimal", "huge_uint", "float_special"]


@FAST
@given(data=st.data(), n=st.integers(1, 4))
def test_parquet_column_types(data, n):
    rows = base_rows(n)
    changes = data.draw(st.dictionaries(st.sampled_from(COLUMNS), st.sampled_from(PARQUET_KINDS), min_size=1,
                                        max_size=4))
    columns = {}
    for c in COLUMNS:
        values = [r[c] for r in rows]
        columns[c] = typed_column(changes.get(c, "float" if c in NUMBER_COLUMNS and c != "balloon_pct"
                                               else "string"), values, n)
    portfolio, message = load(parquet_bytes(columns), ".parquet")
    benign = {"string", "float", "int", "binary", "dictionary", "decimal"}
    if portfolio is None:
        for c, kind in changes.items():
            if kind not in benign and c in NUMBER_COLUMNS and not (c == "balloon_pct" and kind == "null"):
                assert f"column '{c}'" in message, (changes, message)
    else:
        assert_valid(portfolio)
        assert all(kind in benign or c in TEXT_COLUMNS or (c == "balloon_pct" and kind == "null")
                   for c, kind in changes.items()), changes


# ------------------------------------------------------------------------------ extremes that must run

EXTREMES = st.fixed_dictionaries({}, optional={
    "gpus": st.sampled_from(["1", str(int(LIMITS["gpus"])), "123456"]),
    "principal": st.sampled_from(["1", "1.5", str(LIMITS["principal"]), "5e12"]),
    "rate": st.sampled_from(["0", "1e-17", "1e-9", "1", "0.999", "0.0001"]),
    "balloon_pct": st.sampled_from(["0", "0.999999", "1e-9"]),
    "tenor_months": st.sampled_from(["1", "2", "120"]),
    "age_months": st.sampled_from(["0", "600", "95"]),
    "contracted_share": st.sampled_from(["0", "1", "1e-12"]),
    "contract_price": st.sampled_from(["0", "1000", "1e-12"]),
    "contract_months": st.sampled_from(["0", "1200"]),
    "power_price": st.sampled_from(["0", "10"]),
    "pue": st.sampled_from(["1", "10"]),
    "opex_fixed": st.sampled_from(["0", "1e6"]),
    "reserve_months": st.sampled_from(["0", "600", "0.5"]),
    "dscr_min": st.sampled_from(["1e-9", "1e6"]),
    "ltv_max": st.sampled_from(["1e-9", "1e6"]),
    "pd_annual": st.sampled_from(["0", "1", "1e-12", "0.999999"]),
    "asset_corr": st.sampled_from(["0", "1", "0.999999"]),
    "amortization": st.sampled_from(["annuity", "linear", "bullet", "balloon"]),
    "rate_type": st.sampled_from(["fixed", "floating"]),
    "chip": st.sampled_from(CHIPS),
})


def _extreme_case(loans, fmt):
    rows = base_rows(len(loans))
    for row, extra in zip(rows, loans):
        row.update(extra)
        if row["amortization"] != "balloon":
            row["balloon_pct"] = ""
        elif not row["balloon_pct"]:
            row["balloon_pct"] = "0.5"
        if row["amortization"] == "bullet" and abs(float(row["rate"])) < 1e-6:
            row["rate"] = "0.1"  # open engine issue: test_invariants.py::test_dscr_of_a_loan_without_debt_service
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"tape.{fmt}"
        table = table_rows(rows)
        path.write_bytes(to_csv(table) if fmt == "csv" else parquet_bytes(text_table(table)))
        p = load_portfolio(path, CHIPS)
        assert_valid(p)
        tiny_run(p, path)


@RUNS
@given(loans=st.lists(EXTREMES, min_size=1, max_size=3), fmt=st.sampled_from(["csv", "parquet"]))
def test_extreme_but_valid_tapes_run(loans, fmt):
    _extreme_case(loans, fmt)


@pytest.mark.slow
@LONG_RUNS
@given(loans=st.lists(EXTREMES, min_size=1, max_size=4), fmt=st.sampled_from(["csv", "parquet"]))
def test_extreme_but_valid_tapes_run_long(loans, fmt):
    _extreme_case(loans, fmt)


@pytest.mark.slow
@LONG
@given(n=st.integers(1, 5), data=st.data())
def test_arbitrary_cells_long(n, data):
    test_arbitrary_cells_load_or_fail_clearly.hypothesis.inner_test(n, data)


@pytest.mark.slow
@LONG
@given(data=st.data())
def test_damaged_files_long(data):
    test_damaged_files.hypothesis.inner_test(data)


@pytest.mark.slow
@LONG
@given(data=st.data(), n=st.integers(1, 4))
def test_parquet_column_types_long(data, n):
    test_parquet_column_types.hypothesis.inner_test(data, n)


# ------------------------------------------------------------------------------ the command line

CLI_CASES = {
    "bad_cells": lambda: to_csv(table_rows([{**r, "rate": "abc"} for r in base_rows(2)])),
    "semicolons": lambda: to_csv(table_rows([{**r, "rate": r["rate"].replace(".", ",")} for r in base_rows(2)]),
                                 sep=";"),
    "binary": lambda: bytes(range(256)) * 8,
    "empty": lambda: b"",
    "huge_principal": lambda: to_csv(table_rows([{**r, "principal": "1e308"} for r in base_rows(1)])),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_refuses_bad_tapes_with_exit_code_2(tmp_path, case):
    path = tmp_path / "tape.csv"
    path.write_bytes(CLI_CASES[case]())
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "stress.cli", f"portfolio.path={path}", f"output.dir={out}",
                        "scenario=[baseline]", "tenors=[36]", "mc.paths=8"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.startswith(f"stress-test: error: {path}: ")
    assert not (out / "results.nc").exists()
