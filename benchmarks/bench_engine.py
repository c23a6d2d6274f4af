"""Throughput of a CPU engine in loan-months per second, with a floor measured in the same run.

One loan-month is one (scenario, tenor, path, loan, month) cell with month <= tenor (the engine
also carries finished tenors and the liquidation lag, which are not counted). The floor is one numpy elementwise pass (b = a * c) over the same number of float64
values, in cache-friendly blocks; the engine's time divided by the floor's is the number of
such passes the engine spends per loan-month (the issue's goal: fewer than 50).

    python benchmarks/bench_engine.py [--paths 2000] [--repeat 3] [--precision float64] [--backend numpy]
                                      [--model v1 v2]

``--backend host`` times the CUDA kernel compiled as host C++ (one thread per core) instead of
the numpy reference engine. ``--model`` times the default model v2 (appraisal, cash trap, cures)
and/or model v1 (the v1 market, spot valuation, no trap, no cures) in the same run, against the
same floor.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from stress import backend, engine
from stress.config import compose, to_schema
from stress.portfolio import load_portfolio
from stress import tape_path

BLOCK = 1 << 20


def floor_seconds(n_values: int, repeat: int) -> float:
    """Median time of one elementwise float64 pass over n_values (in blocks of 1M)."""
    a = np.random.default_rng(0).random(BLOCK)
    b = np.empty_like(a)
    blocks = max(1, n_values // BLOCK)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(blocks):
            np.multiply(a, 1.000001, out=b)
        times.append((time.perf_counter() - t) * n_values / (blocks * BLOCK))
    return statistics.median(times)


MODELS = {"v2": [], "v1": ["market=gpu_2026q4_v1", "market.valuation.method=spot", "model.covenant.cash_trap=false",
                            "model.covenant.max_cures=0"]}


def engine_seconds(args, model: str) -> tuple[list[float], int, str]:
    """Engine times of ``args.repeat`` runs of the example problem under ``model``, its loan-months
    and a description of the problem."""
    cfg = to_schema(compose([f"mc.paths={args.paths}", "mc.fan_paths=0", *MODELS[model]]))
    prob = engine.build_problem(cfg, load_portfolio(tape_path(cfg), cfg.market.chips))
    S, K, L = prob.shape
    be = backend.select(args.backend)
    chunk = max(1, (1 << 20) // (S * K * L))
    cells = S * args.paths * int(prob.tenor.sum())  # sum over tenors and loans of the months to maturity
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        for a in range(0, args.paths, chunk):
            be.simulate(prob, cfg.mc.seed, a, min(a + chunk, args.paths), 0, dtype=np.dtype(args.precision))
        times.append(time.perf_counter() - t)
    what = (f"{S} scenarios x tenors {list(prob.tenors)} x {args.paths} paths x {L} loans = {cells:.3e} loan-months "
            f"({args.precision}, chunk {chunk} paths, {args.backend} engine on {be.device})")
    return times, cells, what


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paths", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--precision", default="float64", choices=["float64", "float32"])
    ap.add_argument("--backend", default="numpy", choices=["numpy", "host"])
    ap.add_argument("--model", nargs="+", default=["v1", "v2"], choices=list(MODELS))
    args = ap.parse_args()
    runs = {model: engine_seconds(args, model) for model in args.model}
    cells = runs[args.model[0]][1]
    floor_s = floor_seconds(cells, args.repeat)
    print(f"floor (one float64 elementwise pass over {cells:.3e} values): {floor_s:.3f} s")
    for model, (times, n, what) in runs.items():
        run_s = statistics.median(times)
        print(f"model {model}: {what}")
        print(f"  {run_s:.2f} s (median of {args.repeat}; min {min(times):.2f}, max {max(times):.2f}) "
              f"-> {n / run_s:.3e} loan-months/s; engine / floor = {run_s / floor_s * cells / n:.1f} passes per "
              f"loan-month (goal < 50)")

if __name__ == "__main__":
    main()
