"""Runs too large for the machine (issue 13 item 4): the memory and time of a run are estimated
from its shape before anything is allocated, and a run that cannot fit, or asks for more than
``mc.max_paths`` paths, is refused with exit code 2, the estimate and the key to change."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time

import pytest

import stress
from stress.config.compose import to_schema
from stress.config.install import tape_path
from stress.config.portfolio import load_portfolio
from stress.engine import executor, footprint
from stress.engine import montecarlo as engine
from stress.engine import problem

BASE = ["scenario=[baseline,ai_winter]", "tenors=[36]", "mc.fan_paths=4", "quiet=true"]
HUGE = 10**12


def no_simulation(*args, **kwargs):
    raise AssertionError("the run simulated a chunk before refusing")


def test_a_huge_path_count_is_an_exit_2_naming_max_paths(tmp_path):
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "stress.cli", *BASE, f"mc.paths={HUGE}", f"output.dir={tmp_path / 'out'}"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert f"mc.paths: {HUGE} is above mc.max_paths=100000000" in r.stderr and "Traceback" not in r.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "out" / "chunks").exists()


def test_more_paths_than_memory_are_refused_before_any_allocation(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "simulate", no_simulation)
    started = time.monotonic()
    with pytest.raises(stress.ConfigError) as info:
        stress.run(stress.compose([*BASE, f"mc.paths={HUGE}", f"mc.max_paths={HUGE}", f"output.dir={tmp_path}"]))
    message = str(info.value)
    assert message.startswith(f"mc.paths={HUGE}: the run would need about ") and " TiB of memory (" in message
    assert "the loss of every path (mc.paths)" in message and "available" in message and "years on numpy" in message
    assert time.monotonic() - started < 10
    assert not (tmp_path / "chunks").exists() and not (tmp_path / "results.nc").exists()


def test_per_path_detail_is_named_when_it_is_what_does_not_fit(monkeypatch):
    cfg = to_schema(stress.compose([*BASE, "mc.paths=100000", "output.paths=true"]))
    prob = problem.build_problem(cfg, load_portfolio(tape_path(cfg), cfg.market.chips))
    with_detail = footprint.of_run(cfg, prob, 16)
    cfg.output.paths = False
    without = footprint.of_run(cfg, prob, 16)
    assert with_detail.total > without.total
    between = int((with_detail.total + without.total) / 2)
    footprint.check(without, 100000, available=between)  # fits
    with pytest.raises(stress.ConfigError, match=r"The largest part is per-path defaults of every loan "
                                                 r"\(output.paths=true\)"):
        footprint.check(with_detail, 100000, available=int(without.total))


def test_the_machine_memory_is_known_and_used_by_default(monkeypatch):
    assert footprint.available_memory() > 0
    monkeypatch.setattr(footprint, "available_memory", lambda: 1024)
    monkeypatch.setattr(engine, "simulate", no_simulation)
    with pytest.raises(stress.ConfigError, match=r"mc.paths=16: the run would need about .* but this machine has "
                                                 r"1.0 KiB available"):
        stress.run(stress.compose([*BASE, "mc.paths=16"]))


def test_the_chunk_list_is_not_materialised():
    ranges = executor.chunk_ranges(HUGE, 7)
    assert len(ranges) == -(-HUGE // 7) and ranges[0] == (0, 7) and ranges[len(ranges) - 1] == (HUGE - HUGE % 7, HUGE)
    assert list(itertools.islice(ranges, 3)) == [(0, 7), (7, 14), (14, 21)]
    assert list(executor.chunk_ranges(10, 4)) == [(0, 4), (4, 8), (8, 10)] and ranges.stop(HUGE - 1) == HUGE


def test_the_estimate_is_of_the_right_size():
    """The chunk term against a measured peak: one default chunk (about 1M cells) of the example book took
    210-270 MiB more resident memory on numpy; the estimate allows 512 bytes a cell."""
    fp = footprint.estimate(7, 3, 30, 84, 1664, 1664, 0, False, False)
    assert 200 * 2**20 < fp.parts["the chunks in flight (mc.chunk_paths)"] < 1024 * 2**20
    assert fp.parts["the loss of every path (mc.paths)"] == 7 * 3 * 1664 * 8 * footprint.LOSS_COPIES


def _repeated_tape(tmp_path, n):
    """The example tape's loans repeated to n (new ids, one borrower per copy)."""
    import csv

    with open(tape_path(to_schema(stress.compose([])))) as f:
        header, *rows = list(csv.reader(f))
    out = tmp_path / f"loans_{n}.csv"
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i in range(n):
            r = list(rows[i % len(rows)])
            r[0], r[1] = f"{r[0]}-{i // len(rows)}", f"{r[1]} #{i // len(rows)}"
            w.writerow(r)
    return out


@pytest.mark.kernels
def test_kernel_engines_get_chunks_of_at_least_kernel_min_paths_on_a_large_tape(tmp_path, monkeypatch):
    """numpy's default chunk is about CELLS_PER_CHUNK cells (166 paths for 7 x 3 x 300 loans); the
    kernel engines', whose working set is per thread, at least KERNEL_MIN_PATHS; an explicit
    mc.chunk_paths is kept by both. The run on backend=host uses the kernel chunk, and the footprint
    of its chunks is the kernel's."""
    import shutil

    from stress.engine.chunk import CELLS_PER_CHUNK, KERNEL_MIN_PATHS, chunk_paths

    if shutil.which("g++") is None:
        pytest.skip("needs g++")
    tape = _repeated_tape(tmp_path, 300)
    cfg = to_schema(stress.compose([f"portfolio.path={tape}", "mc.paths=400", "mc.fan_paths=0", "backend=host"]))
    prob = problem.build_problem(cfg, load_portfolio(tape, cfg.market.chips))
    assert chunk_paths(cfg, prob) == CELLS_PER_CHUNK // (7 * 3 * 300) == 166
    assert chunk_paths(cfg, prob, kernel=True) == KERNEL_MIN_PATHS == 256
    cfg.mc.chunk_paths = 50
    assert chunk_paths(cfg, prob) == chunk_paths(cfg, prob, kernel=True) == 50
    cfg.mc.chunk_paths = None
    numpy_fp, kernel_fp = footprint.of_run(cfg, prob, 256), footprint.of_run(cfg, prob, 256, kernel=True)
    key = "the chunks in flight (mc.chunk_paths)"
    assert numpy_fp.parts[key] == 7 * 3 * 300 * 256 * footprint.CHUNK_BYTES_PER_CELL
    assert kernel_fp.parts[key] == 7 * 3 * 300 * 256 * footprint.KERNEL_CHUNK_BYTES_PER_CELL

    seen = []
    real = executor.run_chunks
    monkeypatch.setattr(executor, "run_chunks", lambda ex, prob, cfg, chunk, store: seen.append(chunk)
                        or real(ex, prob, cfg, chunk, store))
    ds = stress.run(cfg)
    assert seen == [256] and ds.attrs["backend"] == "host" and ds.loss.sizes["path"] == 400


def test_dask_gpu_workers_get_the_kernel_chunk_whatever_the_client_backend(monkeypatch):
    """With executor.gpus the Dask workers run CuPy, so the chunk is a kernel engine's even where the
    client resolved backend=numpy (the cluster is replaced by the local loop here: no GPU needed)."""
    from stress.engine import chunk

    monkeypatch.setattr(chunk, "CELLS_PER_CHUNK", 30 * 20)  # numpy: 20 paths of 1 scenario x 1 tenor x 30 loans
    monkeypatch.setattr(chunk, "KERNEL_MIN_PATHS", 50)
    monkeypatch.setattr(executor, "DaskExecutor", executor.LocalExecutor)
    seen = []
    real = executor.run_chunks
    monkeypatch.setattr(executor, "run_chunks", lambda ex, prob, cfg, size, store: seen.append(size)
                        or real(ex, prob, cfg, size, store))
    small = ["scenario=[baseline]", "tenors=[36]", "mc.paths=100", "mc.fan_paths=0", "backend=numpy"]
    stress.run(stress.compose(small))
    stress.run(stress.compose(small + ["executor.kind=dask", "executor.gpus=true"]))
    assert seen == [20, 50]
