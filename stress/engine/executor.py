"""Running the chunks of paths: a loop in this process (``executor.kind=local``) or one Dask task
per chunk (``executor.kind=dask``), with a progress bar, checkpoints and an ordered gather.

Every chunk is a pure function of (problem, seed, start, stop): a chunk computed by a Dask worker
is the same array as the one computed locally, and ``Gather`` adds the per-loan and per-month sums
in chunk order whatever order the chunks finish in, so a distributed run is bit-for-bit identical
to the local run with the same seed and chunk size. Only the per-path arrays (the losses, the fan
samples and, with ``output.paths``, the per-path defaults) grow with the number of paths.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import logging
import os
import time
from typing import Iterator, Optional

import numpy as np

from ..config.schema import StressConfig
from ..errors import ConfigError, StressError
from . import backend as _backend
from .chunk import ChunkResult
from .problem import Problem

log = logging.getLogger("stress")

SHOW_PROGRESS_AFTER = 1.0  # seconds: shorter runs never draw a progress bar


@dataclasses.dataclass(frozen=True)
class ChunkRanges:
    """The chunks [start, stop) of ``paths`` paths, ``chunk`` paths each (the last one shorter),
    computed when asked for: a run of 10^12 paths has far too many to list."""

    paths: int
    chunk: int

    def __len__(self) -> int:
        return -(-self.paths // self.chunk)

    def __getitem__(self, i: int) -> tuple[int, int]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return i * self.chunk, self.stop(i * self.chunk)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((a, self.stop(a)) for a in range(0, self.paths, self.chunk))

    def stop(self, start: int) -> int:
        return min(start + self.chunk, self.paths)


def chunk_ranges(paths: int, chunk: int) -> ChunkRanges:
    return ChunkRanges(paths, chunk)


class Gather:
    """Joins chunk results arriving in any order into the result of ``results.combine``:
    per-path arrays are copied into place as they come, sums are added in chunk order (a chunk
    that arrives early waits, holding only its small sums)."""

    PER_PATH = {"loss": 2, "default_month": 2, "default_cause": 2, "weight": 1,  # weight: (K, P) with IS
                "facility_loss": 2}  # (S, K, P, Fa) with facilities
    FANS = {"price": 1, "ltv": 2, "dscr": 2}
    SUMS = ("loan_loss", "loan_defaults", "loan_lgd", "defaulted_exposure", "cause_count")
    OPTIONAL_SUMS = ("loan_equity", "loan_equity_sq", "loan_equity_lost", "loan_equity_lost_sq",
                     "offtaker_defaults")  # None in every chunk, or summed like SUMS

    def __init__(self, ranges: ChunkRanges, fan_paths: int):
        unknown = set(ChunkResult.__dataclass_fields__) - {"start", *self.PER_PATH, *self.FANS, *self.SUMS,
                                                             *self.OPTIONAL_SUMS}
        if unknown:  # a new field of ChunkResult must be declared here, with how it combines
            raise TypeError(f"executor.Gather does not know how to combine ChunkResult.{sorted(unknown)}")
        self.ranges = ranges
        self.paths = ranges.paths
        self.fan_paths = max(0, min(fan_paths, self.paths))
        self.arrays: dict[str, Optional[np.ndarray]] = {}
        self.sums: dict[str, object] = {**dict.fromkeys(self.SUMS, 0), **dict.fromkeys(self.OPTIONAL_SUMS)}
        self.waiting: dict[int, dict] = {}
        self.next = 0  # index into starts of the next chunk whose sums are due

    def _place(self, name: str, part: Optional[np.ndarray], axis: int, offset: int, total: int) -> None:
        if part is None:
            self.arrays.setdefault(name, None)
            return
        if name not in self.arrays:
            shape = list(part.shape)
            shape[axis] = total
            self.arrays[name] = np.empty(shape, dtype=part.dtype)
        index = [slice(None)] * part.ndim
        index[axis] = slice(offset, offset + part.shape[axis])
        self.arrays[name][tuple(index)] = part

    def add(self, res: ChunkResult) -> None:
        for name, axis in self.PER_PATH.items():
            self._place(name, getattr(res, name), axis, res.start, self.paths)
        for name, axis in self.FANS.items():
            self._place(name, getattr(res, name), axis, min(res.start, self.fan_paths), self.fan_paths)
        self.waiting[res.start] = {name: getattr(res, name) for name in (*self.SUMS, *self.OPTIONAL_SUMS)}
        while self.next < len(self.ranges) and self.ranges[self.next][0] in self.waiting:
            part = self.waiting.pop(self.ranges[self.next][0])
            for name in self.SUMS:  # exactly sum() over the chunks sorted by start, as results.combine
                self.sums[name] = self.sums[name] + part[name]
            for name in self.OPTIONAL_SUMS:
                if part[name] is not None:
                    self.sums[name] = part[name] if self.sums[name] is None else self.sums[name] + part[name]
            self.next += 1

    def result(self) -> ChunkResult:
        if self.next != len(self.ranges):
            raise RuntimeError(f"only {self.next} of {len(self.ranges)} chunks were gathered")
        return ChunkResult(start=0, **self.arrays, **self.sums)


class _Bar:
    """A rich progress bar over chunks on stderr, drawn only on a terminal, without ``quiet``,
    and once the run has lasted SHOW_PROGRESS_AFTER seconds; removed when done."""

    def __init__(self, total: int, enabled: bool, label: str):
        self.total, self.done, self.label = total, 0, label
        self.started = time.perf_counter()
        self.progress = None
        self.console = None
        if enabled and total > 1:
            from rich.console import Console

            console = Console(stderr=True)
            self.console = console if console.is_terminal else None

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.progress is None and self.console is not None \
                and time.perf_counter() - self.started >= SHOW_PROGRESS_AFTER and self.done < self.total:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("chunks"), TimeElapsedColumn(), TimeRemainingColumn(),
                                     console=self.console, transient=True, redirect_stdout=False,
                                     redirect_stderr=False)
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=self.total, completed=self.done)
        elif self.progress is not None:
            self.progress.update(self.task, completed=self.done)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


# -- executors -----------------------------------------------------------------------------------

def _simulate(be: _backend.Backend, prob: Problem, seed: int, start: int, stop: int, fan_paths: int,
              precision: str, keep_paths: bool) -> ChunkResult:
    """One chunk on backend ``be`` (its engine: numpy, the fused CUDA kernel or the host kernel)."""
    return be.simulate(prob, seed, start, stop, fan_paths, dtype=np.dtype(precision), keep_paths=keep_paths)


class LocalExecutor:
    """The chunks one after another in this process, on the run's backend ``be``."""

    def __init__(self, cfg: StressConfig, be: _backend.Backend):
        self.be = be
        self.backend, self.device = be.name, be.device

    def map(self, prob: Problem, todo, seed, fan_paths, precision, keep_paths) -> Iterator[ChunkResult]:
        for a, b in todo:
            yield _simulate(self.be, prob, seed, a, b, fan_paths, precision, keep_paths)

    def close(self) -> None:
        pass


@contextlib.contextmanager
def fast_numpy_workers():
    """Start Dask nannies without ``MALLOC_TRIM_THRESHOLD_=65536`` (Dask's default for its worker
    processes). Setting it switches off glibc's adaptive mmap threshold, so every large numpy
    temporary of the month loop is mapped and zeroed afresh: the engine ran about 2.7 times slower."""
    import dask

    key = "MALLOC_TRIM_THRESHOLD_"
    if os.environ.get(key) == str(dask.config.get(f"distributed.nanny.pre-spawn-environ.{key}", None)):
        os.environ.pop(key)  # left in this process by an earlier nanny, not by the user
    with dask.config.set({f"distributed.nanny.pre-spawn-environ.{key}": None}):
        yield


@functools.lru_cache(maxsize=None)
def _worker_backend(name: str) -> _backend.Backend:
    return _backend.select(name)


def simulate_chunk(prob: Problem, seed: int, start: int, stop: int, fan_paths: int, precision: str,
                   keep_paths: bool, backend: str = "numpy") -> ChunkResult:
    """The Dask task: one chunk on the worker's backend, returned as numpy arrays."""
    return _simulate(_worker_backend(backend), prob, seed, start, stop, fan_paths, precision, keep_paths)


class DaskExecutor:
    """One Dask task per chunk on an existing cluster (``executor.address``) or on a cluster
    started for this run and closed at its end: a ``LocalCluster`` of worker processes, or with
    ``executor.gpus`` a ``dask_cuda.LocalCUDACluster`` (one worker per GPU, CuPy backend)."""

    IN_FLIGHT_PER_WORKER = 4  # chunks submitted ahead per worker: the scheduler never holds every chunk of a huge run

    def __init__(self, cfg: StressConfig, be: _backend.Backend):
        ex = cfg.executor
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("executor.kind=dask needs Dask: pip install 'gpu-credit-stress[dask]' "
                              "(or pip install 'dask[distributed]')") from None
        self.cluster = self.client = None
        self.backend = engine_of(cfg, be)
        # Dask logs every worker start and stop at INFO, which the CLI's (Hydra's) root handler would print
        self._logger = logging.getLogger("distributed")
        self._old_level = self._logger.level
        self._logger.setLevel(max(logging.WARNING, self._old_level))
        try:
            if ex.address:
                try:
                    self.client = Client(ex.address, timeout="20s")
                except (OSError, TimeoutError) as exc:
                    raise ConfigError(f"cannot connect to the Dask scheduler at executor.address={ex.address}: "
                                      f"{exc}") from None
            else:
                with fast_numpy_workers():
                    self.cluster = self._start_cluster(ex, LocalCluster)
                self.client = Client(self.cluster)
            n = len(self.client.scheduler_info().get("workers", {}))
            if n == 0:
                try:
                    self.client.wait_for_workers(1, timeout=60)
                except TimeoutError:
                    raise ConfigError(f"the Dask cluster at {self.client.scheduler.address} has no workers "
                                      "(waited 60 s)") from None
                n = len(self.client.scheduler_info().get("workers", {}))
            self.workers = n
            self.device = f"Dask ({n} workers, {self.backend}) at {self.client.scheduler.address}"
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _start_cluster(ex, LocalCluster):
        if ex.gpus:
            try:
                from dask_cuda import LocalCUDACluster
            except ImportError:
                raise ConfigError("executor.gpus=true needs dask-cuda to start one worker per GPU: pip install "
                                  "dask-cuda (and the 'gpu' extra for CuPy); or give executor.address of a "
                                  "running GPU cluster") from None
            return LocalCUDACluster(threads_per_worker=ex.threads_per_worker, dashboard_address=":0",
                                    silence_logs=logging.ERROR)
        try:
            return LocalCluster(n_workers=ex.workers, threads_per_worker=ex.threads_per_worker, processes=True,
                                dashboard_address=":0", silence_logs=logging.ERROR)
        except RuntimeError as exc:  # typically: the worker processes could not import __main__
            raise StressError(
                f"could not start a Dask LocalCluster of {ex.workers} worker processes ({exc}). A script that "
                "runs it must call stress.run under `if __name__ == \"__main__\":` (the workers import the main "
                "module); or give executor.address of a running cluster") from None

    def map(self, prob: Problem, todo, seed, fan_paths, precision, keep_paths) -> Iterator[ChunkResult]:
        from distributed import as_completed

        todo = iter(todo)
        first = next(todo, None)
        if first is None:
            return
        shared = self.client.scatter(prob, broadcast=True, hash=False)
        pending, finished = set(), as_completed(with_results=True)

        def submit(r) -> None:
            a, b = r
            future = self.client.submit(simulate_chunk, shared, seed, a, b, fan_paths, precision, keep_paths,
                                        self.backend, key=f"stress-chunk-{a}-{b}-{shared.key}")
            pending.add(future)
            finished.add(future)

        submit(first)
        for r in itertools.islice(todo, self.IN_FLIGHT_PER_WORKER * self.workers - 1):
            submit(r)
        try:
            for future, res in finished:
                pending.discard(future)
                future.release()
                for r in itertools.islice(todo, 1):  # the next chunk takes the finished one's place
                    submit(r)
                yield res
        finally:  # interrupted or failed: do not leave tasks running on a shared cluster
            self.client.cancel(list(pending))
            del shared

    def close(self) -> None:
        for thing in (self.client, self.cluster):
            if thing is not None:
                with contextlib.suppress(Exception):
                    thing.close()
        self.client = self.cluster = None
        self._logger.setLevel(self._old_level)


def engine_of(cfg: StressConfig, be: _backend.Backend) -> str:
    """The engine that runs the chunks: CuPy on Dask GPU workers (``executor.gpus``), else ``be``'s,
    as resolved on this machine (backend=auto chose it once: every Dask worker runs it, by name)."""
    return "cupy" if cfg.executor.kind == "dask" and cfg.executor.gpus else be.name


@contextlib.contextmanager
def start(cfg: StressConfig, be: _backend.Backend):
    """The executor of ``cfg.executor`` running the engine of ``be`` (stress.engine.backend.select, once per
    run); a Dask cluster started here is closed on the way out, also on an error or Ctrl-C."""
    ex = DaskExecutor(cfg, be) if cfg.executor.kind == "dask" else LocalExecutor(cfg, be)
    try:
        yield ex
    finally:
        ex.close()


def run_chunks(ex, prob: Problem, cfg: StressConfig, chunk: int, store=None) -> ChunkResult:
    """Every chunk of ``mc.paths``: those in ``store`` loaded, the others computed by ``ex`` (and
    stored as they finish), gathered into one ChunkResult."""
    ranges = chunk_ranges(cfg.mc.paths, chunk)
    gather = Gather(ranges, cfg.mc.fan_paths)
    stored = (lambda r: False) if store is None else (lambda r: store.has(*r))  # noqa: E731
    todo = (r for r in ranges if not stored(r))  # lazily: never a list of every chunk
    bar = _Bar(len(ranges), not cfg.quiet, f"simulating {cfg.mc.paths} paths")
    try:
        if store is not None and store.chunks:
            done = [r for r in ranges if stored(r)]
            for a, b in done:
                gather.add(store.load(a, b))
            bar.advance(len(done))
        with contextlib.closing(ex.map(prob, todo, cfg.mc.seed, cfg.mc.fan_paths, cfg.precision,
                                       cfg.output.paths)) as finished:
            for res in finished:
                if store is not None:
                    store.save(res, ranges.stop(res.start))
                gather.add(res)
                bar.advance()
    finally:
        bar.close()
    return gather.result()
