"""Old results stay reproducible: the v1 model (market=gpu_2026q4_v1, spot-marked LTV, no cash
trap, no equity cures) gives, for the same seed, exactly the dataset stored in tests/data/ by the
v1 engine (tests/data/make_v1_regression.py says how it was made)."""

import numpy as np
import xarray as xr

from stress.pipeline import run
from stress.results import metrics

from support import REPO, V2_TAPE, config

DATA = REPO / "tests" / "data"
# Standard errors whose estimator changed since v1 on purpose, and why; they must equal the current
# estimator applied to the stored (bit-for-bit reproduced) losses.
NEW_ESTIMATORS = {"var_se": "exact bootstrap of the order statistic (issue 14; the v1 interval read 0 on ties)",
                  "es_se": "the VaR's SE where no loss lies above the VaR (issue 14; v1 read 0 there)"}
V1_MODEL = ["market=gpu_2026q4_v1", "market.valuation.method=spot", "model.covenant.cash_trap=false",
            "model.covenant.max_cures=0"]


def test_v1_results_are_reproduced_bit_for_bit():
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_v1", DATA / "make_v1_regression.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    stored = xr.load_dataset(DATA / "v1_regression.nc")
    ds = run(config([*make.V1_OVERRIDES, f"portfolio.path={V2_TAPE}", *V1_MODEL]))
    assert int((stored.default_month > 0).sum()) > 100  # the comparison covers many defaults
    for name in stored.variables:  # data variables and coordinates; attributes hold times and paths
        want, got = stored[name].values, ds[name].values
        if name in NEW_ESTIMATORS:
            want = metrics.tail_measures(stored.loss.values, stored["quantile"].values)[name]
        assert want.dtype.kind == got.dtype.kind and want.shape == got.shape, name
        if want.dtype.kind == "f":
            assert np.array_equal(want, got, equal_nan=True), name
        else:
            assert (want == got).all(), name
    assert set(ds.variables) >= set(stored.variables)
