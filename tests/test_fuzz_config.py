"""Market and scenario file fuzzing (issue 13), as test_fuzz_tape.py does for tapes: whatever a
conf/market/*.yaml or conf/scenario/*.yaml file holds (wrong types, missing or unknown keys, NaN,
infinities, extreme numbers, huge lists, unicode, interpolations, broken YAML, binary), a run either
finishes with finite losses or stops with one ConfigError (exit code 2 from the CLI) whose message
names the file or the key, and writes nothing. Never another exception, never a partial file.

Runs go through ``stress.compose(..., config_dir=DIR)`` and ``stress.run`` in-process (the CLI's
path without its start-up cost); a few cases run the CLI itself. Hypothesis runs derandomized;
``slow`` marks the long variants. ``${oc.env:...}`` is left to test_security.py.
"""

from __future__ import annotations

import copy
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

import stress
from stress.errors import StressError

from support import REPO, examples, write_tape

NO_SHRINK = dict(shrink=False, suppress=(HealthCheck.function_scoped_fixture,))  # a run costs ~0.5 s
FAST, LONG = examples(8, **NO_SHRINK), examples(150, **NO_SHRINK)
MARKET = yaml.safe_load((REPO / "conf" / "market" / "gpu_2026q4.yaml").read_text())
SCENARIO = yaml.safe_load((REPO / "conf" / "scenario" / "severely_adverse.yaml").read_text())
# A message names the file, or a key of the market or scenario (or, for a chip the market lost, the
# tape's chip column).
NAMES_FILE_OR_KEY = re.compile(r"fuzz\.yaml|'(market|scenario)/fuzz'|\b(market|scenario)(\.[^\n:]*)?:|"
                               r"column 'chip': must be a chip of the market config")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A copy of the bundled conf/ (market/fuzz.yaml and scenario/fuzz.yaml are the files under test)
    and a two-loan tape."""
    root = tmp_path_factory.mktemp("fuzz-config")
    shutil.copytree(REPO / "conf", root / "conf")
    write_tape(root / "tape.csv", [dict(), dict(chip="B200", amortization="bullet", tenor_months=12, pd_annual=0.0)])
    return root


def attempt(root: Path, market: bytes | None = None, scenario: bytes | None = None):
    """Run with market/fuzz.yaml and/or scenario/fuzz.yaml holding these bytes; return the Dataset, or
    the message of the ConfigError (after checking it names the file or key and nothing was written)."""
    conf, out = root / "conf", root / "out"
    shutil.rmtree(out, ignore_errors=True)
    for name, data in (("market", market), ("scenario", scenario)):
        if data is not None:
            (conf / name / "fuzz.yaml").write_bytes(data)
    overrides = ["market=fuzz" if market is not None else "market=gpu_2026q4",
                 "scenario=[fuzz]" if scenario is not None else "scenario=[baseline]",
                 "tenors=[12]", "mc.paths=4", "mc.fan_paths=2", f"portfolio.path={root / 'tape.csv'}",
                 f"output.dir={out}"]
    try:
        ds = stress.run(stress.compose(overrides, config_dir=conf))
    except StressError as exc:
        message = str(exc)
        assert NAMES_FILE_OR_KEY.search(message), message
        assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())
        return message
    assert np.isfinite(ds["loss"].values).all()
    assert (out / "results.nc").is_file() and not list(out.glob(".partial*"))
    return ds


def dump(data) -> bytes:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode("utf-8")


# ------------------------------------------------------------------------------ strategies

HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e308, -1e308, 5e-324, 1e-12, 2**63, 10**30, math.nan, math.inf, -math.inf]),
    st.text(max_size=12),
    st.sampled_from(["", "abc", "1e999", "0x10", "${mc.paths}", "${nothing.here}", "${", "${oc.decode:'1.5'}",
                     "$$ \\_^%{}", "H\u202e100", "x" * 5000, "nan", ".inf"]),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def _paths(node, prefix=()):
    """Every key path of a nested mapping/list, leaves and branches."""
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from _paths(child, prefix + (key,))


MARKET_PATHS = [p for p in _paths(MARKET) if p]


def _parent(doc, path):
    for key in path[:-1]:
        doc = doc[key]
    return doc


@st.composite
def edited(draw, doc, paths):
    """``doc`` with 1-3 edits: a value made hostile or scaled by a power of ten (sign flipped), a key
    deleted, an unknown key added, or a list made huge."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        try:
            parent, key = _parent(doc, path), path[-1]
            parent[key]
        except (KeyError, IndexError, TypeError):  # removed by an earlier edit
            continue
        op = draw(st.sampled_from(["hostile", "scale", "delete", "unknown", "huge"]))
        if op == "hostile":
            parent[key] = draw(HOSTILE)
        elif op == "scale" and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
            parent[key] = parent[key] * draw(st.sampled_from([-1, 10, 1e3, 1e-3, 1e6, 1e150]))
        elif op == "delete":
            del parent[key]
        elif op == "unknown" and isinstance(parent[key], dict):
            parent[key][draw(st.sampled_from(["foo", "Price", "${x}", "\u00e9t\u00e9", "5"]))] = draw(HOSTILE)
        elif op == "huge" and isinstance(parent[key], list) and parent[key]:
            parent[key] = parent[key] * draw(st.sampled_from([50, 400]))
    return doc


@st.composite
def damaged(draw, data: bytes):
    """The file's bytes, mostly as they are; else truncated, with a byte inserted, or replaced."""
    how = draw(st.sampled_from(["keep"] * 6 + ["truncate", "insert", "replace"]))
    if how == "keep":
        return data
    at = draw(st.integers(0, len(data)))
    if how == "truncate":
        return data[:at]
    if how == "insert":
        return data[:at] + draw(st.sampled_from([b"\t", b"\x00", b"\xff", b":", b"[", b"{", b"&a", b"*a", b"- ", b"\n  x"]))
    return draw(st.sampled_from([b"", b"42\n", b"- 1\n- 2\n", b"null\n", b"\xff\xfe\x00", b"a: b: c\n", b"%YAML 9\n"]))


TARGETS = ["price.all", "price.H100", "price.B200", "price.Z9", "demand", "utilization", "power_price",
           "base_rate", "haircut", "pd_multiplier", "launch.Rubin.month", "launch.Rubin.step",
           "launch.Nope.month", "launch.Rubin.ramp", "", "${x}"]
SHOCK = st.fixed_dictionaries(
    {"target": st.one_of(st.sampled_from(TARGETS), HOSTILE), "kind": st.one_of(st.sampled_from(["add", "mul", "set"]), HOSTILE),
     "value": st.one_of(st.floats(-2.0, 2.0), st.sampled_from([0.0, 1.0, 100.0, -600.0, 1e3]), HOSTILE)},
    optional={"start_month": st.one_of(st.integers(-2, 40), st.sampled_from([10**12, 2**63])),
              "ramp_months": st.one_of(st.integers(-2, 24), st.just(10**15)),
              "end_month": st.one_of(st.none(), st.integers(-1, 60)), "foo": HOSTILE})


@st.composite
def scenario_files(draw):
    """A scenario file: one or two scenarios of random shocks (or a chain of one shock repeated up to
    300 times), with hostile names and descriptions at times; or the shipped file edited."""
    if draw(st.booleans()):
        return draw(edited(SCENARIO, [p for p in _paths(SCENARIO) if p]))
    names = st.one_of(st.sampled_from(["fz", "s.dot", "${x}", "\u202e$x$", "n" * 300]), st.text(min_size=1, max_size=8))
    doc = {}
    for _ in range(draw(st.integers(1, 2))):
        shocks = draw(st.lists(SHOCK, max_size=5))
        if shocks and draw(st.booleans()):
            shocks = shocks[:1] * draw(st.sampled_from([2, 40, 300]))
        doc[draw(names)] = {"description": draw(st.one_of(st.text(max_size=30), HOSTILE)), "shocks": shocks}
    return doc


# ------------------------------------------------------------------------------ properties


@FAST
@given(data=st.data())
def test_market_files_run_or_fail_clearly(workspace, data):
    market = data.draw(edited(MARKET, MARKET_PATHS))
    attempt(workspace, market=data.draw(damaged(dump(market))))


@FAST
@given(data=st.data())
def test_scenario_files_run_or_fail_clearly(workspace, data):
    attempt(workspace, scenario=data.draw(damaged(dump(data.draw(scenario_files())))))


@pytest.mark.slow
@LONG
@given(data=st.data())
def test_market_files_long(workspace, data):
    test_market_files_run_or_fail_clearly.hypothesis.inner_test(workspace, data)


@pytest.mark.slow
@LONG
@given(data=st.data())
def test_scenario_files_long(workspace, data):
    test_scenario_files_run_or_fail_clearly.hypothesis.inner_test(workspace, data)


# ------------------------------------------------------------------------------ what the fuzzing found

BROKEN_FILES = {  # bytes -> what the message says, after the file's path (raised as tracebacks before)
    "flow not closed": (b"chips: [\n", r"line 2, column 1: not valid YAML \(while parsing a flow node"),
    "tab indent": (b"chips:\n\tH100: 1\n", r"line 2, column 1: not valid YAML .*'\\t'"),
    "duplicate key": (b"name: a\nname: b\n", r"line 2, column 1: not valid YAML .*duplicate key name"),
    "NUL byte": (b"\x00name: a\n", r"not a YAML text file \(character #x0000 at position 0\)"),
    "latin-1": ("name: caf\u00e9\n".encode("latin-1"), r"not a UTF-8 text file \(byte b'\\xe9' at position 9\)"),
    "single value": (b"42\n", r"must hold a mapping of keys \(key: value lines\), not a single int value"),
    # a '${' OmegaConf cannot even parse fails while merging, before the interpolation check (hypothesis found it)
    "malformed interpolation": (b"odd:\n  description: ${\n  shocks: []\n", r"line 2\b.*holds '\$\{', the start of"),
}


@pytest.mark.parametrize("group", ["market", "scenario"])
@pytest.mark.parametrize("case", sorted(BROKEN_FILES))
def test_unreadable_files_are_named_with_line_and_column(workspace, group, case):
    data, expected = BROKEN_FILES[case]
    message = attempt(workspace, **{group: data})
    assert re.search(f"{re.escape(str(workspace / 'conf' / group / 'fuzz.yaml'))}: {expected}", message), message


CHAINS = {  # each shock is in range; together they overflowed (NonFiniteResult) or turned NaN silently
    "price mul": ({"target": "price.all", "kind": "mul", "value": 100.0}, 200, "price.H100", "multiplies it by inf"),
    "one chip": ({"target": "price.H100", "kind": "mul", "value": 100.0}, 200, "price.H100", "multiplies it by inf"),
    "demand mul": ({"target": "demand", "kind": "mul", "value": 100.0}, 200, "demand", "multiplies it by inf"),
    "utilization mul": ({"target": "utilization", "kind": "mul", "value": 100.0}, 200, "utilization", "by inf"),
    "power mul": ({"target": "power_price", "kind": "mul", "value": 100.0}, 200, "power_price", "by inf"),
    "haircut mul": ({"target": "haircut", "kind": "mul", "value": 100.0}, 200, "haircut", "by inf"),
    "demand add": ({"target": "demand", "kind": "add", "value": 10.0}, 2, "demand", "adds 20 to 20"),
    "price add": ({"target": "price.all", "kind": "add", "value": -1e3}, 2, "price.A100", "adds -2000 to -2000"),
    "pd mul": ({"target": "pd_multiplier", "kind": "mul", "value": 100.0}, 200, "pd_multiplier", "in \\[0, 100\\]"),
}


SLOW_CHAINS = ("demand mul", "power mul", "haircut mul", "price add")  # the same check as the others


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_CHAINS else c for c in sorted(CHAINS)])
def test_chains_of_in_range_shocks_stay_in_range(workspace, case):
    shock, n, target, expected = CHAINS[case]
    message = attempt(workspace, scenario=dump({"fz": {"description": case, "shocks": [shock] * n}}))
    assert isinstance(message, str) and re.search(f"scenario.fz: .*{target}.*{expected}", message), message


def test_two_shocks_within_one_shocks_range_still_run(workspace):
    """price.all mul 0.5 then price.H100 mul 100: a = 50, within [0, 100]."""
    shocks = [{"target": "price.all", "kind": "mul", "value": 0.5}, {"target": "price.H100", "kind": "mul", "value": 100.0}]
    assert not isinstance(attempt(workspace, scenario=dump({"fz": {"description": "", "shocks": shocks}})), str)


# ------------------------------------------------------------------------------ the command line

CLI_CASES = {
    "market": (b"chips:\n\tH100: 1\n", "line 2, column 1: not valid YAML"),
    "scenario": (dump({"fz": {"shocks": [{"target": "demand", "kind": "mul", "value": 100.0}] * 200}}),
                 "scenario.fz: its shocks on demand combine"),
}


@pytest.mark.parametrize("group", sorted(CLI_CASES))
def test_cli_refuses_bad_files_with_exit_code_2(workspace, tmp_path, group):
    data, expected = CLI_CASES[group]
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    (conf / group / "fuzz.yaml").write_bytes(data)
    out = tmp_path / "out"
    select = "market=fuzz" if group == "market" else "scenario=[fuzz]"
    r = subprocess.run([sys.executable, "-m", "stress.cli", "--config-dir", str(conf), select, "tenors=[12]",
                        "mc.paths=4", f"portfolio.path={workspace / 'tape.csv'}", f"output.dir={out}"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.startswith("stress-test: error: invalid config:")
    assert expected in r.stderr and (group != "market" or str(conf / "market" / "fuzz.yaml") in r.stderr)
    assert not out.exists() or not any(out.iterdir())
