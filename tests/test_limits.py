"""Every market number and shock value has a documented sanity range (issue 13): finite but
extreme inputs are refused before the run, naming the key, instead of overflowing mid-run."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

import stress
from stress.config import limits
from stress.config.compose import to_schema
from stress.config.schema import ChipConfig, LaunchConfig, MarketConfig

ROOT = Path(__file__).resolve().parents[1]
BASE = ["scenario=[baseline]", "tenors=[36]", "mc.paths=16", "mc.fan_paths=4"]
HUGE = 1e308


def refused(args: list[str]) -> str:
    with pytest.raises(stress.ConfigError) as info:
        to_schema(stress.compose([*BASE, *args]))
    return str(info.value)


def huge(cls, name: str) -> str:
    """An extreme value of the field's type: 1e308, or 10^12 for an integer field."""
    kind = {f.name: f.type for f in dataclasses.fields(cls)}[name]
    return str(10**12) if kind == "int" else f"{HUGE:g}"


def numbers(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.type in ("float", "int")}


def test_every_market_number_has_a_range():
    assert set(limits.CHIP) == numbers(ChipConfig)
    assert set(limits.LAUNCH) == numbers(LaunchConfig)
    nested = {f"{f.name}.{g}" for f in dataclasses.fields(MarketConfig) if f.name in ("demand", "utilization", "valuation")
              for g in numbers(type(getattr(MarketConfig(), f.name)))}
    assert set(limits.MARKET) == nested | numbers(MarketConfig)


@pytest.mark.parametrize("name", sorted(limits.CHIP))
def test_extreme_chip_numbers_are_refused(name):
    assert f"market.chips.H100.{name}: must be in" in refused([f"market.chips.H100.{name}={huge(ChipConfig, name)}"])


@pytest.mark.parametrize("name", sorted(limits.MARKET))
def test_extreme_market_numbers_are_refused(name):
    value = -10**12 if isinstance(limits.MARKET[name][0], int) else f"{-HUGE:g}"  # integer fields: a huge integer
    assert f"market.{name}: must be in" in refused([f"market.{name}={value}"])


@pytest.mark.parametrize("field", sorted(limits.LAUNCH))
def test_extreme_launch_numbers_are_refused(field):
    assert f"market.launches[0] (Rubin).{field}: must be in" in refused([f"market.launches.0.{field}={huge(LaunchConfig, field)}"])


TARGETS = ["price.all", "price.H100", "demand", "utilization", "power_price", "base_rate", "haircut",
           "launch.Rubin.month", "launch.Rubin.step", "pd_multiplier"]


@pytest.mark.parametrize("kind", ["mul", "add", "set"])
@pytest.mark.parametrize("target", TARGETS)
def test_extreme_shocks_are_refused(target, kind):
    message = refused([f"scenario.baseline.shocks=[{{target: {target}, kind: {kind}, value: {HUGE:g}}}]"])
    assert "scenario.baseline.shocks[0].value: " in message and "must be in [" in message, message


def test_the_shipped_markets_and_scenarios_are_inside_the_ranges():
    scenarios = sorted(p.stem for p in (ROOT / "conf" / "scenario").glob("*.yaml"))
    markets = sorted(p.stem for p in (ROOT / "conf" / "market").glob("*.yaml"))
    assert len(markets) >= 2
    for market in markets:
        to_schema(stress.compose([f"market={market}", f"scenario=[{','.join(scenarios)}]"]))


def test_an_extreme_volatility_is_an_exit_2_naming_the_key(tmp_path):
    r = subprocess.run([sys.executable, "-m", "stress.cli", *BASE, "market.chips.H100.volatility=1e308",
                        f"output.dir={tmp_path / 'out'}"], cwd=tmp_path, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert r.returncode == 2 and "market.chips.H100.volatility: must be in [0, 5]" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out" / "results.nc").exists()


def test_the_ranges_are_documented():
    text = (ROOT / "conf" / "market" / "README.md").read_text()
    for prefix, table in (("market.chips.<chip>.", limits.CHIP), ("market.launches[i].", limits.LAUNCH),
                          ("market.", limits.MARKET)):
        for key, (lo, hi, unit) in table.items():
            assert f"| `{prefix}{key}` | {lo:g} | {hi:g} | {unit} |" in text, key
    for target, d in limits.SHOCK.items():
        assert f"| `{target}` | [{d['add'][0]:g}, {d['add'][1]:g}] | [{d['set'][0]:g}, {d['set'][1]:g}] |" in text
