"""What every analysis shares: its batched engine runs on the seed of the config (common
random numbers), and the shocks it adds after the base scenario's own."""

from __future__ import annotations

import copy
import dataclasses
import logging

import numpy as np
import xarray as xr

from ..config.portfolio import Portfolio
from ..config.schema import ScenarioConfig, ShockConfig, StressConfig
from ..engine import backend as _backend
from ..engine import footprint, montecarlo, problem
from ..engine.chunk import chunk_paths, combine
from ..results import dataset

log = logging.getLogger("stress")
TARGETS = ("el", "var", "pd")


# ------------------------------------------------------------------------------------ engine runs

@dataclasses.dataclass
class Context:
    """What every batched run of an analysis shares."""

    cfg: StressConfig
    tape: Portfolio
    be: _backend.Backend
    runs: int = 0
    scenarios_run: int = 0

    @property
    def base_name(self) -> str:
        return next(iter(self.cfg.scenario))

    @property
    def base_shocks(self) -> list[ShockConfig]:
        return list(self.cfg.scenario[self.base_name].shocks)


def make_shock(target: str, kind: str, value: float, ramp: int = 0) -> ShockConfig:
    """A shock of the analysis from month 1 on (after a ramp of ``ramp`` months)."""
    return ShockConfig(target=target, kind=kind, value=float(value), start_month=1, ramp_months=int(ramp))


def _chunk(be, prob, seed: int, start: int, stop: int, dtype):
    """Paths [start, stop) on the run's backend (its own engine when it has one: the fused kernel
    on backend=cupy or host, which refuse importance sampling), no fans, no per-path detail."""
    if hasattr(be, "simulate"):
        return be.simulate(prob, seed, start, stop, 0, dtype=dtype, keep_paths=False)
    return montecarlo.simulate(be.xp, prob, seed, start, stop, 0, dtype=dtype, keep_paths=False, to_host=be.to_host)


def run_batch(ctx: Context, scenarios: dict[str, list[ShockConfig]], *, cfg: StressConfig | None = None,
              tape: Portfolio | None = None, channels=None, cross_default=None) -> xr.Dataset:
    """One batched engine run of ``scenarios`` (name -> shocks) on the seed of the config, with the
    results Dataset of the main run (weighted metrics under importance sampling), no fans."""
    c = copy.deepcopy(cfg or ctx.cfg)
    c.scenario = {name: ScenarioConfig(description=name, shocks=list(shocks)) for name, shocks in scenarios.items()}
    if channels is not None:
        c.model.channels = list(channels)
    if cross_default is not None:
        c.model.cross_default = cross_default
    c.mc.fan_paths = 0
    tape = tape if tape is not None else ctx.tape
    prob = problem.build_problem(c, tape)
    S, K, L = prob.shape
    kernel = ctx.be.kernel
    chunk = chunk_paths(c, prob, kernel)
    footprint.check(footprint.estimate(S, K, L, prob.months, c.mc.paths, chunk, 0, False, c.mc.importance_sampling,
                                       kernel=kernel),
                    c.mc.paths)
    dtype = np.dtype(c.precision)
    chunks = [_chunk(ctx.be, prob, c.mc.seed, a, min(a + chunk, c.mc.paths), dtype)
              for a in range(0, c.mc.paths, chunk)]
    ctx.runs += 1
    ctx.scenarios_run += S
    return dataset.build_dataset(prob, combine(chunks), c.quantiles, c.fan_quantiles, {"paths": c.mc.paths})
