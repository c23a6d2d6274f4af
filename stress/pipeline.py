"""The main run: the loan tape and the config in, the results Dataset out (written atomically
when ``output.dir`` is set), through the problem, the chosen backend and the executor of chunks."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from .config.compose import to_schema
from .config.install import VERSION, config_dirs, tape_path
from .config.portfolio import load_portfolio
from .config.schema import StressConfig
from .engine import backend, executor, footprint, lock, problem
from .engine.checkpoint import ChunkStore, stored_chunk_paths
from .engine.chunk import chunk_paths
from .engine.hostkernel import kernel_hash
from .errors import ConfigError

if TYPE_CHECKING:
    import xarray as xr

log = logging.getLogger("stress")


def run(config: DictConfig | StressConfig) -> xr.Dataset:
    """Run the stress test described by ``config`` and return the results Dataset; when
    ``output.dir`` is set, also write it there (refusing to overwrite unless asked), keeping each
    finished chunk under ``output.dir/chunks/`` until then (``output.resume=true`` reuses them),
    holding the lock of ``output.dir`` throughout (:mod:`stress.engine.lock`: one run per directory)."""
    cfg = to_schema(config)
    if cfg.output.dir is None:
        if cfg.output.resume:
            raise ConfigError("output.resume=true needs output.dir (where the chunks of the earlier run are)")
        return _run(cfg)
    with lock.held(cfg.output.dir):
        return _run(cfg)


def _run(cfg: StressConfig) -> xr.Dataset:
    from .results import dataset

    tape = load_portfolio(tape_path(cfg), cfg.market.chips.keys())
    if cfg.output.dir is not None:
        dataset.check_writable(cfg.output.dir, cfg.output.format, cfg.output.overwrite)
    prob = problem.build_problem(cfg, tape)
    S, K, L = prob.shape
    be = backend.select(cfg.backend, cfg.mc.importance_sampling)  # auto resolved here, once per run
    kernel = backend.is_kernel(executor.engine_of(cfg, be))
    chunk = chunk_paths(cfg, prob, kernel)
    stored = stored_chunk_paths(cfg.output.dir) if cfg.output.resume and cfg.mc.chunk_paths is None else None
    if stored is not None and stored != chunk:  # the default chunk depends on the engine, a chunk's numbers do not
        log.info("output.resume=true: continuing in the stored run's chunks of %d paths (this engine's default: %d)",
                 stored, chunk)
        chunk = stored
    footprint.check(footprint.of_run(cfg, prob, chunk, kernel), cfg.mc.paths)  # before any per-path array or chunk file
    store = None if cfg.output.dir is None else ChunkStore.open(cfg, chunk, tape_path(cfg), VERSION)
    started = time.perf_counter()
    with executor.start(cfg, be) as ex:
        combined = executor.run_chunks(ex, prob, cfg, chunk, store)
    log.info("simulated %d paths x %d scenarios x %d tenors x %d loans x %d months on %s in %.1f s",
             cfg.mc.paths, S, K, L, prob.months, ex.device, time.perf_counter() - started)
    attrs = dataset.run_attributes(OmegaConf.to_yaml(OmegaConf.structured(cfg)), cfg.mc.seed, ex.backend,
                                   cfg.precision, cfg.mc.paths, VERSION, kernel_hash())
    attrs["portfolio"] = str(tape.source)
    attrs["config_dir"] = str(config_dirs(cfg.config_dir)[0])
    ds = dataset.build_dataset(prob, combined, cfg.quantiles, cfg.fan_quantiles, attrs)
    if cfg.output.dir is not None:
        path = dataset.write(ds, cfg.output.dir, cfg.output.format, cfg.output.overwrite)
        ds.attrs["written_to"] = str(path)
        store.remove()  # the dataset holds everything the chunks held
    return ds
