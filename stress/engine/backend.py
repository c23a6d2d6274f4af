"""Choice of the engine and array library, made once per run. The only module that imports cupy.

- ``numpy``: the reference engine (stress.engine) on the CPU.
- ``cupy``: the fused CUDA kernel (kernels/engine.cu via stress.engine.gpu) on the current GPU.
- ``host``: the same kernel compiled as host C++ (stress.engine.hostkernel), one thread per CPU core.
- ``auto``: ``cupy`` when CuPy imports and a GPU answers; otherwise ``host`` when a C++ compiler
  builds the kernel (cached) and the run does not use importance sampling; otherwise ``numpy``
  (one log line says which and why).

``auto`` is resolved once per run, on the machine that starts it (:func:`select`); the executors
and every Dask worker then run the resolved engine by name, so one run never mixes engines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ConfigError
from .chunk import ChunkResult
from .problem import Problem

log = logging.getLogger("stress")


def is_kernel(name: str) -> bool:
    """True for the fused kernel (``cupy`` or ``host``): its working set does not grow with a chunk's
    paths x loans, as the numpy engine's dense arrays do."""
    return name != "numpy"


@dataclass(frozen=True)
class Backend:
    name: str  # "numpy", "cupy" or "host"
    xp: object  # the array module of the engine's arrays
    device: str  # human-readable description of where the work runs
    to_host: Callable  # device array -> numpy array

    @property
    def kernel(self) -> bool:
        return is_kernel(self.name)

    def simulate(self, prob: Problem, seed: int, start: int, stop: int, fan_paths: int, dtype=np.float64,
                 keep_paths: bool = False) -> ChunkResult:
        """Paths [start, stop) on this backend; the outputs of stress.engine.montecarlo.simulate."""
        from . import chunk, montecarlo

        if self.name == "numpy":
            return montecarlo.simulate(np, prob, seed, start, stop, fan_paths, dtype=dtype, keep_paths=keep_paths)
        if prob.importance_sampling:
            raise ConfigError(f"mc.importance_sampling runs on backend=numpy only, not backend={self.name}")
        if self.name == "host":
            from . import hostkernel

            return chunk.combine(hostkernel.simulate_threads(prob, seed, start, stop, fan_paths, dtype, keep_paths))
        from . import gpu

        cupy = self.xp
        return chunk.combine(gpu.with_memory_retry(
            lambda a, b: gpu.simulate(cupy, prob, seed, a, b, fan_paths, dtype, keep_paths),
            start, stop, cupy.cuda.memory.OutOfMemoryError))


def _cupy() -> tuple[object | None, str]:
    """(cupy module, device name) when CuPy imports and a GPU answers, else (None, reason)."""
    try:
        import cupy
    except ImportError as exc:
        return None, f"CuPy is not installed ({exc.msg}); install the 'gpu' extra"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        if count < 1:
            return None, "CuPy found no CUDA device"
        int(cupy.arange(4).sum())  # a round trip proves the driver and runtime work
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        return cupy, props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    except Exception as exc:  # any CUDA driver/runtime failure means: no usable GPU
        return None, f"CuPy cannot use a GPU: {exc}"


def _host() -> Backend:
    """The host-compiled kernel backend, or a KernelBuildError saying why it cannot be built."""
    import os

    from . import hostkernel

    hostkernel.load()
    return Backend("host", np, f"CPU, host-compiled kernel on {os.cpu_count()} threads", np.asarray)


def select(name: str, importance_sampling: bool = False) -> Backend:
    """The engine of a run. ``auto``: CuPy when a GPU is usable, else the host-compiled kernel when it
    builds and the run has no importance sampling, else numpy (one log line says which and why);
    ``cupy``: a GPU or a ConfigError; ``numpy``, ``host``: the CPU engines (``host`` a ConfigError
    when the kernel cannot be built)."""
    from . import hostkernel

    if name == "numpy":
        return Backend("numpy", np, "CPU", np.asarray)
    if name == "host":
        try:
            return _host()
        except hostkernel.KernelBuildError as exc:
            raise ConfigError(f"backend=host needs the kernels compiled as host C++: {exc}") from None
    cupy, detail = _cupy()
    if cupy is not None:
        return Backend("cupy", cupy, detail, cupy.asnumpy)
    if name == "cupy":
        raise ConfigError(f"backend=cupy was requested but {detail}. Use backend=auto or backend=numpy.")
    if importance_sampling:
        log.info("backend=auto: using numpy on the CPU because %s, and mc.importance_sampling runs on "
                 "backend=numpy only (not on the host-compiled kernel)", detail)
        return Backend("numpy", np, "CPU", np.asarray)
    try:
        be = _host()
    except hostkernel.KernelBuildError as exc:
        log.info("backend=auto: using numpy on the CPU because %s, and the host-compiled kernel is not "
                 "available: %s", detail, str(exc).splitlines()[0])
        return Backend("numpy", np, "CPU", np.asarray)
    log.info("backend=auto: using the host-compiled kernel on the CPU (%s) because %s", be.device, detail)
    return be
