"""A self-contained HTML report of a results Dataset: run metadata, the scenarios in words, risk
tables with standard errors, per-loan results, the figures (embedded as base64 PNG) and, for each
scenario, a generated paragraph on what drives its loss. Every number comes from the Dataset;
every piece of text is HTML-escaped.
"""

from __future__ import annotations

import base64
import math
from html import escape
from pathlib import Path

import numpy as np
import xarray as xr

from . import plots
from .plots import (as_share, baseline_scenario, default_tenor, pct_label, portfolio_principal, reference_quantile,
                    run_config, sorted_tenors, tenor_label)

REPORT_NAME = "report.html"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1200px; padding: 1.5em 2em 4em; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 2px solid #ddd; padding-bottom: 0.2em; }
h3 { font-size: 1.08em; margin: 1.3em 0 0.3em; }
.subtitle { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.86em; }
th, td { border: 1px solid #d8d8d8; padding: 0.25em 0.6em; }
th { background: #f3f3f5; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.meta th { text-align: left; }
tr.first-of-group td { border-top: 2px solid #aaa; }
.table-wrap { overflow-x: auto; }
.note { color: #555; font-size: 0.9em; }
.scenario { margin-bottom: 1em; }
.scenario p { margin: 0.2em 0; }
ul.shocks { margin: 0.2em 0 0.2em 1.2em; padding: 0; }
p.driver { background: #fafafa; border-left: 4px solid #c0392b; padding: 0.5em 0.9em; margin: 0.4em 0 1em; }
figure { margin: 1.2em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9em; margin-top: 0.3em; }
details { margin: 1em 0; }
summary { cursor: pointer; font-weight: 600; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; font-size: 0.8em; line-height: 1.3; }
code { background: #f3f3f5; padding: 0 0.2em; }
"""

FIGURE_CAPTIONS = {
    "loss_distribution": "Histogram of the simulated portfolio loss per scenario and tenor on a logarithmic density "
                         "scale, so that the tail stays visible; dashed lines mark the value at risk and solid lines "
                         "the expected shortfall at each quantile level.",
    "risk_heatmap": "Expected loss and value at risk as a percentage of the portfolio principal, by scenario (rows) "
                    "and loan tenor (columns), with one Monte Carlo standard error below each value.",
    "price_fans": "Quantile fans of the simulated spot rental price of every chip family; dotted vertical lines "
                  "mark the scheduled launches of new GPU generations under each scenario (grey: launch-date "
                  "jitter).",
    "ltv_dscr_fans": "Quantile fans of the principal-weighted loan-to-value ratio and debt-service coverage ratio "
                     "of the loans still alive, for one tenor; the dashed lines mark LTV 100% and DSCR 1.",
    "defaults": "Cumulative share of portfolio principal in default by month, per tenor, and the causes of the "
                "defaults as stacked shares per scenario and tenor.",
    "loans": "Expected loss and probability of default of each loan, sorted by expected loss, for the baseline "
             "and the scenario with the highest expected loss.",
}


# ----------------------------------------------------------------------------- formatting

def _usd_m(v: float, digits: int = 1) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v / 1e6:,.{digits}f}"


def _pm(v: float, se: float, scale: float, digits: int = 1) -> str:
    """'v ± se' after dividing by ``scale``; '–' for NaN."""
    if v is None or not np.isfinite(v):
        return "–"
    out = f"{v / scale:,.{digits}f}"
    if se is not None and np.isfinite(se):
        out += f" ± {se / scale:,.{digits}f}"
    return out


def _pct(v: float, digits: int = 1) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v * 100:.{digits}f}%"


def _num(v: float, digits: int = 2) -> str:
    return f"{v:.{digits}f}".rstrip("0").rstrip(".") if abs(v - round(v)) > 1e-12 else f"{int(round(v))}"


def _ordinal_list(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _cell(text: str, num: bool = True) -> str:
    return f'<td class="num">{escape(text)}</td>' if num else f"<td>{escape(text)}</td>"


# ----------------------------------------------------------------------------- scenarios in words

PATH_SUBJECTS = {
    "demand": "The AI demand factor",
    "utilization": "Utilisation of uncontracted GPUs",
    "power_price": "Electricity prices",
    "base_rate": "The base rate (SOFR) of floating-rate loans",
    "haircut": "The distressed-sale haircut on repossessed GPUs",
}


def _timing(shock) -> str:
    start = int(shock.get("start_month", 1) or 1)
    ramp = int(shock.get("ramp_months", 0) or 0)
    end = shock.get("end_month")
    text = f", phased in over {ramp} months from month {start}" if ramp > 0 else f", from month {start}"
    if end is not None:
        text += f" until month {int(end)}, then removed"
    return text


def _launch_base(cfg, name: str, field: str):
    try:
        for launch in cfg.market.launches:
            if str(launch.name) == name:
                return float(launch[field])
    except Exception:  # noqa: BLE001
        pass
    return None


def describe_shock(shock, cfg=None) -> str:
    """One sentence for one shock (a mapping with target, kind, value, start_month, ramp_months,
    end_month), e.g. 'All chip prices ×0.60, phased in over 12 months from month 1.'"""
    target = str(shock.get("target", "?"))
    kind = str(shock.get("kind", "mul"))
    try:
        value = float(shock.get("value"))
    except (TypeError, ValueError):
        return f"{target}: {kind} {shock.get('value')!r}."
    parts = target.split(".")
    if parts[0] == "launch" and len(parts) == 3:
        name, field = parts[1], parts[2]
        base = _launch_base(cfg, name, field)
        new = None if base is None else plots._shocked_scalar([shock], target, base)
        if field == "month":
            if kind == "add":
                direction = "earlier" if value < 0 else "later"
                text = f"The {name} generation launches {_num(abs(value))} months {direction}"
            else:
                text = f"The {name} generation launch month is {'set to' if kind == 'set' else 'multiplied by'} " \
                       f"{_num(value)}"
            if base is not None:
                text += f" (month {_num(base)} → {_num(new)})"
            return text + "."
        if field == "step":
            if kind == "set":
                text = f"The {name} launch cuts older chips' rental prices by {value:.0%}"
            elif kind == "add":
                text = f"The {name} launch's price step on older chips changes by {value * 100:+.0f} percentage points"
            else:
                text = f"The {name} launch's price step on older chips is multiplied by {_num(value)}"
            if base is not None:
                text += f" (baseline step {base:.0%}" + (f", now {new:.0%})" if kind != "set" else ")")
            return text + "."
    if parts[0] == "price" and len(parts) == 2:
        subject = "All chip rental prices" if parts[1] == "all" else f"{parts[1]} rental prices"
        return f"{subject} {_path_effect(kind, 'price', value)}{_timing(shock)}."
    if target == "pd_multiplier":
        if kind == "mul":
            effect = f"×{value:.2f}"
        elif kind == "add":
            effect = f"multiplier {value:+.2f}"
        else:
            effect = f"multiplier set to {value:.2f}"
        return f"Exogenous (non-collateral) default probabilities {effect}, from the start."
    if target in PATH_SUBJECTS:
        return f"{PATH_SUBJECTS[target]} {_path_effect(kind, target, value)}{_timing(shock)}."
    verb = {"add": "plus", "mul": "times", "set": "set to"}.get(kind, kind)
    return f"{target} {verb} {_num(value)}{_timing(shock)}."


# How an add or a set shock on a path target reads ({v}: the value, {p}: the value in percent).
ADD_SET_WORDS = {
    "price": ("{v:+.2f} USD per GPU-hour", "set to {v:.2f} USD per GPU-hour"),
    "demand": ("shifted by {v:+.2f} standard deviations", "set to {v:+.2f} standard deviations"),
    "base_rate": ("{p:+.4g} percentage points", "set to {p:.4g}%"),
    "haircut": ("{p:+.4g} percentage points", "set to {p:.4g}%"),
    "power_price": ("{v:+.3f} USD per kWh", "set to {v:.3f} USD per kWh"),
}


def _path_effect(kind: str, target: str, value: float) -> str:
    """The effect of a shock on a price or path target, in words with units."""
    if kind == "mul":
        return f"×{value:.2f} ({value - 1:+.0%})"
    add, set_to = ADD_SET_WORDS.get(target, ("{v:+.2f}", "set to {v:.2f}"))
    return (add if kind == "add" else set_to).format(v=value, p=value * 100)


def scenario_definitions(ds: xr.Dataset) -> dict[str, tuple[str, list[str]]]:
    """scenario -> (description, shock sentences) from the stored config (empty when absent)."""
    cfg = run_config(ds)
    out = {}
    for s in (str(v) for v in ds.scenario.values):
        desc, shocks = "", []
        try:
            sc = cfg.scenario[s]
            desc = str(sc.get("description", "") or "")
            shocks = [describe_shock(sh, cfg) for sh in (sc.get("shocks") or [])]
        except Exception:  # noqa: BLE001 - no or foreign config: the scenario is shown by name only
            pass
        out[s] = (desc, shocks)
    return out


# ----------------------------------------------------------------------------- driver paragraphs

def driver_paragraph(ds: xr.Dataset, scenario: str, top: int = 3) -> str:
    """Plain-text paragraph on what drives ``scenario``'s loss, computed from the Dataset."""
    principal = portfolio_principal(ds)
    k = default_tenor(ds)
    tenors = sorted_tenors(ds)
    base = baseline_scenario(ds)
    el_all = ds["expected_loss"].sel(scenario=scenario)
    el = float(el_all.sel(tenor=k))
    sentences = [f"At {tenor_label(k)}, the expected loss is {_usd_m(el)} USD m "
                 f"({_pct(float(as_share(el, principal)))} of principal)"]
    if scenario != base:
        el_base = float(ds["expected_loss"].sel(scenario=base, tenor=k))
        if el_base > 0:
            sentences[-1] += f", {el / el_base:.1f} times the {base} scenario's"
        rel = np.abs(el_all.values - ds["expected_loss"].sel(scenario=base).values) / \
            np.maximum(np.abs(ds["expected_loss"].sel(scenario=base).values), 1e-9)
        if np.all(rel < 0.01):
            sentences[-1] += (f"; it stays within 1% of the {base} scenario at every tenor, so this shock "
                              "barely moves the losses of this portfolio")
    sentences[-1] += "."

    loan_el = ds["el"].sel(scenario=scenario, tenor=k)
    total = float(loan_el.sum())
    if total > 0 and np.isfinite(total):
        order = np.argsort(-np.nan_to_num(loan_el.values, nan=0.0), kind="stable")[:top]
        names = [str(ds.loan.values[i]) for i in order]
        shares = [float(loan_el.values[i]) / total for i in order]
        parts = [f"{n} ({sh:.0%} of EL)" for n, sh in zip(names, shares)]
        sentences.append(f"The largest contributors are {_ordinal_list(parts)}; together these {len(names)} of "
                         f"{ds.sizes['loan']} loans carry {sum(shares):.0%} of the expected loss.")
        if scenario != base:
            diff = loan_el - ds["el"].sel(scenario=base, tenor=k)
            i = int(np.nanargmax(np.abs(diff.values)))
            d = float(diff.values[i])
            if abs(d) > 0.005 * max(total, 1.0):
                sentences.append(f"The largest change from the {base} scenario is in {ds.loan.values[i]} "
                                 f"({'+' if d > 0 else '−'}{_usd_m(abs(d))} USD m).")
    else:
        sentences.append("No loan loses anything on any path at this tenor.")

    share = ds["default_share"].sel(scenario=scenario, tenor=k)
    if np.isfinite(share.values).any():
        order = np.argsort(-np.nan_to_num(share.values, nan=0.0))
        main = str(ds.cause.values[order[0]])
        text = f"Most defaults are {main} defaults ({float(share.values[order[0]]):.0%} of defaulted loans)"
        if len(order) > 1 and float(share.values[order[1]]) >= 0.05:
            text += f", followed by {ds.cause.values[order[1]]} ({float(share.values[order[1]]):.0%})"
        pd_mean = float(ds["pd"].sel(scenario=scenario, tenor=k).mean())
        sentences.append(text + f"; the loans' average probability of default is {pd_mean:.0%}.")
    else:
        sentences.append("No loan defaults on any path at this tenor.")

    if len(tenors) >= 2:
        lo, hi = tenors[0], tenors[-1]
        e_lo, e_hi = float(el_all.sel(tenor=lo)), float(el_all.sel(tenor=hi))
        s_lo, s_hi = float(as_share(e_lo, principal)), float(as_share(e_hi, principal))
        if not (np.isfinite(s_lo) and np.isfinite(s_hi)):
            pass
        elif abs(e_hi - e_lo) <= 0.01 * max(abs(e_lo), abs(e_hi), 1.0):
            sentences.append(f"The tenor hardly matters: EL is {_pct(s_lo)} of principal at {tenor_label(lo)} "
                             f"and {_pct(s_hi)} at {tenor_label(hi)}.")
        else:
            verb = "rises" if e_hi > e_lo else "falls"
            ratio = f" ({e_hi / e_lo:.1f} times)" if e_lo > 0 and e_hi > e_lo else ""
            sentences.append(f"Tenor effect: EL {verb} from {_pct(s_lo)} of principal at {tenor_label(lo)} "
                             f"to {_pct(s_hi)} at {tenor_label(hi)}{ratio}.")
    else:
        sentences.append(f"Only one tenor ({tenor_label(tenors[0])}) was run, so there is no tenor comparison.")
    return " ".join(sentences)


# ----------------------------------------------------------------------------- sections

def _meta_section(ds: xr.Dataset) -> str:
    a = ds.attrs
    principal = portfolio_principal(ds)
    rows = [
        ("created", a.get("created")),
        ("backend", a.get("backend")),
        ("precision", a.get("precision")),
        ("Monte Carlo paths", a.get("paths", ds.sizes.get("path"))),
        ("seed", a.get("seed")),
        ("package version", a.get("package_version")),
        ("kernel hash", a.get("kernel_hash")),
        ("portfolio", a.get("portfolio")),
        ("results file", a.get("written_to")),
        ("valuation date", plots._valuation_date(ds) or None),
        ("scenarios", ", ".join(str(s) for s in ds.scenario.values)),
        ("tenors", ", ".join(tenor_label(k) for k in sorted_tenors(ds))),
        ("loans", ds.sizes.get("loan")),
        ("portfolio principal", None if not math.isfinite(principal) else f"{principal / 1e6:,.1f} USD m"),
        ("risk quantiles", ", ".join(pct_label(q) for q in ds["quantile"].values)),
    ]
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows if v not in (None, ""))
    return f'<h2 id="run">Run</h2>\n<table class="meta">{body}</table>'


def _scenario_section(ds: xr.Dataset) -> str:
    out = ['<h2 id="scenarios">Scenarios</h2>']
    for s, (desc, shocks) in scenario_definitions(ds).items():
        out.append(f'<div class="scenario"><h3>{escape(s)}</h3>')
        if desc:
            out.append(f"<p>{escape(desc)}</p>")
        if shocks:
            out.append('<ul class="shocks">' + "".join(f"<li>{escape(t)}</li>" for t in shocks) + "</ul>")
        elif desc:
            out.append('<p class="note">No shocks: the baseline market.</p>')
        else:
            out.append('<p class="note">No scenario definition in the stored configuration.</p>')
        out.append("</div>")
    return "\n".join(out)


def _summary_table(ds: xr.Dataset, in_pct: bool) -> str:
    principal = portfolio_principal(ds)
    qs = [float(q) for q in ds["quantile"].values]
    if in_pct:
        scale = principal / 100 if math.isfinite(principal) and principal > 0 else math.nan
        unit, tid = "% of portfolio principal", "summary-pct"
    else:
        scale, unit, tid = 1e6, "USD m", "summary-usd"
    head = ["scenario", "tenor", "EL"] + [f"VaR {pct_label(q)}" for q in qs] + [f"ES {pct_label(q)}" for q in qs]
    rows = []
    for s in (str(v) for v in ds.scenario.values):
        for n, k in enumerate(sorted_tenors(ds)):
            c = ds.sel(scenario=s, tenor=k)
            vals = [(float(c["expected_loss"]), float(c["expected_loss_se"]))]
            vals += [(float(c["var"].sel(quantile=q)), float(c["var_se"].sel(quantile=q))) for q in qs]
            vals += [(float(c["es"].sel(quantile=q)), float(c["es_se"].sel(quantile=q))) for q in qs]
            if math.isnan(scale):  # principal unknown: only all-zero losses are shown (as 0)
                cells = ["0.0" if v == 0 else "–" for v, _ in vals]
            else:
                cells = [_pm(v, e, scale, 2 if in_pct else 1) for v, e in vals]
            cls = ' class="first-of-group"' if n == 0 else ""
            rows.append(f"<tr{cls}>" + _cell(s, False) + _cell(tenor_label(k), False)
                        + "".join(_cell(t) for t in cells) + "</tr>")
    thead = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"
    caption = f"Portfolio loss, {unit} (± 1 Monte Carlo standard error; {ds.sizes['path']:,} paths)"
    return (f'<div class="table-wrap"><table id="{tid}"><caption>{escape(caption)}</caption>'
            f"<thead>{thead}</thead><tbody>{''.join(rows)}</tbody></table></div>")


def _loan_table(ds: xr.Dataset) -> str:
    s = baseline_scenario(ds)
    tenors = sorted_tenors(ds)
    k_sort = default_tenor(ds)
    el_sort = ds["el"].sel(scenario=s, tenor=k_sort)
    order = np.argsort(-np.nan_to_num(el_sort.values, nan=0.0), kind="stable")
    head1 = '<tr><th rowspan="2">loan</th>' + "".join(
        f'<th colspan="4">{escape(tenor_label(k))}</th>' for k in tenors) + "</tr>"
    head2 = "<tr>" + "".join("<th>PD</th><th>LGD</th><th>EL (USD m)</th><th>EL share</th>" for _ in tenors) + "</tr>"
    totals = {k: float(ds["el"].sel(scenario=s, tenor=k).sum()) for k in tenors}
    per_loan = {(name, k): ds[name].sel(scenario=s, tenor=k).transpose("loan").values  # one lookup, not one per loan
                for name in ("el", "pd", "lgd") for k in tenors}
    loans = ds.loan.values
    rows = []
    for i in order:
        cells = [_cell(str(loans[i]), False)]
        for k in tenors:
            el = float(per_loan["el", k][i])
            share = el / totals[k] if totals[k] > 0 else math.nan
            cells += [_cell(_pct(float(per_loan["pd", k][i]))), _cell(_pct(float(per_loan["lgd", k][i]), 0)),
                      _cell(_usd_m(el, 2)), _cell(_pct(share))]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    total_row = "<tr><th>portfolio</th>" + "".join(
        f'<td class="num"></td><td class="num"></td><td class="num"><b>{escape(_usd_m(totals[k], 2))}</b></td>'
        f'<td class="num">100%</td>' for k in tenors) + "</tr>"
    caption = (f"Per-loan results, {s} scenario: probability of default by maturity, mean loss given default "
               f"(– = never defaulted), expected loss and its share of the portfolio EL; sorted by EL at "
               f"{tenor_label(k_sort)}")
    return (f'<div class="table-wrap"><table id="loans"><caption>{escape(caption)}</caption>'
            f"<thead>{head1}{head2}</thead><tbody>{''.join(rows)}{total_row}</tbody></table></div>")


def _figure_section(pngs: dict[str, bytes]) -> str:
    out = ['<h2 id="figures">Figures</h2>']
    for name, data in pngs.items():
        title = plots.FIGURES[name][1] if name in plots.FIGURES else name
        b64 = base64.b64encode(data).decode("ascii")
        out.append(f'<figure id="fig-{escape(name)}"><h3>{escape(title)}</h3>'
                   f'<img src="data:image/png;base64,{b64}" alt="{escape(title)}">'
                   f"<figcaption>{escape(FIGURE_CAPTIONS.get(name, ''))}</figcaption></figure>")
    return "\n".join(out)


def render_html(ds: xr.Dataset, pngs: dict[str, bytes] | None = None) -> str:
    """The report as one HTML string (figures rendered unless given as PNG bytes by name)."""
    pngs = plots.figure_pngs(ds) if pngs is None else pngs
    title = str(ds.attrs.get("title") or "GPU-collateral credit stress test")
    q = reference_quantile(ds)
    drivers = ['<h2 id="drivers">What drives the loss</h2>',
               f'<p class="note">Loan contributions, default causes and PD at {escape(tenor_label(default_tenor(ds)))};'
               " the tenor effect compares the shortest and the longest tenor.</p>"]
    for s in (str(v) for v in ds.scenario.values):
        drivers.append(f"<h3>{escape(s)}</h3>"
                       f'<p class="driver" data-scenario="{escape(s)}">{escape(driver_paragraph(ds, s))}</p>')
    config_yaml = str(ds.attrs.get("config") or "(not stored in this dataset)")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="subtitle">{escape(str(ds.sizes["scenario"]))} scenarios × {escape(str(ds.sizes["tenor"]))} '
        f'tenors × {escape(str(ds.sizes["loan"]))} loans, {ds.sizes["path"]:,} Monte Carlo paths; '
        f'created {escape(str(ds.attrs.get("created", "?")))}</p>',
        '<p class="note">Contents: <a href="#run">run</a> · <a href="#scenarios">scenarios</a> · '
        '<a href="#summary">loss summary</a> · <a href="#drivers">drivers</a> · <a href="#figures">figures</a> · '
        '<a href="#loans-section">loans</a> · <a href="#config">configuration</a></p>',
        _meta_section(ds),
        _scenario_section(ds),
        '<h2 id="summary">Loss summary</h2>',
        f'<p class="note">EL: expected loss. VaR q: the q-quantile of the portfolio loss. ES q: the mean loss beyond '
        f"VaR q. The {escape(pct_label(q))} columns are the headline tail measures.</p>",
        _summary_table(ds, in_pct=False),
        _summary_table(ds, in_pct=True),
        "\n".join(drivers),
        _figure_section(pngs),
        '<h2 id="loans-section">Loans</h2>',
        _loan_table(ds),
        '<h2 id="config">Configuration</h2>',
        f"<details><summary>Resolved configuration (YAML)</summary><pre>{escape(config_yaml)}</pre></details>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(ds: xr.Dataset, out_dir, pngs: dict[str, bytes] | None = None) -> Path:
    """Write ``out_dir/report.html`` (atomically, replacing an existing one) and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_NAME
    plots.write_atomic(path, render_html(ds, pngs).encode("utf-8"))
    return path


def output_paths(out_dir) -> list[Path]:
    """Every file write_all writes into ``out_dir``."""
    out = Path(out_dir)
    return [out / plots.figure_filename(n) for n in plots.FIGURES] + [out / REPORT_NAME]


def write_all(ds: xr.Dataset, out_dir) -> list[Path]:
    """Figures (PNG) and the HTML report into ``out_dir``, rendering each figure once."""
    pngs = plots.figure_pngs(ds)
    return plots.write_figures(ds, out_dir, pngs) + [write_report(ds, out_dir, pngs)]
