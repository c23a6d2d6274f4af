"""``ds.stress``: common questions on a results Dataset, answered as pandas DataFrames.

Registered with ``import stress`` (as soon as xarray is imported, by the package or the user);
every number is read from the Dataset's own variables (``expected_loss``, ``var``, ``es``, ``pd``, ``el`` ...),
nothing is re-estimated. Money is in USD, PDs and shares are fractions (0..1), tenors in months ('tape':
each loan's own ``tape_tenor``, with tenors=tape).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from ..config.schema import is_tape
from . import metrics

GROUPS = {"borrower": "borrower", "chip": "loan_chip"}  # loss_by(group=...) -> the loan coordinate


@xr.register_dataset_accessor("stress")
class StressAccessor:
    """Summaries of a results Dataset of ``stress.run``: ``summary``, ``tenor_comparison``, ``loss_by``."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def _scenarios(self, scenario: str | None) -> xr.Dataset:
        """The dataset, narrowed to one scenario (that dimension dropped) when one is named."""
        if scenario is None:
            return self._ds
        if scenario not in self._ds.scenario.values:
            raise KeyError(f"no scenario {scenario!r} in the dataset; it has {', '.join(map(str, self._ds.scenario.values))}")
        return self._ds.sel(scenario=scenario)

    def summary(self, quantile: float = 0.99) -> pd.DataFrame:
        """Portfolio risk per (scenario, tenor): EL, VaR and ES at ``quantile`` with their Monte Carlo
        standard errors, all in USD, and ``EL % principal`` (EL / total principal x 100); ``noisy``
        names the figures whose SE exceeds ``stress.results.metrics.NOISY_SHARE`` (10%) of them, and
        ``paths for SE 10%`` the paths that would bring them all within it (<NA>: none noisy)."""
        ds = self._ds
        levels = ds["quantile"].values
        match = np.flatnonzero(np.isclose(levels, quantile, rtol=0, atol=1e-12))
        if match.size == 0:
            raise KeyError(f"quantile {quantile} was not computed; the dataset has {', '.join(f'{q:g}' for q in levels)} "
                           "(config key 'quantiles')")
        q = ds.isel(quantile=int(match[0]))
        cols = {"EL": ds.expected_loss, "EL SE": ds.expected_loss_se, "VaR": q["var"], "VaR SE": q["var_se"],
                "ES": q["es"], "ES SE": q["es_se"],
                "EL % principal": 100.0 * ds.expected_loss / ds.principal.sum()}
        frame = pd.DataFrame({name: da.transpose("scenario", "tenor").to_series() for name, da in cols.items()})
        flagged = [metrics.noise_flags(int(ds.sizes["path"]), [(r[f], r[f"{f} SE"]) for f in ("EL", "VaR", "ES")])
                   for _, r in frame.iterrows()]
        frame["noisy"] = [", ".join(f for f, on in zip(("EL", "VaR", "ES"), flags) if on) for flags, _ in flagged]
        frame[f"paths for SE {metrics.NOISY_SHARE:.0%}"] = pd.array([n for _, n in flagged], dtype="Int64")
        frame.attrs.update(units="USD (EL % principal: percent)", quantile=float(levels[match[0]]),
                           noisy_share=metrics.NOISY_SHARE)
        return frame

    def tenor_comparison(self, scenario: str | None = None, pd_limit: float = 0.05) -> pd.DataFrame:
        """Per loan (and scenario, unless one is named): ``PD <k>m`` (fraction) and ``EL <k>m`` (USD) at
        each tenor k (``PD tape``, ``EL tape`` under tenors=tape), and ``max_safe_tenor``: the longest
        tenor (months; the loan's tape_tenor under tenors=tape) whose PD is <= ``pd_limit`` at it and
        at every shorter tenor (<NA> when even the shortest is above)."""
        ds = self._scenarios(scenario)
        rows = [d for d in ("scenario", "loan") if d in ds.pd.dims]
        columns = {}
        for metric, var in (("PD", ds.pd), ("EL", ds.el)):
            for k in ds.tenor.values:
                label = "tape" if is_tape(k) else f"{int(k)}m"
                columns[f"{metric} {label}"] = var.sel(tenor=k).drop_vars("tenor").transpose(*rows).to_series()
        frame = pd.DataFrame(columns)
        pd_ok = (ds.pd <= pd_limit).transpose(*rows, "tenor").values  # (..., K), tenors ascending
        n_safe = np.cumprod(pd_ok, axis=-1).astype(bool).sum(-1, keepdims=True)
        from .dataset import loan_tenors  # not at import: this module loads while stress.results imports xarray

        months = np.broadcast_to(loan_tenors(ds).transpose("loan", "tenor").values, pd_ok.shape)
        longest = np.take_along_axis(months, np.maximum(n_safe - 1, 0), axis=-1)[..., 0].reshape(-1)
        frame["max_safe_tenor"] = pd.array([m if n else pd.NA for m, n in zip(longest, n_safe.reshape(-1))],
                                           dtype="Int64")
        frame.attrs.update(units="PD: fraction; EL: USD; max_safe_tenor: months", pd_limit=pd_limit)
        return frame

    def loss_by(self, group: str = "borrower", scenario: str | None = None, tenor: int | None = None) -> pd.DataFrame:
        """Expected loss per borrower or chip family (``group``): ``EL`` (USD, the sum of the loans'
        ``el``) and ``share`` of the portfolio EL (fraction; the shares of a scenario and tenor sum to 1).
        Rows per scenario and tenor too, unless one is named; with both named, largest EL first."""
        if group not in GROUPS:
            raise ValueError(f"group must be one of {', '.join(GROUPS)}, got {group!r}")
        coord = GROUPS[group]
        if coord not in self._ds.coords:
            raise KeyError(f"the dataset has no {coord!r} coordinate (written by an older version of stress?)")
        ds = self._scenarios(scenario)
        if tenor is not None:
            if tenor not in ds.tenor.values:
                raise KeyError(f"no tenor {tenor} in the dataset; it has {', '.join(map(str, ds.tenor.values))}")
            ds = ds.sel(tenor=tenor)
        el = ds.el.groupby(coord).sum()
        el = el.rename({coord: group}) if coord != group else el
        share = el / ds.el.sum("loan")
        rows = [d for d in ("scenario", "tenor", group) if d in el.dims]
        frame = pd.DataFrame({"EL": el.transpose(*rows).to_series(), "share": share.transpose(*rows).to_series()})
        if rows == [group]:
            frame = frame.sort_values("EL", ascending=False)
        frame.attrs.update(units="EL: USD; share: fraction of the portfolio EL")
        return frame
