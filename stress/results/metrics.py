"""Risk measures of a loss sample with Monte Carlo standard errors.

- EL: sample mean; SE = sample standard deviation / sqrt(n).
- VaR_q: the order statistic L_(j), j = ceil(n q) (lower empirical quantile). SE: the exact
  bootstrap standard deviation of that order statistic (Hutson and Ernst 2000, "The exact bootstrap
  mean and variance of an L-estimator", JRSS B 62): resampling the n losses with replacement, the
  j-th smallest resampled loss is L_(i) with probability P(B_i >= j) - P(B_{i-1} >= j),
  B_i ~ Binomial(n, i / n), so the variance over all resamples is a weighted sum over the sorted
  sample, without drawing any. Deterministic, and not 0 when the losses have ties at the quantile
  (a lumpy book of equal loans): the weights reach every sample within a few sqrt(n q (1 - q))
  ranks, and beyond the sample's largest loss when n (1 - q) < 1.
- ES_q: Acerbi and Tasche (2002) estimator, the mean of the worst n (1 - q) losses (the boundary
  sample weighted by its fraction). SE from the asymptotic variance of Manistre and Hancock (2005):
  (Var(L | L >= VaR) + q (ES - VaR)^2) / (n (1 - q)); where no sample lies above the VaR (all of
  the tail tied at it, so that formula reads 0), ES equals the VaR and takes the VaR's SE.

Weighted (importance-sampling) versions, ``weight`` = per-path likelihood ratios w (Glasserman,
Heidelberger and Shahabuddin 2000; Glasserman 2004, 9.2); each reduces to the estimator above
when w = 1, but for the VaR SE (the interval below; ties at the quantile can make it 0):
- EL: mean of w L; SE = sd(w L) / sqrt(n).
- VaR_q: the smallest sample L_(j) whose estimated exceedance probability (1/n) sum w 1{L > L_(j)}
  is <= 1 - q. SE: that exceedance estimate has standard error s = sd(w 1{L > VaR}) / sqrt(n);
  SE = half the distance between the VaR estimates at levels q - s and q + s (with w = 1, the
  binomial interval of order statistics, s = sqrt(q (1 - q) / n)).
- ES_q: VaR + (1/n) sum w (L - VaR)^+ / (1 - q) (Rockafellar-Uryasev; equal to the Acerbi-Tasche
  estimator when w = 1); SE = sd(w (L - VaR)^+) / (sqrt(n) (1 - q)), the influence-function
  variance (equal to Manistre-Hancock when w = 1).
"""

from __future__ import annotations

import math

import numpy as np

NOISY_SHARE = 0.10  # a figure whose Monte Carlo standard error exceeds this share of it is flagged as noisy


def expected_loss(loss: np.ndarray, weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and its standard error over the last axis (weighted by ``weight``, broadcasting, if given)."""
    n = loss.shape[-1]
    if weight is not None:
        wl = loss * weight
        se = wl.std(axis=-1, ddof=1) / math.sqrt(n) if n > 1 else np.full(wl.shape[:-1], np.nan)
        return wl.mean(axis=-1), se
    se = loss.std(axis=-1, ddof=1) / math.sqrt(n) if n > 1 else np.full(loss.shape[:-1], np.nan)
    return loss.mean(axis=-1), se


def noisy(value, se, share: float = NOISY_SHARE):
    """True where the standard error exceeds ``share`` of the figure's size (False where either is NaN)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(se) > share * np.abs(np.asarray(value))


def paths_needed(paths: int, value: float, se: float, share: float = NOISY_SHARE) -> int | None:
    """Paths that would bring ``se`` (estimated on ``paths`` paths) down to ``share`` of ``value``,
    SE scaling as 1 / sqrt(paths), rounded up to 2 significant figures; None for a zero or NaN figure."""
    if not (np.isfinite(value) and np.isfinite(se)) or value == 0:
        return None
    need = paths * (se / (share * abs(value))) ** 2
    if need <= paths:
        return paths
    step = 10 ** max(int(math.floor(math.log10(need))) - 1, 0)
    return int(math.ceil(need / step) * step)


def noise_flags(paths: int, figures, share: float = NOISY_SHARE) -> tuple[list[bool], int | None]:
    """For (value, se) pairs estimated on ``paths`` paths: which are noisy, and the paths that would
    bring every noisy one within ``share`` (None when none is, or none can be: zero figures)."""
    flags = [bool(noisy(v, e, share)) for v, e in figures]
    need = [paths_needed(paths, v, e, share) for (v, e), f in zip(figures, flags) if f]
    need = [n for n in need if n is not None]
    return flags, max(need) if need else None


def se_text(se: float, digits: int = 1) -> str:
    """A standard error (already in the display unit) with ``digits`` decimals; '< 0.05' (for one
    decimal) rather than '0.0' when it rounds to zero, '–' for NaN."""
    if se is None or not np.isfinite(se):
        return "–"
    half = 0.5 * 10.0 ** -digits
    return f"< {half:.{digits + 1}f}" if abs(se) < half else f"{se:,.{digits}f}"


def _bootstrap_weights(n: int, j: int) -> np.ndarray:
    """P(the j-th smallest of n losses resampled with replacement is the i-th smallest of the
    sample), i = 1..n: P(Binomial(n, i/n) >= j) - P(Binomial(n, (i-1)/n) >= j), the binomial tail
    P(Binomial(n, x) >= j) being the regularised incomplete beta function I_x(j, n - j + 1)."""
    from scipy.special import betainc  # imported when first needed, and not scipy.stats (~0.6 s more)

    return np.diff(betainc(j, n - j + 1, np.arange(n + 1) / n))


def tail_measures(loss: np.ndarray, quantiles, weight: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """VaR, ES and their standard errors for each quantile; arrays of shape loss.shape[:-1] + (Q,).
    With ``weight`` (likelihood ratios broadcasting against ``loss``), the weighted estimators."""
    if weight is not None:
        return _weighted_tail_measures(loss, np.broadcast_to(weight, loss.shape), quantiles)
    srt = np.sort(loss, axis=-1)
    n = srt.shape[-1]
    out = {k: [] for k in ("var", "var_se", "es", "es_se")}
    for q in quantiles:
        j = int(min(max(math.ceil(n * q), 1), n))
        var = srt[..., j - 1]
        p = _bootstrap_weights(n, j)
        boot_mean = srt @ p
        var_se = np.sqrt(np.maximum(np.square(srt - boot_mean[..., None]) @ p, 0.0))
        k = n * (1.0 - q)  # number of tail samples, possibly fractional
        whole = int(math.floor(k))
        frac = k - whole
        top = srt[..., n - whole:] if whole else srt[..., :0]
        boundary = srt[..., n - whole - 1] if whole < n else np.zeros(srt.shape[:-1])
        es = (top.sum(axis=-1) + frac * boundary) / k
        tail = srt[..., n - max(whole, 1):]
        tail_var = tail.var(axis=-1, ddof=1) if tail.shape[-1] > 1 else np.zeros(srt.shape[:-1])
        es_se = np.where(srt[..., -1] > var, np.sqrt((tail_var + q * (es - var) ** 2) / k), var_se)
        for key, val in zip(out, (var, var_se, es, es_se)):
            out[key].append(val)
    return {k: np.stack(v, axis=-1) for k, v in out.items()}


def quantiles_along(samples: np.ndarray, qs, axis: int) -> np.ndarray:
    """Quantiles of ``samples`` along ``axis`` ignoring NaN (months with nothing live), moved to
    the last axis. All-NaN slices give NaN without a warning.

    The same bits as ``np.nanquantile`` (method "linear"), computed with one sort along the axis
    instead of one call per slice: each slice's n non-NaN values sort first (NaN sorts last); the
    q-quantile interpolates between sorted values floor(v) and floor(v) + 1 at v = (n - 1) q, both
    the largest value when v >= n - 1, with numpy's two-sided interpolation formula."""
    srt = np.sort(np.moveaxis(samples, axis, -1), axis=-1)
    if srt.shape[-1] == 0:  # no fan paths
        return np.full(srt.shape[:-1] + (len(qs),), np.nan)
    n = (~np.isnan(srt)).sum(axis=-1, keepdims=True)  # non-NaN values per slice
    virtual = (n - 1) * np.asarray(qs, dtype=np.float64)  # (..., Q), numpy's virtual index
    previous = np.floor(virtual)
    above = virtual >= n - 1
    previous = np.where(above, -1, previous).astype(np.intp)
    nxt = np.where(above, -1, previous + 1)
    last = np.maximum(n - 1, 0)
    lo = np.take_along_axis(srt, np.where(previous < 0, last, previous), axis=-1)
    hi = np.take_along_axis(srt, np.where(nxt < 0, last, nxt), axis=-1)
    gamma = virtual - previous
    with np.errstate(invalid="ignore"):  # inf - inf = NaN, as in np.nanquantile
        diff = hi - lo
        out = np.where(gamma >= 0.5, hi - diff * (1 - gamma), lo + diff * gamma)
    return np.where(n > 0, out, np.nan).astype(np.float64, copy=False)


def _weighted_var(srt: np.ndarray, exceed: np.ndarray, level) -> np.ndarray:
    """The smallest sorted sample whose exceedance estimate is <= level (broadcast over leading axes)."""
    level = np.asarray(level, dtype=float)[..., None]
    ok = exceed <= level + 1e-12 * np.maximum(level, 1e-300)
    j = np.argmax(ok, axis=-1)  # exceed is non-increasing and 0 at the last sample: some j is True
    return np.take_along_axis(srt, j[..., None], axis=-1)[..., 0]


def _weighted_tail_measures(loss: np.ndarray, w: np.ndarray, quantiles) -> dict[str, np.ndarray]:
    n = loss.shape[-1]
    order = np.argsort(loss, axis=-1, kind="stable")
    srt = np.take_along_axis(loss, order, axis=-1)
    ws = np.take_along_axis(np.asarray(w, dtype=float), order, axis=-1)
    exceed = (np.cumsum(ws[..., ::-1], axis=-1)[..., ::-1] - ws) / n  # (1/n) sum of w over later samples
    exceed = np.maximum(exceed, 0.0)
    exceed[..., -1] = 0.0
    out = {k: [] for k in ("var", "var_se", "es", "es_se")}
    for q in quantiles:
        var = _weighted_var(srt, exceed, 1.0 - q)
        above = loss > var[..., None]
        s = (w * above).std(axis=-1, ddof=1) / math.sqrt(n)
        hi = _weighted_var(srt, exceed, np.clip(1.0 - q - s, 0.0, 1.0))
        lo = _weighted_var(srt, exceed, np.clip(1.0 - q + s, 0.0, 1.0))
        excess = w * np.maximum(loss - var[..., None], 0.0)
        es = var + excess.mean(axis=-1) / (1.0 - q)
        es_se = excess.std(axis=-1, ddof=1) / (math.sqrt(n) * (1.0 - q))
        for key, val in zip(out, (var, 0.5 * (hi - lo), es, es_se)):
            out[key].append(val)
    return {k: np.stack(v, axis=-1) for k, v in out.items()}


def weighted_quantiles_along(samples: np.ndarray, weight: np.ndarray, qs, axis: int) -> np.ndarray:
    """Quantiles of ``samples`` along ``axis`` with per-sample weights ``weight`` (1-D, the length
    of that axis), ignoring NaN, moved to the last axis: the smallest sample whose normalised
    cumulative weight reaches q. All-NaN slices give NaN."""
    moved = np.moveaxis(samples, axis, -1)
    if moved.shape[-1] == 0:
        return np.full(moved.shape[:-1] + (len(qs),), np.nan)
    w = np.broadcast_to(np.asarray(weight, dtype=float), moved.shape)
    nan = np.isnan(moved)
    order = np.argsort(np.where(nan, np.inf, moved), axis=-1, kind="stable")
    srt = np.take_along_axis(moved, order, axis=-1)
    cw = np.cumsum(np.take_along_axis(np.where(nan, 0.0, w), order, axis=-1), axis=-1)
    total = cw[..., -1:]
    out = np.full(moved.shape[:-1] + (len(qs),), np.nan)
    valid = (~np.all(nan, axis=-1)) & (total[..., 0] > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = cw / total
    for i, q in enumerate(qs):
        j = np.argmax(frac >= q - 1e-12, axis=-1)
        val = np.take_along_axis(srt, j[..., None], axis=-1)[..., 0]
        out[..., i] = np.where(valid, val, np.nan)
    return out
