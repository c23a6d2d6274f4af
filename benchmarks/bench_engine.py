"""The CPU engines and a whole CLI run on this machine, in one run: loan-months per second and floor
passes of the numpy and host engines (model v2, the defaults, and model v1), the time
split of a default ``stress-test`` run, and the cost exponents along paths, loans, tenor and scenarios.

One loan-month is one (scenario, tenor, path, loan, month) cell with month <= tenor (the engine
also carries the liquidation lag, which is not counted). The floor is one numpy elementwise pass
(b = a * c) over the same number of float64 values, in 1M-value blocks, measured in the same
process between the engine runs; engine time / floor time is the number of such passes the engine
spends per loan-month (the issue's goal: at most 50 for numpy, 35 for host). On a shared machine
compare these ratios, not the seconds.

    python benchmarks/bench_engine.py [--paths 2000] [--repeat 3] [--before DIR] [--skip-engines] [--skip-cli]
        [--cli-repeat 1] [--cli-paths 2000,10000] [--skip-exponents]

``--before DIR``: also time the engines of another source tree (e.g. ``git worktree add DIR
<commit>``), each engine in its own process, alternating with this tree's, so before and after come
from the same run (the CLI runs too, alternating, ``--cli-repeat`` times each; medians). The exponent b of a size n is read off two runs, time ~ n^b (b = 1: linear).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
BLOCK = 1 << 20
V1 = ["market=gpu_2026q4_v1", "market.valuation.method=spot", "model.covenant.cash_trap=false",
      "model.covenant.max_cures=0"]  # model v1, as tests/test_regression.py pins it


def timed(work) -> tuple[float, float]:
    """(wall, CPU) seconds of ``work()``; the CPU time of this process, all its threads."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def floor_seconds(n_values: int) -> tuple[float, float]:
    """(wall, CPU) time of one elementwise float64 pass over n_values (in blocks of 1M)."""
    import numpy as np

    a = np.random.default_rng(0).random(BLOCK)
    b = np.empty_like(a)
    blocks = max(1, n_values // BLOCK)

    def work():
        for _ in range(blocks):
            np.multiply(a, 1.000001, out=b)

    return tuple(x * n_values / (blocks * BLOCK) for x in timed(work))


def engine_child(backend_name: str, overrides: list[str], repeat: int) -> dict:
    """Engine and floor times, interleaved, of ``backend_name`` on the problem of ``overrides``
    (all paths in the run's default chunks, no fans): what the parent prints."""
    import numpy as np

    from stress.config.compose import compose, to_schema
    from stress.config.install import tape_path
    from stress.config.portfolio import load_portfolio
    from stress.engine import backend, problem
    from stress.engine.chunk import chunk_paths

    cfg = to_schema(compose([*overrides, "mc.fan_paths=0"]))
    prob = problem.build_problem(cfg, load_portfolio(tape_path(cfg), cfg.market.chips))
    S, K, L = prob.shape
    be = backend.select(backend_name)
    kernel = getattr(be, "kernel", False)  # (a --before tree older than the kernel engines' chunk has neither)
    chunk = chunk_paths(cfg, prob, kernel) if kernel else chunk_paths(cfg, prob)
    cells = S * cfg.mc.paths * int(prob.tenor.sum())  # sum over tenors and loans of the months to maturity
    def work():
        for a in range(0, cfg.mc.paths, chunk):
            be.simulate(prob, cfg.mc.seed, a, min(a + chunk, cfg.mc.paths), 0, dtype=np.dtype(cfg.precision))

    runs, floors = [], []
    for _ in range(repeat):
        floors.append(floor_seconds(cells))
        runs.append(timed(work))
    floors.append(floor_seconds(cells))
    wall, cpu = ([r[j] for r in runs] for j in (0, 1))
    return {"engine_s": statistics.median(wall), "min_s": min(wall), "max_s": max(wall),
            "cpu_s": statistics.median(cpu), "floor_s": statistics.median(f[0] for f in floors),
            "floor_cpu_s": statistics.median(f[1] for f in floors), "loan_months": cells, "device": be.device,
            "shape": f"{S} scenarios x tenors {list(prob.tenors)} x {cfg.mc.paths} paths x {L} loans"}


def run_child(tree: Path, args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, str(HERE), "--child", *args], env=env, capture_output=True, text=True,
                          timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def cli_split_child(out: str, overrides: list[str]) -> dict:
    """A default ``stress-test`` run's parts (with ``overrides``, e.g. ``mc.paths=20000``), timed in a
    fresh process (the CLI's own steps)."""
    t0 = time.perf_counter()
    import logging

    import stress
    from stress.config.compose import compose
    from stress.engine import executor
    from stress.report import figures, html
    from stress.results import dataset

    t_imports = time.perf_counter() - t0
    t = time.perf_counter()
    cfg = compose([f"output.dir={out}", *overrides])
    t_compose = time.perf_counter() - t
    engine_s = []
    real = executor.run_chunks

    def timed_chunks(*a, **k):
        t = time.perf_counter()
        res = real(*a, **k)
        engine_s.append(time.perf_counter() - t)
        return res

    executor.run_chunks = timed_chunks
    logging.getLogger("stress").setLevel(logging.WARNING)
    t = time.perf_counter()
    ds = stress.run(cfg)
    t_run = time.perf_counter() - t
    t = time.perf_counter()
    pngs = figures.figure_pngs(ds)
    figures.write_figures(ds, out, pngs)
    t_figures = time.perf_counter() - t
    t = time.perf_counter()
    html.write_report(ds, out, pngs)
    dataset.summary_tables(ds)
    t_report = time.perf_counter() - t
    t = time.perf_counter()
    one_by_one = "workers" in inspect.signature(figures.figure_pngs).parameters  # trees before the figure workers
    pngs_serial = figures.figure_pngs(ds, workers=1) if one_by_one else figures.figure_pngs(ds)
    t_serial = time.perf_counter() - t
    return {"imports": t_imports, "compose": t_compose, "engine": engine_s[0], "dataset": t_run - engine_s[0],
            "figures": t_figures, "report": t_report, "backend": ds.attrs["backend"], "figures serial": t_serial,
            "same bytes": pngs_serial == pngs}


def exponents(paths: int) -> list[tuple[str, float, float, float]]:
    """(axis, small, large, exponent) of the numpy engine's time along paths, loans, tenor, scenarios."""
    import csv

    tmp = Path(tempfile.mkdtemp())
    with open(REPO / "conf" / "portfolio" / "example_loans.csv") as f:
        rows = list(csv.reader(f))
    half = tmp / "half.csv"
    with open(half, "w", newline="") as f:
        csv.writer(f).writerows(rows[: 1 + (len(rows) - 1) // 2])
    three = "scenario=[baseline,ai_winter,severely_adverse]"
    axes = [("paths", paths // 2, paths, [f"mc.paths={paths // 2}"], [f"mc.paths={paths}"]),
            ("loans", (len(rows) - 1) // 2, len(rows) - 1, [f"portfolio.path={half}"], []),
            ("tenor (months)", 36, 84, ["tenors=[36]"], ["tenors=[84]"]),
            ("scenarios", 3, 7, [three], [])]
    out = []
    base = [f"mc.paths={paths}", "backend=numpy"]
    for name, n1, n2, small, large in axes:
        t1 = run_child(REPO, ["engine", "numpy", json.dumps(base + small), "1"])["engine_s"]
        t2 = run_child(REPO, ["engine", "numpy", json.dumps(base + large), "1"])["engine_s"]
        out.append((name, n1, n2, math.log(t2 / t1) / math.log(n2 / n1)))
    return out


def engines(trees: list[tuple[str, Path]], args) -> None:
    """The engine table: each engine of each tree in its own process, alternating trees."""
    print("passes: engine time / floor time, wall clock and CPU (all threads: host's 2 threads count twice)")
    print(f"{'tree':<7} {'model':<9} {'engine':<7} {'loan-months/s':>13} {'wall s':>7} {'min-max s':>12} "
          f"{'floor s':>8} {'passes':>7} {'CPU s':>7} {'passes CPU':>10}")
    for model, extra in (("v2", []), ("v1", V1)):  # v2: the defaults
        for name in ("numpy", "host"):
            for label, tree in trees:
                try:
                    r = run_child(tree, ["engine", name, json.dumps([f"mc.paths={args.paths}", *extra]),
                                         str(args.repeat)])
                except RuntimeError as exc:
                    print(f"{label:<7} {model:<9} {name:<7} not run: {str(exc).strip().splitlines()[-1]}")
                    continue
                print(f"{label:<7} {model:<9} {name:<7} {r['loan_months'] / r['engine_s']:13.3e} {r['engine_s']:7.2f} "
                      f"{r['min_s']:5.2f}-{r['max_s']:<6.2f} {r['floor_s']:8.4f} {r['engine_s'] / r['floor_s']:7.1f} "
                      f"{r['cpu_s']:7.2f} {r['cpu_s'] / r['floor_cpu_s']:10.1f}", flush=True)
    print(f"problem: {r['shape']}, float64, {r['loan_months']:.3e} loan-months; median of {args.repeat}")


def cli_split(trees: list[tuple[str, Path]], repeat: int, paths: int | None = None) -> None:
    """The default stress-test run's time split (at ``paths`` paths, default the config's), each tree
    ``repeat`` times, alternating; medians."""
    parts = ("imports", "compose", "engine", "dataset", "figures", "report")
    overrides = [] if paths is None else [f"mc.paths={paths}"]
    print(f"default stress-test run{'' if paths is None else f' at {paths:,} paths'} (fresh process, wall seconds; "
          "'figures serial': the same\nfigures again in one process, after the run; 'same': the same PNG bytes both times):")
    runs = {label: [] for label, _ in trees}
    for i in range(repeat):
        for label, tree in trees:
            with tempfile.TemporaryDirectory() as out:
                runs[label].append(run_child(tree, ["cli", out, json.dumps(overrides)]))
            print(f"  run {i + 1} {label:<7} " + " ".join(f"{p} {runs[label][-1][p]:.2f}" for p in parts)
                  + f" figures serial {runs[label][-1]['figures serial']:.2f} same {runs[label][-1]['same bytes']}",
                  flush=True)
    for label, rs in runs.items():
        r = {p: statistics.median(x[p] for x in rs) for p in (*parts, "figures serial")}
        outside = sum(r[p] for p in parts if p != "engine")
        print(f"  median {label:<7} backend={rs[0]['backend']:<6} " + " ".join(f"{p} {r[p]:.2f}" for p in parts)
              + f" (serial {r['figures serial']:.2f}); figures {r['figures'] / r['engine']:.2f}x the engine; outside the engine {outside:.2f} = "
              f"{outside / r['engine']:.2f}x the engine", flush=True)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        kind = sys.argv[2]
        res = (engine_child(sys.argv[3], json.loads(sys.argv[4]), int(sys.argv[5])) if kind == "engine"
               else cli_split_child(sys.argv[3], json.loads(sys.argv[4]) if len(sys.argv) > 4 else []))
        print(json.dumps(res))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paths", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--before", type=Path, help="another source tree to time alongside this one")
    ap.add_argument("--skip-engines", action="store_true")
    ap.add_argument("--skip-cli", action="store_true")
    ap.add_argument("--cli-repeat", type=int, default=1, help="default stress-test runs per tree (median)")
    ap.add_argument("--cli-paths", type=lambda v: [int(x) for x in v.split(",")], default=[None],
                    help="comma-separated path counts of the CLI runs (default: the config's 2,000), e.g. "
                         "2000,10000,20000: where the engine starts to dominate a run")
    ap.add_argument("--skip-exponents", action="store_true")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    trees = [("after", REPO)] + ([("before", args.before.resolve())] if args.before else [])
    if not args.skip_engines:
        engines(trees, args)
    if not args.skip_cli:
        for paths in args.cli_paths:
            cli_split(trees, args.cli_repeat, paths)
    if not args.skip_exponents:
        print(f"numpy engine time ~ n^b (one run each, {args.paths} paths unless varied):")
        for name, n1, n2, b in exponents(args.paths):
            print(f"  {name:<15} {n1:>5} -> {n2:<5} b = {b:.2f}", flush=True)


if __name__ == "__main__":
    main()
