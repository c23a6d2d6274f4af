"""Config schemas (Hydra structured configs), composition from Python, and range validation.

The dataclasses below are the documentation of every key: YAML under ``conf/`` supplies the
values, and a key that is not declared here is an error (a typo never passes silently).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError

CHANNELS = ("payment", "covenant", "refinancing", "exogenous")
BACKENDS = ("auto", "numpy", "cupy")
PRECISIONS = ("float64", "float32")
FORMATS = ("netcdf", "zarr")
SHOCK_KINDS = ("add", "mul", "set")
PATH_SHOCK_TARGETS = ("demand", "utilization", "power_price", "base_rate", "haircut")
SCALAR_SHOCK_TARGETS = ("pd_multiplier",)


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

    name: str = "?"
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


@dataclass
class MarketConfig:
    name: str = "?"
    valuation_date: str = "?"
    base_rate: float = 0.04  # annual base rate (SOFR) of floating loans, baseline
    chips: Dict[str, ChipConfig] = field(default_factory=dict)
    launches: List[LaunchConfig] = field(default_factory=list)
    demand: DemandConfig = field(default_factory=DemandConfig)
    utilization: UtilizationConfig = field(default_factory=UtilizationConfig)
    valuation: ValuationConfig = field(default_factory=ValuationConfig)


@dataclass
class ShockConfig:
    """One shock of a scenario (DESIGN 2.4): ``kind`` applied to ``target`` with weight w(t).

    w(t) is 0 before ``start_month``, rises linearly to 1 over ``ramp_months``, and falls back
    to 0 after ``end_month``. ``add``: x + value w; ``mul``: x (1 + (value - 1) w);
    ``set``: x (1 - w) + value w. Launch and ``pd_multiplier`` targets are scalars, applied in full.
    """

    target: str = "?"
    kind: str = "mul"
    value: float = math.nan
    start_month: int = 1
    ramp_months: int = 0
    end_month: Optional[int] = None


@dataclass
class ScenarioConfig:
    description: str = ""
    shocks: List[ShockConfig] = field(default_factory=list)


@dataclass
class PortfolioConfig:
    name: str = "example"
    path: Optional[str] = None  # CSV or Parquet loan tape; null = the bundled example tape


@dataclass
class RecoveryConfig:
    haircut: float = 0.2  # distressed-sale discount on the collateral value, 0..1
    sale_cost: float = 0.05  # selling costs as a share of proceeds, 0..1
    lag_months: int = 6  # months from default to sale


@dataclass
class ModelConfig:
    channels: List[str] = field(default_factory=lambda: list(CHANNELS))
    cross_default: bool = False  # all loans of a borrower default together
    cure_months: int = 3  # consecutive months of LTV > ltv_max before a covenant default
    refi_ltv_max: float = 0.8  # a balloon/bullet above this LTV at maturity cannot refinance
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)


@dataclass
class MCConfig:
    paths: int = 2000
    seed: int = 20261125
    chunk_paths: Optional[int] = None  # paths per chunk; null = sized to a memory budget
    fan_paths: int = 500  # paths (the first ones) used for price, LTV and DSCR fans


@dataclass
class OutputConfig:
    dir: Optional[str] = None  # the dataset is written to DIR/results.nc; null = not written
    format: str = "netcdf"
    paths: bool = False  # also keep default_month and default_cause per path and loan
    overwrite: bool = False


@dataclass
class StressConfig:
    market: MarketConfig = field(default_factory=MarketConfig)
    portfolio: PortfolioConfig = field(default_factory=PortfolioConfig)
    scenario: Dict[str, ScenarioConfig] = field(default_factory=dict)
    tenors: List[int] = field(default_factory=lambda: [36, 60, 84])
    quantiles: List[float] = field(default_factory=lambda: [0.95, 0.99, 0.999])
    fan_quantiles: List[float] = field(default_factory=lambda: [0.05, 0.25, 0.5, 0.75, 0.95])
    mc: MCConfig = field(default_factory=MCConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    backend: str = "auto"
    precision: str = "float64"
    quiet: bool = False


def register_schemas() -> None:
    """Register the schema so that ``conf/config.yaml`` can list it first in its defaults."""
    cs = ConfigStore.instance()
    cs.store(name="stress_schema", node=StressConfig)


def conf_dir() -> Path:
    """The config tree: ``stress/conf`` in an installed wheel, ``conf/`` in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise ConfigError(f"the bundled config tree was not found next to {here}; reinstall the package")


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """Compose the bundled config with Hydra overrides, as the CLI would, e.g.
    ``compose(["scenario=[baseline]", "mc.paths=1000"])``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_schemas()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"bad config override: {exc}") from None


def to_schema(cfg: DictConfig | StressConfig) -> StressConfig:
    """Typed, validated copy of a composed config."""
    if isinstance(cfg, StressConfig):
        typed = cfg
    else:
        from omegaconf.errors import OmegaConfBaseException

        try:
            merged = OmegaConf.merge(OmegaConf.structured(StressConfig), cfg)
            typed = OmegaConf.to_object(merged)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"invalid config: {exc}") from None
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


def validate(cfg: StressConfig) -> None:
    """Check ranges and names; raise one ConfigError listing every problem."""
    e: list[str] = []
    _check(e, cfg.mc.paths > 0, "mc.paths", f"must be a positive integer, got {cfg.mc.paths}")
    _check(e, cfg.mc.chunk_paths is None or cfg.mc.chunk_paths > 0, "mc.chunk_paths",
           f"must be a positive integer or null, got {cfg.mc.chunk_paths}")
    _check(e, cfg.mc.fan_paths >= 0, "mc.fan_paths", f"must be >= 0, got {cfg.mc.fan_paths}")
    _check(e, 0 <= cfg.mc.seed < 2**64, "mc.seed", f"must be in [0, 2^64), got {cfg.mc.seed}")
    _check(e, len(cfg.tenors) > 0 and all(t > 0 for t in cfg.tenors), "tenors",
           f"must be a non-empty list of positive months, got {list(cfg.tenors)}")
    _check(e, len(set(cfg.tenors)) == len(cfg.tenors), "tenors", f"has duplicates: {list(cfg.tenors)}")
    for name, qs in (("quantiles", cfg.quantiles), ("fan_quantiles", cfg.fan_quantiles)):
        _check(e, len(qs) > 0 and all(0 < q < 1 for q in qs), name,
               f"must be a non-empty list of numbers strictly between 0 and 1, got {list(qs)}")
    _check(e, cfg.backend in BACKENDS, "backend", f"must be one of {', '.join(BACKENDS)}; got {cfg.backend!r}")
    _check(e, cfg.precision in PRECISIONS, "precision",
           f"must be one of {', '.join(PRECISIONS)}; got {cfg.precision!r}")
    _check(e, cfg.output.format in FORMATS, "output.format",
           f"must be one of {', '.join(FORMATS)}; got {cfg.output.format!r}")
    bad = [c for c in cfg.model.channels if c not in CHANNELS]
    _check(e, not bad, "model.channels", f"unknown {bad}; allowed: {', '.join(CHANNELS)}")
    _check(e, cfg.model.cure_months >= 1, "model.cure_months", f"must be >= 1, got {cfg.model.cure_months}")
    _check(e, cfg.model.refi_ltv_max > 0, "model.refi_ltv_max", f"must be > 0, got {cfg.model.refi_ltv_max}")
    rec = cfg.model.recovery
    for key, v in (("haircut", rec.haircut), ("sale_cost", rec.sale_cost)):
        _check(e, 0 <= v <= 1, f"model.recovery.{key}", f"must be in [0, 1], got {v}")
    _check(e, rec.lag_months >= 0, "model.recovery.lag_months", f"must be >= 0, got {rec.lag_months}")

    m = cfg.market
    _check(e, len(m.chips) > 0, "market.chips", "the market defines no chip family")
    for c, chip in m.chips.items():
        k = f"market.chips.{c}"
        _check(e, chip.price > 0, f"{k}.price", f"must be > 0 USD/GPU-h, got {chip.price}")
        _check(e, chip.power_kw >= 0, f"{k}.power_kw", f"must be >= 0, got {chip.power_kw}")
        _check(e, 0 <= chip.persistence < 1, f"{k}.persistence", f"must be in [0, 1), got {chip.persistence}")
        _check(e, chip.volatility >= 0, f"{k}.volatility", f"must be >= 0, got {chip.volatility}")
        _check(e, 0 <= chip.failure_rate < 1, f"{k}.failure_rate", f"must be in [0, 1), got {chip.failure_rate}")
        _check(e, 0 < chip.reference_utilization < m.utilization.u_max, f"{k}.reference_utilization",
               f"must be in (0, market.utilization.u_max={m.utilization.u_max}), got {chip.reference_utilization}")
        _check(e, chip.useful_life_months > 0, f"{k}.useful_life_months", "must be > 0")
        _check(e, chip.scrap_value >= 0, f"{k}.scrap_value", "must be >= 0")
    names = [launch.name for launch in m.launches]
    _check(e, len(set(names)) == len(names), "market.launches", f"names must be unique, got {names}")
    for i, launch in enumerate(m.launches):
        k = f"market.launches[{i}] ({launch.name})"
        _check(e, 0 <= launch.step < 1, f"{k}.step", f"must be in [0, 1), got {launch.step}")
        _check(e, launch.ramp_months >= 0, f"{k}.ramp_months", "must be >= 0")
        _check(e, launch.jitter_months >= 0, f"{k}.jitter_months", "must be >= 0")
        _check(e, math.isfinite(launch.month), f"{k}.month", "must be a number of months")
    _check(e, 0 <= m.demand.persistence < 1, "market.demand.persistence", "must be in [0, 1)")
    _check(e, 0 < m.utilization.u_max <= 1, "market.utilization.u_max", "must be in (0, 1]")
    _check(e, 0 <= m.utilization.idle_power_share <= 1, "market.utilization.idle_power_share", "must be in [0, 1]")
    _check(e, m.valuation.discount_rate > -1, "market.valuation.discount_rate", "must be > -1")

    _check(e, len(cfg.scenario) > 0, "scenario", "no scenario selected")
    targets = _known_targets(cfg)
    for s, sc in cfg.scenario.items():
        for j, shock in enumerate(sc.shocks):
            k = f"scenario.{s}.shocks[{j}]"
            _check(e, shock.target in targets, f"{k}.target",
                   f"unknown target {shock.target!r}; allowed: {', '.join(targets)}")
            _check(e, shock.kind in SHOCK_KINDS, f"{k}.kind",
                   f"must be one of {', '.join(SHOCK_KINDS)}; got {shock.kind!r}")
            _check(e, math.isfinite(shock.value), f"{k}.value", f"must be a finite number, got {shock.value}")
            _check(e, shock.start_month >= 1 and shock.ramp_months >= 0, f"{k}",
                   "start_month must be >= 1 and ramp_months >= 0")
            _check(e, shock.end_month is None or shock.end_month >= shock.start_month, f"{k}.end_month",
                   "must be >= start_month")
    if e:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(e))
