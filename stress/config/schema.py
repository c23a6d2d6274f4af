"""Config schemas (Hydra structured configs) and the allowed values of their keys.

The dataclasses below are the documentation of every key: YAML under ``conf/`` supplies the
values, and a key that is not declared here is an error (a typo never passes silently).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

CHANNELS = ("payment", "covenant", "refinancing", "exogenous")
VALUATION_METHODS = ("spot", "appraisal")
BACKENDS = ("auto", "numpy", "cupy", "host")
PRECISIONS = ("float64", "float32")
FORMATS = ("netcdf", "zarr")
EXECUTORS = ("local", "dask")
SHOCK_KINDS = ("add", "mul", "set")
PATH_SHOCK_TARGETS = ("demand", "utilization", "power_price", "base_rate", "haircut")
SCALAR_SHOCK_TARGETS = ("pd_multiplier", "renewal_prob")
OFFTAKER_SHOCK_FIELDS = ("default_month", "pd_multiplier")  # offtaker.<name>.<field>, scalar targets
SELF = "self"  # the tape's offtaker of a contract with the borrower itself (an SPV leasing to its sponsor)
MAX_OFFTAKERS = 64  # declared offtakers: the engines keep one default month per (scenario, path, offtaker)
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
    ``set``: x (1 - w) + value w. Launch, ``pd_multiplier``, ``renewal_prob`` and ``offtaker.*`` targets
    are scalars, applied in full; ``offtaker.<name>.default_month`` takes ``set`` only (the month the
    offtaker fails on every path).
    """

    target: str = "?"  # price.<chip>, price.all, demand, utilization, power_price, base_rate, haircut, launch.<generation>.month|step, pd_multiplier, renewal_prob, offtaker.<name>.default_month|pd_multiplier
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
class OfftakerConfig:
    """A counterparty that rents a loan's contracted GPUs (tape column ``offtaker``). ``self`` may be
    declared with the renewal keys only: it has no default of its own (its contracts end with the loan)."""

    pd_annual: float = math.nan  # annual probability of default, decimal (required except for self)
    asset_corr: float = 0.0  # rho_o: weight of the systematic factors in the offtaker's latent variable, 0..1
    demand_loading: float = 0.0  # l_o: loading of its systematic part on the first-year AI demand factor W, -1..1 (0: the copula factor alone)
    renewal_prob: float = 0.0  # probability that a contract renews at each contract end, 0..1
    renewal_months: int = 12  # months of each renewal
    renewal_premium: float = 0.0  # renewal price = spot price of the contract's last month x (1 + premium), > -1


@dataclass
class PortfolioConfig:
    name: str = "example"  # portfolio name (info)
    path: Optional[str] = None  # CSV or Parquet loan tape; null = the bundled example tape
    facilities: Dict[str, FacilityConfig] = field(default_factory=dict)  # facilities of the tape's facility column with tranches (at most 16); {} = none
    offtakers: Dict[str, OfftakerConfig] = field(default_factory=dict)  # the counterparties of the tape's offtaker column (at most 64); {} = none


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
    """``analysis=breakeven`` (stress/analysis/): flat spot prices a loan can bear, and the longest safe tenor."""

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


TAPE = "tape"  # tenors=tape, and the tenor coordinate of its results: each loan's own tenor_months
MAX_MONTHS = 600  # longest tenor or liquidation lag, months (50 years): the month grid is allocated in full


def uses_tape_tenors(tenors) -> bool:
    """``tenors=tape`` (or ``[]``, its spelling before 'tape' existed): each loan keeps its tape tenor_months."""
    return tenors == TAPE or (isinstance(tenors, (list, tuple)) and len(tenors) == 0)


def is_tape(tenor) -> bool:
    """A tenor coordinate that stands for each loan's own tape tenor (``tape_tenor``)."""
    return isinstance(tenor, (str, np.str_)) and tenor == TAPE
