"""VaR and ES estimators and their standard errors against known distributions."""

import numpy as np
import pytest

from stress import metrics


def test_var_es_on_a_known_sample():
    loss = np.arange(1.0, 1001.0)  # 1..1000
    out = metrics.tail_measures(loss, [0.99, 0.995])
    assert out["var"].tolist() == [990.0, 995.0]
    # ES = mean of the worst 10 (resp. 5) samples
    assert out["es"].tolist() == [995.5, 998.0]


def test_es_with_a_fractional_tail_weights_the_boundary_sample():
    loss = np.arange(1.0, 101.0)
    # n (1 - q) = 2.5 tail samples: (100 + 99 + 0.5 * 98) / 2.5
    assert metrics.tail_measures(loss, [0.975])["es"][0] == pytest.approx((100 + 99 + 49) / 2.5)


def test_expected_loss_and_its_error():
    rng = np.random.default_rng(1)
    loss = rng.exponential(2.0, size=(3, 40000))
    el, se = metrics.expected_loss(loss)
    np.testing.assert_allclose(se, 2.0 / np.sqrt(40000), rtol=0.05)  # sd of Exp(mean 2) is 2
    assert np.all(np.abs(el - 2.0) < 4 * se)


@pytest.mark.slow
def test_standard_errors_cover_the_truth():
    """For exponential losses (mean 1) the true VaR_q = -ln(1 - q) and ES_q = VaR_q + 1. Over 400
    replications of 5000 samples, the z-scores (estimate - truth) / SE have mean ~0 and sd ~1:
    |mean| < 0.25 and 0.75 < sd < 1.3 (about 5 standard errors of those statistics; the
    estimators' small-sample bias is well inside)."""
    rng = np.random.default_rng(7)
    q = np.array([0.95, 0.99])
    loss = rng.exponential(1.0, size=(400, 5000))
    out = metrics.tail_measures(loss, q)
    for key, truth in (("var", -np.log(1 - q)), ("es", 1 - np.log(1 - q))):
        z = (out[key] - truth) / out[f"{key}_se"]
        assert np.all(np.abs(z.mean(axis=0)) < 0.25), (key, z.mean(axis=0))
        assert np.all((z.std(axis=0) > 0.75) & (z.std(axis=0) < 1.3)), (key, z.std(axis=0))


def test_quantiles_ignore_nan_and_keep_all_nan_slices():
    x = np.array([[1.0, 2.0, np.nan, 4.0], [np.nan] * 4])
    out = metrics.quantiles_along(x, [0.5], axis=1)
    assert out[0, 0] == 2.0 and np.isnan(out[1, 0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fan_quantiles_are_np_nanquantile_bit_for_bit(dtype):
    """The one-sort quantiles equal np.nanquantile called slice by slice, bit for bit, on random
    data with NaN (some slices all NaN), infinities, ties and q at 0 and 1, along every axis."""
    rng = np.random.default_rng(5)
    qs = [0.0, 0.05, 0.25, 1 / 3, 0.5, 0.75, 0.95, 1.0]
    for trial in range(12):
        x = rng.normal(size=tuple(rng.integers(1, 8, size=3))).astype(dtype)
        x[rng.random(x.shape) < rng.random()] = np.nan
        x[..., 0] = np.nan if trial % 3 == 0 else x[..., 0]
        if trial % 4 == 1:
            x[0] = np.inf
        if trial % 4 == 2:
            x = np.round(x)  # ties and signed zeros
        for axis in range(3):
            moved = np.moveaxis(x, axis, -1)
            want = np.full(moved.shape[:-1] + (len(qs),), np.nan)
            with np.errstate(invalid="ignore"):
                for idx in np.ndindex(moved.shape[:-1]):
                    if not np.isnan(moved[idx]).all():
                        want[idx] = np.nanquantile(moved[idx], qs)
                got = metrics.quantiles_along(x, qs, axis)
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got.view(np.uint64), want.view(np.uint64))
    assert np.isnan(metrics.quantiles_along(np.zeros((2, 0, 3)), qs, 1)).all()  # no fan paths
    assert metrics.quantiles_along(np.zeros((2, 0, 3)), qs, 1).shape == (2, 3, len(qs))
