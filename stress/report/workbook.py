"""The committee workbook (``stress-report --xlsx``): an Excel file with the loss summary, per-loan
PD, LGD and EL by scenario and tenor, the tranches and the offtakers (when the run has them), the
scenario definitions and the run metadata, one sheet each. Every number is the dataset's own, unrounded (USD as USD, shares as fractions shown in
percent; openpyxl writes 16 significant digits, Excel keeps 15); every column header names its
unit. Text from user data is written as plain strings, never as formulas.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import xarray as xr

from ..results import tables
from . import figures
from .fans import run_config
from .narrative import describe_shock, loan_attributes, run_metadata, scenario_definitions
from .style import pct_label, sorted_tenors

WORKBOOK_NAME = "committee_pack.xlsx"
USD, SHARE, MONTHS = "#,##0", "0.00%", "0"  # number formats
TENOR_HEADER = "tenor (months; 0 = each loan's tape tenor)"


def summary_rows(ds: xr.Dataset) -> tuple[list[tuple[str, str]], list[list]]:
    """(header, format) pairs and rows of the summary sheet: EL, VaR and ES with their standard errors."""
    qs = [float(q) for q in ds["quantile"].values]
    cols = [("scenario", ""), (TENOR_HEADER, MONTHS), ("EL (USD)", USD), ("EL standard error (USD)", USD),
            ("EL (share of portfolio principal)", SHARE)]
    for what in ("VaR", "ES"):
        for q in qs:
            cols += [(f"{what} {pct_label(q)} (USD)", USD), (f"{what} {pct_label(q)} standard error (USD)", USD)]
    principal = figures.portfolio_principal(ds)
    rows = []
    for s in (str(v) for v in ds.scenario.values):
        for k in sorted_tenors(ds):
            c = ds.sel(scenario=s, tenor=k)
            el = float(c["expected_loss"])
            row = [s, k, el, float(c["expected_loss_se"]), float(figures.as_share(el, principal))]
            for v in ("var", "es"):
                for q in qs:
                    row += [float(c[v].sel(quantile=q)), float(c[f"{v}_se"].sel(quantile=q))]
            rows.append(row)
    return cols, rows


def loan_rows(ds: xr.Dataset) -> tuple[list[tuple[str, str]], list[list]]:
    """Header and rows of the loan sheet: one row per scenario, tenor and loan."""
    cols = [("scenario", ""), (TENOR_HEADER, MONTHS), ("loan", ""), ("borrower", ""), ("chip", ""),
            ("principal (USD)", USD), ("PD by maturity (share)", SHARE),
            ("LGD, mean given default (share; blank = never defaulted)", SHARE), ("EL (USD)", USD),
            ("EL (share of the portfolio EL)", SHARE)]
    info = loan_attributes(ds)
    loans = [str(v) for v in ds.loan.values]
    rows = []
    for s in (str(v) for v in ds.scenario.values):
        for k in sorted_tenors(ds):
            c = ds.sel(scenario=s, tenor=k)
            pd_, lgd, el = c["pd"].values, c["lgd"].values, c["el"].values
            total = float(el.sum())
            for i, loan in enumerate(loans):
                rows.append([s, k, loan, info["borrower"][i], info["chip"][i], float(info["principal"][i]),
                             float(pd_[i]), float(lgd[i]), float(el[i]), float(el[i]) / total if total > 0 else None])
    return cols, rows


def tranche_sheet_rows(ds: xr.Dataset) -> tuple[list[tuple[str, str]], list[list]]:
    """Header and rows of the tranche sheet: one row per facility, scenario, tenor and tranche, with
    VaR and ES at every quantile and the facility's sponsor equity (when the run has cures)."""
    qs = [float(q) for q in ds["quantile"].values]
    rows = tables.tranche_rows(ds, qs, sorted_tenors(ds))
    equity = rows[0]["equity_cure"] is not None
    cols = [("scenario", ""), (TENOR_HEADER, MONTHS), ("facility", ""), ("tranche", ""),
            ("attachment A (share of facility principal)", SHARE), ("detachment D (share of facility principal)", SHARE),
            ("tranche size (D - A) x facility principal (USD)", USD), ("EL (USD)", USD),
            ("EL standard error (USD)", USD), ("EL (share of tranche size)", SHARE)]
    for what in ("VaR", "ES"):
        for q in qs:
            cols += [(f"{what} {pct_label(q)} (USD)", USD), (f"{what} {pct_label(q)} standard error (USD)", USD)]
    cols += [("probability of any loss (share)", SHARE), ("implied rating (Moody's idealised default rates)", ""),
             ("rating horizon (months)", MONTHS)]
    if equity:
        cols += [("sponsor equity injected in the facility (USD; per facility, repeated on its tranches)", USD),
                 ("sponsor equity lost in the facility (USD; per facility, repeated on its tranches)", USD)]
    out = []
    for r in rows:
        row = [r["scenario"], r["tenor"], r["facility"], r["tranche"], r["attachment"], r["detachment"], r["size"],
               r["el"], r["el_se"], r["el_share"]]
        row += [x for what in ("var", "es") for q in qs for x in r[what][q]]
        row += [r["pd"], r["rating"], r["horizon"]] + ([r["equity_cure"], r["equity_lost"]] if equity else [])
        out.append(row)
    return cols, out


def offtaker_sheet_rows(ds: xr.Dataset) -> tuple[list[tuple[str, str]], list[list]]:
    """Header and rows of the offtaker sheet: one row per scenario, tenor and offtaker."""
    cols = [("scenario", ""), (TENOR_HEADER, MONTHS), ("offtaker", ""),
            ("share of contracted revenue at the valuation date (share)", SHARE), ("EL of its loans (USD)", USD),
            ("PD of its loans (share)", SHARE), ("default probability of the offtaker (share)", SHARE)]
    rows, _ = tables.offtaker_rows(ds, sorted_tenors(ds))
    return cols, [[r["scenario"], r["tenor"], r["offtaker"], r["revenue_share"], r["el"], r["pd"], r["default_prob"]]
                  for r in rows]


def scenario_rows(ds: xr.Dataset) -> tuple[list[tuple[str, str]], list[list]]:
    """Header and rows of the scenario sheet: each shock of each scenario, in words and as configured."""
    cols = [("scenario", ""), ("description", ""), ("shock in words", ""), ("target", ""), ("kind (add | mul | set)", ""),
            ("value (unit of the target; demand: standard deviations)", ""), ("start month", MONTHS),
            ("ramp (months)", MONTHS), ("end month (blank = to the end)", MONTHS)]
    cfg = run_config(ds)
    rows = []
    for s, (desc, _) in scenario_definitions(ds).items():
        try:
            shocks = list(cfg.scenario[s].get("shocks") or [])
        except Exception:  # noqa: BLE001 - no or foreign config: the scenario by name only
            shocks = []
        if not shocks:
            rows.append([s, desc, "no shocks: the baseline market" if desc else "", None, None, None, None, None, None])
        for sh in shocks:
            rows.append([s, desc, describe_shock(sh, cfg), str(sh.get("target")), str(sh.get("kind", "mul")),
                         _number(sh.get("value")), _number(sh.get("start_month", 1)),
                         _number(sh.get("ramp_months", 0)), _number(sh.get("end_month"))])
    return cols, rows


def _number(v):
    """A config value as a float for the sheet (None stays blank; text stays text)."""
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return str(v)


def _value(v):
    """None and NaN become empty cells; numpy scalars become Python numbers."""
    if v is None:
        return None
    if isinstance(v, (float, np.floating)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    return v


def _sheet(wb, title: str, note: str, cols: list[tuple[str, str]], rows: list[list]) -> None:
    """One sheet: a note on row 1 (what and in which units), headers on row 2, data below."""
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    ws = wb.create_sheet(title)
    for i, (head, _) in enumerate(cols):
        ws.column_dimensions[get_column_letter(i + 1)].width = max(10, min(len(head) + 2, 42))
    ws.freeze_panes = "A3"
    cell = _text(ws, note)
    cell.font = Font(italic=True)
    ws.append([cell])
    heads = []
    for head, _ in cols:
        c = _text(ws, head)
        c.font = Font(bold=True)
        heads.append(c)
    ws.append(heads)
    formats = [fmt for _, fmt in cols]
    for row in rows:
        out = []
        for v, fmt in zip(row, formats):
            v = _value(v)
            if fmt and isinstance(v, (int, float)):
                c = WriteOnlyCell(ws, value=v)
                c.number_format = fmt
                out.append(c)
            elif isinstance(v, str):
                out.append(_text(ws, v))
            else:
                out.append(v)
        ws.append(out)


def _text(ws, text: str):
    """A cell holding ``text`` as a string, never a formula ('=...' from a loan id stays text), with
    the control characters that XML cannot carry replaced by U+FFFD."""
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    c = WriteOnlyCell(ws, value=ILLEGAL_CHARACTERS_RE.sub("\ufffd", text))
    c.data_type = "s"
    return c


def workbook_bytes(ds: xr.Dataset) -> bytes:
    """The committee workbook as .xlsx bytes."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    paths = f"{ds.sizes['path']:,} Monte Carlo paths"
    _sheet(wb, "summary", f"Portfolio loss by scenario and tenor, USD ({paths}); shares of the portfolio principal "
                          "shown in percent", *summary_rows(ds))
    _sheet(wb, "loans", "Per-loan results by scenario and tenor: PD and LGD as shares (shown in percent), "
                        "principal and EL in USD", *loan_rows(ds))
    if tables.has_tranches(ds):
        _sheet(wb, "tranches", f"Tranches by facility, scenario and tenor, USD ({paths}); attachment, detachment, "
                               "EL per tranche size and probabilities as shares (shown in percent)",
               *tranche_sheet_rows(ds))
    if tables.has_offtakers(ds):
        _sheet(wb, "offtakers", "Offtakers by scenario and tenor, largest revenue share first: EL in USD, shares and "
                                "probabilities shown in percent", *offtaker_sheet_rows(ds))
    _sheet(wb, "scenarios", "Scenario definitions: each shock in words and as configured (months after the "
                            "valuation date)", *scenario_rows(ds))
    _sheet(wb, "run", "Run metadata (units as stated in each value)", [("item", ""), ("value", "")],
           [list(r) for r in run_metadata(ds)])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def write_workbook(ds: xr.Dataset, path) -> Path:
    """Write the workbook to ``path`` atomically (the caller checks that it may replace a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figures.write_atomic(path, workbook_bytes(ds))
    return path
