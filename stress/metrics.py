"""Risk measures of a loss sample with Monte Carlo standard errors.

- EL: sample mean; SE = sample standard deviation / sqrt(n).
- VaR_q: the order statistic L_(ceil(n q)) (lower empirical quantile). SE from the distribution-free
  binomial interval of order statistics: half the distance between L_(nq - s) and L_(nq + s),
  s = sqrt(n q (1 - q)) (one standard deviation of the number of samples below the true quantile).
- ES_q: Acerbi and Tasche (2002) estimator, the mean of the worst n (1 - q) losses (the boundary
  sample weighted by its fraction). SE from the asymptotic variance of Manistre and Hancock (2005):
  (Var(L | L >= VaR) + q (ES - VaR)^2) / (n (1 - q)).
"""

from __future__ import annotations

import math

import numpy as np


def expected_loss(loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and its standard error over the last axis."""
    n = loss.shape[-1]
    se = loss.std(axis=-1, ddof=1) / math.sqrt(n) if n > 1 else np.full(loss.shape[:-1], np.nan)
    return loss.mean(axis=-1), se


def _order_stat(sorted_loss: np.ndarray, rank: float) -> np.ndarray:
    """L_(rank) with rank clipped to 1..n (1-based), along the last axis."""
    n = sorted_loss.shape[-1]
    j = int(min(max(math.ceil(rank), 1), n)) - 1
    return sorted_loss[..., j]


def tail_measures(loss: np.ndarray, quantiles) -> dict[str, np.ndarray]:
    """VaR, ES and their standard errors for each quantile; arrays of shape loss.shape[:-1] + (Q,)."""
    srt = np.sort(loss, axis=-1)
    n = srt.shape[-1]
    out = {k: [] for k in ("var", "var_se", "es", "es_se")}
    for q in quantiles:
        var = _order_stat(srt, n * q)
        spread = math.sqrt(n * q * (1.0 - q))
        var_se = 0.5 * (_order_stat(srt, n * q + spread) - _order_stat(srt, n * q - spread))
        k = n * (1.0 - q)  # number of tail samples, possibly fractional
        whole = int(math.floor(k))
        frac = k - whole
        top = srt[..., n - whole:] if whole else srt[..., :0]
        boundary = srt[..., n - whole - 1] if whole < n else np.zeros(srt.shape[:-1])
        es = (top.sum(axis=-1) + frac * boundary) / k
        tail = srt[..., n - max(whole, 1):]
        tail_var = tail.var(axis=-1, ddof=1) if tail.shape[-1] > 1 else np.zeros(srt.shape[:-1])
        es_se = np.sqrt((tail_var + q * (es - var) ** 2) / k)
        for key, val in zip(out, (var, var_se, es, es_se)):
            out[key].append(val)
    return {k: np.stack(v, axis=-1) for k, v in out.items()}


def quantiles_along(samples: np.ndarray, qs, axis: int) -> np.ndarray:
    """Quantiles of ``samples`` along ``axis`` ignoring NaN (months with nothing live), moved to
    the last axis. All-NaN slices give NaN without a warning."""
    moved = np.moveaxis(samples, axis, -1)
    out = np.full(moved.shape[:-1] + (len(qs),), np.nan)
    valid = ~np.all(np.isnan(moved), axis=-1)
    if valid.any():
        out[valid] = np.nanquantile(moved[valid], qs, axis=-1).T
    return out
