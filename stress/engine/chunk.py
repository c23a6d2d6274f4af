"""A chunk of Monte Carlo paths: its results (``ChunkResult``), how chunks are joined in path
order, and how many paths a chunk holds by default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

if TYPE_CHECKING:
    from ..config.schema import StressConfig
    from .problem import Problem

CELLS_PER_CHUNK = 1 << 20  # default chunk: about this many (scenario, tenor, path, loan) cells
KERNEL_MIN_PATHS = 256  # default chunk of the kernel engines: at least this many paths


def chunk_paths(cfg: StressConfig, prob: Problem, kernel: bool = False) -> int:
    """Paths per chunk: ``mc.chunk_paths``, or about CELLS_PER_CHUNK cells of the problem (the numpy
    engine's working set grows with them); on a ``kernel`` engine, whose working set is per thread,
    at least KERNEL_MIN_PATHS, so that a large tape's chunks are not a few paths each (each chunk
    adds its per-loan sums and writes them to the checkpoint; a GPU runs one thread per path and
    scenario of the chunk)."""
    S, K, L = prob.shape
    cells = max(1, CELLS_PER_CHUNK // (S * K * L))
    return cfg.mc.chunk_paths or (max(cells, KERNEL_MIN_PATHS) if kernel else cells)


@dataclass
class ChunkResult:
    """Outputs of paths [start, stop): per-path arrays and sums that combine across chunks."""

    start: int
    loss: np.ndarray  # (S, K, P) portfolio loss, USD
    loan_loss: np.ndarray  # (S, K, L) sum over paths, USD
    loan_defaults: np.ndarray  # (S, K, L) number of paths with a default
    loan_lgd: np.ndarray  # (S, K, L) sum over defaults of loss / exposure
    defaulted_exposure: np.ndarray  # (S, K, T) sum of exposure by default month, USD
    cause_count: np.ndarray  # (S, K, 4) defaults by cause (payment..exogenous)
    price: np.ndarray  # (S, F, C, T) spot prices of the fan paths in this chunk
    ltv: np.ndarray  # (S, K, F, T) principal-weighted LTV of live loans (NaN: none live)
    dscr: np.ndarray  # (S, K, F, T) principal-weighted DSCR of live loans
    default_month: Optional[np.ndarray] = None  # (S, K, P, L) with output.paths
    default_cause: Optional[np.ndarray] = None
    weight: Optional[np.ndarray] = None  # (K, P) importance-sampling likelihood ratios; None without IS
    loan_equity: Optional[np.ndarray] = None  # (S, K, L) sum over paths of the equity injected by cures, USD
    loan_equity_sq: Optional[np.ndarray] = None  # (S, K, L) sum of its squares; both None without cures
    loan_equity_lost: Optional[np.ndarray] = None  # (S, K, L) sum over paths of the cure equity of loans that later default, USD
    loan_equity_lost_sq: Optional[np.ndarray] = None  # (S, K, L) sum of its squares; both None without cures
    facility_loss: Optional[np.ndarray] = None  # (S, K, P, Fa) lenders' loss on each facility's loans, USD; None without facilities
    offtaker_defaults: Optional[np.ndarray] = None  # (S, K, O) paths on which each offtaker defaults by the tenor's last month; None without offtakers


def combine(chunks: Sequence[ChunkResult]) -> ChunkResult:
    """Join chunk results in path order: per-path arrays concatenated, sums added."""
    chunks = sorted(chunks, key=lambda c: c.start)
    cat = lambda name, axis: np.concatenate([getattr(c, name) for c in chunks], axis=axis)  # noqa: E731
    add = lambda name: sum(getattr(c, name) for c in chunks)  # noqa: E731
    paths = chunks[0].default_month is not None
    return ChunkResult(
        start=chunks[0].start,
        loss=cat("loss", 2),
        loan_loss=add("loan_loss"),
        loan_defaults=add("loan_defaults"),
        loan_lgd=add("loan_lgd"),
        defaulted_exposure=add("defaulted_exposure"),
        cause_count=add("cause_count"),
        price=cat("price", 1),
        ltv=cat("ltv", 2),
        dscr=cat("dscr", 2),
        default_month=cat("default_month", 2) if paths else None,
        default_cause=cat("default_cause", 2) if paths else None,
        weight=cat("weight", 1) if chunks[0].weight is not None else None,
        loan_equity=add("loan_equity") if chunks[0].loan_equity is not None else None,
        loan_equity_sq=add("loan_equity_sq") if chunks[0].loan_equity is not None else None,
        loan_equity_lost=add("loan_equity_lost") if chunks[0].loan_equity is not None else None,
        loan_equity_lost_sq=add("loan_equity_lost_sq") if chunks[0].loan_equity is not None else None,
        facility_loss=cat("facility_loss", 2) if chunks[0].facility_loss is not None else None,
        offtaker_defaults=add("offtaker_defaults") if chunks[0].offtaker_defaults is not None else None,
    )
