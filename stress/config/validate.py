"""Range and name checks of a typed config: one ConfigError that lists every problem, each
with its config key."""

from __future__ import annotations

import math
import numbers
from typing import Dict

import numpy as np

from ..errors import ConfigError
from .install import config_dirs
from .limits import OFFTAKER, OFFTAKER_DEFAULT_MONTH, PD_MULTIPLIER_MAX, combined_problem, market_problems, out_of_range, shock_bounds
from .messages import schema_problems
from .schema import (ANALYSES, BACKENDS, CHANNELS, EXECUTORS, FORMATS, MAX_FACILITIES, MAX_MONTHS, MAX_OFFTAKERS,
                     METRICS, OFFTAKER_SHOCK_FIELDS, PATH_SHOCK_TARGETS, PRECISIONS, REVERSE_DIRECTIONS, SCALAR_SHOCK_TARGETS,
                     SELF, SENSITIVITY_PARAMETERS, SHOCK_KINDS, VALUATION_METHODS, FacilityConfig, OfftakerConfig,
                     StressConfig, uses_tape_tenors)


def _check(errors: list[str], ok: bool, key: str, message: str) -> None:
    if not ok:
        errors.append(f"{key}: {message}")


def _known_targets(cfg: StressConfig) -> list[str]:
    targets = [f"price.{c}" for c in cfg.market.chips] + ["price.all"]
    targets += list(PATH_SHOCK_TARGETS) + list(SCALAR_SHOCK_TARGETS)
    for launch in cfg.market.launches:
        targets += [f"launch.{launch.name}.month", f"launch.{launch.name}.step"]
    targets += [f"offtaker.{o}.{f}" for o in cfg.portfolio.offtakers if o != SELF for f in OFFTAKER_SHOCK_FIELDS]
    return targets


def _target_problem(cfg: StressConfig, target: str) -> str | None:
    """Why a shock target does not exist (None if it does), listing what exists."""
    if target in _known_targets(cfg):
        return None
    chips = ", ".join(cfg.market.chips)
    gens = ", ".join(launch.name for launch in cfg.market.launches) or "none"
    if target.startswith("price."):
        return (f"unknown chip {target[6:]!r} in target {target!r}; the chips of market {cfg.market.name!r} "
                f"are {chips} (or price.all for every chip)")
    if target.startswith("launch."):
        name, _, what = target[7:].rpartition(".")
        if what not in ("month", "step"):
            return f"unknown target {target!r}; a launch target is launch.<generation>.month or launch.<generation>.step"
        return f"unknown generation {name!r} in target {target!r}; the launches of market {cfg.market.name!r} are {gens}"
    if target.startswith("offtaker."):
        name, _, what = target[9:].rpartition(".")
        if what not in OFFTAKER_SHOCK_FIELDS:
            return (f"unknown target {target!r}; an offtaker target is offtaker.<name>."
                    f"{' or offtaker.<name>.'.join(OFFTAKER_SHOCK_FIELDS)}")
        named = ", ".join(o for o in cfg.portfolio.offtakers if o != SELF) or "none"
        return (f"unknown offtaker {name!r} in target {target!r}; the offtakers of portfolio.offtakers are {named} "
                f"(self has no default of its own)")
    return (f"unknown target {target!r}; allowed: price.<chip> (chip: {chips}), price.all, "
            f"{', '.join(PATH_SHOCK_TARGETS + SCALAR_SHOCK_TARGETS)}, launch.<generation>.month, "
            f"launch.<generation>.step (generation: {gens})")


def _shock_problems(cfg: StressConfig) -> list[str]:
    """Every shock: a known target and kind, a finite value in the target's range, sane months;
    and per scenario the launch steps and the PD multiplier after all its shocks."""
    from .scenario import affine, shocked_path, shocked_scalar

    e: list[str] = []
    months = np.arange(1, 2 * MAX_MONTHS + 1)  # longest tenor plus longest liquidation lag
    shares = {"utilization": "a utilisation", "haircut": "a haircut"}
    for s, sc in cfg.scenario.items():
        before = len(e)
        for j, shock in enumerate(sc.shocks):
            k = f"scenario.{s}.shocks[{j}]"
            t, v = shock.target, shock.value
            problem = _target_problem(cfg, t)
            if problem:
                e.append(f"{k}.target: {problem}")
            _check(e, shock.kind in SHOCK_KINDS, f"{k}.kind",
                   f"must be one of {', '.join(SHOCK_KINDS)}; got {shock.kind!r}")
            bounds = shock_bounds(t, shock.kind)  # None: unknown target or kind, reported above
            why = out_of_range(v, bounds or (-math.inf, math.inf))
            if why and shock.kind == "set" and t in shares:
                why = f"{shares[t]} (target {t}) {why}"
            _check(e, why is None, f"{k}.value", str(why))
            if t.endswith(".default_month") and t.startswith("offtaker."):
                _check(e, shock.kind == "set" and math.isfinite(v) and float(v).is_integer(), k, f"{t} takes kind set "
                       f"and a whole month (the month the offtaker fails on every path), got kind {shock.kind} and "
                       f"value {v}")
                why = out_of_range(v, OFFTAKER_DEFAULT_MONTH)
                _check(e, why is None, f"{k}.value", str(why))
            _check(e, shock.start_month >= 1 and shock.ramp_months >= 0, f"{k}",
                   f"start_month must be >= 1 and ramp_months >= 0, got {shock.start_month} and {shock.ramp_months}")
            _check(e, shock.end_month is None or shock.end_month >= shock.start_month, f"{k}.end_month",
                   f"must be >= start_month ({shock.start_month}), got {shock.end_month}")
        if len(e) > before or not sc.shocks:
            continue
        for launch in cfg.market.launches:
            step = shocked_scalar(sc.shocks, f"launch.{launch.name}.step", launch.step)
            _check(e, 0 <= step < 1, f"scenario.{s}", f"the step of launch {launch.name} after the shocks must "
                   f"be in [0, 1) (a fractional price drop), got {step:g}")
            month = shocked_scalar(sc.shocks, f"launch.{launch.name}.month", launch.month)
            _check(e, math.isfinite(month), f"scenario.{s}", f"the month of launch {launch.name} is not finite")
        shocked = {shock.target for shock in sc.shocks}
        for target in [f"price.{c}" for c in cfg.market.chips] + ["demand", "utilization", "power_price", "haircut"]:
            if target not in shocked and not (target.startswith("price.") and "price.all" in shocked):
                continue
            a, b = affine(sc.shocks, target, months)
            if target.startswith("price."):  # price.all first, then price.<chip>, as market.build_params
                a_all, b_all = affine(sc.shocks, "price.all", months)
                a, b = a * a_all, a * b_all + b
            why = combined_problem(target, a, b)
            _check(e, why is None, f"scenario.{s}", str(why))
        base = shocked_path(sc.shocks, "base_rate", cfg.market.base_rate, months)
        _check(e, bool((base >= 0).all() and (base <= 1).all()), f"scenario.{s}",
               f"the base rate after the shocks must stay in [0, 1] (decimal per year), got {base.min():g} "
               f"to {base.max():g}")
        pd_mult = shocked_scalar(sc.shocks, "pd_multiplier", 1.0)
        _check(e, 0 <= pd_mult <= PD_MULTIPLIER_MAX, f"scenario.{s}",
               f"pd_multiplier after the shocks must be in [0, {PD_MULTIPLIER_MAX:g}], got {pd_mult:g}")
        for o, off in cfg.portfolio.offtakers.items():
            renewal = shocked_scalar(sc.shocks, "renewal_prob", off.renewal_prob)
            _check(e, 0 <= renewal <= 1, f"scenario.{s}",
                   f"the renewal_prob of offtaker {o} after the shocks must be in [0, 1], got {renewal:g}")
            mult = shocked_scalar(sc.shocks, f"offtaker.{o}.pd_multiplier", 1.0)
            _check(e, 0 <= mult <= PD_MULTIPLIER_MAX, f"scenario.{s}", f"offtaker.{o}.pd_multiplier after the "
                   f"shocks must be in [0, {PD_MULTIPLIER_MAX:g}], got {mult:g}")
    return e


def _tenor_problems(tenors) -> list[str]:
    if uses_tape_tenors(tenors):
        return []
    if not isinstance(tenors, (list, tuple)):
        return [f"tenors: must be a list of months, e.g. [36, 60], or tape (each loan's tenor_months); got {tenors!r}"]
    bad = [f"tenors[{i}]: must be a whole number of months; got {t!r}" for i, t in enumerate(tenors)
           if isinstance(t, bool) or not isinstance(t, numbers.Integral)]
    if bad:
        return bad
    e: list[str] = []
    _check(e, all(0 < t <= MAX_MONTHS for t in tenors), "tenors",
           f"must be a list of months, each in 1..{MAX_MONTHS} (or tape: each loan's tenor_months), got {list(tenors)}")
    _check(e, len(set(tenors)) == len(tenors), "tenors", f"has duplicates: {list(tenors)}")
    return e


def validate(cfg: StressConfig) -> None:
    """Check ranges and names; raise one ConfigError listing every problem."""
    typed = schema_problems(cfg)  # unknown keys and wrong types first: the range checks need numbers
    if typed:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(typed))
    e: list[str] = []
    _check(e, cfg.mc.paths >= 2, "mc.paths",
           f"must be a positive integer, at least 2 (standard errors need two paths), got {cfg.mc.paths}")
    _check(e, cfg.mc.paths <= cfg.mc.max_paths, "mc.paths",
           f"{cfg.mc.paths} is above mc.max_paths={cfg.mc.max_paths} (a guard against a typo; set mc.max_paths "
           "higher to run more paths)")
    _check(e, cfg.mc.chunk_paths is None or cfg.mc.chunk_paths > 0, "mc.chunk_paths",
           f"must be a positive integer or null, got {cfg.mc.chunk_paths}")
    _check(e, cfg.mc.fan_paths >= 0, "mc.fan_paths", f"must be >= 0, got {cfg.mc.fan_paths}")
    _check(e, 0 <= cfg.mc.seed < 2**64, "mc.seed", f"must be in [0, 2^64), got {cfg.mc.seed}")
    e += _tenor_problems(cfg.tenors)
    for name, qs in (("quantiles", cfg.quantiles), ("fan_quantiles", cfg.fan_quantiles)):
        _check(e, len(qs) > 0 and all(0 < q < 1 for q in qs), name,
               f"must be a non-empty list of numbers strictly between 0 and 1, got {list(qs)}")
        _check(e, len(set(qs)) == len(qs), name, f"has duplicates: {list(qs)}")
    _check(e, cfg.backend in BACKENDS, "backend", f"must be one of {', '.join(BACKENDS)}; got {cfg.backend!r}")
    _check(e, cfg.precision in PRECISIONS, "precision",
           f"must be one of {', '.join(PRECISIONS)}; got {cfg.precision!r}")
    _check(e, cfg.output.format in FORMATS, "output.format",
           f"must be one of {', '.join(FORMATS)}; got {cfg.output.format!r}")
    ex = cfg.executor
    _check(e, ex.kind in EXECUTORS, "executor.kind", f"must be one of {', '.join(EXECUTORS)}; got {ex.kind!r}")
    _check(e, ex.workers >= 1, "executor.workers", f"must be >= 1, got {ex.workers}")
    _check(e, ex.threads_per_worker >= 1, "executor.threads_per_worker", f"must be >= 1, got {ex.threads_per_worker}")
    _check(e, ex.kind == "dask" or (ex.address is None and not ex.gpus), "executor",
           "address and gpus need executor.kind=dask")
    bad = [c for c in cfg.model.channels if c not in CHANNELS]
    _check(e, not bad, "model.channels", f"unknown {bad}; allowed: {', '.join(CHANNELS)}")
    _check(e, cfg.model.cure_months >= 1, "model.cure_months", f"must be >= 1, got {cfg.model.cure_months}")
    _check(e, 0 <= cfg.model.covenant.max_cures <= MAX_MONTHS, "model.covenant.max_cures",
           f"must be in 0..{MAX_MONTHS}, got {cfg.model.covenant.max_cures}")
    r = cfg.model.exogenous.demand_corr
    _check(e, -1 <= r <= 1, "model.exogenous.demand_corr", f"must be a correlation in [-1, 1], got {r}")
    _check(e, cfg.model.refi_ltv_max > 0, "model.refi_ltv_max", f"must be > 0, got {cfg.model.refi_ltv_max}")
    rec = cfg.model.recovery
    for key, v in (("haircut", rec.haircut), ("sale_cost", rec.sale_cost)):
        _check(e, 0 <= v <= 1, f"model.recovery.{key}", f"must be in [0, 1], got {v}")
    _check(e, 0 <= rec.lag_months <= MAX_MONTHS, "model.recovery.lag_months",
           f"must be in 0..{MAX_MONTHS} months, got {rec.lag_months}")
    _check(e, 0 <= rec.price_impact <= 1, "model.recovery.price_impact", f"must be in [0, 1], got {rec.price_impact}")
    for c, depth in rec.market_depth.items():
        _check(e, c in cfg.market.chips, f"model.recovery.market_depth.{c}",
               f"is not a chip family of the market ({', '.join(cfg.market.chips)})")
        _check(e, depth > 0, f"model.recovery.market_depth.{c}", f"must be > 0 GPUs a month (.inf = no impact), got {depth}")

    e += _facility_problems(cfg.portfolio.facilities)
    e += _offtaker_problems(cfg.portfolio.offtakers)

    m = cfg.market
    _check(e, len(m.chips) > 0, "market.chips", "the market defines no chip family")
    e += market_problems(m)  # the documented sanity range of every market number
    for c, chip in m.chips.items():
        _check(e, 0 < chip.reference_utilization < m.utilization.u_max, f"market.chips.{c}.reference_utilization",
               f"must be in (0, market.utilization.u_max={m.utilization.u_max}), got {chip.reference_utilization}")
    names = [launch.name for launch in m.launches]
    _check(e, len(set(names)) == len(names), "market.launches", f"names must be unique, got {names}")
    _check(e, m.valuation.method in VALUATION_METHODS, "market.valuation.method",
           f"must be one of {', '.join(VALUATION_METHODS)}; got {m.valuation.method!r}")

    if not cfg.scenario:
        from .messages import group_options

        e.append(f"scenario: no scenario selected; e.g. scenario=[baseline] (available: "
                 f"{', '.join(group_options('scenario', config_dirs(cfg.config_dir)))})")
    with np.errstate(over="ignore", invalid="ignore"):  # shocks that overflow are what is checked
        e += _shock_problems(cfg)
    e += analysis_problems(cfg)
    if e:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(e))


def _facility_problems(facilities: Dict[str, FacilityConfig]) -> list[str]:
    """Tranche points in [0, 1] with A < D, unique tranche names, at most MAX_FACILITIES facilities."""
    e: list[str] = []
    _check(e, len(facilities) <= MAX_FACILITIES, "portfolio.facilities",
           f"at most {MAX_FACILITIES} facilities have per-path losses, got {len(facilities)}")
    for f, fac in facilities.items():
        key = f"portfolio.facilities.{f}.tranches"
        _check(e, len(fac.tranches) > 0, key, "a facility needs at least one tranche")
        names = [t.name for t in fac.tranches]
        _check(e, len(set(names)) == len(names), key, f"tranche names must be unique, got {names}")
        for i, t in enumerate(fac.tranches):
            _check(e, 0 <= t.attachment < t.detachment <= 1, f"{key}[{i}]",
                   f"needs 0 <= attachment < detachment <= 1 (shares of the facility's principal), "
                   f"got {t.attachment} and {t.detachment}")
    return e


def _offtaker_problems(offtakers: Dict[str, OfftakerConfig]) -> list[str]:
    """Every offtaker's numbers in their OFFTAKER range, a PD for each named one and none for self,
    at most MAX_OFFTAKERS of them."""
    e: list[str] = []
    _check(e, len(offtakers) <= MAX_OFFTAKERS, "portfolio.offtakers",
           f"at most {MAX_OFFTAKERS} offtakers, got {len(offtakers)}")
    for o, off in offtakers.items():
        key = f"portfolio.offtakers.{o}"
        if o == SELF:
            _check(e, math.isnan(off.pd_annual) and off.asset_corr == 0 and off.demand_loading == 0, key,
                   "self (the borrower itself) has no default of its own: give it renewal_prob, renewal_months "
                   "and renewal_premium only")
        for name, bounds in OFFTAKER.items():
            value = getattr(off, name)
            if not (o == SELF and name == "pd_annual"):
                why = out_of_range(value, bounds)
                if name == "pd_annual" and math.isnan(value):
                    why = "is required (the offtaker's annual probability of default, e.g. 0.001)"
                _check(e, why is None, f"{key}.{name}", str(why))
    return e


def analysis_problems(cfg: StressConfig) -> list[str]:
    """Range checks of ``analysis``, the importance-sampling keys of ``mc``, and ``analyses.<name>`` of
    the analysis that runs (only: a plain run is not refused for a default it does not use)."""
    e: list[str] = []
    _check(e, cfg.analysis in ANALYSES, "analysis", f"must be one of {', '.join(ANALYSES)}; got {cfg.analysis!r}")
    _check(e, cfg.mc.is_shift_copula >= 0 and math.isfinite(cfg.mc.is_shift_copula), "mc.is_shift_copula",
           f"must be >= 0 (standard deviations towards more defaults), got {cfg.mc.is_shift_copula}")
    _check(e, cfg.mc.is_shift_demand >= 0 and math.isfinite(cfg.mc.is_shift_demand), "mc.is_shift_demand",
           f"must be >= 0 (standard deviations of lower demand), got {cfg.mc.is_shift_demand}")
    checks = {"breakeven": _breakeven_problems, "reverse": _reverse_problems, "sensitivities": _sensitivity_problems}
    if cfg.analysis in checks:
        e += checks[cfg.analysis](cfg)
    return e


def _breakeven_problems(cfg: StressConfig) -> list[str]:
    e: list[str] = []
    b, k = cfg.analyses.breakeven, "analyses.breakeven"
    for name in ("payment_pd", "pd_threshold"):
        _check(e, 0 < getattr(b, name) < 1, f"{k}.{name}", f"must be in (0, 1), got {getattr(b, name)}")
    _check(e, b.max_multiple > 0, f"{k}.max_multiple", f"must be > 0, got {b.max_multiple}")
    _check(e, b.grid >= 2, f"{k}.grid", f"must be >= 2 price levels, got {b.grid}")
    _check(e, b.tol > 0, f"{k}.tol", f"must be > 0 USD per GPU-hour, got {b.tol}")
    _check(e, b.max_rounds >= 0, f"{k}.max_rounds", f"must be >= 0, got {b.max_rounds}")
    bad = [c for c in (b.channels or []) if c not in CHANNELS]
    _check(e, b.channels is None or (len(b.channels) > 0 and not bad), f"{k}.channels",
           f"must be null or a non-empty list of {', '.join(CHANNELS)}; got {b.channels}")
    _check(e, b.tenor_metric in METRICS, f"{k}.tenor_metric", f"must be one of {', '.join(METRICS)}; got {b.tenor_metric!r}")
    _check(e, b.tenor_limit >= 0, f"{k}.tenor_limit", f"must be >= 0, got {b.tenor_limit}")
    return e


def _reverse_problems(cfg: StressConfig) -> list[str]:
    e: list[str] = []
    r, k = cfg.analyses.reverse, "analyses.reverse"
    bad = [d for d in r.directions if d not in REVERSE_DIRECTIONS]
    _check(e, len(r.directions) > 0 and not bad, f"{k}.directions",
           f"must be a non-empty list of {', '.join(REVERSE_DIRECTIONS)}; got {list(r.directions)}")
    for name in ("el_limit", "var_limit", "pd_limit"):
        _check(e, 0 < getattr(r, name) < 1, f"{k}.{name}", f"must be in (0, 1), got {getattr(r, name)}")
    _check(e, any(abs(q - r.var_quantile) < 1e-12 for q in cfg.quantiles), f"{k}.var_quantile",
           f"must be one of quantiles {list(cfg.quantiles)}, got {r.var_quantile}")
    for name in ("price_max", "utilization_max"):
        _check(e, 0 < getattr(r, name) <= 1, f"{k}.{name}", f"must be in (0, 1], got {getattr(r, name)}")
    _check(e, r.launch_max > 0, f"{k}.launch_max", f"must be > 0 months, got {r.launch_max}")
    _check(e, r.rate_max > 0, f"{k}.rate_max", f"must be > 0, got {r.rate_max}")
    _check(e, r.ramp_months >= 0, f"{k}.ramp_months", f"must be >= 0, got {r.ramp_months}")
    _check(e, r.grid >= 2, f"{k}.grid", f"must be >= 2, got {r.grid}")
    _check(e, 0 < r.rel_tol < 1, f"{k}.rel_tol", f"must be in (0, 1), got {r.rel_tol}")
    _check(e, r.max_rounds >= 0, f"{k}.max_rounds", f"must be >= 0, got {r.max_rounds}")
    return e


def _sensitivity_problems(cfg: StressConfig) -> list[str]:
    e: list[str] = []
    s, k = cfg.analyses.sensitivities, "analyses.sensitivities"
    bad = [p for p in s.parameters if p not in SENSITIVITY_PARAMETERS]
    _check(e, len(s.parameters) > 0 and not bad, f"{k}.parameters",
           f"must be a non-empty list of {', '.join(SENSITIVITY_PARAMETERS)}; got {list(s.parameters)}")
    for name in SENSITIVITY_PARAMETERS:
        _check(e, getattr(s, name) > 0, f"{k}.{name}", f"the bump must be > 0, got {getattr(s, name)}")
    _check(e, s.price < 1, f"{k}.price", f"the relative price bump must be < 1, got {s.price}")
    _check(e, s.batches >= 2, f"{k}.batches", f"must be >= 2, got {s.batches}")
    return e
