"""Config schemas (Hydra structured configs), composition from Python, and range validation.

The dataclasses below are the documentation of every key: YAML under ``conf/`` supplies the
values, and a key that is not declared here is an error (a typo never passes silently).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from .configerrors import explain, file_errors, interpolation_problems, schema_problems
from .errors import ConfigError
from .limits import PD_MULTIPLIER_MAX, combined_problem, market_problems, out_of_range, shock_bounds

CHANNELS = ("payment", "covenant", "refinancing", "exogenous")
VALUATION_METHODS = ("spot", "appraisal")
BACKENDS = ("auto", "numpy", "cupy", "host")
PRECISIONS = ("float64", "float32")
FORMATS = ("netcdf", "zarr")
EXECUTORS = ("local", "dask")
SHOCK_KINDS = ("add", "mul", "set")
PATH_SHOCK_TARGETS = ("demand", "utilization", "power_price", "base_rate", "haircut")
SCALAR_SHOCK_TARGETS = ("pd_multiplier",)
MAX_FACILITIES = 16  # facilities with tranches: the engines return a loss per (scenario, tenor, path, facility)


@dataclass
class ChipConfig:
    """One GPU family. Prices in USD per GPU-hour, power in kW per GPU, values in USD per GPU."""

    price: float = math.nan  # spot rental price at the valuation date, USD/GPU-h
    trend: float = 0.0  # continuous annual log-price decline outside generation steps, 1/yr
    demand_loading: float = 0.0  # kappa: log-price response to one unit of the demand factor
    volatility: float = 0.0  # sigma: scale of the chip's own stationary log-price noise
    persistence: float = 0.9  # monthly AR(1) coefficient of that noise
    power_kw: float = math.nan  # board power per GPU, kW
    useful_life_months: int = 72  # economic life from new, months
    failure_rate: float = 0.0  # annual rate of permanent GPU loss, 1/yr
    reference_utilization: float = 0.8  # baseline mean utilisation of uncontracted GPUs
    scrap_value: float = 0.0  # floor of the collateral value, USD per GPU
    opex_fixed: float = 0.0  # reference fixed opex for valuation, USD per GPU per month
    purchase_price: float = math.nan  # new price, USD per GPU (calibration check only)
    launch_month: int = 0  # months since the family launched, at the valuation date (info)


@dataclass
class LaunchConfig:
    """A future NVIDIA generation: every existing family's log price steps down by log(1-step)."""

    name: str = "?"  # generation name, the <generation> of launch.<generation>.* shock targets
    month: float = math.nan  # scheduled month after the valuation date
    step: float = 0.0  # fractional price drop of older families, 0..1
    ramp_months: int = 6  # months over which the step is phased in linearly
    jitter_months: float = 0.0  # per-path uniform jitter of the launch month, +/- months


@dataclass
class DemandConfig:
    persistence: float = 0.95  # monthly AR(1) coefficient phi of the AI demand factor


@dataclass
class UtilizationConfig:
    u_max: float = 0.95  # ceiling of utilisation of uncontracted GPUs
    demand_loading: float = 0.5  # beta: logit response to the demand factor
    idiosyncratic: float = 0.3  # sigma_u: logit noise per loan and month
    idle_power_share: float = 0.3  # share of full power an idle GPU still draws


@dataclass
class ValuationConfig:
    discount_rate: float = 0.15  # y: annual rate of the income-approach collateral valuation
    utilization: float = 0.8  # utilisation assumed by the valuation (u_ref)
    pue: float = 1.3  # PUE assumed by the valuation
    power_price: float = 0.08  # USD/kWh assumed by the valuation
    method: str = "appraisal"  # appraisal: expected rents incl. contracts, as lenders' third-party appraisals (model v2) | spot: income value at the month's spot price over the useful life (model v1)
    appraisal_months: int = 6  # appraisal method: months between appraisals; the LTV and refinancing tests use the latest one


@dataclass
class MarketConfig:
    name: str = "?"  # market name (the config group option, e.g. gpu_2026q4)
    valuation_date: str = "?"  # month 0 of the simulation, YYYY-MM-DD (info)
    base_rate: float = 0.04  # annual base rate (SOFR) of floating loans, baseline
    chips: Dict[str, ChipConfig] = field(default_factory=dict)  # GPU families by name, the chips a tape may use
    launches: List[LaunchConfig] = field(default_factory=list)  # future NVIDIA generations, in any order
    demand: DemandConfig = field(default_factory=DemandConfig)  # the AI-demand factor shared by all chips
    utilization: UtilizationConfig = field(default_factory=UtilizationConfig)  # utilisation of uncontracted GPUs
    valuation: ValuationConfig = field(default_factory=ValuationConfig)  # income-approach collateral valuation


@dataclass
class ShockConfig:
    """One shock of a scenario: ``kind`` applied to ``target`` with weight w(t).

    w(t) is 0 before ``start_month``, rises linearly to 1 over ``ramp_months``, and falls back
    to 0 after ``end_month``. ``add``: x + value w; ``mul``: x (1 + (value - 1) w);
    ``set``: x (1 - w) + value w. Launch and ``pd_multiplier`` targets are scalars, applied in full.
    """

    target: str = "?"  # price.<chip>, price.all, demand, utilization, power_price, base_rate, haircut, launch.<generation>.month|step, pd_multiplier
    kind: str = "mul"  # add | mul | set
    value: float = math.nan  # size of the shock, in the unit of the target (demand: standard deviations)
    start_month: int = 1  # first month with a non-zero weight
    ramp_months: int = 0  # months over which the weight rises linearly to 1
    end_month: Optional[int] = None  # last month of the shock; null = to the end


@dataclass
class ScenarioConfig:
    description: str = ""  # one sentence for the report
    shocks: List[ShockConfig] = field(default_factory=list)  # applied in order; none = the baseline


@dataclass
class TrancheConfig:
    name: str = "?"  # tranche name, unique within its facility (e.g. senior, mezzanine)
    attachment: float = 0.0  # A: share of the facility's principal at the valuation date below the tranche, 0..1
    detachment: float = 1.0  # D: share at which the tranche is wiped out, A < D <= 1


@dataclass
class FacilityConfig:
    tranches: List[TrancheConfig] = field(default_factory=list)  # slices of the facility's debt (static, no sequential paydown)


@dataclass
class PortfolioConfig:
    name: str = "example"  # portfolio name (info)
    path: Optional[str] = None  # CSV or Parquet loan tape; null = the bundled example tape
    facilities: Dict[str, FacilityConfig] = field(default_factory=dict)  # facilities of the tape's facility column with tranches (at most 16); {} = none


@dataclass
class RecoveryConfig:
    haircut: float = 0.2  # distressed-sale discount on the collateral value, 0..1
    sale_cost: float = 0.05  # selling costs as a share of proceeds, 0..1
    lag_months: int = 6  # months from default to sale
    market_depth: Dict[str, float] = field(default_factory=dict)  # GPUs of a chip family the secondary market absorbs per month at the appraised value; a family not listed = infinite (.inf)
    price_impact: float = 0.0  # fire sale: proceeds x (1 - price_impact x min(1, sold / depth)), sold = the GPUs of that family the book sells that month on that path, 0..1 (0 = none)


@dataclass
class ExogenousConfig:
    demand_corr: float = 0.0  # r: correlation of the copula's systematic factor with the first-year AI demand innovation, -1..1 (0: model v1; > 0 = wrong-way risk)


@dataclass
class CovenantConfig:
    cash_trap: bool = True  # while LTV > ltv_max all excess cash prepays principal (false: model v1)
    max_cures: int = 2  # equity cures of an LTV breach over the life, each up to the tape's cure_capacity (0: model v1); 2 as a typical cure clause, which caps cures so a sponsor cannot hold off a lasting breach


@dataclass
class ModelConfig:
    channels: List[str] = field(default_factory=lambda: list(CHANNELS))  # default channels: payment, covenant, refinancing, exogenous
    cross_default: bool = False  # all loans of a borrower default together
    cure_months: int = 3  # consecutive months of LTV > ltv_max before a covenant default
    refi_ltv_max: float = 0.8  # a balloon/bullet above this LTV at maturity cannot refinance
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)  # liquidation of repossessed GPUs
    covenant: CovenantConfig = field(default_factory=CovenantConfig)  # what an LTV breach does before it defaults
    exogenous: ExogenousConfig = field(default_factory=ExogenousConfig)  # the exogenous (copula) default channel


@dataclass
class MCConfig:
    paths: int = 2000  # Monte Carlo paths (at least 2), shared by all scenarios and tenors (common random numbers)
    seed: int = 20261125  # 64-bit Philox key: the same seed gives the same paths on every backend and chunk size
    chunk_paths: Optional[int] = None  # paths per chunk; null = sized to a memory budget
    fan_paths: int = 500  # paths (the first ones) used for price, LTV and DSCR fans
    importance_sampling: bool = False  # shift the systematic normals to the adverse side; results carry weights
    is_shift_copula: float = 0.5  # IS: the copula systematic factor Z -> Z - shift (standard deviations)
    is_shift_demand: float = 1.0  # IS: stationary mean of the demand factor moved down by this many sd
    max_paths: int = 100_000_000  # mc.paths above this is refused as a likely typo (raise it for a bigger run); a run that cannot fit in memory is refused anyway


@dataclass
class OutputConfig:
    dir: Optional[str] = None  # the dataset is written to DIR/results.nc; null = not written
    format: str = "netcdf"  # netcdf | zarr (zarr needs the dask extra)
    paths: bool = False  # also keep default_month and default_cause per path and loan
    overwrite: bool = False  # replace an existing results file
    resume: bool = False  # reuse the finished chunks stored in DIR/chunks/ by an interrupted run
    figures: bool = True  # draw the PNG figures into DIR and report.html; false: report.html holds the tables only


@dataclass
class ExecutorConfig:
    """Where the path chunks run: ``local`` (a loop in this process) or ``dask`` (one task per chunk)."""

    kind: str = "local"  # local | dask
    address: Optional[str] = None  # scheduler of an existing Dask cluster, e.g. tcp://host:8786; null = start one
    workers: int = 2  # worker processes of the LocalCluster started when address is null
    threads_per_worker: int = 1  # threads per worker process of that LocalCluster
    gpus: bool = False  # workers run CuPy; with no address, a dask_cuda LocalCUDACluster (one worker per GPU)


ANALYSES = ("run", "breakeven", "reverse", "sensitivities")
METRICS = ("pd", "el")
REVERSE_DIRECTIONS = ("price", "launch", "utilization", "rate")
SENSITIVITY_PARAMETERS = ("price", "trend", "demand_loading", "volatility", "launch_step", "base_rate",
                          "utilization", "haircut")


@dataclass
class BreakevenConfig:
    """``analysis=breakeven`` (stress/analysis.py): flat spot prices a loan can bear, and the longest safe tenor."""

    payment_pd: float = 0.5  # breakeven_price: the flat price where this share of paths misses a payment
    pd_threshold: float = 0.05  # pd_threshold_price: the flat price where the PD crosses this
    channels: Optional[List[str]] = None  # channels of that PD and of max_safe_tenor; null = model.channels
    max_multiple: float = 2.0  # price grid: 0 .. max_multiple x the chip's spot price at the valuation date
    grid: int = 11  # price levels of the first, batched grid
    tol: float = 0.01  # bisection stops when the bracket is this narrow, USD per GPU-hour
    max_rounds: int = 10  # at most this many bisection rounds after the grid
    fix_demand: bool = True  # also set the demand factor to 0 (utilisation then varies only loan by loan)
    tenor_metric: str = "pd"  # max_safe_tenor: pd (PD by maturity) or el (EL / principal)
    tenor_limit: float = 0.05  # max_safe_tenor: the longest swept tenor whose metric stays <= this


@dataclass
class ReverseConfig:
    """``analysis=reverse``: the smallest shock in each direction that breaches each limit."""

    directions: List[str] = field(default_factory=lambda: list(REVERSE_DIRECTIONS))  # price | launch | utilization | rate
    el_limit: float = 0.05  # target el: portfolio EL / principal above this
    var_limit: float = 0.20  # target var: VaR / principal above this
    var_quantile: float = 0.99  # the VaR level of target var (one of `quantiles`)
    pd_limit: float = 0.25  # target pd: any loan's PD above this
    pd_new_breach: bool = False  # target pd: only loans whose PD is <= pd_limit without the shock count
    price_max: float = 0.9  # largest price drop searched (price.all mul 1 - x), 0..1
    launch_max: float = 12.0  # largest advance of the first launch searched, months
    utilization_max: float = 0.9  # largest utilisation drop searched (utilization mul 1 - x), 0..1
    rate_max: float = 0.10  # largest base-rate rise searched (base_rate add x), decimal per year
    ramp_months: int = 12  # price, utilisation and rate shocks phase in linearly over this many months
    grid: int = 8  # grid steps per direction in the first batched run
    rel_tol: float = 0.01  # bisection stops at this share of the direction's range ...
    max_rounds: int = 6  # ... or after this many rounds, or when the bracket is 1/4 of the MC error


@dataclass
class SensitivityConfig:
    """``analysis=sensitivities``: central finite differences on common random numbers."""

    parameters: List[str] = field(default_factory=lambda: list(SENSITIVITY_PARAMETERS))  # the parameters bumped (the bumps below)
    price: float = 0.05  # bump: relative change of every chip's price (price.all mul 1 +/- h)
    trend: float = 0.01  # bump: market.chips.*.trend, 1/yr
    demand_loading: float = 0.02  # bump: market.chips.*.demand_loading
    volatility: float = 0.02  # bump: market.chips.*.volatility
    launch_step: float = 0.02  # bump: every launch.<generation>.step (add)
    base_rate: float = 0.005  # bump: base_rate add, decimal per year
    utilization: float = 0.02  # bump: utilization add (absolute share)
    haircut: float = 0.02  # bump: haircut add
    batches: int = 10  # VaR/ES standard errors: batch means over this many blocks of paths


@dataclass
class AnalysisConfig:
    breakeven: BreakevenConfig = field(default_factory=BreakevenConfig)
    reverse: ReverseConfig = field(default_factory=ReverseConfig)
    sensitivities: SensitivityConfig = field(default_factory=SensitivityConfig)


@dataclass
class StressConfig:
    market: MarketConfig = field(default_factory=MarketConfig)  # config group (conf/market/): chips, launches, demand, utilisation, valuation
    portfolio: PortfolioConfig = field(default_factory=PortfolioConfig)  # config group (conf/portfolio/): the loan tape
    scenario: Dict[str, ScenarioConfig] = field(default_factory=dict)  # config group, several at once: scenario=[baseline,ai_winter]
    tenors: Any = field(default_factory=lambda: [36, 60, 84],  # months (1..600), each loan re-scheduled at each;
                        metadata={"type": "List[int] | tape"})  # or tape: each loan's own tenor_months (tenor coordinate 'tape'; [] means tape too)
    quantiles: List[float] = field(default_factory=lambda: [0.95, 0.99, 0.999])  # VaR and ES levels
    fan_quantiles: List[float] = field(default_factory=lambda: [0.05, 0.25, 0.5, 0.75, 0.95])  # quantiles of the price, LTV and DSCR fans
    mc: MCConfig = field(default_factory=MCConfig)  # Monte Carlo sampling
    model: ModelConfig = field(default_factory=ModelConfig)  # default channels and recovery
    output: OutputConfig = field(default_factory=OutputConfig)  # where and how the results dataset is written
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)  # where the path chunks run
    analysis: str = "run"  # run | breakeven | reverse | sensitivities (stress.analyze; see AnalysisConfig)
    analyses: AnalysisConfig = field(default_factory=AnalysisConfig)  # parameters of analysis=breakeven, reverse, sensitivities
    backend: str = "auto"  # auto (CuPy when a GPU is usable, else the host kernel when g++ builds it, else numpy) | numpy | cupy (fused CUDA kernel) | host (the kernel as C++ on all cores)
    precision: str = "float64"  # float64 | float32
    quiet: bool = False  # no summary tables, no progress bar
    config_dir: Optional[str] = None  # the config folder of the run (stress-test --config-dir DIR; stress-test init DIR makes one); null = the bundled conf/


def register_schemas() -> None:
    """Register the schema so that ``conf/config.yaml`` can list it first in its defaults."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="stress_schema", node=StressConfig)


def conf_dir() -> Path:
    """The config tree: ``stress/conf`` in an installed wheel, ``conf/`` in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise ConfigError(f"the bundled config tree was not found next to {here}; reinstall the package")


def config_dirs(config_dir: str | None) -> list[Path]:
    """The config folders a run looks in, first match wins: the user's ``config_dir``, then the bundled one."""
    return ([Path(config_dir)] if config_dir else []) + [conf_dir()]


def compose(overrides: Sequence[str] = (), config_dir: str | Path | None = None) -> DictConfig:
    """Compose the bundled config (or the config folder ``config_dir``, e.g. one made by
    ``stress-test init``) with Hydra overrides, as the CLI would, e.g.
    ``compose(["scenario=[baseline]", "mc.paths=1000"])``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_schemas()
    root = conf_dir() if config_dir is None else Path(config_dir).expanduser().resolve()
    dirs = config_dirs(None if config_dir is None else str(root))
    try:
        with initialize_config_dir(config_dir=str(root), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, *file_errors()) as exc:
        raise ConfigError(f"invalid config: {explain(exc, dirs)}") from None
    refuse_interpolations(cfg, overrides, dirs)
    if config_dir is not None:
        with open_dict(cfg):
            cfg.config_dir = str(root)
    return cfg


def refuse_interpolations(cfg: DictConfig | dict, overrides: Sequence[str] = (), search_dirs: Sequence[Path] = ()) -> None:
    """ConfigError naming the file (or override) and key of every ``${...}`` in the config (none is resolved)."""
    problems = interpolation_problems(cfg, overrides, search_dirs)
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))


def to_schema(cfg: DictConfig | StressConfig) -> StressConfig:
    """Typed, validated copy of a composed config."""
    refuse_interpolations(dataclasses.asdict(cfg) if isinstance(cfg, StressConfig) else cfg)
    if isinstance(cfg, StressConfig):
        typed = cfg
    else:
        from omegaconf.errors import OmegaConfBaseException

        try:
            merged = OmegaConf.merge(OmegaConf.structured(StressConfig), cfg)
            typed = OmegaConf.to_object(merged)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"invalid config: {explain(exc)}") from None
    validate(typed)
    return typed


def _check(errors: list[str], ok: bool, key: str, message: str) -> None:
    if not ok:
        errors.append(f"{key}: {message}")


def _known_targets(cfg: StressConfig) -> list[str]:
    targets = [f"price.{c}" for c in cfg.market.chips] + ["price.all"]
    targets += list(PATH_SHOCK_TARGETS) + list(SCALAR_SHOCK_TARGETS)
    for launch in cfg.market.launches:
        targets += [f"launch.{launch.name}.month", f"launch.{launch.name}.step"]
    return targets


TAPE = "tape"  # tenors=tape, and the tenor coordinate of its results: each loan's own tenor_months
MAX_MONTHS = 600  # longest tenor or liquidation lag, months (50 years): the month grid is allocated in full


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
    return e


def uses_tape_tenors(tenors) -> bool:
    """``tenors=tape`` (or ``[]``, its spelling before 'tape' existed): each loan keeps its tape tenor_months."""
    return tenors == TAPE or (isinstance(tenors, (list, tuple)) and len(tenors) == 0)


def is_tape(tenor) -> bool:
    """A tenor coordinate that stands for each loan's own tape tenor (``tape_tenor``)."""
    return isinstance(tenor, (str, np.str_)) and tenor == TAPE


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
        from .configerrors import group_options

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


# ------------------------------------------------------------------ generated key reference

def _field_comments(cls: type) -> dict[str, str]:
    """The trailing ``# comment`` of each field of a dataclass, read from its source."""
    import ast
    import inspect
    import io
    import tokenize

    src = inspect.getsource(cls)
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(src).readline) if tok.type == tokenize.COMMENT}
    out = {}
    for node in ast.parse(src).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            lines = range(node.lineno, node.end_lineno + 1)
            out[node.target.id] = " ".join(comments[i] for i in lines if i in comments)
    return out


def _yaml_value(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_yaml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_yaml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, str) and v == "":
        return '""'
    return str(v)


def config_keys(cls: type = None, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Every config key as (dotted name, type, schema default, comment), walking the dataclass
    schemas from ``StressConfig``; ``<name>`` stands for a key of a dict, ``[]`` for a list item."""
    import typing

    cls = cls or StressConfig
    hints = typing.get_type_hints(cls)
    docs = _field_comments(cls)
    rows = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        hint = hints[f.name]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if f.default is not dataclasses.MISSING:
            default = _yaml_value(f.default)
        elif f.default_factory is not dataclasses.MISSING and not dataclasses.is_dataclass(hint):
            default = _yaml_value(f.default_factory())
        else:
            default = ""
        item = {dict: args[-1] if args else None, list: args[0] if args else None}.get(origin)
        child = hint if dataclasses.is_dataclass(hint) else item if dataclasses.is_dataclass(item) else None
        doc = docs.get(f.name, "")
        if not doc and child is not None:
            doc = (inspect_doc(child) or "").strip()
        rows.append((key, f.metadata.get("type", str(f.type)), default, doc))  # metadata: a type OmegaConf lacks
        if child is not None:
            sub = key + (".<name>." if origin is dict else "[]." if origin is list else ".")
            rows += config_keys(child, sub)
    return rows


def inspect_doc(cls: type) -> str:
    """The first paragraph of a class's own docstring, on one line ('' when it has none)."""
    doc = cls.__dict__.get("__doc__") or ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def config_reference() -> str:
    """Markdown table of every config key (docs/configuration.md, ``python -m stress.config``)."""
    import re

    cell = lambda s: s.replace("|", "\\|")  # noqa: E731
    text = lambda s: re.sub(r"<([\w.]+)>", r"&lt;\1&gt;", cell(s))  # outside code, <name> would be an HTML tag  # noqa: E731
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, typ, default, doc in config_keys():
        lines.append(f"| `{key}` | `{cell(typ)}` | {f'`{cell(default)}`' if default else ''} | {text(doc)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from stress.config import config_reference as _reference  # the package's own copy of the schemas

    print(_reference(), end="")
