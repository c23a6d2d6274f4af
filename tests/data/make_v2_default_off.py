"""Regenerate tests/data/v2_default_off.npz: the model v2 mechanics (appraisal, cash trap, equity
cures, cross-default) on the example tape with the v1 market (a calibration that no longer moves),
2 scenarios x tenors [36, 60] x 300 paths, made before the issue-15 features wrong-way risk,
residual value guarantees and fire sales existed. Run from the repository root at that commit:
    PYTHONPATH=$PWD python tests/data/make_v2_default_off.py
tests/test_default_off.py checks that with those features at their defaults (off) a run gives these
arrays bit for bit."""

from pathlib import Path

import numpy as np

from stress import compose
from stress.pipeline import run

V2_OVERRIDES = ["market=gpu_2026q4_v1", "market.valuation.method=appraisal", "model.covenant.cash_trap=true",
                "model.covenant.max_cures=2", "model.cross_default=true",
                "scenario=[baseline,severely_adverse]", "tenors=[36,60]", "mc.paths=300", "mc.fan_paths=20",
                "mc.seed=15", "output.paths=true", "backend=numpy", "precision=float64", "quiet=true"]
VARIABLES = ("loss", "el", "pd", "lgd", "default_month", "default_cause", "ltv_fan", "dscr_fan")
FILE = Path(__file__).with_name("v2_default_off.npz")

if __name__ == "__main__":
    ds = run(compose(V2_OVERRIDES))
    np.savez_compressed(FILE, **{v: ds[v].values for v in VARIABLES})
    print(FILE, FILE.stat().st_size, "bytes")
