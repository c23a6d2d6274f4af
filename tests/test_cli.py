"""The `stress-test` command line: exit codes, messages, files written and refused."""

import hashlib
import subprocess
import sys

import pytest
import xarray as xr

SMALL = ["scenario=[baseline,ai_winter]", "tenors=[36,60]", "mc.paths=64", "mc.fan_paths=16"]


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "stress.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_run_writes_dataset_and_summary(tmp_path):
    out = tmp_path / "out"
    r = cli(*SMALL, f"output.dir={out}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Portfolio loss" in r.stdout and "ai_winter" in r.stdout and "EL" in r.stdout
    with xr.open_dataset(out / "results.nc") as ds:
        assert dict(ds.sizes)["path"] == 64 and list(ds.scenario.values) == ["baseline", "ai_winter"]
        assert "mc:" in ds.attrs["config"] and ds.attrs["backend"] == "numpy" and ds.attrs["seed"] == "20261125"
    assert [p.name for p in out.iterdir() if p.name.startswith(".partial")] == []


def test_existing_results_are_never_overwritten_silently(tmp_path):
    out = tmp_path / "out"
    assert cli(*SMALL, f"output.dir={out}", cwd=tmp_path).returncode == 0
    before = hashlib.sha256((out / "results.nc").read_bytes()).hexdigest()
    r = cli(*SMALL, f"output.dir={out}", "mc.seed=5", cwd=tmp_path)
    assert r.returncode == 2 and "already exists" in r.stderr and "output.overwrite=true" in r.stderr
    assert "Traceback" not in r.stderr
    assert hashlib.sha256((out / "results.nc").read_bytes()).hexdigest() == before
    r = cli(*SMALL, f"output.dir={out}", "mc.seed=5", "output.overwrite=true", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256((out / "results.nc").read_bytes()).hexdigest() != before


def test_default_output_goes_to_the_hydra_run_directory(tmp_path):
    r = cli(*SMALL, "hydra.run.dir=run1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run1" / "results.nc").is_file()


@pytest.mark.parametrize("args,expected", [
    (["no_such_key=1"], "no_such_key"),
    (["mc.paths=abc"], "mc.paths"),
    (["mc.paths=0"], "mc.paths: must be a positive integer"),
    (["quantiles=[0.5,1.5]"], "quantiles"),
    (["backend=tpu"], "backend: must be one of auto, numpy, cupy"),
    (["scenario=[no_such_scenario]"], "no_such_scenario"),
    (["model.channels=[payment,telepathy]"], "telepathy"),
])
def test_bad_config_is_a_user_error(tmp_path, args, expected):
    r = cli(*SMALL, *args, f"output.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert expected in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out" / "results.nc").exists()


def test_bad_tape_is_reported_with_line_loan_and_column(tmp_path, tape):
    path = tape([{}, {"rate": "abc"}, {"chip": "Z9000", "gpus": -4}])
    r = cli(*SMALL, f"portfolio.path={path}", f"output.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert str(path) in r.stderr and "3 problems" in r.stderr
    assert "line 3 (loan_id 'L-2'), column 'rate'" in r.stderr
    assert "line 4 (loan_id 'L-3'), column 'chip'" in r.stderr and "column 'gpus'" in r.stderr
    assert not (tmp_path / "out").exists()


def test_cfg_job_prints_the_config_and_runs_nothing(tmp_path):
    r = cli("--cfg", "job", *SMALL, cwd=tmp_path)
    assert r.returncode == 0 and "paths: 64" in r.stdout and "severely_adverse" not in r.stdout
    assert not (tmp_path / "outputs").exists()


def test_multirun_sweeps_seeds_into_separate_directories(tmp_path):
    r = cli("--multirun", *SMALL, "mc.seed=1,2", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    seeds = []
    for job in ("0", "1"):
        with xr.open_dataset(tmp_path / "sweep" / job / "results.nc") as ds:
            seeds.append(ds.attrs["seed"])
    assert seeds == ["1", "2"]
