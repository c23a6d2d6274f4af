"""Tranche results: EL, VaR, ES and probability of loss of every tranche, and an implied
rating from an idealised default-rate table (the losses themselves: stress.model.tranche).

Implied rating: the best rating whose idealised cumulative default rate at the horizon is at least
the tranche's probability of loss (``IDEALISED``, Moody's idealised cumulative expected default
rates, years 1-10). The horizon is the longest tenor of the facility's loans; between whole years
the rate is interpolated linearly in log(rate), below one year linearly from 0, beyond ten years
the ten-year rate is used (lenient for longer horizons, and said in the dataset).
"""

from __future__ import annotations

import numpy as np

from ..model.tranche import tranche_loss
from . import metrics

BELOW_TABLE = "Ca"  # a probability of loss above the table's lowest rating (Caa)

# Moody's idealised cumulative expected default rates, % by horizon in years 1..10 (Moody's
# Investors Service, "The Binomial Expansion Method Applied to CBO/CLO Analysis", December 1996,
# and reproduced in Moody's CDO rating methodologies, e.g. "Moody's Approach to Rating
# Collateralized Loan Obligations"). These are targets of the rating scale, not observed rates.
# Transcribed from public reproductions; only the 1-year column is cross-checked so far.
IDEALISED = {
    "Aaa": (0.0001, 0.0002, 0.0007, 0.0018, 0.0029, 0.0040, 0.0052, 0.0066, 0.0082, 0.0100),
    "Aa1": (0.0006, 0.0030, 0.0100, 0.0210, 0.0310, 0.0420, 0.0540, 0.0670, 0.0820, 0.1000),
    "Aa2": (0.0014, 0.0080, 0.0260, 0.0470, 0.0680, 0.0890, 0.1110, 0.1350, 0.1640, 0.2000),
    "Aa3": (0.0030, 0.0190, 0.0590, 0.1010, 0.1420, 0.1830, 0.2270, 0.2720, 0.3270, 0.4000),
    "A1": (0.0058, 0.0370, 0.1170, 0.1890, 0.2610, 0.3300, 0.4060, 0.4800, 0.5730, 0.7000),
    "A2": (0.0109, 0.0700, 0.2220, 0.3450, 0.4670, 0.5830, 0.7100, 0.8290, 0.9820, 1.2000),
    "A3": (0.0389, 0.1500, 0.3600, 0.5400, 0.7300, 0.9100, 1.1100, 1.3000, 1.5200, 1.8000),
    "Baa1": (0.0900, 0.2800, 0.5600, 0.8300, 1.1000, 1.3700, 1.6700, 1.9700, 2.2700, 2.6000),
    "Baa2": (0.1700, 0.4700, 0.8300, 1.2000, 1.5800, 1.9700, 2.4100, 2.8500, 3.2400, 3.6000),
    "Baa3": (0.4200, 1.0500, 1.7100, 2.3800, 3.0500, 3.7000, 4.3300, 4.9700, 5.5700, 6.1000),
    "Ba1": (0.8700, 2.0200, 3.1300, 4.2000, 5.2800, 6.2500, 7.0600, 7.8900, 8.6900, 9.4000),
    "Ba2": (1.5600, 3.4700, 5.1800, 6.8000, 8.4100, 9.7400, 10.7700, 11.8000, 12.6600, 13.4000),
    "Ba3": (2.8100, 5.5100, 7.8700, 9.7900, 11.8600, 13.4900, 14.6200, 15.7100, 16.7100, 17.6600),
    "B1": (4.6800, 8.3800, 11.5800, 13.8500, 16.1200, 17.8900, 19.1300, 20.3500, 21.4400, 22.4500),
    "B2": (7.1600, 11.6700, 15.5500, 18.1300, 20.7100, 22.6500, 24.0100, 25.1700, 26.2300, 27.2000),
    "B3": (11.6200, 16.6100, 21.0300, 24.0400, 27.0500, 29.2000, 31.0000, 32.5800, 33.7800, 35.8800),
    "Caa": (26.0000, 32.5000, 39.0000, 43.8800, 48.7500, 52.0000, 55.2500, 58.5000, 61.7500, 65.0000),
}


def idealised_rate(horizon_months) -> np.ndarray:
    """Idealised cumulative default rate (decimal) of every rating of IDEALISED at each horizon,
    shape horizon.shape + (ratings,): log-linear between whole years, linear from 0 below one year,
    the ten-year rate beyond ten years."""
    years = np.asarray(horizon_months, dtype=float)[..., None] / 12.0  # (..., 1)
    log_table = np.log(np.array(list(IDEALISED.values())).T / 100.0)  # (10, R): row = year - 1
    y = np.clip(years, 1.0, 10.0)
    lo = np.floor(y).astype(int)
    frac = y - lo
    rate = np.exp((1.0 - frac) * log_table[lo[..., 0] - 1] + frac * log_table[np.minimum(lo, 9)[..., 0]])
    return np.where(years < 1.0, rate * years, rate)


def implied_rating(pd: np.ndarray, horizon_months: np.ndarray) -> np.ndarray:
    """The best rating whose idealised rate at the horizon is >= ``pd`` (BELOW_TABLE if none), str array."""
    rate = idealised_rate(horizon_months)  # (..., R), increasing along R
    ok = rate >= np.asarray(pd)[..., None]
    names = np.array(list(IDEALISED) + [BELOW_TABLE])
    return names[np.where(ok.any(-1), ok.argmax(-1), len(IDEALISED))]


def dataset_variables(prob, facility_loss: np.ndarray, quantiles, weight=None) -> tuple[dict, dict]:
    """(data variables, coordinates) of the facilities and tranches for results.build_dataset.

    ``facility_loss`` (S, K, P, Fa) USD; ``weight`` (K, P) importance-sampling likelihood ratios or None."""
    members = [prob.facility_of_loan == f for f in range(len(prob.facilities))]
    principal = np.array([prob.principal[m].sum() for m in members])
    loss = tranche_loss(facility_loss, principal, prob.tranches)  # (S, K, P, Tr)
    by_path = np.moveaxis(loss, 2, -1)  # (S, K, Tr, P)
    w = None if weight is None else weight[None, :, None, :]
    el, el_se = metrics.expected_loss(by_path, w)
    tail = metrics.tail_measures(by_path, quantiles, w)
    hit = (by_path > 0).astype(float)
    pd = hit.mean(-1) if w is None else (hit * w).mean(-1)
    f = np.array([t.facility for t in prob.tranches])
    horizon = np.stack([prob.tenor[:, m].max(axis=1) for m in members], axis=-1)[:, f]  # (K, Tr) months
    usd = {"units": "USD"}
    skt, sktq = ("scenario", "tenor", "tranche"), ("scenario", "tenor", "tranche", "quantile")
    data = {
        "facility_loss": (("scenario", "tenor", "path", "facility"), facility_loss,
                          {**usd, "long_name": "lenders' loss on the facility's loans (cures and sweeps in it)"}),
        "facility_principal": (("facility",), principal, {**usd, "long_name": "principal of the facility's loans "
                                                                             "at the valuation date (P_f)"}),
        "tranche_loss": (("scenario", "tenor", "path", "tranche"), loss,
                         {**usd, "long_name": "tranche loss min(max(L_f - A P_f, 0), (D - A) P_f)"}),
        "tranche_el": (skt, el, {**usd, "long_name": "expected loss of the tranche"}),
        "tranche_el_se": (skt, el_se, {**usd, "long_name": "Monte Carlo standard error of tranche_el"}),
        "tranche_var": (sktq, tail["var"], {**usd, "long_name": "value at risk of the tranche loss"}),
        "tranche_var_se": (sktq, tail["var_se"], {**usd, "long_name": "standard error of tranche_var"}),
        "tranche_es": (sktq, tail["es"], {**usd, "long_name": "expected shortfall of the tranche loss"}),
        "tranche_es_se": (sktq, tail["es_se"], {**usd, "long_name": "standard error of tranche_es"}),
        "tranche_pd": (skt, pd, {"units": "1", "long_name": "probability that the tranche loses anything"}),
        "tranche_rating": (skt, implied_rating(pd, np.broadcast_to(horizon[None], pd.shape)),
                           {"long_name": "implied rating: best rating whose idealised cumulative default rate "
                                         "at the horizon is >= tranche_pd",
                            "source": "Moody's idealised cumulative expected default rates (years 1-10), log-linear "
                                      "between years, the 10-year rate beyond 10 years",
                            "below_table": BELOW_TABLE}),
        "rating_horizon": (("tenor", "tranche"), horizon, {"units": "month", "long_name": "horizon of the implied "
                                                           "rating: the longest tenor of the facility's loans"}),
    }
    coords = {
        "facility": list(prob.facilities),
        "tranche": [f"{prob.facilities[t.facility]}/{t.name}" for t in prob.tranches],
        "tranche_facility": ("tranche", [prob.facilities[t.facility] for t in prob.tranches]),
        "attachment": ("tranche", [t.attachment for t in prob.tranches], {"units": "1", "long_name": "A, share of P_f"}),
        "detachment": ("tranche", [t.detachment for t in prob.tranches], {"units": "1", "long_name": "D, share of P_f"}),
    }
    return data, coords
