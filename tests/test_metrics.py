"""VaR and ES estimators and their standard errors against known distributions."""

import numpy as np
import pytest

from stress.results import metrics


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


@pytest.mark.parametrize("n", [1, 2, 5])
def test_bootstrap_weights_are_the_order_statistic_law_of_every_resample(n):
    """Brute force: over all n^n resamples (with replacement) of n distinct losses, the share whose
    j-th smallest is the i-th smallest of the sample."""
    import itertools

    for j in range(1, n + 1):
        count = np.zeros(n)
        for draw in itertools.product(range(n), repeat=n):
            count[sorted(draw)[j - 1]] += 1
        np.testing.assert_allclose(metrics._bootstrap_weights(n, j), count / n**n, rtol=1e-12, atol=1e-15)


def test_bootstrap_weights_equal_the_binomial_tail_of_scipy_stats_bit_for_bit():
    """The incomplete beta form is the binomial survival function scipy.stats computes (the stored
    regression results were made with it), to the last bit."""
    from scipy import stats

    for n in (7, 2000, 4096):
        for j in sorted({1, n // 2, int(np.ceil(n * 0.99)), n}):
            expected = np.diff(stats.binom.sf(j - 1, n, np.arange(n + 1) / n))
            assert np.array_equal(metrics._bootstrap_weights(n, j), expected), (n, j)


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


def test_var_and_es_errors_of_a_lumpy_book_are_not_zero_and_match_the_seed_spread():
    """Losses of 500 equal loans defaulting independently (1.2% each; 20 USD m lost per default): the
    loss takes a few values only, so the 99% VaR sits on a tie (the binomial order-statistic interval
    read 0 on most seeds). Over 100 seeds of 2,000 paths the exact-bootstrap SE is never 0 and its
    root mean square is within a factor 1.6 of the spread of the estimates over seeds (the bootstrap
    of a discrete quantile is somewhat conservative; 100 seeds pin the spread down to about 7%)."""
    rng = np.random.default_rng(5)
    loss = rng.binomial(500, 0.012, size=(100, 2000)) * 20e6
    out = metrics.tail_measures(loss, [0.99, 0.999])
    for key in ("var", "es"):
        assert (out[f"{key}_se"] > 0).all(), key
        ratio = np.sqrt(np.mean(out[f"{key}_se"] ** 2, axis=0)) / out[key].std(axis=0, ddof=1)
        assert np.all((ratio > 1 / 1.6) & (ratio < 1.6)), (key, ratio)


def test_var_error_matches_the_seed_spread_on_a_continuous_loss():
    """Exponential losses, 60 seeds of 2,000 paths: the spread of the 99% VaR over seeds matches the
    reported SE (chi-square test of support.assert_se_matches_seed_spread)."""
    from support import assert_se_matches_seed_spread

    loss = np.random.default_rng(8).exponential(1.0, size=(60, 2000))
    out = metrics.tail_measures(loss, [0.99])
    assert_se_matches_seed_spread(out["var"][:, 0], out["var_se"][:, 0])
    assert_se_matches_seed_spread(out["es"][:, 0], out["es_se"][:, 0])


def test_a_quantile_beyond_the_sample_has_an_error():
    """n (1 - q) < 1: the VaR and ES are the largest loss; its bootstrap spread is not 0."""
    loss = np.arange(1.0, 201.0)
    out = metrics.tail_measures(loss, [0.999])
    assert out["var"][0] == out["es"][0] == 200.0 and out["var_se"][0] > 0 and out["es_se"][0] == out["var_se"][0]


@pytest.mark.parametrize("value, se, flag, paths", [(100.0, 5.0, False, None), (100.0, 20.0, True, 8000),
                                                    (-100.0, 30.0, True, 18000), (0.0, 0.0, False, None),
                                                    (0.0, 1.0, True, None), (100.0, np.nan, False, None)])
def test_noise_flags_and_the_paths_they_need(value, se, flag, paths):
    """SE > 10% of the figure is noisy; SE scales as 1/sqrt(paths), so SE 20% on 2,000 paths needs
    2,000 x 2^2 = 8,000 for 10%; a zero figure cannot be brought within a share of itself."""
    assert metrics.noise_flags(2000, [(value, se)]) == ([flag], paths)


@pytest.mark.parametrize("se, digits, text", [(0.0, 1, "< 0.05"), (0.049, 1, "< 0.05"), (0.05, 1, "0.1"),
                                              (0.004, 2, "< 0.005"), (1234.5, 1, "1,234.5"), (np.nan, 1, "–")])
def test_small_errors_read_as_a_bound_not_zero(se, digits, text):
    assert metrics.se_text(se, digits) == text
