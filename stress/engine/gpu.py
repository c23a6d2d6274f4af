"""The fused CUDA kernel (kernels/engine.cu) launched through CuPy, and the out-of-memory retry.

The kernel sources ship with the package; ``cupy.RawModule`` compiles them with NVRTC on first
use (CuPy caches the binary on disk, keyed by the source). The argument layout is the one
``stress.engine.hostkernel.pack`` builds for the host build, so the CPU parity tests cover it. The array
module ``cp`` is handed in by ``stress.engine.backend`` (the only module that imports cupy).

Device memory of one launch: the problem tables (O(S x (L x T + C x H))), the per-path outputs
(S x K x P losses, plus S x K x P x L bytes only with ``output.paths``), and a scratch of
O(K x L) values per thread for a fixed number of threads: it grows with scenarios x tenors x
(paths + loans x months), never with their product.
"""

from __future__ import annotations

import functools
import logging
from typing import Callable

import numpy as np

from ..errors import ConfigError
from . import hostkernel
from .chunk import ChunkResult
from .problem import Problem

log = logging.getLogger("stress")
BLOCK = 128  # threads per block; each thread runs one (scenario, path) at a time
BLOCKS_PER_SM = 4  # resident blocks per multiprocessor aimed at (the kernel uses ~250 registers)
NVRTC_OPTIONS = ("-std=c++17", "--fmad=false")  # no fused multiply-add: stay close to numpy's rounding


@functools.lru_cache(maxsize=None)
def _module(cp, source_hash: str):
    """The compiled RawModule for the current kernel sources (one per process and hash;
    ``source_hash`` is only the cache key, so edited sources are recompiled)."""
    root = hostkernel.kernels_dir()
    code = (root / "engine.cu").read_text()
    return cp.RawModule(code=code, options=(*NVRTC_OPTIONS, f"-I{root}"))


def module(cp):
    from .hostkernel import kernel_hash

    return _module(cp, kernel_hash())


def simulate(cp, prob: Problem, seed: int, start: int, stop: int, fan_paths: int, dtype=np.float64,
             keep_paths: bool = False) -> ChunkResult:
    """Run paths [start, stop) on the current CUDA device; same outputs as stress.engine.montecarlo.simulate."""
    dtype = np.dtype(dtype)
    if getattr(prob, "importance_sampling", False):
        raise ConfigError("mc.importance_sampling runs on backend=numpy only, not on the CUDA engine")
    mod = module(cp)
    S, P = len(prob.scenarios), stop - start
    F = max(0, min(fan_paths, stop) - start)
    cfg = cp.asarray(hostkernel.config_vector(prob, seed, start, stop, fan_paths))
    reals, ints = (cp.asarray(a) for a in hostkernel.packed(prob))
    sizes = cp.zeros(4, dtype=cp.int64)
    mod.get_function("simulate_layout")((1,), (1,), (cfg, sizes))
    n_reals, n_ints, scratch_f64, scratch_f32 = (int(v) for v in cp.asnumpy(sizes))
    if (n_reals, n_ints) != (reals.size, ints.size):
        raise RuntimeError("hostkernel.pack() and kernels/engine.cu disagree on the argument layout")
    sms = cp.cuda.Device().attributes["MultiProcessorCount"]
    blocks = max(1, min(-(-S * P // BLOCK), sms * BLOCKS_PER_SM))
    per_thread = scratch_f64 if dtype == np.float64 else scratch_f32
    scratch = cp.empty(per_thread * blocks * BLOCK, dtype=cp.uint8)
    out = hostkernel.kernel_outputs(cp, prob, P, F, keep_paths)
    # a null pointer for an empty or absent output: CuPy passes a Python int as a 64-bit value
    args = [a if a is not None and a.size else 0 for a in out.values()]
    name = "simulate_paths_f64" if dtype == np.float64 else "simulate_paths_f32"
    mod.get_function(name)((blocks,), (BLOCK,), (cfg, reals, ints, *args, scratch))
    return hostkernel.chunk_result(start, {k: (cp.asnumpy(v) if v is not None else None) for k, v in out.items()})


def with_memory_retry(run_paths: Callable[[int, int], ChunkResult], start: int, stop: int,
                      out_of_memory: type[BaseException]) -> list[ChunkResult]:
    """Run paths [start, stop); on ``out_of_memory`` halve the range, log it, and retry each half
    (down to one path, after which the error is raised). Returns the results in path order."""
    try:
        return [run_paths(start, stop)]
    except out_of_memory:
        if stop - start <= 1:
            raise
        mid = start + (stop - start) // 2
        log.warning("device out of memory for paths [%d, %d): retrying in chunks of %d paths",
                    start, stop, mid - start)
        return (with_memory_retry(run_paths, start, mid, out_of_memory)
                + with_memory_retry(run_paths, mid, stop, out_of_memory))
