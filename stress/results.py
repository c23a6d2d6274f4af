"""Assembly of the results Dataset (DESIGN 3), atomic writing, and the terminal summary."""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

from . import metrics
from .engine import TAPE_TENOR, ChunkResult, Problem
from .errors import OutputError
from .waterfall import CAUSES

FILENAMES = {"netcdf": "results.nc", "zarr": "results.zarr"}


def combine(chunks: Sequence[ChunkResult]) -> ChunkResult:
    """Join chunk results in path order: per-path arrays concatenated, sums added."""
    chunks = sorted(chunks, key=lambda c: c.start)
    cat = lambda name, axis: np.concatenate([getattr(c, name) for c in chunks], axis=axis)  # noqa: E731
    add = lambda name: sum(getattr(c, name) for c in chunks)  # noqa: E731
    paths = chunks[0].default_month is not None
    return ChunkResult(
        start=chunks[0].start,
        loss=cat("loss", 2),
        loan_loss=add("loan_loss"),
        loan_defaults=add("loan_defaults"),
        loan_lgd=add("loan_lgd"),
        defaulted_exposure=add("defaulted_exposure"),
        cause_count=add("cause_count"),
        price=cat("price", 1),
        ltv=cat("ltv", 2),
        dscr=cat("dscr", 2),
        default_month=cat("default_month", 2) if paths else None,
        default_cause=cat("default_cause", 2) if paths else None,
    )


def build_dataset(prob: Problem, res: ChunkResult, quantiles, fan_quantiles, attrs: dict) -> xr.Dataset:
    """The results Dataset with coordinates, units and run attributes."""
    n_paths = res.loss.shape[-1]
    total_principal = float(prob.principal.sum())
    el, el_se = metrics.expected_loss(res.loss)
    tail = metrics.tail_measures(res.loss, quantiles)
    with np.errstate(divide="ignore", invalid="ignore"):
        lgd = np.where(res.loan_defaults > 0, res.loan_lgd / res.loan_defaults, np.nan)
        n_defaults = res.cause_count.sum(-1, keepdims=True)
        share = np.where(n_defaults > 0, res.cause_count / n_defaults, np.nan)
    months = np.arange(1, prob.months + 1)
    sk, skq = ("scenario", "tenor"), ("scenario", "tenor", "quantile")
    usd = {"units": "USD"}
    data = {
        "loss": (sk + ("path",), res.loss, {**usd, "long_name": "portfolio loss"}),
        "loss_rate": (sk + ("path",), res.loss / total_principal, {"units": "1", "long_name": "loss / portfolio principal"}),
        "expected_loss": (sk, el, {**usd, "long_name": "expected loss"}),
        "expected_loss_se": (sk, el_se, {**usd, "long_name": "Monte Carlo standard error of expected_loss"}),
        "var": (skq, tail["var"], {**usd, "long_name": "value at risk (loss quantile)"}),
        "var_se": (skq, tail["var_se"], {**usd, "long_name": "standard error of var (order-statistic interval)"}),
        "es": (skq, tail["es"], {**usd, "long_name": "expected shortfall (mean loss beyond the quantile)"}),
        "es_se": (skq, tail["es_se"], {**usd, "long_name": "standard error of es (Manistre-Hancock)"}),
        "pd": (sk + ("loan",), res.loan_defaults / n_paths,
               {"units": "1", "long_name": "probability of default by maturity"}),
        "lgd": (sk + ("loan",), lgd, {"units": "1", "long_name": "mean loss given default (NaN: never defaulted)"}),
        "el": (sk + ("loan",), res.loan_loss / n_paths, {**usd, "long_name": "expected loss of the loan"}),
        "default_rate": (sk + ("month",), np.cumsum(res.defaulted_exposure, axis=-1) / (n_paths * total_principal),
                         {"units": "1", "long_name": "cumulative exposure defaulted / portfolio principal"}),
        "default_share": (sk + ("cause",), share, {"units": "1", "long_name": "share of defaults by cause"}),
        "price_fan": (("scenario", "chip", "month", "fan_quantile"),
                      metrics.quantiles_along(res.price, fan_quantiles, axis=1),
                      {"units": "USD per GPU-hour", "long_name": "spot rental price quantiles"}),
        "ltv_fan": (sk + ("month", "fan_quantile"), metrics.quantiles_along(res.ltv, fan_quantiles, axis=2),
                    {"units": "1", "long_name": "principal-weighted LTV of live loans, quantiles"}),
        "dscr_fan": (sk + ("month", "fan_quantile"), metrics.quantiles_along(res.dscr, fan_quantiles, axis=2),
                     {"units": "1", "long_name": "principal-weighted monthly DSCR of live loans, quantiles"}),
        "principal": (("loan",), prob.principal, {**usd, "long_name": "outstanding principal at the valuation date"}),
        "scheduled_payment": (("tenor", "loan", "month"), prob.scheduled_payment,
                              {**usd, "long_name": "contractual payment at the baseline rate"}),
        "scheduled_balance": (("tenor", "loan", "month"), prob.scheduled_balance,
                              {**usd, "long_name": "contractual balance after the month's payment"}),
    }
    if res.default_month is not None:
        data["default_month"] = (sk + ("path", "loan"), res.default_month,
                                 {"units": "month", "long_name": "month of default (1-based), 0 = none"})
        data["default_cause"] = (sk + ("path", "loan"), res.default_cause,
                                 {"long_name": "cause of default", "flag_values": list(range(len(CAUSES))),
                                  "flag_meanings": " ".join(CAUSES)})
    coords = {
        "scenario": list(prob.scenarios),
        "tenor": ("tenor", list(prob.tenors), {"units": "month", "long_name": "loan tenor",
                                                "note": f"{TAPE_TENOR} = each loan's tenor_months"}),
        "loan": list(prob.loans),
        "path": np.arange(n_paths),
        "month": ("month", months, {"units": "month", "long_name": "months after the valuation date"}),
        "quantile": list(quantiles),
        "fan_quantile": list(fan_quantiles),
        "chip": list(prob.market.chips),
        "cause": list(CAUSES[1:]),
    }
    ds = xr.Dataset({k: xr.Variable(d, v, a) for k, (d, v, a) in data.items()}, coords=coords, attrs=attrs)
    return ds


def run_attributes(config_yaml: str, seed: int, backend: str, precision: str, n_paths: int, version: str,
                   kernel_hash: str) -> dict:
    return {
        "title": "GPU-collateral credit stress test",
        "config": config_yaml,
        "seed": str(seed),
        "backend": backend,
        "precision": precision,
        "paths": n_paths,
        "package_version": version,
        "kernel_hash": kernel_hash,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def target_path(out_dir: str, fmt: str) -> Path:
    return Path(out_dir) / FILENAMES[fmt]


def check_writable(out_dir: str, fmt: str, overwrite: bool) -> Path:
    """Refuse before any simulation if the results file exists and overwrite is off."""
    path = target_path(out_dir, fmt)
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists; choose another output.dir or set output.overwrite=true")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output directory {path.parent}: {exc.strerror}") from None
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"the output directory {path.parent} is not writable")
    return path


def write(ds: xr.Dataset, out_dir: str, fmt: str, overwrite: bool) -> Path:
    """Write to a temporary name in the same directory, then rename into place (atomic)."""
    path = check_writable(out_dir, fmt, overwrite)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=path.parent)) / path.name
    try:
        if fmt == "netcdf":
            ds.to_netcdf(tmp, engine="netcdf4")
        else:
            ds.to_zarr(tmp, mode="w")
        if path.exists():
            (shutil.rmtree if path.is_dir() else os.remove)(path)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"could not write {path}: {exc.strerror or exc}") from None
    except ImportError as exc:
        raise OutputError(f"output.format={fmt} needs an extra package: {exc}") from None
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)
    return path


def summary_tables(ds: xr.Dataset, top_loans: int = 10):
    """Rich tables: EL, VaR and ES (99% or the nearest level) with standard errors by scenario
    and tenor; then the loans with the highest EL in the first scenario, at every tenor."""
    from rich.table import Table

    q = float(ds["quantile"].sel(quantile=0.99, method="nearest"))
    risk = Table(title=f"Portfolio loss, USD m (± one Monte Carlo standard error; {ds.attrs['paths']} paths)")
    for col in ("scenario", "tenor", "EL", "±", f"VaR {q:.1%}", "±", f"ES {q:.1%}", "±", "EL/principal"):
        risk.add_column(col, justify="left" if col == "scenario" else "right", no_wrap=True)
    m = lambda v: f"{v.item() / 1e6:,.1f}"  # noqa: E731
    for s in ds.scenario.values:
        for k in ds.tenor.values:
            cell = ds.sel(scenario=s, tenor=k)
            risk.add_row(str(s), str(k) if k != TAPE_TENOR else "tape",
                         m(cell.expected_loss), m(cell.expected_loss_se),
                         m(cell["var"].sel(quantile=q)), m(cell["var_se"].sel(quantile=q)),
                         m(cell.es.sel(quantile=q)), m(cell.es_se.sel(quantile=q)),
                         f"{cell.loss_rate.mean().item():.2%}")
    first = ds.scenario.values[0]
    el = ds.el.sel(scenario=first)
    order = el.isel(tenor=-1).argsort().values[::-1][:top_loans]
    loans = Table(title=f"Highest-EL loans in {first}: EL USD m (PD)")
    loans.add_column("loan", no_wrap=True)
    for k in ds.tenor.values:
        loans.add_column(f"tenor {k}" if k != TAPE_TENOR else "tape tenor", justify="right", no_wrap=True)
    for i in order:
        cells = [f"{el.isel(loan=i, tenor=j).item() / 1e6:,.1f} ({ds.pd.sel(scenario=first).isel(loan=i, tenor=j).item():.0%})"
                 for j in range(ds.sizes["tenor"])]
        loans.add_row(str(ds.loan.values[i]), *cells)
    return risk, loans
