"""The `stress-test` command line: exit codes, messages, files written and refused."""

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import stress
from stress.config.compose import to_schema
from stress.config.install import tape_path
from stress.config.portfolio import load_portfolio
from stress.config.schema import MCConfig, StressConfig
from stress.results import dataset

SMALL = ["scenario=[baseline,ai_winter]", "tenors=[36,60]", "mc.paths=64", "mc.fan_paths=16"]
AUTO = stress.engine.backend.select("auto").name  # the engine backend=auto runs on this machine


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
        assert "mc:" in ds.attrs["config"] and ds.attrs["backend"] == AUTO and ds.attrs["seed"] == "20261125"
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


BAD_CONFIGS = [
    (["no_such_key=1"], "no_such_key: unknown key 'no_such_key'; the keys at the top level are market, portfolio"),
    (["mc.pths=5"], "mc.pths: unknown key 'pths'; the keys under 'mc' are paths, seed, chunk_paths"),
    (["+foo=1"], "foo: unknown key; the keys at the top level are market, portfolio"),
    (["mc.paths=abc"], "mc.paths: must be an integer (a whole number, e.g. 2000); got 'abc'"),
    (["mc.paths=1.5"], "mc.paths: must be an integer"),
    (["model.cross_default=maybe"], "model.cross_default: must be true or false; got 'maybe'"),
    (["tenors=36"], "tenors: must be a list"),
    (["mc=3"], "mc: is a group of keys (paths, seed"),
    (["mc.paths=0"], "mc.paths: must be a positive integer"),
    (["mc.paths=-5"], "mc.paths: must be a positive integer"),
    (["tenors=[0,36]"], "tenors: must be a list of months, each in 1..600"),
    (["tenors=[-12]"], "tenors: must be a list of months, each in 1..600"),
    (["quantiles=[0.5,1.5]"], "quantiles: must be a non-empty list of numbers strictly between 0 and 1"),
    (["quantiles=[0]"], "quantiles: must be a non-empty list of numbers strictly between 0 and 1"),
    (["backend=tpu"], "backend: must be one of auto, numpy, cupy"),
    (["precision=float16"], "precision: must be one of float64, float32; got 'float16'"),
    (["output.format=csv"], "output.format: must be one of netcdf, zarr; got 'csv'"),
    (["scenario=[no_such_scenario]"], "scenario: there is no scenario named 'no_such_scenario'; available: "
                                      "ai_winter, anchor_tenant_default, baseline, "),
    (["scenario=[baseline,nope]"], "scenario: there is no scenario named 'nope'; available: ai_winter, anchor_tenant_default, baseline"),
    (["market=nope"], "market: there is no market named 'nope'; available: gpu_2026q4"),
    (["model.channels=[payment,telepathy]"], "telepathy"),
    (["scenario.baseline.shocks=[{target: price.X9000, kind: mul, value: 0.5}]"],
     "scenario.baseline.shocks[0].target: unknown chip 'X9000' in target 'price.X9000'; the chips of market "
     "'gpu_2026q4' are A100, H100, H200, B200, GB200"),
    (["scenario.baseline.shocks=[{target: launch.Rubbin.step, kind: set, value: 0.2}]"],
     "unknown generation 'Rubbin' in target 'launch.Rubbin.step'; the launches of market 'gpu_2026q4' are Rubin"),
    (["scenario.baseline.shocks=[{target: gravity, kind: mul, value: 0.5}]"],
     "unknown target 'gravity'; allowed: price.<chip> (chip: A100"),
    (["scenario.baseline.shocks=[{target: demand, kind: pow, value: 2}]"],
     "scenario.baseline.shocks[0].kind: must be one of add, mul, set; got 'pow'"),
    (["scenario.baseline.shocks=[{target: demand, knd: add, value: 2}]"],
     "unknown key 'knd'"),
    (["scenario.baseline.shocks=[{target: utilization, kind: set, value: 1.5}]"],
     "scenario.baseline.shocks[0].value: a utilisation (target utilization) must be in [0, 1], got 1.5"),
]


@pytest.mark.parametrize("args,expected", BAD_CONFIGS)
def test_bad_config_is_a_user_error(tmp_path, args, expected):
    r = cli(*SMALL, *args, f"output.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert expected in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.startswith("stress-test: error: invalid config:") and r.stderr.count("stress-test:") == 1, r.stderr
    assert "HYDRA_FULL_ERROR" not in r.stderr and "search path" not in r.stderr and "+no_such" not in r.stderr
    assert not (tmp_path / "out" / "results.nc").exists()


@pytest.mark.parametrize("args,expected", BAD_CONFIGS)
def test_bad_config_raises_config_error_from_python(args, expected):
    with pytest.raises(stress.ConfigError) as info:
        stress.run(stress.compose([*SMALL, *args]))
    assert expected in str(info.value) and str(info.value).startswith("invalid config:")


@pytest.mark.parametrize("obj,expected", [
    (lambda: StressConfig(mc=MCConfig(paths="2000")), "mc.paths: must be an integer (a whole number, e.g. 2000); got '2000'"),
    (lambda: StressConfig(tenors=36), "tenors: must be a list of months, e.g. [36, 60], or tape (each loan's "
                                      "tenor_months); got 36"),
    (lambda: StressConfig(tenors=[36, "x"]), "tenors[1]: must be a whole number of months; got 'x'"),
    (lambda: StressConfig(tenors="tapes"), "tenors: must be a list of months, e.g. [36, 60], or tape"),
    (lambda: StressConfig(quiet="no"), "quiet: must be true or false; got 'no'"),
    (lambda: StressConfig(quantiles=[0.5, "x"]), "quantiles[1]: must be a number; got 'x'"),
])
def test_hand_built_configs_are_type_checked(obj, expected):
    with pytest.raises(stress.ConfigError) as info:
        stress.run(obj())
    assert expected in str(info.value)


def test_tape_tenors_are_a_choice_of_their_own(tmp_path):
    """tenors=tape re-schedules nothing: each loan keeps its tape tenor_months, under the tenor
    coordinate 'tape', with the months in the per-loan tape_tenor (in every run, also a sweep, which
    the summary says replaces them); tenors=[] (older configs) is the same run. The dataset and
    its accessor read 'tape' back from the file."""
    small = ["scenario=[baseline]", "mc.paths=16", "mc.fan_paths=4", "quiet=true"]
    ds = stress.run(stress.compose([*small, "tenors=tape", f"output.dir={tmp_path / 'a'}"]))
    tape = load_portfolio(tape_path(to_schema(stress.compose([]))), ds.chip.values)
    assert list(ds.tenor.values) == ["tape"] and ds.tape_tenor.dims == ("loan",)
    assert ds.tape_tenor.values.tolist() == tape.tenor_months.tolist()
    old = stress.run(stress.compose([*small, "tenors=[]", f"output.dir={tmp_path / 'b'}"]))
    assert np.array_equal(old.loss.values, ds.loss.values) and list(old.tenor.values) == ["tape"]
    assert dataset.tenor_note(ds) is None
    saved = xr.open_dataset(tmp_path / "a" / "results.nc")
    t = saved.stress.tenor_comparison("baseline", pd_limit=1.0)
    assert list(t.columns) == ["PD tape", "EL tape", "max_safe_tenor"]
    assert t["max_safe_tenor"].tolist() == tape.tenor_months.tolist()  # every loan safe at its own tenor
    swept = stress.run(stress.compose([*small, "tenors=[36,60]", f"output.dir={tmp_path / 'c'}"]))
    assert swept.tape_tenor.values.tolist() == tape.tenor_months.tolist()
    off = sum(m not in (36, 60) for m in tape.tenor_months)
    assert dataset.tenor_note(swept).startswith(
        f"Note: the tenor sweep (36, 60 months) replaces the tape's own tenor_months ({min(tape.tenor_months)}-"
        f"{max(tape.tenor_months)} months; {off} of {len(tape)} loans have one outside the sweep)")


def test_the_summary_says_when_the_sweep_replaces_tape_tenors(tmp_path):
    r = cli(*SMALL, f"output.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert r.returncode == 0 and "Note: the tenor sweep (36, 60 months) replaces the tape's own tenor_months" in r.stdout
    assert "tenors=tape runs each loan at its own tenor" in " ".join(r.stdout.split())
    r = cli("scenario=[baseline]", "tenors=tape", "mc.paths=16", "mc.fan_paths=4", f"output.dir={tmp_path / 'tape'}",
            cwd=tmp_path)
    assert r.returncode == 0 and "replaces the tape's own" not in r.stdout and "│ baseline │  tape │" in r.stdout


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


def test_init_copies_the_config_and_an_edited_price_drives_the_run(tmp_path):
    """``stress-test init DIR`` copies the bundled conf/; a run with ``--config-dir DIR`` uses the edited
    H100 price. On common random numbers the log-price noise is the same, so the H100 price fan is
    the bundled one times new/old price exactly, and the other chips' fans are unchanged."""
    import re

    mine = tmp_path / "myconf"
    r = subprocess.run([sys.executable, "-m", "stress.cli", "init", str(mine)], cwd=tmp_path, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert (mine / "config.yaml").is_file() and (mine / "portfolio" / "example_loans.csv").is_file()
    market = mine / "market" / "gpu_2026q4.yaml"
    text = market.read_text()
    old = float(re.search(r"\n  H100:\n(?:    #.*\n)*    price: ([0-9.]+)", text).group(1))
    market.write_text(re.sub(r"(\n  H100:\n(?:    #.*\n)*    price: )[0-9.]+", r"\g<1>1.21", text, count=1))
    args = ["scenario=[baseline]", "tenors=[36]", "mc.paths=64", "mc.fan_paths=16", "quiet=true"]
    assert cli(*args, "output.dir=bundled", cwd=tmp_path).returncode == 0
    r = cli("--config-dir", str(mine), *args, "output.dir=edited", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with xr.open_dataset(tmp_path / "bundled" / "results.nc") as a, xr.open_dataset(tmp_path / "edited" / "results.nc") as b:
        # the bundled tree of the package the CLI imports (an installed copy in CI, the checkout here)
        bundled = Path(a.attrs["config_dir"])
        assert bundled.name == "conf" and (bundled / "config.yaml").is_file() and bundled != mine.resolve()
        assert b.attrs["config_dir"] == str(mine.resolve())
        assert b.attrs["portfolio"] == str(mine.resolve() / "portfolio" / "example_loans.csv")
        ratio = (b.price_fan / a.price_fan).sel(scenario="baseline")
        assert ratio.sel(chip="H100").values == pytest.approx(1.21 / old, rel=1e-9)
        assert ratio.drop_sel(chip="H100").values == pytest.approx(1.0, rel=1e-12)
        assert float(b.expected_loss.sum()) > float(a.expected_loss.sum())  # half the H100 income: more loss
    again = subprocess.run([sys.executable, "-m", "stress.cli", "init", str(mine)], cwd=tmp_path,
                           capture_output=True, text=True)
    assert again.returncode == 2 and "exists and is not an empty folder" in again.stderr
    assert market.read_text().count("price: 1.21") == 1  # nothing was overwritten
