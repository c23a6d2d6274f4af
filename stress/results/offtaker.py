"""Results by offtaker: the expected loss and principal-weighted PD of the loans contracted to each
counterparty, its share of the tape's contracted revenue (concentration), and its own probability
of default within each tenor (the draws themselves: stress.model.contract)."""

from __future__ import annotations

import numpy as np

NAN_MEANS = {
    "offtaker_pd": "no loan of the tape is contracted to this offtaker (a declared offtaker the tape does not use)",
    "offtaker_default_prob": "the offtaker is self: a borrower leasing to itself has no default draw of its own "
                             "(its loans' pd is its default probability)",
}


def dataset_variables(prob, loan_el: np.ndarray, loan_pd: np.ndarray, offtaker_defaults: np.ndarray,
                      n_paths: int) -> tuple[dict, dict]:
    """(data variables, coordinates) for results.build_dataset from the per-loan ``loan_el`` USD and
    ``loan_pd`` (S, K, L) and the engine's weighted count of offtaker defaults (S, K, O)."""
    cp = prob.contracts
    members = np.stack([cp.of_loan == o for o in range(len(cp.names))], axis=-1).astype(float)  # (L, Oall)
    principal = members.T @ prob.principal
    revenue = cp.hours_on[:, 0] * cp.price  # the first month's contracted rent of each loan, USD
    total = revenue.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        pd = np.where(principal > 0, (loan_pd * prob.principal) @ members / principal, np.nan)
    drawn = offtaker_defaults / n_paths
    own = np.full(pd.shape, np.nan)
    own[..., :cp.drawn] = drawn
    sko = ("scenario", "tenor", "offtaker")
    data = {
        "offtaker_el": (sko, loan_el @ members, {"units": "USD", "long_name": "expected loss of the loans contracted "
                                                                           "to the offtaker"}),
        "offtaker_pd": (sko, pd, {"units": "1", "long_name": "principal-weighted probability of default by maturity "
                                                             "of the loans contracted to the offtaker"}),
        "offtaker_revenue_share": (("offtaker",), (revenue @ members) / total if total > 0 else np.zeros(len(cp.names)),
                                   {"units": "1", "long_name": "the offtaker's share of the tape's contracted revenue "
                                                               "in the first month (concentration)"}),
        "offtaker_default_prob": (sko, own, {"units": "1", "long_name": "probability that the offtaker itself "
                                                                        "defaults by the tenor's last month"}),
    }
    names = np.array(cp.names + ("",), dtype=str)
    coords = {"offtaker": list(cp.names),
              "loan_offtaker": ("loan", names[cp.of_loan], {"long_name": "offtaker of the loan's contracts (tape; "
                                                                         "'' = none)"})}
    return data, coords
