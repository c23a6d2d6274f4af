"""GPU-collateral credit stress tester: Monte Carlo losses of loans secured on data-centre GPUs.

``run(config) -> xarray.Dataset`` is the single entry point shared by the CLI, the tests, Dask
workers and notebooks; ``compose(overrides)`` builds a config from the bundled ``conf/`` tree.
"""

from __future__ import annotations

import hashlib
import logging
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import xarray as xr
from omegaconf import DictConfig, OmegaConf

from . import backend as _backend
from . import engine, results
from .config import StressConfig, compose, conf_dir, to_schema
from .errors import ConfigError, OutputError, StressError, TapeError
from .portfolio import load_portfolio

try:
    __version__ = version("gpu-credit-stress")
except PackageNotFoundError:  # running from a source checkout without installing
    __version__ = "0+unknown"

__all__ = ["run", "compose", "StressConfig", "StressError", "ConfigError", "TapeError", "OutputError",
           "__version__"]

log = logging.getLogger("stress")
CELLS_PER_CHUNK = 1 << 20  # default chunk: about this many (scenario, tenor, path, loan) cells


def kernel_hash() -> str:
    """SHA-256 over the kernel sources shipped with the package ('none' when there are none)."""
    root = conf_dir().parent / "kernels"
    files = sorted(root.glob("*.cu*")) + sorted(root.glob("*.h"))
    if not files:
        return "none"
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def tape_path(cfg: StressConfig) -> Path:
    """The loan tape of the run: ``portfolio.path``, or the bundled example when null."""
    if cfg.portfolio.path is None:
        return conf_dir() / "portfolio" / "example_loans.csv"
    return Path(cfg.portfolio.path).expanduser()


def run(config: DictConfig | StressConfig) -> xr.Dataset:
    """Run the stress test described by ``config`` and return the results Dataset; when
    ``output.dir`` is set, also write it there (refusing to overwrite unless asked)."""
    cfg = to_schema(config)
    be = _backend.select(cfg.backend)
    tape = load_portfolio(tape_path(cfg), cfg.market.chips.keys())
    if cfg.output.dir is not None:
        results.check_writable(cfg.output.dir, cfg.output.format, cfg.output.overwrite)
    prob = engine.build_problem(cfg, tape)
    S, K, L = prob.shape
    chunk = cfg.mc.chunk_paths or max(1, CELLS_PER_CHUNK // (S * K * L))
    dtype = np.dtype(cfg.precision)
    started = time.perf_counter()
    chunks = [engine.simulate(be.xp, prob, cfg.mc.seed, a, min(a + chunk, cfg.mc.paths), cfg.mc.fan_paths,
                              dtype=dtype, keep_paths=cfg.output.paths, to_host=be.to_host)
              for a in range(0, cfg.mc.paths, chunk)]
    elapsed = time.perf_counter() - started
    log.info("simulated %d paths x %d scenarios x %d tenors x %d loans x %d months on %s in %.1f s",
             cfg.mc.paths, S, K, L, prob.months, be.device, elapsed)
    attrs = results.run_attributes(OmegaConf.to_yaml(OmegaConf.structured(cfg)), cfg.mc.seed, be.name,
                                   cfg.precision, cfg.mc.paths, __version__, kernel_hash())
    attrs["portfolio"] = str(tape.source)
    ds = results.build_dataset(prob, results.combine(chunks), cfg.quantiles, cfg.fan_quantiles, attrs)
    if cfg.output.dir is not None:
        path = results.write(ds, cfg.output.dir, cfg.output.format, cfg.output.overwrite)
        ds.attrs["written_to"] = str(path)
    return ds
