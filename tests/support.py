"""Test helpers: small synthetic loan tapes and configs built from the bundled conf/."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, settings
from omegaconf import OmegaConf
from scipy import stats

from stress import compose

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_TAPE = REPO / "conf" / "portfolio" / "example_loans.csv"
# The example tape before it had an offtaker column (issue 15): the stored runs of tests/data were made on it.
V2_TAPE = REPO / "tests" / "data" / "example_loans_v2.csv"

# Philox4x32-10 known-answer vectors, copied from Random123's tests/kat_vectors (the philox4x32 10-round
# lines; Salmon et al., SC 2011). Columns: ctr0 ctr1 ctr2 ctr3 key0 key1 out0 out1 out2 out3.
KAT = [tuple(int(word, 16) for word in line.split()) for line in """\
00000000 00000000 00000000 00000000 00000000 00000000 6627e8d5 e169c58d bc57ac4c 9b00dbd8
ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff 408f276d 41c83b0e a20bc7c6 6d5451fd
243f6a88 85a308d3 13198a2e 03707344 a4093822 299f31d0 d16cfe09 94fdcceb 5001e420 24126ea1
""".splitlines()]

LOAN = dict(
    loan_id="L-1", borrower="B-1", chip="H100", gpus=1000, age_months=0, principal=20e6, rate=0.10,
    rate_type="fixed", amortization="annuity", balloon_pct="", tenor_months=36, contracted_share=0.5,
    contract_price=2.5, contract_months=36, power_price=0.08, pue=1.3, opex_fixed=100.0, reserve_months=3,
    dscr_min=1.2, ltv_max=0.9, pd_annual=0.02, asset_corr=0.2,
)
# A balloon loan owing ~1e-300 USD of interest a month: its DSCR would overflow (found by hypothesis).
NEAR_ZERO_RATE_LOAN = dict(chip="A100", gpus=59326, principal=172882329.4, rate=1.1125369292536007e-308,
                           amortization="balloon", balloon_pct=0.49, tenor_months=8, dscr_min=250341.9,
                           ltv_max=1.0, pd_annual=0.0, asset_corr=0.0)


def host_kernel(source: str = "engine.cu"):
    """The host-compiled kernel library ``kernels/<source>``; the calling test is skipped where there
    is no g++ (any other build failure is an error)."""
    import pytest

    from stress.engine import hostkernel

    try:
        return hostkernel.load(source)
    except hostkernel.KernelBuildError as exc:
        if shutil.which("g++") is None:
            pytest.skip(f"host kernel tests need g++: {exc}")
        raise


def write_tape(path: Path, loans: list[dict]) -> Path:
    """A CSV loan tape with the required columns (and an optional column where a loan gives it, 0 for the
    others); each loan overrides the defaults above."""
    rows = [{**LOAN, "loan_id": f"L-{i + 1}", **loan} for i, loan in enumerate(loans)]
    optional = [name for name in ("cure_capacity", "facility", "rvg_per_gpu", "offtaker") if any(name in row for row in rows)]
    if "offtaker" in optional:  # a blank offtaker is none (a 0 would be an undeclared name)
        rows = [{"offtaker": "", **row} for row in rows]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(LOAN) + optional, restval="0")
        writer.writeheader()
        writer.writerows(rows)
    return path


def config(overrides=(), scenarios: dict | None = None):
    """The bundled config with overrides; ``scenarios`` replaces the scenario group by
    {name: [shock dicts]} for hand-made cases."""
    cfg = compose(list(overrides))
    if scenarios is not None:
        cfg.scenario = OmegaConf.create({name: {"description": name, "shocks": shocks}
                                         for name, shocks in scenarios.items()})
    return cfg




def assert_se_matches_seed_spread(values, standard_errors) -> None:
    """Estimates from n independent seeds and their reported standard errors: (n - 1) s^2 / mean(se^2)
    ~ chi2(n - 1) when the errors are right; accepted inside its central 99.9% interval."""
    n = len(values)
    statistic = (n - 1) * np.var(values, ddof=1) / np.mean(np.square(standard_errors))
    assert stats.chi2.ppf(0.0005, n - 1) < statistic < stats.chi2.ppf(0.9995, n - 1), (values, standard_errors)


def examples(n: int, *, shrink: bool = True, suppress=(HealthCheck.filter_too_much,)) -> settings:
    """Hypothesis settings of the fuzz and invariant tests: ``n`` examples, the same ones on every run
    (derandomized, no example database), no deadline; ``shrink=False`` for tests whose examples are
    too slow to shrink."""
    phases = {} if shrink else {"phases": [Phase.explicit, Phase.generate]}
    return settings(max_examples=n, deadline=None, derandomize=True, database=None, **phases,
                    suppress_health_check=[HealthCheck.too_slow, *suppress])
