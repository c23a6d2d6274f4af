"""The rows of the tranche and offtaker tables, as plain numbers: one source for the terminal
summary (``dataset.summary_tables``), the HTML report and the committee workbook, each of which
only formats them. A dataset without tranches (no ``tranche_el``) or without offtakers (no
``offtaker_el``) has no rows."""

from __future__ import annotations

import numpy as np
import xarray as xr

OFFTAKER_VARIABLES = ("offtaker_revenue_share", "offtaker_el", "offtaker_pd", "offtaker_default_prob")


def has_tranches(ds: xr.Dataset) -> bool:
    return "tranche_el" in ds.data_vars


def has_offtakers(ds: xr.Dataset) -> bool:
    return "offtaker_el" in ds.data_vars


def tranche_size(ds: xr.Dataset) -> np.ndarray:
    """(D - A) P_f of every tranche, USD, in the order of the ``tranche`` coordinate."""
    principal = ds.facility_principal.sel(facility=ds.tranche_facility.values).values
    return (ds.detachment.values - ds.attachment.values) * principal


def _scalar(v):
    """A tenor coordinate value as a Python scalar ('tape' stays text)."""
    return v.item() if isinstance(v, np.generic) else v


def tranche_rows(ds: xr.Dataset, quantiles, tenors=None) -> list[dict]:
    """One dict per facility, scenario, tenor and tranche (in that order; tenors as given, else the
    dataset's): the tranche's attachment and detachment (shares of P_f), size (USD), EL and its SE
    (USD), EL / size, VaR and ES with SEs at each of ``quantiles`` (USD, keyed by quantile), the
    probability of any loss, the implied rating and its horizon (months), and the sponsor's equity
    injected into and lost in the facility (USD, per facility, None without cures); ``first`` marks
    the first tranche of its facility's group."""
    tenors = list(ds.tenor.values) if tenors is None else list(tenors)
    size = tranche_size(ds)
    of = ds.tranche_facility.values.astype(str)
    equity = {n: ds[f"facility_{n}"] if f"facility_{n}" in ds else None for n in ("equity_cure", "equity_lost")}
    facilities = ds.facility.values.astype(str)
    ds = ds[["tranche_el", "tranche_el_se", "tranche_var", "tranche_var_se", "tranche_es", "tranche_es_se",
             "tranche_pd", "tranche_rating", "rating_horizon"]]  # selections below stay small
    rows = []
    for f in facilities:
        members = np.flatnonzero(of == f)
        for s in ds.scenario.values:
            for k in tenors:
                cell = ds.sel(scenario=s, tenor=k)
                eq = {n: None if v is None else float(v.sel(scenario=s, tenor=k, facility=f)) for n, v in equity.items()}
                for n, i in enumerate(members):
                    t = cell.isel(tranche=i)
                    el = float(t.tranche_el)
                    rows.append({
                        "facility": f, "tranche": str(ds.tranche.values[i]), "scenario": str(s), "tenor": _scalar(k),
                        "attachment": float(t.attachment), "detachment": float(t.detachment), "size": float(size[i]),
                        "el": el, "el_se": float(t.tranche_el_se), "el_share": el / size[i],
                        "var": {q: (float(t.tranche_var.sel(quantile=q)), float(t.tranche_var_se.sel(quantile=q)))
                                for q in quantiles},
                        "es": {q: (float(t.tranche_es.sel(quantile=q)), float(t.tranche_es_se.sel(quantile=q)))
                               for q in quantiles},
                        "pd": float(t.tranche_pd), "rating": str(t.tranche_rating.values),
                        "horizon": int(t.rating_horizon), "equity_cure": eq["equity_cure"],
                        "equity_lost": eq["equity_lost"], "first": n == 0})
    return rows


def offtaker_rows(ds: xr.Dataset, tenors=None, top: int | None = None) -> tuple[list[dict], int]:
    """(rows, number of offtakers): one dict per scenario, tenor and offtaker, the offtakers by
    descending share of contracted revenue (only the ``top`` largest when given), with that share,
    the EL of its loans (USD), their PD and the offtaker's own default probability (shares)."""
    tenors = list(ds.tenor.values) if tenors is None else list(tenors)
    share = ds.offtaker_revenue_share.values.astype(float)
    order = np.argsort(-share, kind="stable")[:top]
    names = ds.offtaker.values.astype(str)
    ds = ds[list(OFFTAKER_VARIABLES)]
    rows = []
    for s in ds.scenario.values:
        for k in tenors:
            cell = ds.sel(scenario=s, tenor=k)
            for i in order:
                o = cell.isel(offtaker=i)
                rows.append({"scenario": str(s), "tenor": _scalar(k), "offtaker": names[i], "revenue_share": float(share[i]),
                             "el": float(o.offtaker_el), "pd": float(o.offtaker_pd),
                             "default_prob": float(o.offtaker_default_prob)})
    return rows, len(names)
