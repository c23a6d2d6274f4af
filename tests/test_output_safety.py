"""Output safety (issue 7): atomic writes, refused overwrites, disk-full and permission errors
reported plainly, interrupts that leave no partial results, and no NaN or infinity written
except where NAN_MEANS documents it."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import stress
from stress.engine import lock
from stress.errors import OutputError
from stress.report import figures
from stress.results import dataset

TINY = ["scenario=[baseline,ai_winter]", "tenors=[36]", "mc.paths=16", "mc.fan_paths=4", "quiet=true"]


@pytest.fixture(scope="module")
def ds():
    return stress.run(stress.compose(TINY))


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".partial")) if out.exists() else []


# ------------------------------------------------------------------------------ atomic writes


def test_write_goes_through_a_temporary_directory_and_one_rename(tmp_path, ds, monkeypatch):
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        src, dst = Path(src), Path(dst)
        seen.append((src, dst, dst.exists()))
        assert src.parent.parent == dst.parent and src.parent.name.startswith(".partial-")
        with xr.open_dataset(src) as whole:  # the temporary file is complete before the rename
            assert whole.sizes == ds.sizes
        real_replace(src, dst)

    monkeypatch.setattr(dataset.os, "replace", replace)
    path = dataset.write(ds, str(tmp_path / "out"), "netcdf", overwrite=False)
    assert path == tmp_path / "out" / "results.nc" and len(seen) == 1 and seen[0][2] is False
    assert leftovers(tmp_path / "out") == []
    with xr.open_dataset(path) as back:
        np.testing.assert_array_equal(back.loss.values, ds.loss.values)


def test_overwrite_replaces_in_one_step_and_refusal_keeps_the_file(tmp_path, ds):
    out = tmp_path / "out"
    path = dataset.write(ds, str(out), "netcdf", overwrite=False)
    before = path.read_bytes()
    with pytest.raises(OutputError, match="already exists; choose another output.dir or set output.overwrite=true"):
        dataset.write(ds, str(out), "netcdf", overwrite=False)
    assert path.read_bytes() == before
    changed = ds.copy()
    changed.attrs["seed"] = "other"
    dataset.write(changed, str(out), "netcdf", overwrite=True)
    with xr.open_dataset(path) as back:
        assert back.attrs["seed"] == "other"
    assert leftovers(out) == []


def test_existing_results_are_refused_before_any_simulation(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.nc").write_bytes(b"earlier results")

    def no_simulation(*args, **kwargs):
        raise AssertionError("the run simulated before refusing to overwrite")

    monkeypatch.setattr(stress.engine.problem, "build_problem", no_simulation)
    with pytest.raises(OutputError, match="already exists"):
        stress.run(stress.compose([*TINY, f"output.dir={out}"]))
    assert (out / "results.nc").read_bytes() == b"earlier results"


# ------------------------------------------------------------------------------ write failures


def failing_writer(err: int):
    """A to_netcdf that writes half a file, then fails as a full disk or a refused write does."""

    def to_netcdf(self, path, *args, **kwargs):
        Path(path).write_bytes(b"CDF\x01 half a file")
        raise OSError(err, os.strerror(err), str(path))

    return to_netcdf


@pytest.mark.parametrize("err,words", [(errno.ENOSPC, "the disk is full"), (errno.EACCES, "no permission"),
                                       (errno.EDQUOT, "quota"), (errno.EROFS, "read-only")])
def test_write_failure_is_plain_and_leaves_nothing(tmp_path, ds, monkeypatch, err, words):
    out = tmp_path / "out"
    monkeypatch.setattr(xr.Dataset, "to_netcdf", failing_writer(err))
    with pytest.raises(OutputError) as info:
        dataset.write(ds, str(out), "netcdf", overwrite=False)
    message = str(info.value)
    assert message.startswith(f"could not write {out / 'results.nc'}: {os.strerror(err)} (") and words in message
    assert message.endswith("nothing was written")
    assert not (out / "results.nc").exists() and leftovers(out) == []


def test_write_failure_keeps_the_previous_results(tmp_path, ds, monkeypatch):
    out = tmp_path / "out"
    path = dataset.write(ds, str(out), "netcdf", overwrite=False)
    before = path.read_bytes()
    monkeypatch.setattr(xr.Dataset, "to_netcdf", failing_writer(errno.ENOSPC))
    with pytest.raises(OutputError, match="the disk is full"):
        dataset.write(ds, str(out), "netcdf", overwrite=True)
    assert path.read_bytes() == before and leftovers(out) == []


def test_netcdf_library_errors_are_reported_plainly(tmp_path, ds, monkeypatch):
    def to_netcdf(self, path, *args, **kwargs):
        Path(path).write_bytes(b"CDF")
        raise RuntimeError("NetCDF: HDF error")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", to_netcdf)
    with pytest.raises(OutputError, match=r"NetCDF: HDF error \(is the disk full\?\); nothing was written"):
        dataset.write(ds, str(tmp_path / "out"), "netcdf", overwrite=False)
    assert leftovers(tmp_path / "out") == []


def test_no_room_for_the_temporary_directory(tmp_path, ds, monkeypatch):
    def mkdtemp(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(dataset.tempfile, "mkdtemp", mkdtemp)
    with pytest.raises(OutputError, match="No space left on device"):
        dataset.write(ds, str(tmp_path / "out"), "netcdf", overwrite=False)


def test_output_dir_that_is_a_file(tmp_path, ds):
    (tmp_path / "out").write_text("not a directory")
    with pytest.raises(OutputError, match="cannot create the output directory"):
        dataset.write(ds, str(tmp_path / "out" / "sub"), "netcdf", overwrite=False)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_output_directory(tmp_path, ds):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="not writable"):
            dataset.write(ds, str(out), "netcdf", overwrite=False)
    finally:
        out.chmod(0o755)
    assert list(out.iterdir()) == []


def run_cli_with(patch: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`stress-test ARGS` in a fresh interpreter after running PATCH (e.g. a failing writer)."""
    code = textwrap.dedent(patch) + "\nimport sys\nfrom stress.cli import main\nsys.argv = ['stress-test', *sys.argv[1:]]\nmain()\n"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("err,words", [(errno.ENOSPC, "No space left on device (the disk is full)"),
                                       (errno.EACCES, "Permission denied (no permission to write there)")])
def test_cli_reports_write_failures_with_exit_code_2(tmp_path, err, words):
    patch = f"""
        import errno, os, pathlib, xarray
        def to_netcdf(self, path, *a, **k):
            pathlib.Path(path).write_bytes(b"CDF half")
            raise OSError({err}, os.strerror({err}), str(path))
        xarray.Dataset.to_netcdf = to_netcdf
    """
    out = tmp_path / "out"
    r = run_cli_with(patch, [*TINY, f"output.dir={out}", "hydra.run.dir=run"], tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"stress-test: error: could not write {out / 'results.nc'}: {words}"), r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    assert not (out / "results.nc").exists() and leftovers(out) == []


# ------------------------------------------------------------------------------ interrupts

LONG_RUN = ["scenario=[baseline,ai_winter,severely_adverse]", "tenors=[36,60,84]", "mc.paths=400000",
            "mc.chunk_paths=2000", "quiet=true"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_leaves_no_partial_results(tmp_path, sig):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "stress.cli", *LONG_RUN, f"output.dir={out}", "hydra.run.dir=run"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "run" / ".hydra" / "config.yaml").exists():  # the task has started
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        time.sleep(2.0)  # well into the simulation
        assert proc.poll() is None, "the run finished before it could be interrupted"
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig.value, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr and len([l for l in lines if "interrupted" in l]) == 1, stderr
    assert lines[-1].startswith(f"stress-test: interrupted by {sig.name}; no results file was written"), stderr
    assert not (out / "results.nc").exists() and leftovers(out) == []


def test_interrupt_while_writing_removes_the_temporary_file(tmp_path):
    patch = """
        import os, pathlib, signal, time, xarray
        def to_netcdf(self, path, *a, **k):
            pathlib.Path(path).write_bytes(b"CDF half")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        xarray.Dataset.to_netcdf = to_netcdf
    """
    out = tmp_path / "out"
    r = run_cli_with(patch, [*TINY, f"output.dir={out}", "hydra.run.dir=run"], tmp_path)
    assert r.returncode == 128 + signal.SIGTERM.value, r.stderr
    assert r.stderr.strip().startswith("stress-test: interrupted by SIGTERM; no results file was written")
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not (out / "results.nc").exists() and leftovers(out) == []


# ------------------------------------------------------------------------------ NaN and infinity


def test_nan_allow_list_is_documented_in_the_dataset(ds):
    assert set(dataset.NAN_MEANS) == {"lgd", "default_share", "ltv_fan", "dscr_fan", "price_fan", "offtaker_pd",
                                      "offtaker_default_prob"}
    for name, meaning in dataset.NAN_MEANS.items():
        assert ds[name].attrs["nan_means"] == meaning
    assert "NaN appears only in lgd, default_share" in ds.attrs["nan_policy"]
    for name, var in ds.data_vars.items():
        if np.issubdtype(var.dtype, np.floating):
            assert not np.isinf(var.values).any(), name
            if name not in dataset.NAN_MEANS:
                assert not np.isnan(var.values).any(), name


@pytest.mark.parametrize("name,value", [("el", np.nan), ("expected_loss", np.nan), ("loss", np.inf),
                                        ("lgd", np.inf), ("var_se", -np.inf), ("scheduled_balance", np.nan)])
def test_nan_or_infinity_outside_the_allow_list_stops_the_write(tmp_path, ds, name, value):
    bad = ds.copy(deep=True)
    bad[name].values.flat[0] = value
    with pytest.raises(dataset.NonFiniteResult) as info:
        dataset.write(bad, str(tmp_path / "out"), "netcdf", overwrite=False)
    assert f"{name}: 1 " in str(info.value) and "a bug; nothing was written" in str(info.value)
    assert not (tmp_path / "out" / "results.nc").exists()


def test_nan_in_the_allow_list_is_written(tmp_path, ds):
    ok = ds.copy(deep=True)
    for name in dataset.NAN_MEANS:
        ok[name].values.flat[0] = np.nan
    path = dataset.write(ok, str(tmp_path / "out"), "netcdf", overwrite=False)
    with xr.open_dataset(path) as back:
        assert np.isnan(back.lgd.values.flat[0]) and back.lgd.attrs["nan_means"] == dataset.NAN_MEANS["lgd"]


def test_nan_names_where_it_is(ds):
    bad = ds.copy(deep=True)
    bad["el"].loc[dict(scenario="ai_winter", tenor=36, loan=ds.loan.values[3])] = np.nan
    with pytest.raises(dataset.NonFiniteResult, match=r"el: 1 NaN of \d+ \(first at scenario=ai_winter, tenor=36, "
                                                       rf"loan={ds.loan.values[3]}\)"):
        dataset.check_finite(bad)


def test_dataset_built_with_a_nan_fails_loudly(monkeypatch):
    real = dataset.metrics.expected_loss

    def broken(loss, *args, **kwargs):
        el, se = real(loss, *args, **kwargs)
        return el * np.nan, se

    monkeypatch.setattr(dataset.metrics, "expected_loss", broken)
    with pytest.raises(dataset.NonFiniteResult, match="expected_loss: "):
        stress.run(stress.compose(TINY))


# ------------------------------------------------------------------------------ one run per output directory


def wait_for(condition, proc, seconds=120):
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)


def test_a_second_run_into_a_busy_output_dir_exits_2_and_a_dead_holder_is_taken_over(tmp_path):
    """Two real processes: while run A stores its chunks, run B into the same output.dir (even with
    output.overwrite=true, which would discard A's chunks) stops at once naming A; after kill -9 of A
    its lock file is stale, and run C takes it over with a warning."""
    out = tmp_path / "out"
    a = subprocess.Popen([sys.executable, "-m", "stress.cli", *LONG_RUN, f"output.dir={out}", "hydra.run.dir=run"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any((out / "chunks").glob("chunk-*.npz")), a)
        chunks = sorted((out / "chunks").glob("chunk-*.npz"))
        started = time.monotonic()
        b = subprocess.run([sys.executable, "-m", "stress.cli", *TINY, f"output.dir={out}", "output.overwrite=true",
                            "hydra.run.dir=run_b"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert time.monotonic() - started < 30
        assert b.returncode == 2, b.stderr
        assert b.stderr.startswith(f"stress-test: error: {out} is in use by another run (process {a.pid} on host ")
        assert "Traceback" not in b.stderr and b.stderr.count("\n") == 1
        assert a.poll() is None and all(c.is_file() for c in chunks)  # A runs on, its chunks untouched
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=60)
    finally:
        if a.poll() is None:
            a.kill()
    assert f'"pid": {a.pid}' in (out / ".stress-lock").read_text()  # left behind by kill -9
    c = subprocess.run([sys.executable, "-m", "stress.cli", *TINY, f"output.dir={out}", "output.overwrite=true",
                        "hydra.run.dir=run_c"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert c.returncode == 0, c.stderr
    assert f"took over the stale lock {out / '.stress-lock'} of process {a.pid} on host " in c.stdout + c.stderr
    assert (out / "results.nc").is_file() and not (out / ".stress-lock").exists()


def test_the_lock_is_shared_by_nested_holders_and_released(tmp_path):
    with lock.held(tmp_path / "out"):
        info = (tmp_path / "out" / ".stress-lock").read_text()
        assert f'"pid": {os.getpid()}' in info
        with lock.held(tmp_path / "out"):  # the CLI around stress.run
            pass
        assert (tmp_path / "out" / ".stress-lock").exists()
    assert not (tmp_path / "out").exists()  # created for the run, empty afterwards: removed


# ------------------------------------------------------------------------------ the report, stale temporaries


def test_the_report_is_not_replaced_without_overwrite(tmp_path):
    """As the results file: an existing report.html (and its figures) stops the run before any
    simulation, unless output.overwrite=true."""
    out = tmp_path / "out"
    out.mkdir()
    before = b"<html>an earlier report, its results.nc moved away</html>"
    (out / "report.html").write_bytes(before)
    (out / figures.figure_filename(next(iter(figures.FIGURES)))).write_bytes(b"an earlier figure")
    args = [sys.executable, "-m", "stress.cli", *TINY, f"output.dir={out}"]
    r = subprocess.run([*args, "hydra.run.dir=run2"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr == (f"stress-test: error: {out / 'report.html'} already exists (and 1 more file of the report); "
                        "choose another output.dir or set output.overwrite=true\n")
    assert (out / "report.html").read_bytes() == before and not (out / "results.nc").exists()
    r = subprocess.run([*args, "mc.seed=5", "output.overwrite=true", "hydra.run.dir=run3"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (out / "report.html").read_bytes() != before


def test_kill_9_while_writing_leaves_a_temporary_that_the_next_run_removes(tmp_path):
    patch = """
        import os, pathlib, signal, xarray
        def to_netcdf(self, path, *a, **k):
            pathlib.Path(path).write_bytes(b"CDF half")
            os.kill(os.getpid(), signal.SIGKILL)
        xarray.Dataset.to_netcdf = to_netcdf
    """
    out = tmp_path / "out"
    r = run_cli_with(patch, [*TINY, f"output.dir={out}", "hydra.run.dir=run"], tmp_path)
    assert r.returncode == -signal.SIGKILL
    stale = leftovers(out)
    assert len(stale) == 1 and (out / stale[0] / "results.nc").is_file()
    live = out / f"{lock.partial_prefix()}stillwriting"  # of this test process, which is alive
    live.mkdir()
    r = subprocess.run([sys.executable, "-m", "stress.cli", *TINY, f"output.dir={out}", "output.resume=true",
                        "hydra.run.dir=run2"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"removing {out / stale[0]}, left by process " in r.stdout + r.stderr
    assert leftovers(out) == [live.name] and (out / "results.nc").is_file()
