"""GPU-collateral credit stress tester: Monte Carlo losses of loans secured on data-centre GPUs.

``run(config) -> xarray.Dataset`` is the single entry point shared by the CLI, the tests, Dask
workers and notebooks; ``compose(overrides)`` builds a config from the bundled ``conf/`` tree.

``import stress`` stays light (no xarray, pandas, scipy, pyarrow, Hydra, Dask or matplotlib): those
are imported where a run first needs them. The ``ds.stress`` accessor is registered as soon as
xarray is imported, by this package or by the user (stress/accessor.py).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.util
import logging
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from . import backend, engine, executor, footprint, lock
from .checkpoint import ChunkStore
from .config import StressConfig, compose, conf_dir, config_dirs, to_schema
from .errors import ConfigError, OutputError, StressError, TapeError
from .portfolio import load_portfolio

if TYPE_CHECKING:
    import xarray as xr


class _AccessorOnXarrayImport(importlib.abc.MetaPathFinder):
    """Registers ``ds.stress`` (imports stress.accessor) right after xarray's first import."""

    def find_spec(self, name, path=None, target=None):
        if name != "xarray":
            return None
        sys.meta_path.remove(self)  # the finders after this one find xarray itself
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            run_module = spec.loader.exec_module

            def exec_module(module):
                run_module(module)
                importlib.import_module(f"{__name__}.accessor")

            spec.loader.exec_module = exec_module
        return spec


if "xarray" in sys.modules:
    from . import accessor  # noqa: F401  (registers ds.stress)
else:
    sys.meta_path.insert(0, _AccessorOnXarrayImport())

try:
    __version__ = version("gpu-credit-stress")
except PackageNotFoundError:  # running from a source checkout without installing
    __version__ = "0+unknown"

__all__ = ["run", "analyze", "compose", "StressConfig", "StressError", "ConfigError", "TapeError", "OutputError",
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
    """The loan tape of the run: ``portfolio.path``, or the example tape of the config folder when null
    (the user's ``config_dir`` first, then the bundled conf/)."""
    path = Path("portfolio/example_loans.csv" if cfg.portfolio.path is None else cfg.portfolio.path).expanduser()
    if cfg.portfolio.path is not None and (path.is_absolute() or path.exists()):
        return path
    for root in config_dirs(cfg.config_dir):
        if (root / path).is_file():
            return root / path  # a tape of the config folder, e.g. portfolio/h100_2023_loans.csv
    return path


def analyze(config: DictConfig | StressConfig) -> xr.Dataset:
    """The analysis named by ``analysis`` (breakeven, reverse, sensitivities; ``run`` = ``run``) as a
    Dataset; with ``output.dir``, also written to ``output.dir/analysis_<name>.nc`` (stress/analysis.py)."""
    from .analysis import analyze as _analyze

    return _analyze(config)


def run(config: DictConfig | StressConfig) -> xr.Dataset:
    """Run the stress test described by ``config`` and return the results Dataset; when
    ``output.dir`` is set, also write it there (refusing to overwrite unless asked), keeping each
    finished chunk under ``output.dir/chunks/`` until then (``output.resume=true`` reuses them),
    holding the lock of ``output.dir`` throughout (:mod:`stress.lock`: one run per directory)."""
    cfg = to_schema(config)
    if cfg.output.dir is None:
        if cfg.output.resume:
            raise ConfigError("output.resume=true needs output.dir (where the chunks of the earlier run are)")
        return _run(cfg)
    with lock.held(cfg.output.dir):
        return _run(cfg)


def _run(cfg: StressConfig) -> xr.Dataset:
    from . import results

    tape = load_portfolio(tape_path(cfg), cfg.market.chips.keys())
    if cfg.output.dir is not None:
        results.check_writable(cfg.output.dir, cfg.output.format, cfg.output.overwrite)
    prob = engine.build_problem(cfg, tape)
    S, K, L = prob.shape
    chunk = cfg.mc.chunk_paths or max(1, CELLS_PER_CHUNK // (S * K * L))
    footprint.check(footprint.of_run(cfg, prob, chunk), cfg.mc.paths)  # before any per-path array or chunk file
    store = None if cfg.output.dir is None else ChunkStore.open(cfg, chunk, tape_path(cfg), __version__)
    started = time.perf_counter()
    be = backend.select(cfg.backend, cfg.mc.importance_sampling)  # auto resolved here, once per run
    with executor.start(cfg, be) as ex:
        combined = executor.run_chunks(ex, prob, cfg, chunk, store)
    log.info("simulated %d paths x %d scenarios x %d tenors x %d loans x %d months on %s in %.1f s",
             cfg.mc.paths, S, K, L, prob.months, ex.device, time.perf_counter() - started)
    attrs = results.run_attributes(OmegaConf.to_yaml(OmegaConf.structured(cfg)), cfg.mc.seed, ex.backend,
                                   cfg.precision, cfg.mc.paths, __version__, kernel_hash())
    attrs["portfolio"] = str(tape.source)
    attrs["config_dir"] = str(config_dirs(cfg.config_dir)[0])
    ds = results.build_dataset(prob, combined, cfg.quantiles, cfg.fan_quantiles, attrs)
    if cfg.output.dir is not None:
        path = results.write(ds, cfg.output.dir, cfg.output.format, cfg.output.overwrite)
        ds.attrs["written_to"] = str(path)
        store.remove()  # the dataset holds everything the chunks held
    return ds
