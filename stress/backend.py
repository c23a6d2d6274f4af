"""Choice of the array library, made once per run. The only module that imports cupy."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import ConfigError

log = logging.getLogger("stress")


@dataclass(frozen=True)
class Backend:
    name: str  # "numpy" or "cupy"
    xp: object  # the array module
    device: str  # human-readable description of where the arrays live
    to_host: Callable  # device array -> numpy array


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


def select(name: str) -> Backend:
    """``auto``: CuPy when a GPU is usable, otherwise numpy (one log line says why);
    ``cupy``: a GPU or a ConfigError; ``numpy``: numpy."""
    if name == "numpy":
        return Backend("numpy", np, "CPU", np.asarray)
    cupy, detail = _cupy()
    if cupy is not None:
        return Backend("cupy", cupy, detail, cupy.asnumpy)
    if name == "cupy":
        raise ConfigError(f"backend=cupy was requested but {detail}. Use backend=auto or backend=numpy.")
    log.info("backend=auto: using numpy on the CPU because %s", detail)
    return Backend("numpy", np, "CPU", np.asarray)
