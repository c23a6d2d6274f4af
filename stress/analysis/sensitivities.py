"""Central finite differences (f(theta + h) - f(theta - h)) / 2h, on common random numbers, of
EL, VaR and ES for: every chip price (``price.all mul 1 +/- h``), the launch steps (every
``launch.<generation>.step add +/- h``), ``base_rate``, ``utilization`` and ``haircut``
(``add +/- h``), all as scenario shocks in one run; and the trend, demand loading and
volatility of every chip (no shock target: the config values are bumped and the base scenario
rerun on the same seed). Standard errors: EL from the paired per-path differences
w (L+ - L-) / 2h; ES from the paired influence functions w ((L+ - VaR+)^+ - (L- - VaR-)^+)
/ ((1 - q) 2h) (the VaR terms have no first-order effect); VaR by batch means: the paths are cut
into ``batches`` blocks, the difference quotient computed in each, SE = sd / sqrt(blocks) (NaN
when a block expects fewer than one tail sample).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import xarray as xr

from ..config.schema import ShockConfig, StressConfig
from ..results import metrics
from .context import Context, make_shock, run_batch

PARAMETER_UNITS = {
    "price": "relative change of every chip's spot price (1 = +100%)",
    "trend": "annual log-price trend of every chip, 1/yr",
    "demand_loading": "log-price loading of every chip on the demand factor",
    "volatility": "scale of every chip's own log-price noise",
    "launch_step": "fractional price step of every future launch",
    "base_rate": "base rate, decimal per year",
    "utilization": "utilisation of uncontracted GPUs, absolute share",
    "haircut": "liquidation haircut, share",
}
CONFIG_BUMPS = ("trend", "demand_loading", "volatility")  # parameters without a shock target


# ------------------------------------------------------------------------------------ sensitivities

def _bump_shocks(ctx: Context, parameter: str, h: float) -> list[ShockConfig]:
    if parameter == "price":
        return [make_shock("price.all", "mul", 1.0 + h)]
    if parameter == "launch_step":
        return [make_shock(f"launch.{x.name}.step", "add", h) for x in ctx.cfg.market.launches]
    return [make_shock(parameter, "add", h)]  # base_rate, utilization, haircut


def _bumped_config(ctx: Context, parameter: str, h: float) -> StressConfig:
    cfg = copy.deepcopy(ctx.cfg)
    for chip in cfg.market.chips.values():
        setattr(chip, parameter, getattr(chip, parameter) + h)
    return cfg


def _batch_var(loss_up, loss_dn, w, quantiles, batches: int) -> np.ndarray:
    """Batch-means standard error of (VaR(up) - VaR(dn)) over blocks of paths, (..., Q)."""
    n = loss_up.shape[-1]
    edges = np.linspace(0, n, batches + 1).astype(int)
    diffs = []
    for a, b in zip(edges[:-1], edges[1:]):
        ww = None if w is None else w[..., a:b]
        up = metrics.tail_measures(loss_up[..., a:b], quantiles, ww)["var"]
        dn = metrics.tail_measures(loss_dn[..., a:b], quantiles, ww)["var"]
        diffs.append(up - dn)
    se = np.std(diffs, axis=0, ddof=1) / math.sqrt(batches)
    too_few = (n / batches) * (1.0 - np.asarray(quantiles)) < 1.0
    return np.where(too_few, np.nan, se)


def sensitivities(ctx: Context) -> xr.Dataset:
    s = ctx.cfg.analyses.sensitivities
    params = list(dict.fromkeys(s.parameters))
    if not ctx.cfg.market.launches and "launch_step" in params:
        params.remove("launch_step")
    quantiles = list(ctx.cfg.quantiles)
    scen = {"base": ctx.base_shocks}
    for p in params:
        if p not in CONFIG_BUMPS:
            h = getattr(s, p)
            scen[f"{p}+"] = ctx.base_shocks + _bump_shocks(ctx, p, h)
            scen[f"{p}-"] = ctx.base_shocks + _bump_shocks(ctx, p, -h)
    ds = run_batch(ctx, scen)
    w = ds.weight.values if "weight" in ds else None  # (K, P)
    pairs = {p: (ds.loss.sel(scenario=f"{p}+").values, ds.loss.sel(scenario=f"{p}-").values)
             for p in params if p not in CONFIG_BUMPS}
    for p in params:
        if p in CONFIG_BUMPS:
            h = getattr(s, p)
            up = run_batch(ctx, {"base": ctx.base_shocks}, cfg=_bumped_config(ctx, p, h))
            dn = run_batch(ctx, {"base": ctx.base_shocks}, cfg=_bumped_config(ctx, p, -h))
            pairs[p] = (up.loss.values[0], dn.loss.values[0])
    n = ds.sizes["path"]
    K, Q = ds.sizes["tenor"], len(quantiles)
    out = {k: np.full((len(params), K) + ((Q,) if k.startswith(("var", "es")) else ()), np.nan)
           for k in ("el", "el_se", "var", "var_se", "es", "es_se")}
    for i, p in enumerate(params):
        h = getattr(s, p)
        up, dn = pairs[p]  # (K, P)
        ww = 1.0 if w is None else w
        diff = ww * (up - dn) / (2 * h)
        out["el"][i] = diff.mean(-1)
        out["el_se"][i] = diff.std(-1, ddof=1) / math.sqrt(n)
        tu, td = metrics.tail_measures(up, quantiles, w), metrics.tail_measures(dn, quantiles, w)
        out["var"][i] = (tu["var"] - td["var"]) / (2 * h)
        out["es"][i] = (tu["es"] - td["es"]) / (2 * h)
        out["var_se"][i] = _batch_var(up, dn, w, quantiles, s.batches) / (2 * h)
        for j, q in enumerate(quantiles):
            inf_up = np.maximum(up - tu["var"][..., j, None], 0.0)
            inf_dn = np.maximum(dn - td["var"][..., j, None], 0.0)
            d_if = ww * (inf_up - inf_dn) / ((1.0 - q) * 2 * h)
            out["es_se"][i, :, j] = d_if.std(-1, ddof=1) / math.sqrt(n)
    base = ds.sel(scenario="base")
    pk, pkq = ("parameter", "tenor"), ("parameter", "tenor", "quantile")
    per = "USD per unit of the parameter (parameter_units)"
    few = "fewer than one expected tail sample per block of paths: raise mc.paths or lower analyses.sensitivities.batches"
    data = {
        "el_sensitivity": (pk, out["el"], {"units": per, "long_name": "dEL/dtheta, central difference"}),
        "el_sensitivity_se": (pk, out["el_se"], {"units": per, "long_name": "SE from paired per-path differences"}),
        "var_sensitivity": (pkq, out["var"], {"units": per, "long_name": "dVaR/dtheta, central difference"}),
        "var_sensitivity_se": (pkq, out["var_se"], {"units": per, "nan_means": few, "long_name":
                               f"SE by batch means over {s.batches} blocks of paths"}),
        "es_sensitivity": (pkq, out["es"], {"units": per, "long_name": "dES/dtheta, central difference"}),
        "es_sensitivity_se": (pkq, out["es_se"], {"units": per, "long_name":
                              "SE from paired influence functions w (L - VaR)^+ / (1 - q)"}),
        "bump": (("parameter",), np.array([getattr(s, p) for p in params]), {"long_name": "central-difference half-width h"}),
        "expected_loss": (("tenor",), base.expected_loss.values, {"units": "USD", "long_name": "EL at the base scenario"}),
        "var": (("tenor", "quantile"), base["var"].values, {"units": "USD", "long_name": "VaR at the base scenario"}),
        "es": (("tenor", "quantile"), base.es.values, {"units": "USD", "long_name": "ES at the base scenario"}),
        "principal": ((), float(ds.principal.sum()), {"units": "USD", "long_name": "portfolio principal"}),
    }
    coords = {"parameter": params, "tenor": ("tenor", ds.tenor.values, {"units": "month"}), "quantile": quantiles,
              "parameter_units": ("parameter", [PARAMETER_UNITS[p] for p in params]),
              "bump_kind": ("parameter", ["config value" if p in CONFIG_BUMPS else "scenario shock" for p in params])}
    return xr.Dataset({k: xr.Variable(d, v, a) for k, (d, v, a) in data.items()}, coords=coords)
