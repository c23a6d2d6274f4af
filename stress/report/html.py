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

from ..errors import OutputError
from ..results import metrics, tables
from .figures import (FIGURES, figure_filename, figure_pngs, portfolio_principal, reference_quantile, write_atomic,
                      write_figures)
from .narrative import driver_paragraph, loan_attributes, pct, run_metadata, scenario_definitions, usd_m
from .style import baseline_scenario, default_tenor, pct_label, sorted_tenors, tenor_label

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
                         "the expected shortfall, one colour per quantile level.",
    "risk_heatmap": "Expected loss and value at risk as a percentage of the portfolio principal, by scenario (rows) "
                    "and loan tenor (columns), with one Monte Carlo standard error below each value; a * marks a figure "
                    "whose standard error exceeds 10% of it (more paths needed).",
    "price_fans": "Simulated spot rental price of each chip family: the baseline's quantile bands and every "
                  "scenario's median; dotted vertical lines mark the baseline's launches of new GPU generations "
                  "(grey: launch-date jitter), triangles the launches a scenario moves. A scenario whose median "
                  "is another's is named in the legend.",
    "ltv_dscr_fans": "Quantile fans of the principal-weighted loan-to-value ratio and debt-service coverage ratio "
                     "of the loans still alive, for one tenor, with each loan group's covenant level from the tape; "
                     "beside them the share of principal still live and in default (the fans speak for the live "
                     "share only).",
    "defaults": "Cumulative share of portfolio principal in default by month, per tenor (scenarios with the same "
                "curve are named in the legend), and the causes of the defaults as stacked shares per scenario "
                "and tenor.",
    "loans": "Expected loss and probability of default of each loan at every tenor, sorted by expected loss, for "
             "the baseline and the scenario with the highest expected loss; in a large book the loans beyond the "
             "largest 30 share one bar.",
}


def _pm(v: float, se: float, scale: float, digits: int = 1) -> str:
    """'v ± se' after dividing by ``scale`` ('± < 0.05' for an SE that rounds to 0), 'v* ± se' where
    the SE exceeds ``metrics.NOISY_SHARE`` of v; '–' for NaN."""
    if v is None or not np.isfinite(v):
        return "–"
    out = f"{v / scale:,.{digits}f}" + ("*" if metrics.noisy(v, se) else "")
    if se is not None and np.isfinite(se):
        out += f" ± {metrics.se_text(se / scale, digits)}"
    return out


def _cell(text: str, num: bool = True) -> str:
    return f'<td class="num">{escape(text)}</td>' if num else f"<td>{escape(text)}</td>"


def _meta_section(ds: xr.Dataset) -> str:
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in run_metadata(ds))
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
    paths, share = ds.sizes["path"], metrics.NOISY_SHARE
    need = [metrics.noise_flags(paths, [(float(v), float(e))])[1]
            for name in ("expected_loss", "var", "es") for v, e in zip(ds[name].values.ravel(), ds[f"{name}_se"].values.ravel())]
    need = max((n for n in need if n is not None), default=None)
    caption = (f"Portfolio loss, {unit} (± 1 Monte Carlo standard error; {paths:,} paths)"
               + (f"; * noisy: standard error above {share:.0%} of the figure, about {need:,} paths would bring "
                  f"every figure within it (SE shrinks as 1/sqrt(paths))" if need else ""))
    return (f'<div class="table-wrap"><table id="{tid}"><caption>{escape(caption)}</caption>'
            f"<thead>{thead}</thead><tbody>{''.join(rows)}</tbody></table></div>")


def _loan_table(ds: xr.Dataset) -> str:
    s = baseline_scenario(ds)
    tenors = sorted_tenors(ds)
    k_sort = default_tenor(ds)
    order = np.argsort(-np.nan_to_num(ds["el"].sel(scenario=s, tenor=k_sort).values, nan=0.0), kind="stable")
    info = loan_attributes(ds)
    cell = ds.sel(scenario=s, tenor=tenors)
    pd_, lgd, el = (cell[v].transpose("tenor", "loan").values for v in ("pd", "lgd", "el"))
    totals = el.sum(axis=1)
    shares = el / np.where(totals > 0, totals, np.nan)[:, None]
    fixed = '<th rowspan="2">loan</th><th rowspan="2">borrower</th><th rowspan="2">chip</th>' \
            '<th rowspan="2">principal (USD m)</th>'
    head1 = f"<tr>{fixed}" + "".join(f'<th colspan="4">{escape(tenor_label(k))}</th>' for k in tenors) + "</tr>"
    head2 = "<tr>" + "".join("<th>PD</th><th>LGD</th><th>EL (USD m)</th><th>EL share</th>" for _ in tenors) + "</tr>"
    rows = []
    for i in order:
        cells = [_cell(str(ds.loan.values[i]), False), _cell(info["borrower"][i], False), _cell(info["chip"][i], False),
                 _cell(usd_m(info["principal"][i]))]
        for t in range(len(tenors)):
            cells += [_cell(pct(pd_[t, i])), _cell(pct(lgd[t, i], 0)), _cell(usd_m(el[t, i], 2)),
                      _cell(pct(shares[t, i]))]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    total_row = ('<tr><th>portfolio</th><td></td><td></td>'
                 f'<td class="num"><b>{escape(usd_m(float(np.nansum(info["principal"]))))}</b></td>') + "".join(
        f'<td class="num"></td><td class="num"></td><td class="num"><b>{escape(usd_m(float(t), 2))}</b></td>'
        f'<td class="num">100%</td>' for t in totals) + "</tr>"
    caption = (f"Per-loan results, {s} scenario: probability of default by maturity, mean loss given default "
               f"(– = never defaulted), expected loss and its share of the portfolio EL; sorted by EL at "
               f"{tenor_label(k_sort)}")
    return (f'<div class="table-wrap"><table id="loans"><caption>{escape(caption)}</caption>'
            f"<thead>{head1}{head2}</thead><tbody>{''.join(rows)}{total_row}</tbody></table></div>")


def _tranche_section(ds: xr.Dataset) -> str:
    """The tranches by facility, scenario and tenor; the sponsor's equity of each facility beside its
    tranches (one cell over them: it is not a tranche's)."""
    q = reference_quantile(ds)
    rows = tables.tranche_rows(ds, [q], sorted_tenors(ds))
    equity = rows[0]["equity_cure"] is not None
    head = ["tranche", "A–D (share of facility principal)", "size (USD m)", "scenario", "tenor", "EL (USD m)",
            "EL (% of tranche size)", f"VaR {pct_label(q)} (USD m)", "PD (any loss)", "implied rating (horizon)"]
    head += ["sponsor equity injected (USD m)", "sponsor equity lost (USD m)"] if equity else []
    body = []
    for r in rows:
        cls = ' class="first-of-group"' if r["first"] else ""
        cells = [_cell(r["tranche"], False), _cell(f"{pct_label(r['attachment'])}–{pct_label(r['detachment'])}"),
                 _cell(usd_m(r["size"])), _cell(r["scenario"], False), _cell(tenor_label(r["tenor"]), False),
                 _cell(_pm(r["el"], r["el_se"], 1e6, 2)), _cell(pct(r["el_share"], 2)),
                 _cell(_pm(*r["var"][q], 1e6, 2)), _cell(pct(r["pd"], 2)),
                 _cell(f"{r['rating']} ({tenor_label(r['horizon'])})", False)]
        if equity and r["first"]:
            span = sum(1 for x in rows if (x["facility"], x["scenario"], x["tenor"]) ==
                       (r["facility"], r["scenario"], r["tenor"]))
            cells += [f'<td class="num" rowspan="{span}">{escape(usd_m(r[n], 2))}</td>'
                      for n in ("equity_cure", "equity_lost")]
        body.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    caption = (f"Tranches of each facility ({ds.sizes['path']:,} paths): EL ± 1 Monte Carlo standard error, EL as a "
               "share of the tranche size (D − A) × facility principal, VaR of the tranche loss, probability that "
               "the tranche loses anything, and the implied rating: the best rating whose Moody's idealised "
               "cumulative default rate at the horizon (the longest tenor of the facility's loans) is at least that "
               "probability" + ("; the sponsor's equity injected by cures into the facility's loans, and the part "
                                "lost in loans that later defaulted (never lender loss)" if equity else ""))
    thead = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"
    return (f'<h2 id="tranches">Tranches</h2>\n<div class="table-wrap"><table id="tranches-table">'
            f"<caption>{escape(caption)}</caption><thead>{thead}</thead><tbody>{''.join(body)}</tbody></table></div>")


def _offtaker_section(ds: xr.Dataset) -> str:
    """Every offtaker by scenario and tenor, largest share of contracted revenue first."""
    rows, _ = tables.offtaker_rows(ds, sorted_tenors(ds))
    head = ["offtaker", "share of contracted revenue", "scenario", "tenor", "EL of its loans (USD m)",
            "PD of its loans", "default probability of the offtaker"]
    body = []
    for n, r in enumerate(rows):
        new = n == 0 or (r["scenario"], r["tenor"]) != (rows[n - 1]["scenario"], rows[n - 1]["tenor"])
        body.append(("<tr class=\"first-of-group\">" if new else "<tr>") + "".join([
            _cell(r["offtaker"], False), _cell(pct(r["revenue_share"])), _cell(r["scenario"], False),
            _cell(tenor_label(r["tenor"]), False), _cell(usd_m(r["el"], 2)), _cell(pct(r["pd"], 2)),
            _cell(pct(r["default_prob"], 2))]) + "</tr>")
    caption = ("Offtakers of the loans' contracted revenue, largest first: their share of the contracted revenue "
               "at the valuation date, the expected loss and probability of default of their loans, and their own "
               "probability of default, by scenario and tenor")
    thead = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"
    return (f'<h2 id="offtakers">Offtakers</h2>\n<div class="table-wrap"><table id="offtakers-table">'
            f"<caption>{escape(caption)}</caption><thead>{thead}</thead><tbody>{''.join(body)}</tbody></table></div>")


def _figure_section(pngs: dict[str, bytes]) -> str:
    out = ['<h2 id="figures">Figures</h2>']
    if not pngs:
        out.append('<p class="note">No figures in this report: they were not drawn (output.figures=false, or '
                   "stress-report --no-figures).</p>")
    for name, data in pngs.items():
        title = FIGURES[name][1] if name in FIGURES else name
        b64 = base64.b64encode(data).decode("ascii")
        out.append(f'<figure id="fig-{escape(name)}"><h3>{escape(title)}</h3>'
                   f'<img src="data:image/png;base64,{b64}" alt="{escape(title)}">'
                   f"<figcaption>{escape(FIGURE_CAPTIONS.get(name, ''))}</figcaption></figure>")
    return "\n".join(out)


def render_html(ds: xr.Dataset, pngs: dict[str, bytes] | None = None) -> str:
    """The report as one HTML string (figures rendered unless given as PNG bytes by name)."""
    pngs = figure_pngs(ds) if pngs is None else pngs
    title = str(ds.attrs.get("title") or "GPU-collateral credit stress test")
    q = reference_quantile(ds)
    drivers = ['<h2 id="drivers">What drives the loss</h2>',
               f'<p class="note">Loan contributions, default causes and PD at {escape(tenor_label(default_tenor(ds)))};'
               " the tenor effect compares the shortest and the longest tenor.</p>"]
    for s in (str(v) for v in ds.scenario.values):
        drivers.append(f"<h3>{escape(s)}</h3>"
                       f'<p class="driver" data-scenario="{escape(s)}">{escape(driver_paragraph(ds, s))}</p>')
    config_yaml = str(ds.attrs.get("config") or "(not stored in this dataset)")
    extra = [(tables.has_tranches(ds), "tranches", _tranche_section), (tables.has_offtakers(ds), "offtakers",
                                                                         _offtaker_section)]
    links = "".join(f' · <a href="#{name}">{name}</a>' for shown, name, _ in extra if shown)
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
        f'<a href="#summary">loss summary</a>{links} · <a href="#drivers">drivers</a> · <a href="#figures">figures</a> · '
        '<a href="#loans-section">loans</a> · <a href="#config">configuration</a></p>',
        _meta_section(ds),
        _scenario_section(ds),
        '<h2 id="summary">Loss summary</h2>',
        f'<p class="note">EL: expected loss. VaR q: the q-quantile of the portfolio loss. ES q: the mean loss beyond '
        f"VaR q. The {escape(pct_label(q))} columns are the headline tail measures.</p>",
        _summary_table(ds, in_pct=False),
        _summary_table(ds, in_pct=True),
        *(section(ds) for shown, _, section in extra if shown),
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
    write_atomic(path, render_html(ds, pngs).encode("utf-8"))
    return path


def output_paths(out_dir, figures: bool = True) -> list[Path]:
    """Every file write_all writes into ``out_dir``."""
    out = Path(out_dir)
    return [out / figure_filename(n) for n in (FIGURES if figures else ())] + [out / REPORT_NAME]


def check_writable(out_dir, overwrite: bool, figures: bool = True) -> None:
    """Refuse, before any simulation, to replace the report or a figure in ``out_dir`` unless
    ``overwrite`` (the rule of the results file)."""
    existing = sorted((p for p in output_paths(out_dir, figures) if p.exists()), key=lambda p: p.name != REPORT_NAME)
    if existing and not overwrite:
        n = len(existing) - 1
        more = f" (and {n} more file{'s' if n > 1 else ''} of the report)" if n else ""
        raise OutputError(f"{existing[0]} already exists{more}; choose another output.dir or set output.overwrite=true")


def write_all(ds: xr.Dataset, out_dir, figures: bool = True) -> list[Path]:
    """Figures (PNG) and the HTML report into ``out_dir``, rendering each figure once; with
    ``figures=False`` only the report, without figures. The report is the last path returned."""
    if not figures:
        return [write_report(ds, out_dir, {})]
    pngs = figure_pngs(ds)
    return write_figures(ds, out_dir, pngs) + [write_report(ds, out_dir, pngs)]
