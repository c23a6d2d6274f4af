"""The tranche and offtaker tables of the terminal summary, the HTML report and the committee
workbook: every cell is the dataset's number (the expected values computed here from the dataset's
own variables), names are escaped, and a dataset without tranches or offtakers renders as before.

The offtaker variables come from another part of the model; here they are added to a real run's
dataset with the names and dimensions that part writes."""

from __future__ import annotations

import io
import re
from html import unescape

import numpy as np
import pytest

from stress.pipeline import run
from stress.report import html as report_html
from stress.report import workbook
from stress.results import dataset

from test_tranche import _config

ODD = "Acme <Cloud> & Co"  # an offtaker name that needs escaping


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    """A run with facilities, cures (so the sponsor's equity is there) and synthetic offtakers."""
    cfg = _config(tmp_path_factory.mktemp("tables"), cure_capacity=0.3,
                  extra=["scenario=[baseline,severely_adverse]", "model.covenant.max_cures=2",
                         "market.valuation.method=spot"])
    out = run(cfg).drop_dims("offtaker", errors="ignore")  # the example tape's own offtakers, replaced below
    rng = np.random.default_rng(11)
    shape = (out.sizes["scenario"], out.sizes["tenor"], 3)
    sko = ("scenario", "tenor", "offtaker")
    return out.assign_coords(offtaker=["Beta", "self", ODD]).assign(
        offtaker_el=(sko, rng.uniform(0, 5e6, shape), {"units": "USD"}),
        offtaker_pd=(sko, rng.uniform(0, 0.2, shape), {"units": "1"}),
        offtaker_revenue_share=(("offtaker",), [0.2, 0.5, 0.3], {"units": "1"}),
        offtaker_default_prob=(sko, rng.uniform(0, 0.1, shape), {"units": "1"}))


def plain(ds):
    """The same dataset without tranches, facilities and offtakers."""
    return ds.drop_dims(["tranche", "facility", "offtaker"])


def expected_tranches(ds):
    """(tranche, scenario, tenor) -> EL share of the tranche size, 99% VaR, PD, rating, and the
    facility's sponsor equity (injected, lost), from the dataset's variables."""
    out = {}
    for t in ds.tranche.values:
        c = ds.sel(tranche=t)
        f = str(c.tranche_facility.values)
        size = (float(c.detachment) - float(c.attachment)) * float(ds.facility_principal.sel(facility=f))
        for s in ds.scenario.values:
            for k in ds.tenor.values:
                x = c.sel(scenario=s, tenor=k)
                out[str(t), str(s), int(k)] = (float(x.tranche_el) / size, float(x.tranche_var.sel(quantile=0.99)),
                                               float(x.tranche_pd), str(x.tranche_rating.values),
                                               float(ds.facility_equity_cure.sel(scenario=s, tenor=k, facility=f)),
                                               float(ds.facility_equity_lost.sel(scenario=s, tenor=k, facility=f)))
    return out


def columns(table):
    """A rich table as {header: [cell text, ...]}."""
    return {str(col.header): [str(cell) for cell in col.cells] for col in table.columns}


def test_the_terminal_tables_show_each_tranche_and_offtaker(ds):
    tables = dataset.summary_tables(ds)
    assert len(tables) == 4
    t = columns(tables[2])
    want = expected_tranches(ds)
    keys = list(zip(t["tranche"], t["scenario"], map(int, t["tenor"])))
    assert sorted(keys) == sorted(want)
    first = []
    for i, key in enumerate(keys):
        share, var, pd, rating, injected, lost = want[key]
        assert t["EL/size"][i] == f"{share:.2%}" and t["VaR 99.0%"][i] == f"{var / 1e6:,.1f}"
        assert t["PD"][i] == f"{pd:.2%}" and t["rating"][i] == rating
        if t["equity injected"][i]:  # once per facility, scenario and tenor
            assert (t["equity injected"][i], t["equity lost"][i]) == (f"{injected / 1e6:,.1f}", f"{lost / 1e6:,.1f}")
            first.append((key[0].split("/")[0],) + key[1:])
    assert len(first) == len(set(first)) == ds.sizes["facility"] * ds.sizes["scenario"] * ds.sizes["tenor"]
    assert any(float(v) > 0 for v in t["equity injected"] if v)
    o = columns(tables[3])
    assert o["offtaker"][:3] == ["self", ODD, "Beta"]  # largest revenue share first
    for i, (name, s, k) in enumerate(zip(o["offtaker"], o["scenario"], o["tenor"])):
        c = ds.sel(offtaker=name, scenario=s, tenor=int(k))
        assert o["revenue share"][i] == f"{float(c.offtaker_revenue_share):.2%}"
        assert o["EL"][i] == f"{float(c.offtaker_el) / 1e6:,.1f}" and o["PD of loans"][i] == f"{float(c.offtaker_pd):.2%}"
        assert o["offtaker default"][i] == f"{float(c.offtaker_default_prob):.2%}"
    assert len(o["offtaker"]) == 3 * ds.sizes["scenario"] * ds.sizes["tenor"]
    top = columns(dataset.summary_tables(ds, top_loans=2)[3])
    assert set(top["offtaker"]) == {"self", ODD} and "the 2 of 3" in dataset.summary_tables(ds, top_loans=2)[3].title


def test_the_terminal_summary_without_tranches_or_offtakers_is_unchanged(ds):
    assert len(dataset.summary_tables(plain(ds))) == 2
    without = ds.drop_dims("offtaker")
    assert len(dataset.summary_tables(without)) == 3 and "Tranches" in dataset.summary_tables(without)[2].title


def html_rows(html: str, table_id: str) -> list[list[tuple[str, str]]]:
    """(attributes, text) of every cell of every body row of the table with ``table_id``."""
    body = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    return [[(a, unescape(v)) for a, v in re.findall(r"<td([^>]*)>(.*?)</td>", row)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body)]


def test_the_report_shows_each_tranche_with_the_sponsors_equity_beside_it(ds):
    html = report_html.render_html(ds, pngs={})
    assert '<a href="#tranches">tranches</a>' in html and '<h2 id="tranches">' in html
    want = expected_tranches(ds)
    rows = html_rows(html, "tranches-table")
    assert len(rows) == len(want)
    spans = {}
    for row in rows:
        text = [v for _, v in row]
        share, var, pd, rating, injected, lost = want[text[0], text[3], int(text[4].split()[0])]
        assert text[6] == f"{share * 100:.2f}%" and text[7].startswith(f"{var / 1e6:,.2f}")
        assert text[8] == f"{pd * 100:.2f}%" and text[9].startswith(rating + " (")
        if len(row) == 12:  # the first tranche of the facility: its equity over all its tranches
            assert (text[10], text[11]) == (f"{injected / 1e6:,.2f}", f"{lost / 1e6:,.2f}")
            spans[text[0].split("/")[0]] = int(re.search(r'rowspan="(\d+)"', row[10][0]).group(1))
        else:
            assert len(row) == 10
    assert spans == {f: int((ds.tranche_facility == f).sum()) for f in ds.facility.values}


def test_the_report_shows_each_offtaker_escaped(ds):
    html = report_html.render_html(ds, pngs={})
    assert "<Cloud>" not in html and "Acme &lt;Cloud&gt; &amp; Co" in html
    rows = html_rows(html, "offtakers-table")
    assert len(rows) == 3 * ds.sizes["scenario"] * ds.sizes["tenor"]
    for row in rows:
        name, share, s, k, el, pd, default = (v for _, v in row)
        c = ds.sel(offtaker=name, scenario=s, tenor=int(k.split()[0]))
        assert share == f"{float(c.offtaker_revenue_share) * 100:.1f}%"
        assert el == f"{float(c.offtaker_el) / 1e6:,.2f}" and pd == f"{float(c.offtaker_pd) * 100:.2f}%"
        assert default == f"{float(c.offtaker_default_prob) * 100:.2f}%"


def test_tranche_names_are_escaped(ds):
    odd = ds.assign_coords(tranche=[t.replace("senior", "<b>senior</b> & co") for t in ds.tranche.values])
    html = report_html.render_html(odd, pngs={})
    assert "<b>senior" not in html and "&lt;b&gt;senior&lt;/b&gt; &amp; co" in html


def test_the_report_without_tranches_or_offtakers_is_the_report_of_before(ds):
    """Leaving out the two sections and their links gives the report of the dataset without them."""
    html = report_html.render_html(ds, pngs={})
    for section in ("tranches", "offtakers"):
        html = html.replace(f' · <a href="#{section}">{section}</a>', "")
        html = re.sub(rf'<h2 id="{section}">.*?</table></div>\n', "", html, flags=re.S)
    assert html == report_html.render_html(plain(ds), pngs={})
    assert "tranche" not in html.split('<h2 id="config">')[0].lower()


def sheet(wb, name):
    rows = list(wb[name].iter_rows(values_only=True))
    return [str(h) for h in rows[1]], rows[2:]


def test_the_workbook_has_tranche_and_offtaker_sheets_with_units(ds):
    import openpyxl

    wb = openpyxl.load_workbook(io.BytesIO(workbook.workbook_bytes(ds)))
    assert wb.sheetnames == ["summary", "loans", "tranches", "offtakers", "scenarios", "run"]
    head, rows = sheet(wb, "tranches")
    assert all(re.search(r"\((USD|share|months)", h) or h in ("scenario", "facility", "tranche") or "rating (" in h
               for h in head), head
    col = {name: head.index(h) for name, h in (("share", "EL (share of tranche size)"), ("var", "VaR 99% (USD)"),
                                               ("pd", "probability of any loss (share)"))}
    injected = next(i for i, h in enumerate(head) if h.startswith("sponsor equity injected"))
    want = expected_tranches(ds)
    assert len(rows) == len(want)
    for r in rows:
        share, var, pd, rating, eq, _ = want[r[3], r[0], r[1]]
        assert r[col["share"]] == pytest.approx(share, rel=1e-14) and r[col["var"]] == pytest.approx(var, rel=1e-14)
        assert r[col["pd"]] == pytest.approx(pd, rel=1e-14) and rating in r and r[injected] == pytest.approx(eq)
    assert wb["tranches"].cell(3, col["share"] + 1).number_format == "0.00%"
    head, rows = sheet(wb, "offtakers")
    assert head[3:] == ["share of contracted revenue at the valuation date (share)", "EL of its loans (USD)",
                        "PD of its loans (share)", "default probability of the offtaker (share)"]
    assert len(rows) == 3 * ds.sizes["scenario"] * ds.sizes["tenor"] and rows[0][2] == "self"
    for s, k, name, share, el, pd, default in rows:
        c = ds.sel(offtaker=name, scenario=s, tenor=k)
        assert (share, el, pd, default) == pytest.approx((float(c.offtaker_revenue_share), float(c.offtaker_el),
                                                          float(c.offtaker_pd), float(c.offtaker_default_prob)),
                                                         rel=1e-14)
    bare = openpyxl.load_workbook(io.BytesIO(workbook.workbook_bytes(plain(ds))))
    assert bare.sheetnames == ["summary", "loans", "scenarios", "run"]
