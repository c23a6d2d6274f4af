"""Scaling of a whole run (``stress.run``) over chunks and Dask workers on this machine.

The default problem (example portfolio, all 7 scenarios x tenors 36/60/84) with mc.paths=4000,
timed end to end in ``stress.run`` (problem set-up, chunks, gathering, statistics; nothing
written), median of --repeat runs:

- executor.kind=local with the default chunk size, with many small chunks (mc.chunk_paths=50)
  and with one big chunk (mc.chunk_paths=4000);
- executor.kind=dask on an already running LocalCluster of 1 and of 2 worker processes
  (one thread each; a warm-up run first, so worker start-up and imports are not counted);
- executor.kind=dask starting and closing its own 2-worker LocalCluster (what the CLI does).

Ratios are against the local run with the default chunk size, measured in the same process. The
floor: how many cores two processes actually get (two pure-Python loops at once against one alone),
measured before and after; on a shared machine it is below 2, and so is any speed-up of 2 workers.

    python benchmarks/bench_scaling.py [--paths 4000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import stress
from stress import compose
from stress.engine.chunk import CELLS_PER_CHUNK
from stress.engine.executor import fast_numpy_workers


def timed(overrides: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        cfg = compose(overrides)
        t = time.perf_counter()
        stress.run(cfg)
        times.append(time.perf_counter() - t)
    return times


def cores_free(n: int = 2) -> float:
    """How many cores this machine gives us now (the floor of the ratios): n copies of a pure
    Python loop run at once, against one alone; n on an idle machine, less when shared."""
    code = "import time; t = time.perf_counter(); sum(range(6 * 10**7)); print(time.perf_counter() - t)"
    one = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(n)]
    many = max(float(p.communicate()[0]) for p in procs)
    return n * one / many


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paths", type=int, default=4000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    from distributed import LocalCluster

    base = [f"mc.paths={args.paths}", "quiet=true", "backend=numpy"]
    cfg = stress.config.compose.to_schema(compose(base))
    S, K, L = len(cfg.scenario), len(cfg.tenors), 30
    default_chunk = max(1, CELLS_PER_CHUNK // (S * K * L))
    rows: list[tuple[str, list[float]]] = []

    def case(label: str, overrides: list[str]) -> None:
        times = timed(base + overrides, args.repeat)
        rows.append((label, times))
        print(f"  {label:<58} {statistics.median(times):6.2f} s", flush=True)

    free = [cores_free()]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"cores free for 2 processes: {free[0]:.2f} of 2")
    print(f"problem: {S} scenarios x {K} tenors x {L} loans x {args.paths} paths; {os.cpu_count()} CPU cores; "
          f"median of {args.repeat}")
    case(f"local, default chunk ({default_chunk} paths)", [])
    case("local, mc.chunk_paths=50 (many small chunks)", ["mc.chunk_paths=50"])
    case(f"local, mc.chunk_paths={args.paths} (one chunk)", [f"mc.chunk_paths={args.paths}"])
    for workers in (1, 2):
        with fast_numpy_workers():  # as the run's own clusters (see stress.engine.executor.fast_numpy_workers)
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
        with cluster:
            on = ["executor.kind=dask", f"executor.address={cluster.scheduler_address}"]
            timed([f"mc.paths={min(args.paths, 100)}", "quiet=true", "backend=numpy", *on], 1)  # warm-up
            case(f"dask, running cluster of {workers} worker(s), default chunk", on)
            if workers == 2:
                case("dask, running cluster of 2 workers, mc.chunk_paths=1000", on + ["mc.chunk_paths=1000"])
                case("dask, running cluster of 2 workers, mc.chunk_paths=50", on + ["mc.chunk_paths=50"])
    case("dask, own 2-worker LocalCluster (started and closed), default", ["executor.kind=dask", "executor.workers=2"])

    free.append(cores_free())
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"cores free for 2 processes: {free[1]:.2f} of 2")
    print("(the ideal speed-up of 2 workers over the local loop is the number of cores free)")
    ref = statistics.median(rows[0][1])
    print()
    print("| configuration | time (median) | min - max | speed-up vs local default |")
    print("|---|---|---|---|")
    for label, times in rows:
        med = statistics.median(times)
        print(f"| {label} | {med:.2f} s | {min(times):.2f} - {max(times):.2f} s | {ref / med:.2f}x |")


if __name__ == "__main__":
    main()
