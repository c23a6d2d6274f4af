"""The memory and time a run needs, estimated from its shape before anything is allocated, and the
memory this machine can give it.

A run keeps every path's loss (and with ``output.paths`` every path's default month and cause per
loan) until the dataset is written, and each chunk in flight needs a working set proportional to
its (scenario, tenor, path, loan) cells. ``check`` refuses, with the estimate, a run that cannot
fit; the time is a rough figure for the message only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import ConfigError

CHUNK_BYTES_PER_CELL = 512  # working set of one chunk per (scenario, tenor, path, loan) cell, bytes (~270 measured, numpy)
KERNEL_CHUNK_BYTES_PER_CELL = 8  # the same on the kernel engines: only output.paths' per-path detail (3 bytes) is per cell
LOSS_COPIES = 4  # loss, loss_rate, the sorted copy of the tail measures, the write buffer
DETAIL_BYTES_PER_CELL = 2 * 3  # output.paths: default_month (int16) + default_cause (int8), kept and written
LOAN_MONTHS_PER_SECOND = 1e7  # rough numpy throughput per worker, (scenario, tenor, path, loan) cells x months a second


@dataclass
class Footprint:
    """Estimated peak memory of a run, bytes, by part, and its rough duration on numpy, seconds."""

    parts: dict[str, float]
    seconds: float

    @property
    def total(self) -> float:
        return sum(self.parts.values())


def estimate(scenarios: int, tenors: int, loans: int, months: int, paths: int, chunk: int, fan_paths: int,
             keep_paths: bool, importance_sampling: bool, workers: int = 1, kernel: bool = False) -> Footprint:
    """The footprint of ``paths`` paths of a (scenarios, tenors, loans) problem over ``months`` months,
    ``chunk`` paths at a time on ``workers`` processes of this machine, on the numpy engine or a
    ``kernel`` engine (pure arithmetic)."""
    per_cell = KERNEL_CHUNK_BYTES_PER_CELL if kernel else CHUNK_BYTES_PER_CELL
    S, K, L, P = scenarios, tenors, loans, paths
    fans = min(fan_paths, P) * S * months * (K * 2 + 8) * 8  # price (a few chips), LTV and DSCR samples
    parts = {
        "the loss of every path (mc.paths)": S * K * P * 8.0 * LOSS_COPIES + (K * P * 8.0 * 3 if importance_sampling else 0),
        "the chunks in flight (mc.chunk_paths)": workers * S * K * L * min(chunk, P) * float(per_cell),
        "the fan samples (mc.fan_paths)": float(fans),
    }
    if keep_paths:
        parts["per-path defaults of every loan (output.paths=true)"] = S * K * P * L * float(DETAIL_BYTES_PER_CELL)
    seconds = S * K * L * P * months / (LOAN_MONTHS_PER_SECOND * max(workers, 1))
    return Footprint(parts, seconds)


def _meminfo_available() -> Optional[int]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_available() -> Optional[int]:
    """What the memory limit of this process's cgroup (v2: a container, a SLURM job) leaves, bytes."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None


def available_memory() -> Optional[int]:
    """Memory this process can still allocate without swapping, bytes (None when unknown)."""
    known = [m for m in (_meminfo_available(), _cgroup_available()) if m is not None]
    return min(known) if known else None


def size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return ""


def duration(seconds: float) -> str:
    for unit, length in (("years", 365 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * length:
            return f"{seconds / length:,.0f} {unit}"
    return f"{seconds:.0f} s"


def check(fp: Footprint, paths: int, available: Optional[int] = None) -> None:
    """Raise ConfigError, naming the largest part's key and the estimate, when ``fp`` does not fit
    in ``available`` bytes (default: this machine's available memory; unknown = no check)."""
    available = available_memory() if available is None else available
    if available is None or fp.total <= available:
        return
    biggest = max(fp.parts, key=fp.parts.get)
    listed = "; ".join(f"{name}: {size(b)}" for name, b in sorted(fp.parts.items(), key=lambda kv: -kv[1]) if b)
    raise ConfigError(
        f"mc.paths={paths}: the run would need about {size(fp.total)} of memory ({listed}) but this machine has "
        f"{size(available)} available, and it would take roughly {duration(fp.seconds)} on numpy; nothing was "
        f"run. The largest part is {biggest}: lower that key (or run fewer scenarios, tenors or loans at once, "
        f"e.g. a Hydra sweep over mc.seed combined by stress-aggregate)")


def of_run(cfg, prob, chunk: int, kernel: bool = False) -> Footprint:
    """The footprint of the run of config ``cfg`` (a StressConfig) on problem ``prob``, ``chunk`` paths a
    chunk, on the numpy engine or a ``kernel`` engine."""
    S, K, L = prob.shape
    ex = cfg.executor
    workers = ex.workers if ex.kind == "dask" and ex.address is None else 1  # a LocalCluster runs on this machine
    return estimate(S, K, L, prob.months, cfg.mc.paths, chunk, cfg.mc.fan_paths, cfg.output.paths,
                    cfg.mc.importance_sampling, workers, kernel)
