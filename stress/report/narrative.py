"""The words of the report: what each scenario does, what drives the losses, and the run's
metadata and loan attributes, shared by the HTML report and the committee workbook."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import xarray as xr

from . import fans
from .fans import run_config
from .figures import as_share, portfolio_principal
from .style import baseline_scenario, default_tenor, pct_label, sorted_tenors, tenor_label

# ----------------------------------------------------------------------------- formatting

def usd_m(v: float, digits: int = 1) -> str:
    """USD in millions with thousands separators; '–' for NaN."""
    return "–" if v is None or not np.isfinite(v) else f"{v / 1e6:,.{digits}f}"


def pct(v: float, digits: int = 1) -> str:
    """A share as a percentage; '–' for NaN."""
    return "–" if v is None or not np.isfinite(v) else f"{v * 100:.{digits}f}%"


def _num(v: float, digits: int = 2) -> str:
    return f"{v:.{digits}f}".rstrip("0").rstrip(".") if abs(v - round(v)) > 1e-12 else f"{int(round(v))}"


def _ordinal_list(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


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
        new = None if base is None else fans._shocked_scalar([shock], target, base)
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
    sentences = [f"At {tenor_label(k)}, the expected loss is {usd_m(el)} USD m "
                 f"({pct(float(as_share(el, principal)))} of principal)"]
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
                                 f"({'+' if d > 0 else '−'}{usd_m(abs(d))} USD m).")
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
            sentences.append(f"The tenor hardly matters: EL is {pct(s_lo)} of principal at {tenor_label(lo)} "
                             f"and {pct(s_hi)} at {tenor_label(hi)}.")
        else:
            verb = "rises" if e_hi > e_lo else "falls"
            ratio = f" ({e_hi / e_lo:.1f} times)" if e_lo > 0 and e_hi > e_lo else ""
            sentences.append(f"Tenor effect: EL {verb} from {pct(s_lo)} of principal at {tenor_label(lo)} "
                             f"to {pct(s_hi)} at {tenor_label(hi)}{ratio}.")
    else:
        sentences.append(f"Only one tenor ({tenor_label(tenors[0])}) was run, so there is no tenor comparison.")
    return " ".join(sentences)


# ----------------------------------------------------------------------------- sections

def portfolio_label(ds: xr.Dataset) -> str:
    """The loan tape as a reader knows it: the portfolio's name and the tape's path inside the config
    folder it came from (the user's ``--config-dir``, or the bundled one wherever the package is
    installed), else the path the run was given."""
    from ..config.install import conf_dir

    path = str(ds.attrs.get("portfolio") or "")
    cfg = run_config(ds)
    name = str(cfg.portfolio.get("name", "")) if cfg is not None and "portfolio" in cfg else ""
    tape = Path(path)
    user = Path(str(ds.attrs["config_dir"])) if ds.attrs.get("config_dir") else None
    parts = tape.parts
    installed = next((i + 2 for i in range(len(parts) - 2) if parts[i:i + 2] == ("stress", "conf")), 0)
    where = path
    if user is not None and user.resolve() != conf_dir() and tape.is_relative_to(user):
        where = f"{tape.relative_to(user).as_posix()} in the config folder {user}"
    elif tape.is_relative_to(conf_dir()):
        where = f"{tape.relative_to(conf_dir()).as_posix()} (bundled with the package)"
    elif installed:  # .../site-packages/stress/conf/...: the bundled tree of another installation
        where = f"{Path(*parts[installed:]).as_posix()} (bundled with the package)"
    if name in ("", "?"):
        return where
    return f"{name}: {where}" if where else name


def run_metadata(ds: xr.Dataset) -> list[tuple[str, str]]:
    """(label, value) of the run: how, when and on what it was computed (the report's run table and
    the workbook's run sheet); values that are absent are left out."""
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
        ("portfolio", portfolio_label(ds)),
        ("results file", a.get("written_to")),
        ("valuation date", fans._valuation_date(ds) or None),
        ("scenarios", ", ".join(str(s) for s in ds.scenario.values)),
        ("tenors", ", ".join(tenor_label(k) for k in sorted_tenors(ds))),
        ("loans", ds.sizes.get("loan")),
        ("portfolio principal", None if not math.isfinite(principal) else f"{principal / 1e6:,.1f} USD m"),
        ("risk quantiles", ", ".join(pct_label(q) for q in ds["quantile"].values)),
    ]
    return [(k, str(v)) for k, v in rows if v not in (None, "")]


def loan_attributes(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """Borrower, chip family and principal (USD) of every loan, from the loan coordinates (blank or
    NaN for a dataset without them)."""
    L = ds.sizes["loan"]
    text = lambda name: ds[name].values.astype(str) if name in ds.coords else np.full(L, "")  # noqa: E731
    principal = ds["principal"].values.astype(float) if "principal" in ds else np.full(L, np.nan)
    return {"borrower": text("borrower"), "chip": text("loan_chip"), "principal": principal}
