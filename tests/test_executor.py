"""Beyond one process (issue 5): Dask execution bit-for-bit equal to the local loop, the ordered
gather, resumable runs (interruption, stale and corrupted chunks), the progress bar, and
``stress-aggregate`` over a real Hydra multirun."""

import os
import random
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from stress.config.compose import to_schema
from stress.config.install import tape_path
from stress.config.portfolio import load_portfolio
from stress.engine import checkpoint, chunk, executor
from stress.engine import montecarlo
from stress.engine import montecarlo as engine
from stress.engine import problem
from stress.errors import ConfigError, OutputError
from stress.pipeline import run

from support import config

# the executor's machinery on the reference engine (Interrupt below stops montecarlo.simulate, numpy's)
SMALL = ["scenario=[baseline,ai_winter]", "tenors=[36,60]", "mc.paths=120", "mc.fan_paths=30", "mc.chunk_paths=25",
         "quiet=true", "backend=numpy"]
N_CHUNKS = 5  # 120 paths in chunks of 25


def assert_identical(a: xr.Dataset, b: xr.Dataset):
    """Every variable and coordinate bit for bit (same dtype, same bytes; NaN where NaN)."""
    assert sorted(a.variables) == sorted(b.variables)
    for name in a.variables:
        x, y = a[name].values, b[name].values
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if x.dtype.kind == "U" or x.dtype == object:
            assert (x == y).all(), name
        else:
            assert x.tobytes() == y.tobytes(), f"{name} differs"


@pytest.fixture(scope="module")
def clean():
    """The uninterrupted local run everything below is compared with (with per-path detail)."""
    return run(config(SMALL + ["output.paths=true"]))


@pytest.mark.parametrize("extra", [[], ["mc.importance_sampling=true"]], ids=["plain", "importance_sampling"])
def test_gather_in_any_order_equals_combine(extra):
    cfg = to_schema(config(SMALL + ["output.paths=true", *extra]))
    prob = problem.build_problem(cfg, load_portfolio(tape_path(cfg), cfg.market.chips))
    ranges = executor.chunk_ranges(cfg.mc.paths, cfg.mc.chunk_paths)
    chunks = [montecarlo.simulate(np, prob, cfg.mc.seed, a, b, cfg.mc.fan_paths, keep_paths=True) for a, b in ranges]
    expected = chunk.combine(chunks)
    shuffled = chunks[:]
    random.Random(3).shuffle(shuffled)
    gather = executor.Gather(ranges, cfg.mc.fan_paths)
    for c in shuffled:
        gather.add(c)
    got = gather.result()
    for name in expected.__dataclass_fields__:
        x, y = getattr(expected, name), getattr(got, name)
        if name == "start":
            assert x == y == 0
        else:
            assert np.asarray(x).dtype == np.asarray(y).dtype and np.asarray(x).tobytes() == np.asarray(y).tobytes(), name


def test_two_worker_local_cluster_is_bit_for_bit_the_local_run(clean, tmp_path, monkeypatch):
    """A LocalCluster of 2 worker processes (real processes, not threads), chunks finishing in any
    order and submitted two at a time (fewer than the 5 chunks): the same dataset to the last bit,
    and the cluster is gone afterwards."""
    monkeypatch.setattr(executor.DaskExecutor, "IN_FLIGHT_PER_WORKER", 1)
    ds = run(config(SMALL + ["output.paths=true", "executor.kind=dask", "executor.workers=2",
                             f"output.dir={tmp_path / 'out'}"]))
    assert_identical(clean.drop_attrs(), ds.drop_attrs())
    assert ds.attrs["backend"] == "numpy"
    with xr.open_dataset(tmp_path / "out" / "results.nc") as saved:
        np.testing.assert_array_equal(saved.loss.values, clean.loss.values)
    assert not (tmp_path / "out" / "chunks").exists()  # removed once the dataset is written


@pytest.mark.kernels
def test_dask_workers_run_the_engine_backend_auto_resolved(monkeypatch):
    """backend=auto is resolved once, where the run starts: without a GPU but with g++ the Dask
    workers run the host kernel too, and the dataset is the local host run's to the last bit."""
    import shutil

    from stress.engine import backend

    if shutil.which("g++") is None:
        pytest.skip("needs g++")
    monkeypatch.setattr(backend, "_cupy", lambda: (None, "CuPy found no CUDA device"))
    common = [o for o in SMALL if not o.startswith("backend=")]
    local = run(config(common + ["backend=host"]))
    ds = run(config(common + ["backend=auto", "executor.kind=dask", "executor.workers=1"]))
    assert ds.attrs["backend"] == "host"
    assert_identical(local.drop_attrs(), ds.drop_attrs())


def test_dask_cluster_is_closed_when_the_run_is_interrupted(monkeypatch):
    import distributed
    from distributed.core import Status

    started = []

    class Recording(distributed.LocalCluster):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    def interrupt(self, res):
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed, "LocalCluster", Recording)
    monkeypatch.setattr(executor.Gather, "add", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run(config(SMALL + ["executor.kind=dask", "executor.workers=1"]))
    assert len(started) == 1 and started[0].status == Status.closed


class Interrupt:
    """montecarlo.simulate that raises KeyboardInterrupt (Ctrl-C) once ``after`` chunks are done."""

    def __init__(self, monkeypatch, after=None):
        self.calls, self.after, self.real = 0, after, montecarlo.simulate
        monkeypatch.setattr(engine, "simulate", self)

    def __call__(self, *args, **kwargs):
        if self.after is not None and self.calls >= self.after:
            raise KeyboardInterrupt
        self.calls += 1
        return self.real(*args, **kwargs)


def interrupted_run(monkeypatch, out, after=3, extra=()):
    stop = Interrupt(monkeypatch, after)
    with pytest.raises(KeyboardInterrupt):
        run(config(SMALL + ["output.paths=true", f"output.dir={out}", *extra]))
    monkeypatch.setattr(engine, "simulate", stop.real)
    return out / "chunks"


def test_resume_after_an_interruption_equals_an_uninterrupted_run(clean, tmp_path, monkeypatch):
    chunks = interrupted_run(monkeypatch, tmp_path / "out", after=3)
    files = sorted(chunks.glob("chunk-*.npz"))
    assert len(files) == 3 and (chunks / "manifest.json").is_file()
    assert not (tmp_path / "out" / "results.nc").exists()
    assert not list(chunks.glob(".partial-*"))
    files[1].unlink()  # a chunk lost as well: it is recomputed
    count = Interrupt(monkeypatch)
    ds = run(config(SMALL + ["output.paths=true", f"output.dir={tmp_path / 'out'}", "output.resume=true"]))
    assert count.calls == N_CHUNKS - 2
    assert_identical(clean.drop_attrs(), ds.drop_attrs())
    np.testing.assert_array_equal(ds.loss.values, clean.loss.values)
    assert (tmp_path / "out" / "results.nc").is_file() and not chunks.exists()


def test_resume_on_a_dask_cluster_continues_a_local_run(clean, tmp_path, monkeypatch):
    """Chunks do not depend on where they ran: a local run interrupted, finished on Dask."""
    interrupted_run(monkeypatch, tmp_path / "out", after=2)
    ds = run(config(SMALL + ["output.paths=true", f"output.dir={tmp_path / 'out'}", "output.resume=true",
                             "executor.kind=dask", "executor.workers=2"]))
    assert_identical(clean.drop_attrs(), ds.drop_attrs())


@pytest.mark.kernels
def test_resume_on_another_backend_keeps_the_stored_chunk_size(clean, tmp_path, monkeypatch, caplog):
    """Without mc.chunk_paths the default chunk depends on the engine (the kernel engines' minimum),
    the numbers of a chunk do not: a numpy run interrupted after 3 chunks of 25 paths is finished on
    the host kernel, whose default here would be 40, in the stored run's chunks."""
    import logging
    import shutil

    if shutil.which("g++") is None:
        pytest.skip("needs g++")
    monkeypatch.setattr(chunk, "CELLS_PER_CHUNK", 2 * 2 * 30 * 25)  # numpy: 25 paths (2 scenarios, 2 tenors, 30 loans)
    monkeypatch.setattr(chunk, "KERNEL_MIN_PATHS", 40)
    default = [o for o in SMALL if not o.startswith("mc.chunk_paths=")]
    out = tmp_path / "out"
    stop = Interrupt(monkeypatch, after=3)
    with pytest.raises(KeyboardInterrupt):
        run(config(default + ["output.paths=true", f"output.dir={out}"]))
    monkeypatch.setattr(engine, "simulate", stop.real)
    assert len(list((out / "chunks").glob("chunk-*.npz"))) == 3
    with caplog.at_level(logging.INFO, logger="stress"):
        ds = run(config([o for o in default if o != "backend=numpy"]
                        + ["backend=host", "output.paths=true", f"output.dir={out}", "output.resume=true"]))
    assert "reusing 3 finished chunks" in caplog.text
    for name in clean.data_vars:  # paths 75-119 on the host kernel: libm's exp, log and pow against numpy's
        np.testing.assert_allclose(ds[name].values, clean[name].values, rtol=1e-10, err_msg=name)  # (test_kernels)
    np.testing.assert_array_equal(ds.default_month.values, clean.default_month.values)


def test_stored_chunk_size_is_read_only_from_a_run_with_finished_chunks(tmp_path):
    """A manifest without chunk files (a run stopped before its first chunk: started afresh) or
    with a bad size gives no stored size; one with finished chunks gives it."""
    import json

    chunks = tmp_path / "chunks"
    assert checkpoint.stored_chunk_paths(tmp_path) is None  # no chunks/ at all
    chunks.mkdir()
    (chunks / "manifest.json").write_text(json.dumps({"chunk_paths": 25, "chunks": {}}))
    assert checkpoint.stored_chunk_paths(tmp_path) is None
    (chunks / checkpoint.chunk_name(0, 25)).write_bytes(b"")
    assert checkpoint.stored_chunk_paths(tmp_path) == 25
    for bad in ('{"chunk_paths": 0}', '{"chunk_paths": "x"}', "{", "[]"):
        (chunks / "manifest.json").write_text(bad)
        assert checkpoint.stored_chunk_paths(tmp_path) is None, bad


def test_changed_config_refuses_stale_chunks(tmp_path, monkeypatch):
    out = tmp_path / "out"
    interrupted_run(monkeypatch, out)
    with pytest.raises(ConfigError) as err:
        run(config(SMALL + ["output.paths=true", f"output.dir={out}", "output.resume=true", "mc.seed=7"]))
    msg = str(err.value)
    assert "config hash" in msg and "mc.seed" in msg and "new output.dir" in msg and str(out / "chunks") in msg
    with pytest.raises(ConfigError, match="output.paths"):
        run(config(SMALL + [f"output.dir={out}", "output.resume=true"]))
    # from the command line: exit code 2, one message, no traceback
    r = subprocess.run([sys.executable, "-m", "stress.cli", *SMALL, "output.paths=true", f"output.dir={out}",
                        "output.resume=true", "model.cure_months=4"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "model.cure_months" in r.stderr and "Traceback" not in r.stderr
    # executor, quiet and output keys do not change results: resuming with them changed is fine
    ds = run(config(SMALL + ["output.paths=true", f"output.dir={out}", "output.resume=true", "quiet=false",
                             "backend=numpy", "output.format=netcdf"]))
    assert ds.sizes["path"] == 120


def test_existing_chunks_are_not_reused_without_resume(clean, tmp_path, monkeypatch):
    out = tmp_path / "out"
    interrupted_run(monkeypatch, out, extra=["mc.seed=99"])
    with pytest.raises(OutputError, match="output.resume=true"):
        run(config(SMALL + ["output.paths=true", f"output.dir={out}"]))
    count = Interrupt(monkeypatch)
    ds = run(config(SMALL + ["output.paths=true", f"output.dir={out}", "output.overwrite=true"]))
    assert count.calls == N_CHUNKS  # started over: nothing of the seed-99 run was used
    assert_identical(clean.drop_attrs(), ds.drop_attrs())


def test_a_run_stopped_before_its_first_chunk_blocks_nothing(tmp_path, monkeypatch):
    out = tmp_path / "out"
    chunks = interrupted_run(monkeypatch, out, after=0)
    assert (chunks / "manifest.json").is_file() and not list(chunks.glob("chunk-*"))
    assert run(config(SMALL + [f"output.dir={out}"])).sizes["path"] == 120


def test_corrupted_chunk_is_detected(tmp_path, monkeypatch):
    out = tmp_path / "out"
    chunks = interrupted_run(monkeypatch, out)
    victim = sorted(chunks.glob("chunk-*.npz"))[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(OutputError) as err:
        run(config(SMALL + ["output.paths=true", f"output.dir={out}", "output.resume=true"]))
    assert "corrupted" in str(err.value) and victim.name in str(err.value) and "Delete" in str(err.value)
    assert not (out / "results.nc").exists()


def test_resume_needs_an_output_dir():
    with pytest.raises(ConfigError, match="output.dir"):
        run(config(SMALL + ["output.resume=true"]))


def test_result_config_ignores_only_keys_that_cannot_change_results():
    a = checkpoint.result_config(to_schema(config(SMALL)))
    b = checkpoint.result_config(to_schema(config(SMALL + ["executor.kind=dask", "quiet=false", "output.dir=x",
                                                           "backend=numpy", "mc.max_paths=200"])))
    c = checkpoint.result_config(to_schema(config(SMALL + ["scenario=[ai_winter,baseline]"])))
    assert checkpoint.config_hash(a) == checkpoint.config_hash(b)
    assert checkpoint.config_hash(a) != checkpoint.config_hash(c)  # scenario order is the array layout
    assert checkpoint.changed_keys(a, c) == ["scenario (order of keys)"]


def test_dask_needs_kind_dask_for_address_and_gpus():
    with pytest.raises(ConfigError, match="executor"):
        run(config(SMALL + ["executor.gpus=true"]))
    with pytest.raises(ConfigError, match="executor.workers"):
        run(config(SMALL + ["executor.kind=dask", "executor.workers=0"]))


def test_missing_dask_cuda_is_a_clear_error():
    pytest.importorskip("distributed")
    try:
        import dask_cuda  # noqa: F401
        pytest.skip("dask_cuda is installed")
    except ImportError:
        pass
    with pytest.raises(ConfigError, match="dask-cuda"):
        run(config(SMALL + ["executor.kind=dask", "executor.gpus=true"]))


def test_progress_bar_on_a_terminal(monkeypatch, capsys):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setattr(executor, "SHOW_PROGRESS_AFTER", 0.0)
    run(config(SMALL + ["quiet=false"]))
    err = capsys.readouterr().err
    assert "simulating 120 paths" in err and "chunks" in err
    run(config(SMALL))  # quiet: no bar
    assert "simulating" not in capsys.readouterr().err


def test_progress_output_does_not_break_the_cli(tmp_path):
    """On a (pretended) terminal, with a Dask cluster: the bar goes to stderr and disappears,
    stdout has the summary, the dataset is written, exit code 0."""
    env = {**os.environ, "TTY_COMPATIBLE": "1"}
    args = [a for a in SMALL if a != "quiet=true"] + ["mc.paths=400", "mc.chunk_paths=10", "executor.kind=dask",
                                                     f"output.dir={tmp_path / 'out'}"]
    r = subprocess.run([sys.executable, "-m", "stress.cli", *args], capture_output=True, text=True, timeout=300,
                       env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Portfolio loss" in r.stdout and "Results written to" in r.stdout and "simulating" not in r.stdout
    assert "Traceback" not in r.stderr
    with xr.open_dataset(tmp_path / "out" / "results.nc") as ds:
        assert ds.sizes["path"] == 400
    assert not (tmp_path / "out" / "chunks").exists()


def test_aggregate_a_real_multirun(tmp_path, capsys):
    from stress.results import aggregate

    r = subprocess.run([sys.executable, "-m", "stress.cli", "--multirun", *SMALL, "mc.paths=64", "mc.seed=1,2",
                        "hydra.sweep.dir=sweep"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    sweep = tmp_path / "sweep"
    r = subprocess.run([sys.executable, "-m", "stress.results.aggregate", str(sweep), "--out", str(tmp_path / "all.nc")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "swept mc.seed (2)" in r.stdout
    with xr.open_dataset(tmp_path / "all.nc") as ds, xr.open_dataset(sweep / "1" / "results.nc") as job1:
        assert list(ds["mc.seed"].values) == [1, 2]
        assert ds.loss.dims == ("mc.seed", "scenario", "tenor", "path")
        np.testing.assert_array_equal(ds.loss.sel({"mc.seed": 2}).values, job1.loss.values)
        assert "mc.seed" not in ds.principal.dims  # the same in every job

    def agg(*args):  # in process, as the console script: exit code and stderr
        with pytest.raises(SystemExit) as exit_:
            aggregate.main([str(a) for a in args])
        return exit_.value.code, capsys.readouterr().err

    code, err = agg(sweep, "--out", tmp_path / "all.nc")  # never overwrites unasked
    assert code == 2 and "already exists" in err
    # a third job that differs in something that was not swept is refused, naming the key
    third = sweep / "2"
    (third / ".hydra").mkdir(parents=True)
    overrides = (sweep / "1" / ".hydra" / "overrides.yaml").read_text().replace("mc.seed=2", "mc.seed=3")
    (third / ".hydra" / "overrides.yaml").write_text(overrides)
    with xr.open_dataset(sweep / "1" / "results.nc") as job1:
        other = job1.load()
    other.attrs["config"] = other.attrs["config"].replace("cure_months: 3", "cure_months: 4")
    other.to_netcdf(third / "results.nc")
    code, err = agg(sweep, "--out", tmp_path / "bad.nc")
    assert code == 2 and "model.cure_months" in err and "not swept" in err and not (tmp_path / "bad.nc").exists()
    (third / "results.nc").unlink()  # a failed job
    code, err = agg(sweep, "--out", tmp_path / "bad.nc")
    assert code == 2 and "has no results.nc" in err
    code, err = agg(tmp_path / "nowhere")
    assert code == 2 and "not a directory" in err
