"""Regenerate tests/data/v1_regression.nc: the model v1 engine (spot-marked LTV, no cash trap, no
equity cures) on the example tape, 2 scenarios x tenors [36, 60] x 200 paths, per-path default
months and causes kept. Run from the repository root at the v1 commit:
    PYTHONPATH=$PWD python tests/data/make_v1_regression.py
test_engine.test_v1_results_are_reproduced compares every variable of a run of V1_OVERRIDES
with this file, bit for bit."""

from pathlib import Path

from stress import compose
from stress.pipeline import run

V1_OVERRIDES = ["scenario=[baseline,new_chip_generation]", "tenors=[36,60]", "mc.paths=200", "mc.fan_paths=20",
                "mc.seed=11", "output.paths=true", "backend=numpy", "precision=float64"]
FILE = Path(__file__).with_name("v1_regression.nc")

if __name__ == "__main__":
    ds = run(compose(V1_OVERRIDES))
    ds.to_netcdf(FILE, engine="netcdf4", encoding={v: {"zlib": True, "complevel": 9} for v in ds.data_vars})
    print(FILE, FILE.stat().st_size, "bytes")
