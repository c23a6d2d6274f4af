"""Assembly of the results Dataset, atomic writing, and the terminal summary."""

from __future__ import annotations

import datetime as _dt
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from ..config.schema import is_tape
from ..engine import lock
from ..engine.chunk import ChunkResult
from ..engine.problem import Problem
from ..errors import OutputError
from ..model.waterfall import CAUSES
from . import metrics, offtaker, rating, tables

FILENAMES = {"netcdf": "results.nc", "zarr": "results.zarr"}

# The only variables in which NaN is a result rather than a bug, and what it means there. Every
# other float variable must be finite everywhere, and no variable may hold an infinity:
# check_finite() stops the run, before anything is written, naming the variable.
NAN_MEANS = {
    "lgd": "the loan never defaulted in this scenario and tenor (LGD given default is undefined)",
    "default_share": "no loan defaulted in this scenario and tenor (no cause to share out)",
    "ltv_fan": "no loan is live in that month on any fan path (all matured or defaulted), "
               "or there are no fan paths (mc.fan_paths=0)",
    "dscr_fan": "no loan is live with debt service due in that month on any fan path (all matured, "
                "defaulted or owing nothing, like a bullet at 0%), or there are no fan paths (mc.fan_paths=0)",
    "price_fan": "there are no fan paths (mc.fan_paths=0)",
    **offtaker.NAN_MEANS,  # present only with offtakers
}
NAN_POLICY = ("NaN appears only in " + ", ".join(NAN_MEANS) + ", with the meaning given by each one's "
              "'nan_means' attribute; every other value is finite (checked before writing)")


class NonFiniteResult(RuntimeError):
    """An output variable holds NaN or infinity where it has no meaning: a bug in the model or the
    engine, never the user's input (that is validated before any simulation)."""


def check_finite(ds: xr.Dataset) -> None:
    """Raise NonFiniteResult naming each float variable with a NaN outside NAN_MEANS or an infinity."""
    bad = []
    for name, var in ds.data_vars.items():
        if not np.issubdtype(var.dtype, np.floating):
            continue
        values = np.asarray(var.values)
        n_nan = int(np.isnan(values).sum())
        n_inf = int(np.isinf(values).sum())
        if n_inf:
            bad.append(f"{name}: {n_inf} infinite value{'s' if n_inf > 1 else ''} of {values.size}")
        if n_nan and name not in NAN_MEANS:
            first = tuple(int(i) for i in np.argwhere(np.isnan(values))[0])
            at = ", ".join(f"{d}={var[d].values[i] if d in var.coords else i}" for d, i in zip(var.dims, first))
            bad.append(f"{name}: {n_nan} NaN of {values.size} (first at {at})")
    if bad:
        raise NonFiniteResult("results with NaN or infinity where none may be (a bug; nothing was written; "
                              "please report it with the config and the tape): " + "; ".join(bad))


def build_dataset(prob: Problem, res: ChunkResult, quantiles, fan_quantiles, attrs: dict) -> xr.Dataset:
    """The results Dataset with coordinates, units and run attributes."""
    n_paths = res.loss.shape[-1]
    total_principal = float(prob.principal.sum())
    w = res.weight  # (K, P) importance-sampling likelihood ratios, or None
    if prob.importance_sampling and w is None:
        raise RuntimeError("importance sampling is on but the engine returned no path weights (an engine "
                           "or executor that does not support mc.importance_sampling)")
    el, el_se = metrics.expected_loss(res.loss, w)
    tail = metrics.tail_measures(res.loss, quantiles, w)
    if w is None:
        fan = lambda a, axis, _: metrics.quantiles_along(a, fan_quantiles, axis=axis)  # noqa: E731
    else:  # fan paths are the first paths; prices use the weight of the whole horizon (last tenor)
        fan = lambda a, axis, wf: metrics.weighted_quantiles_along(a, wf, fan_quantiles, axis=axis)  # noqa: E731
    n_fan = res.price.shape[1]
    fan_w = (None, None) if w is None else (w[-1, :n_fan], w[:, None, :n_fan])
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
                      fan(res.price, 1, fan_w[0]),
                      {"units": "USD per GPU-hour", "long_name": "spot rental price quantiles"}),
        "ltv_fan": (sk + ("month", "fan_quantile"), fan(res.ltv, 2, fan_w[1]),
                    {"units": "1", "long_name": "principal-weighted LTV of live loans, quantiles"}),
        "dscr_fan": (sk + ("month", "fan_quantile"), fan(res.dscr, 2, fan_w[1]),
                     {"units": "1", "long_name": "principal-weighted monthly DSCR of live loans, quantiles"}),
        "principal": (("loan",), prob.principal, {**usd, "long_name": "outstanding principal at the valuation date"}),
        "scheduled_payment": (("tenor", "loan", "month"), prob.scheduled_payment,
                              {**usd, "long_name": "contractual payment at the baseline rate"}),
        "scheduled_balance": (("tenor", "loan", "month"), prob.scheduled_balance,
                              {**usd, "long_name": "contractual balance after the month's payment"}),
    }
    if w is not None:
        data["weight"] = (("tenor", "path"), w, {
            "units": "1", "long_name": "importance-sampling likelihood ratio of the path (mc.importance_sampling)",
            "copula_shift": prob.is_shift_copula, "demand_innovation_shift": prob.market.demand_shift,
            "note": "loss and loss_rate are the sampled (shifted) paths: weight them, e.g. (loss * weight).mean('path')"})
    equity = {"equity_cure": (res.loan_equity, res.loan_equity_sq, "mean equity injected by cures of LTV breaches "
                                                                   "(undiscounted, never lender loss)"),
              "equity_lost": (res.loan_equity_lost, res.loan_equity_lost_sq, "mean equity injected by cures into a "
                                                                            "loan that later defaults (lost by the sponsor)")}
    for name, (total, total_sq, meaning) in equity.items():
        if total is None:
            continue
        mean = total / n_paths  # SE of a mean over paths: sqrt((E[x^2] - E[x]^2) / (n - 1))
        spread = np.maximum(total_sq / n_paths - mean**2, 0.0)
        data[name] = (sk + ("loan",), mean, {**usd, "long_name": meaning})
        data[f"{name}_se"] = (sk + ("loan",), np.sqrt(spread / max(n_paths - 1, 1)),
                              {**usd, "long_name": f"Monte Carlo standard error of {name}"})
    coords = {}
    if prob.facilities:
        if res.facility_loss is None:
            raise RuntimeError("the tape has facilities with tranches but the engine returned no facility losses")
        tranche_data, coords = rating.dataset_variables(prob, res.facility_loss, quantiles, w)
        data.update(tranche_data)
        if "equity_cure" in data:  # the sponsor's equity below each facility's debt
            for name in ("equity_cure", "equity_lost"):
                per_loan = data[name][1]
                data[f"facility_{name}"] = (sk + ("facility",), np.stack(
                    [per_loan[..., prob.facility_of_loan == f].sum(-1) for f in range(len(prob.facilities))], axis=-1),
                    {**usd, "long_name": f"{name} summed over the facility's loans (the sponsor's equity, not a tranche)"})
    if prob.contracts is not None:
        if res.offtaker_defaults is None:
            raise RuntimeError("the tape has offtakers but the engine returned no offtaker defaults")
        offtaker_data, offtaker_coords = offtaker.dataset_variables(prob, data["el"][1], data["pd"][1],
                                                                    res.offtaker_defaults, n_paths)
        data.update(offtaker_data)
        coords.update(offtaker_coords)
    if res.default_month is not None:
        data["default_month"] = (sk + ("path", "loan"), res.default_month,
                                 {"units": "month", "long_name": "month of default (1-based), 0 = none"})
        data["default_cause"] = (sk + ("path", "loan"), res.default_cause,
                                 {"long_name": "cause of default", "flag_values": list(range(len(CAUSES))),
                                  "flag_meanings": " ".join(CAUSES)})
    coords = {
        **coords,
        "scenario": list(prob.scenarios),
        "tenor": ("tenor", list(prob.tenors), {"units": "month", "long_name": "loan tenor",
                                                "note": "tape (tenors=tape): each loan at its own tape_tenor; months: "
                                                        "every loan re-scheduled at that tenor"}),
        "tape_tenor": ("loan", prob.tape_tenor, {"units": "month", "long_name": "the loan's tenor_months on the tape "
                                                 "(simulated only under the tenor coordinate 'tape')"}),
        "loan": list(prob.loans),
        "borrower": ("loan", np.array(prob.borrowers, dtype=str), {"long_name": "borrower of the loan (tape)"}),
        "loan_chip": ("loan", np.array(prob.loan_chips, dtype=str), {"long_name": "GPU family financed by the loan (tape)"}),
        "ltv_max": ("loan", np.asarray(prob.ltv_max, dtype=float), {"units": "1", "long_name": "LTV covenant of the "
                    "loan (tape ltv_max)", "note": "a very large value (up to 1e6) switches it off"}),
        "dscr_min": ("loan", np.asarray(prob.dscr_min, dtype=float), {"units": "1", "long_name": "cash-sweep trigger on "
                     "the trailing 3-month DSCR (tape dscr_min)", "note": "a very large value (up to 1e6) switches it off"}),
        "path": np.arange(n_paths),
        "month": ("month", months, {"units": "month", "long_name": "months after the valuation date"}),
        "quantile": list(quantiles),
        "fan_quantile": list(fan_quantiles),
        "chip": list(prob.market.chips),
        "cause": list(CAUSES[1:]),
    }
    _check_nan_meaning(data, res)
    for name, meaning in NAN_MEANS.items():
        if name in data:
            data[name][2]["nan_means"] = meaning
    ds = xr.Dataset({k: xr.Variable(d, v, a) for k, (d, v, a) in data.items()}, coords=coords,
                    attrs={**attrs, "nan_policy": NAN_POLICY})
    check_finite(ds)
    return ds


def loan_tenors(ds: xr.Dataset) -> xr.DataArray:
    """Months each loan runs for under each tenor coordinate, (tenor, loan): the coordinate itself,
    or the loan's ``tape_tenor`` under 'tape'."""
    months = [ds.tape_tenor.values if is_tape(k) else np.full(ds.sizes["loan"], int(k)) for k in ds.tenor.values]
    return xr.DataArray(np.stack(months).astype(np.int64), dims=("tenor", "loan"),
                        coords={"tenor": ds.tenor.values, "loan": ds.loan.values})


def tenor_note(ds: xr.Dataset) -> str | None:
    """A line for the summary output when a tenor sweep replaced the tape's own tenor_months (None
    under tenors=tape): the range of the tape's, how many loans have one outside the sweep, and how
    to run them."""
    if "tape_tenor" not in ds.coords or any(is_tape(k) for k in ds.tenor.values):
        return None
    tape = ds.tape_tenor.values
    swept = [int(k) for k in ds.tenor.values]
    off = int((~np.isin(tape, swept)).sum())
    return (f"Note: the tenor sweep ({', '.join(map(str, swept))} months) replaces the tape's own tenor_months "
            f"({tape.min()}-{tape.max()} months; {off} of {tape.size} loans have one outside the sweep): every loan "
            "is re-scheduled at each swept tenor. tenors=tape runs each loan at its own tenor instead.")


def _check_nan_meaning(data: dict, res: ChunkResult) -> None:
    """NaN in an allow-listed variable must mean what NAN_MEANS says, nothing else: an LGD only
    where the loan never defaulted, a default share only where nothing defaulted, a fan quantile
    only where every fan path's sample is NaN (no live loan, or no fan path); and no fan sample
    may be infinite (its quantiles would turn into NaN silently)."""
    bad = []
    never = res.loan_defaults == 0
    if not np.array_equal(np.isnan(data["lgd"][1]), never):
        bad.append("lgd: NaN for a loan that defaulted (a zero or NaN exposure at default?)")
    none = res.cause_count.sum(-1, keepdims=True) == 0
    if not np.array_equal(np.isnan(data["default_share"][1]), np.broadcast_to(none, res.cause_count.shape)):
        bad.append("default_share: NaN although loans defaulted")
    for name, samples, axis in (("price_fan", res.price, 1), ("ltv_fan", res.ltv, 2), ("dscr_fan", res.dscr, 2)):
        samples = np.asarray(samples)
        if np.isinf(samples).any():
            what = {"ltv_fan": "a live loan with zero collateral value", "dscr_fan": "a live loan with zero debt "
                    "service", "price_fan": "an infinite price"}[name]
            bad.append(f"{name}: {int(np.isinf(samples).sum())} infinite samples on the fan paths ({what})")
            continue
        empty = np.all(np.isnan(samples), axis=axis)[..., None]
        if not np.array_equal(np.isnan(data[name][1]), np.broadcast_to(empty, data[name][1].shape)):
            bad.append(f"{name}: NaN quantiles where fan paths have live loans")
    if bad:
        raise NonFiniteResult("results with NaN or infinity where none may be (a bug; nothing was written; "
                              "please report it with the config and the tape): " + "; ".join(bad))


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


_CODE_CODECS = re.compile(r'"(?:id|name)"\s*:\s*"(pickle|dill|cloudpickle)"', re.IGNORECASE)


def unsafe_zarr_codecs(store: Path) -> list[Path]:
    """Metadata files of a Zarr store that declare a codec which runs code when the data is read
    (numcodecs' Pickle for object arrays). This package never writes one; a store that has one is
    not data and must not be opened."""
    found = []
    for meta in sorted(Path(store).rglob("*")):
        if meta.name in (".zarray", ".zmetadata", "zarr.json") and meta.is_file():
            if _CODE_CODECS.search(meta.read_text(encoding="utf-8", errors="replace")):
                found.append(meta)
    return found


def target_path(out_dir: str, fmt: str) -> Path:
    return Path(out_dir) / FILENAMES[fmt]


def check_writable(out_dir: str, fmt: str, overwrite: bool) -> Path:
    """Refuse before any simulation if the results file exists and overwrite is off."""
    return check_target(target_path(out_dir, fmt), overwrite)


def check_target(path: Path, overwrite: bool) -> Path:
    """``path`` may be written: it does not exist (or ``overwrite``) and its folder is writable."""
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists; choose another output.dir or set output.overwrite=true")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output directory {path.parent}: {exc.strerror}") from None
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"the output directory {path.parent} is not writable")
    return path


def _reason(exc: BaseException) -> str:
    """Plain words for a failed write: the OS error, and what usually causes it."""
    if isinstance(exc, OSError):
        hint = {errno.ENOSPC: " (the disk is full)", errno.EDQUOT: " (the disk quota is used up)",
                errno.EACCES: " (no permission to write there)", errno.EPERM: " (no permission to write there)",
                errno.EROFS: " (the file system is read-only)"}.get(exc.errno, "")
        return f"{exc.strerror or exc}{hint}"
    return f"{exc} (is the disk full?)"  # the netCDF4 library reports failed writes as RuntimeError


def write(ds: xr.Dataset, out_dir: str, fmt: str, overwrite: bool) -> Path:
    """The results Dataset, checked for NaN and infinity, written atomically to out_dir."""
    check_finite(ds)
    return write_atomic(ds, target_path(out_dir, fmt), fmt, overwrite)


def write_atomic(ds: xr.Dataset, path: Path, fmt: str, overwrite: bool) -> Path:
    """Write to a temporary directory beside ``path``, then rename into place (atomic). On any
    failure or interrupt the temporary directory is removed and an existing file is kept."""
    check_target(path, overwrite)
    tmp_dir = None
    try:
        tmp_dir = Path(tempfile.mkdtemp(prefix=lock.partial_prefix(), dir=path.parent))
        tmp = tmp_dir / path.name
        if fmt == "netcdf":
            ds.to_netcdf(tmp, engine="netcdf4")
        else:
            ds.to_zarr(tmp, mode="w")
        if path.exists() and not overwrite:  # appeared while we were writing
            raise OutputError(f"{path} already exists; choose another output.dir or set output.overwrite=true")
        if path.is_dir() and not path.is_symlink():  # zarr: a directory cannot be replaced in one step
            shutil.rmtree(path)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, NonFiniteResult):
            raise
        raise OutputError(f"could not write {path}: {_reason(exc)}; nothing was written") from None
    except ImportError as exc:
        raise OutputError(f"output.format={fmt} needs an extra package: {exc}") from None
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


def summary_tables(ds: xr.Dataset, top_loans: int = 10):
    """Rich tables: EL, VaR and ES (99% or the nearest level) with standard errors by scenario
    and tenor, figures whose SE exceeds ``metrics.NOISY_SHARE`` of them marked '*' with the paths
    that would bring every SE of the row under it; then the loans with the highest EL in the first
    scenario, at every tenor; when the tape has facilities, each tranche's EL, EL / size, VaR, PD and
    implied rating by scenario and tenor with the sponsor's equity; when it has offtakers, the
    ``top_loans`` largest offtakers' revenue share, EL, PD and default probability."""
    from rich.table import Table
    from rich.text import Text  # names from the tape and the config, never read as markup

    q = float(ds["quantile"].sel(quantile=0.99, method="nearest"))
    paths = int(ds.sizes["path"])
    share = metrics.NOISY_SHARE
    risk = Table(title=f"Portfolio loss, USD m (± one Monte Carlo standard error; {paths:,} paths)",
                 caption=f"* noisy: standard error above {share:.0%} of the figure; last column: the paths that "
                         f"would bring every SE of the row under {share:.0%} (SE shrinks as 1/sqrt(paths))")
    for col in ("scenario", "tenor", "EL", "±", f"VaR {q:.1%}", "±", f"ES {q:.1%}", "±", "EL/principal",
                f"paths for SE {share:.0%}"):
        risk.add_column(col, justify="left" if col == "scenario" else "right", no_wrap=True)
    for s in ds.scenario.values:
        for k in ds.tenor.values:
            cell = ds.sel(scenario=s, tenor=k)
            figures = [(cell.expected_loss.item(), cell.expected_loss_se.item())]
            figures += [(cell[v].sel(quantile=q).item(), cell[f"{v}_se"].sel(quantile=q).item()) for v in ("var", "es")]
            flags, need = metrics.noise_flags(paths, figures)
            cells = [c for (value, se), flag in zip(figures, flags)
                     for c in (f"{value / 1e6:,.1f}" + ("*" if flag else ""), metrics.se_text(se / 1e6))]
            risk.add_row(str(s), str(k), *cells,
                         f"{cell.expected_loss.item() / ds.principal.sum().item():.2%}",
                         f"{need:,}" if need else "")
    first = ds.scenario.values[0]
    el = ds.el.sel(scenario=first)
    order = el.isel(tenor=-1).argsort().values[::-1][:top_loans]
    loans = Table(title=f"Highest-EL loans in {first}: EL USD m (PD)")
    loans.add_column("loan", no_wrap=True)
    for k in ds.tenor.values:
        loans.add_column("tape tenor" if is_tape(k) else f"tenor {k}", justify="right", no_wrap=True)
    for i in order:
        cells = [f"{el.isel(loan=i, tenor=j).item() / 1e6:,.1f} ({ds.pd.sel(scenario=first).isel(loan=i, tenor=j).item():.0%})"
                 for j in range(ds.sizes["tenor"])]
        loans.add_row(str(ds.loan.values[i]), *cells)
    out = [risk, loans]
    m = lambda v: f"{v / 1e6:,.1f}"  # noqa: E731
    p = lambda v: f"{v:.2%}" if np.isfinite(v) else "–"  # noqa: E731
    if tables.has_tranches(ds):
        rows = tables.tranche_rows(ds, [q])
        equity = rows[0]["equity_cure"] is not None
        tranches = Table(title=f"Tranches: EL USD m (± SE), EL / tranche size (D - A) x facility principal, VaR "
                               f"{q:.1%} USD m, probability of any loss, implied rating (Moody's idealised default "
                               "rates at the rating horizon)",
                         caption="sponsor equity, USD m: injected by cures into the facility's loans and lost "
                                 "in those that later defaulted (per facility, not a tranche)" if equity else None)
        cols = ["tranche", "A-D", "scenario", "tenor", "EL", "±", "EL/size", f"VaR {q:.1%}", "PD", "rating"]
        for col in cols + (["equity injected", "equity lost"] if equity else []):
            tranches.add_column(col, justify="left" if col in ("tranche", "scenario", "rating") else "right",
                                no_wrap=True)
        for n, r in enumerate(rows):
            cells = [Text(r["tranche"]), f"{r['attachment'] * 100:.4g}%-{r['detachment'] * 100:.4g}%", Text(r["scenario"]),
                     "tape" if is_tape(r["tenor"]) else str(r["tenor"]), m(r["el"]), metrics.se_text(r["el_se"] / 1e6),
                     p(r["el_share"]), m(r["var"][q][0]), p(r["pd"]), r["rating"]]
            if equity:
                cells += [m(r["equity_cure"]), m(r["equity_lost"])] if r["first"] else ["", ""]
            tranches.add_row(*cells, end_section=n + 1 < len(rows) and rows[n + 1]["first"])
        out.append(tranches)
    if tables.has_offtakers(ds):
        rows, n_all = tables.offtaker_rows(ds, top=top_loans)
        shown = f"the {top_loans} of {n_all} with the largest revenue share" if n_all > top_loans else "all"
        group = min(top_loans, n_all)  # rows of one scenario and tenor
        offtakers = Table(title=f"Offtakers ({shown}): share of contracted revenue, EL of their loans USD m, "
                                "their loans' PD, the offtaker's own default probability")
        for col in ("offtaker", "revenue share", "scenario", "tenor", "EL", "PD of loans", "offtaker default"):
            offtakers.add_column(col, justify="left" if col in ("offtaker", "scenario") else "right", no_wrap=True)
        for n, r in enumerate(rows):
            offtakers.add_row(Text(r["offtaker"]), p(r["revenue_share"]), Text(r["scenario"]),
                              "tape" if is_tape(r["tenor"]) else str(r["tenor"]), m(r["el"]), p(r["pd"]),
                              p(r["default_prob"]), end_section=(n + 1) % group == 0)
        out.append(offtakers)
    return tuple(out)
