"""Sanity ranges of every market number and every shock value.

A number outside its range is refused (config error naming the key) before anything is simulated:
finite but extreme inputs (a volatility of 1e308, a price multiplied by 1e308) would otherwise pass
and overflow in the middle of a run. The ranges are wide: each holds every calibrated market and
scenario shipped in ``conf/`` with a margin of one or more orders of magnitude; they exclude values
that make no economic sense and any single value that overflows a float64 run. (Several numbers at
their extremes at once can still overflow a float32 run: the results check then stops the write.)
The same table is listed for users in ``conf/market/README.md``.
"""

from __future__ import annotations

import math

# (low, high, unit): closed bounds; a field of a chip family, launch or market sub-section.
CHIP = {
    "price": (1e-4, 1e3, "USD/GPU-h"),
    "trend": (-0.2, 1.0, "1/yr (continuous annual log-price decline)"),
    "demand_loading": (-2.0, 2.0, "log price per unit of the demand factor"),
    "volatility": (0.0, 5.0, "log price"),
    "persistence": (0.0, 0.9999, "monthly AR(1) coefficient"),
    "power_kw": (0.0, 100.0, "kW per GPU"),
    "useful_life_months": (1, 600, "months"),
    "failure_rate": (0.0, 0.99, "1/yr"),
    "reference_utilization": (0.0, 1.0, "share; below market.utilization.u_max too"),
    "scrap_value": (0.0, 1e7, "USD per GPU"),
    "opex_fixed": (0.0, 1e6, "USD per GPU per month"),
    "purchase_price": (0.0, 1e7, "USD per GPU (or null)"),
    "launch_month": (-600, 600, "months"),
}
LAUNCH = {
    "month": (-600.0, 600.0, "months after the valuation date"),
    "step": (0.0, 0.9999, "fractional price drop"),
    "ramp_months": (0, 600, "months"),
    "jitter_months": (0.0, 600.0, "months"),
}
MARKET = {
    "base_rate": (0.0, 1.0, "decimal per year"),
    "demand.persistence": (0.0, 0.9999, "monthly AR(1) coefficient"),
    "utilization.u_max": (1e-3, 1.0, "share"),
    "utilization.demand_loading": (-20.0, 20.0, "logit per unit of the demand factor"),
    "utilization.idiosyncratic": (0.0, 10.0, "logit"),
    "utilization.idle_power_share": (0.0, 1.0, "share"),
    "valuation.discount_rate": (-0.5, 5.0, "decimal per year"),
    "valuation.utilization": (0.0, 1.0, "share"),
    "valuation.pue": (1.0, 10.0, "ratio"),
    "valuation.power_price": (0.0, 10.0, "USD/kWh"),
    "valuation.appraisal_months": (1, 600, "months between appraisals"),
}
MULTIPLIER = (0.0, 100.0)  # every kind=mul shock, any target
# kind=add and kind=set values by target (price.<chip> and price.all share "price";
# launch.<generation>.month|step are "launch.month" and "launch.step"), in the target's unit.
SHOCK = {
    "price": {"add": (-1e3, 1e3), "set": (0.0, 1e3), "unit": "USD/GPU-h"},
    "demand": {"add": (-10.0, 10.0), "set": (-10.0, 10.0), "unit": "standard deviations of the demand factor"},
    "utilization": {"add": (-1.0, 1.0), "set": (0.0, 1.0), "unit": "share"},
    "power_price": {"add": (-10.0, 10.0), "set": (0.0, 10.0), "unit": "USD/kWh"},
    "base_rate": {"add": (-1.0, 1.0), "set": (0.0, 1.0), "unit": "decimal per year"},
    "haircut": {"add": (-1.0, 1.0), "set": (0.0, 1.0), "unit": "share"},
    "launch.month": {"add": (-600.0, 600.0), "set": (-600.0, 600.0), "unit": "months"},
    "launch.step": {"add": (-1.0, 1.0), "set": (0.0, 0.9999), "unit": "fractional price drop"},
    "pd_multiplier": {"add": (-100.0, 100.0), "set": (0.0, 100.0), "unit": "multiple of the tape's PD"},
    "renewal_prob": {"add": (-1.0, 1.0), "set": (0.0, 1.0), "unit": "probability of each offtaker's renewals"},
    "offtaker.pd_multiplier": {"add": (-100.0, 100.0), "set": (0.0, 100.0), "unit": "multiple of the offtaker's PD"},
}
OFFTAKER_DEFAULT_MONTH = (1, 1200, "month the offtaker fails on every path; kind set only")  # offtaker.<name>.default_month
# (low, high, unit) of each key of portfolio.offtakers.<name>
OFFTAKER = {
    "pd_annual": (0.0, 1.0, "decimal per year"),
    "asset_corr": (0.0, 1.0, "share of the latent variable's variance that is systematic"),
    "demand_loading": (-1.0, 1.0, "correlation with the first-year AI demand factor"),
    "renewal_prob": (0.0, 1.0, "probability"),
    "renewal_months": (1, 1200, "months"),
    "renewal_premium": (-0.99, 10.0, "share of the spot price"),
}


def out_of_range(value, bounds: tuple) -> str | None:
    """Why ``value`` is outside ``bounds`` = (low, high[, unit]), or None if it lies inside."""
    low, high = bounds[0], bounds[1]
    unit = f" ({bounds[2]})" if len(bounds) > 2 else ""
    if not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if not low <= value <= high:
        return f"must be in [{low:g}, {high:g}], got {value:g}{unit}"
    return None


def shock_family(target: str) -> str:
    """The SHOCK key of a target: price.<chip> -> price, launch.<gen>.month -> launch.month."""
    if target.startswith("price."):
        return "price"
    if target.startswith(("launch.", "offtaker.")):
        return target.partition(".")[0] + "." + target.rpartition(".")[2]
    return target


def shock_bounds(target: str, kind: str) -> tuple | None:
    """(low, high, unit) of a shock's value, or None for an unknown target or kind."""
    if kind == "mul":
        return (*MULTIPLIER, "multiplier")
    table = SHOCK.get(shock_family(target))
    if table is None or kind not in table:
        return None
    return (*table[kind], table["unit"])


PD_MULTIPLIER_MAX = SHOCK["pd_multiplier"]["set"][1]  # the PD multiplier after all of a scenario's shocks


def combined_problem(target: str, a, b) -> str | None:
    """Why the map x -> a(t) x + b(t) of all of a scenario's shocks on a path target (arrays over the
    months) lies outside what one shock can do, or None: a within the ``mul`` range, b within the
    target's ``add`` and ``set`` ranges. Chains of shocks that are each in range (a hundred ``mul
    100``) would otherwise overflow to infinity, or to NaN where a zero meets an infinity."""
    table = SHOCK[shock_family(target)]
    low, high = min(table["add"][0], table["set"][0]), max(table["add"][1], table["set"][1])
    for name, x, lo, hi in (("multiplies it by", a, *MULTIPLIER), ("adds", b, low, high)):
        if not (math.isfinite(x.min()) and math.isfinite(x.max()) and lo <= x.min() and x.max() <= hi):
            return (f"its shocks on {target} combine to a map that {name} {x.min():g} to {x.max():g} "
                    f"(must stay in [{lo:g}, {hi:g}], the range of a single shock)")
    return None


def market_problems(market) -> list[str]:
    """``key: message`` for every number of a MarketConfig outside its range (purchase_price may be null)."""
    found = []

    def check(key: str, value, bounds: tuple) -> None:
        why = out_of_range(value, bounds)
        if why:
            found.append(f"market.{key}: {why}")

    for c, chip in market.chips.items():
        for name, bounds in CHIP.items():
            value = getattr(chip, name)
            if not (name == "purchase_price" and math.isnan(value)):
                check(f"chips.{c}.{name}", value, bounds)
    for i, launch in enumerate(market.launches):
        for name, bounds in LAUNCH.items():
            check(f"launches[{i}] ({launch.name}).{name}", getattr(launch, name), bounds)
    for key, bounds in MARKET.items():
        value = market
        for part in key.split("."):
            value = getattr(value, part)
        check(key, value, bounds)
    return found
