"""Running an analysis by name: the dataset with the run's attributes and its method, written
atomically to ``output.dir/analysis_<name>.nc``, and the tables printed in the terminal."""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr
from omegaconf import DictConfig, OmegaConf

from ..config.compose import to_schema
from ..config.install import VERSION, tape_path
from ..config.portfolio import load_portfolio
from ..config.schema import StressConfig, is_tape
from ..engine import backend as _backend
from ..engine import lock
from ..engine.hostkernel import kernel_hash
from ..pipeline import run
from ..results import dataset
from .breakeven import breakeven
from .context import TARGETS, Context, log
from .reverse import reverse
from .sensitivities import sensitivities

FILE_SUFFIX = {"netcdf": ".nc", "zarr": ".zarr"}


# ------------------------------------------------------------------------------------ entry point

ANALYSES = {"breakeven": breakeven, "reverse": reverse, "sensitivities": sensitivities}


def output_path(out_dir: str, fmt: str, name: str) -> Path:
    return Path(out_dir) / f"analysis_{name}{FILE_SUFFIX[fmt]}"


def analyze(config: DictConfig | StressConfig) -> xr.Dataset:
    """Run the analysis named by ``analysis`` (``run``: the main run, ``stress.run``) and return its
    Dataset; with ``output.dir``, also write ``analysis_<name>.nc`` there (never overwriting unless
    ``output.overwrite``)."""
    cfg = to_schema(config)
    if cfg.analysis == "run":
        return run(cfg)
    if cfg.output.dir is None:
        return _analyze(cfg)
    with lock.held(cfg.output.dir):  # one run per output directory
        return _analyze(cfg)


def _analyze(cfg: StressConfig) -> xr.Dataset:

    path = None
    if cfg.output.dir is not None:
        path = output_path(cfg.output.dir, cfg.output.format, cfg.analysis)
        dataset.check_target(path, cfg.output.overwrite)
    tape = load_portfolio(tape_path(cfg), cfg.market.chips.keys())
    ctx = Context(cfg=cfg, tape=tape, be=_backend.select(cfg.backend, cfg.mc.importance_sampling))
    started = time.perf_counter()
    ds = ANALYSES[cfg.analysis](ctx)
    elapsed = time.perf_counter() - started
    log.info("analysis=%s: %d engine runs, %d scenarios x %d paths on %s in %.1f s", cfg.analysis, ctx.runs,
             ctx.scenarios_run, cfg.mc.paths, ctx.be.device, elapsed)
    attrs = dataset.run_attributes(OmegaConf.to_yaml(OmegaConf.structured(cfg)), cfg.mc.seed, ctx.be.name,
                                   cfg.precision, cfg.mc.paths, VERSION, kernel_hash())
    ds.attrs = {**attrs, "title": f"GPU-collateral credit stress test: analysis {cfg.analysis}",
                "analysis": cfg.analysis, "base_scenario": ctx.base_name, "portfolio": str(tape.source),
                "engine_runs": ctx.runs, "scenarios_simulated": ctx.scenarios_run,
                "importance_sampling": int(cfg.mc.importance_sampling), **ds.attrs,
                "method": _method(cfg.analysis)}
    if path is not None:
        ds.attrs["written_to"] = str(dataset.write_atomic(ds, path, cfg.output.format, cfg.output.overwrite))
    return ds


def _method(name: str) -> str:
    """The docstring of the analysis module ``name`` (its method) as one paragraph, for the dataset's attributes."""
    doc = importlib.import_module(f"{__package__}.{name}").__doc__
    return " ".join(line.strip() for line in doc.splitlines() if line.strip())


# ------------------------------------------------------------------------------------ terminal

def _usd_m(x: float) -> str:
    return f"{x / 1e6:,.1f}"


def _price(x: float) -> str:
    return "fails at top" if not np.isfinite(x) else f"{x:.2f}"


def summary_tables(ds: xr.Dataset) -> list:
    """Rich tables summarising an analysis Dataset."""
    from rich.table import Table

    name = ds.attrs.get("analysis")
    tables = []
    tenor_label = lambda k: "tape" if is_tape(k) else f"{int(k)}m"  # noqa: E731
    if name == "breakeven":
        t = Table(title=f"Breakeven flat spot price, USD/GPU-h: 'pay' = {ds.attrs['payment_pd']:.0%} of paths miss a "
                        f"payment (payment channel), 'PD' = PD ({ds.attrs['pd_channels']}) reaches "
                        f"{ds.attrs['pd_threshold']:.0%} (floor: above it at any price); longest tenor "
                        f"with {ds.attrs['tenor_metric']} <= {ds.attrs['tenor_limit']:.0%}; base "
                        f"{ds.attrs['base_scenario']}, {ds.attrs['paths']} paths")
        for col in ("loan", "chip", "spot"):
            t.add_column(col, no_wrap=True, justify="left" if col != "spot" else "right")
        for k in ds.tenor.values:
            t.add_column(f"pay {tenor_label(k)}", justify="right", no_wrap=True)
        for k in ds.tenor.values:
            t.add_column(f"PD {tenor_label(k)}", justify="right", no_wrap=True)
        scen = list(ds.scenario.values)
        for s in scen:
            t.add_column(f"safe tenor {s}", justify="right", no_wrap=True)
        for i, loan in enumerate(ds.loan.values):
            cell = ds.isel(loan=i)
            t.add_row(str(loan), str(cell.chip.item()), f"{cell.spot_price.item():.2f}",
                      *[_price(v) for v in cell.breakeven_price.values],
                      *[_price(v) if np.isfinite(v) else f"floor {f:.0%}"
                        for v, f in zip(cell.pd_threshold_price.values, cell.pd_floor.values)],
                      *[f"{int(v)}" if v else "none" for v in cell.max_safe_tenor.values])
        tables.append(t)
    elif name == "reverse":
        t = Table(title=f"Reverse stress: smallest shock that breaches each limit (± MC standard error), "
                        f"base {ds.attrs['base_scenario']}, {ds.attrs['paths']} paths")
        t.add_column("direction", no_wrap=True)
        t.add_column("target", no_wrap=True)
        for k in ds.tenor.values:
            t.add_column(f"tenor {tenor_label(k)}", justify="right", no_wrap=True)
        fmt = {"price": lambda x: f"-{x:.1%}", "launch": lambda x: f"{x:.1f} months earlier",
               "utilization": lambda x: f"-{x:.1%}", "rate": lambda x: f"+{x * 1e4:.0f} bp"}
        se_fmt = {"price": lambda x: f"{x:.1%}", "launch": lambda x: f"{x:.1f}", "utilization": lambda x: f"{x:.1%}",
                  "rate": lambda x: f"{x * 1e4:.0f} bp"}
        labels = dict(zip(TARGETS, (f"EL > {ds.limit.sel(target='el').item():.0%}",
                                    f"VaR > {ds.limit.sel(target='var').item():.0%}",
                                    f"a PD > {ds.limit.sel(target='pd').item():.0%}")))
        for d in ds.direction.values:
            for g in ds.target.values:
                cells = []
                for k in ds.tenor.values:
                    c = ds.sel(direction=d, target=g, tenor=k)
                    x, se = c.reverse_stress.item(), c.reverse_stress_se.item()
                    who = f" ({ds.breaching_loan.sel(direction=d, tenor=k).item()})" if g == "pd" else ""
                    if not np.isfinite(x):
                        cells.append("not breached")
                    elif x == 0:
                        cells.append("already" + who)
                    else:
                        cells.append(f"{fmt[d](x)}" + (f" ± {se_fmt[d](se)}" if np.isfinite(se) else "") + who)
                t.add_row(str(d), labels[str(g)], *cells)
        tables.append(t)
    elif name == "sensitivities":
        q = float(ds["quantile"].sel(quantile=0.99, method="nearest"))
        t = Table(title=f"Sensitivities: change for a +h move of each parameter, USD m (± MC standard error), "
                        f"base {ds.attrs['base_scenario']}, {ds.attrs['paths']} paths")
        for col in ("parameter", "h", "tenor", "EL", "±", f"VaR {q:.1%}", "±", f"ES {q:.1%}", "±"):
            t.add_column(col, justify="left" if col in ("parameter",) else "right", no_wrap=True)
        for p in ds.parameter.values:
            h = ds.bump.sel(parameter=p).item()
            for k in ds.tenor.values:
                c = ds.sel(parameter=p, tenor=k)
                v = lambda name: c[name].sel(quantile=q).item() * h if "quantile" in c[name].dims else c[name].item() * h  # noqa: E731
                se = lambda name: "–" if not np.isfinite(v(name)) else _usd_m(v(name))  # noqa: E731
                t.add_row(str(p), f"{h:g}", tenor_label(k), _usd_m(v("el_sensitivity")), se("el_sensitivity_se"),
                          _usd_m(v("var_sensitivity")), se("var_sensitivity_se"),
                          _usd_m(v("es_sensitivity")), se("es_sensitivity_se"))
        tables.append(t)
    return tables


def cli_main(cfg: DictConfig) -> None:
    """The ``stress-test analysis=NAME`` job: analyse, write, print (exit code 2 on a user error)."""
    from rich.console import Console

    from ..errors import StressError

    try:
        ds = analyze(cfg)
    except StressError as exc:
        print(f"stress-test: error: {exc}", file=sys.stderr)
        sys.exit(2)
    if not cfg.quiet:
        console = Console()
        if not console.is_terminal:
            console = Console(width=160)
        for table in summary_tables(ds):
            console.print(table)
        if "written_to" in ds.attrs:
            console.print(f"Analysis written to {ds.attrs['written_to']}")
