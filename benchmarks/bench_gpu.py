"""GPU throughput of the fused kernel in loan-months per second, with a floor kernel measured in
the same run, and the speed-up over the numpy engine on the same problem.

A loan-month is one (scenario, tenor, path, loan, month) cell with month <= tenor. The floor is
kernels/bench_floor.cu: the same launch shape drawing the same per-loan Philox normals and
summing them. Needs CuPy and a CUDA device; prints the card's name with every figure.

    python benchmarks/bench_gpu.py [--paths 1000000] [--precision float64] [--numpy-paths 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from stress.config.compose import compose, to_schema
from stress.config.install import tape_path
from stress.config.portfolio import load_portfolio
from stress.engine import backend, gpu, hostkernel, montecarlo, problem


def timed(fn, repeat: int, sync) -> float:
    fn()
    sync()  # warm-up: compilation and first-touch allocation
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paths", type=int, default=1_000_000)
    ap.add_argument("--numpy-paths", type=int, default=2000)
    ap.add_argument("--precision", default="float64", choices=["float64", "float32"])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cp, device = backend._cupy()
    if cp is None:
        sys.exit(f"bench_gpu: no usable GPU ({device})")
    cfg = to_schema(compose([f"mc.paths={args.paths}", "mc.fan_paths=0"]))
    prob = problem.build_problem(cfg, load_portfolio(tape_path(cfg), cfg.market.chips))
    S, K, L = prob.shape
    dtype = np.dtype(args.precision)
    sync = cp.cuda.Device().synchronize
    kernel_s = timed(lambda: gpu.simulate(cp, prob, cfg.mc.seed, 0, args.paths, 0, dtype), args.repeat, sync)

    floor = cp.RawModule(code=(hostkernel.kernels_dir() / "bench_floor.cu").read_text(),
                         options=(*gpu.NVRTC_OPTIONS, f"-I{hostkernel.kernels_dir()}")).get_function("philox_floor")
    out = cp.empty(S * args.paths)
    sms = cp.cuda.Device().attributes["MultiProcessorCount"]
    blocks = max(1, min(-(-S * args.paths // gpu.BLOCK), sms * gpu.BLOCKS_PER_SM))
    launch = lambda: floor((blocks,), (gpu.BLOCK,), (np.int64(S), np.int64(args.paths), np.int32(prob.months),  # noqa: E731
                                                     np.int32(L), np.uint64(cfg.mc.seed), out))
    floor_s = timed(launch, args.repeat, sync)

    numpy_s = timed(lambda: montecarlo.simulate(np, prob, cfg.mc.seed, 0, args.numpy_paths, 0, dtype), 1, lambda: None)
    cells = S * int(prob.tenor.sum())  # loan-months per path
    gpu_rate = cells * args.paths / kernel_s
    numpy_rate = cells * args.numpy_paths / numpy_s
    print(f"device: {device}; problem: {S} scenarios x tenors {list(prob.tenors)} x {L} loans, {args.precision}")
    print(f"fused kernel: {kernel_s:.3f} s for {args.paths} paths -> {gpu_rate:.3e} loan-months/s")
    print(f"floor kernel (Philox normals only): {floor_s:.3f} s -> kernel / floor = {kernel_s / floor_s:.2f}")
    print(f"numpy engine on the CPU: {numpy_rate:.3e} loan-months/s ({args.numpy_paths} paths) "
          f"-> GPU speed-up {gpu_rate / numpy_rate:.0f}x")


if __name__ == "__main__":
    main()
