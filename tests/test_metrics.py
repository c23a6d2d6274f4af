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
