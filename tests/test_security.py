"""Configs, tapes and results are data, never code (issue 7); outputs stay in output.dir."""

from __future__ import annotations

import ast
import io
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

from stress.report import figures, html
from stress.report.cli import UserError, open_results
from stress.results import dataset

PACKAGE = Path(__file__).resolve().parents[1] / "stress"
SOURCES = sorted(PACKAGE.rglob("*.py"))

# Names that execute code from data: builtins that evaluate strings, and serialisers that
# rebuild arbitrary objects (pickle and friends), Hydra's instantiate (imports _target_ classes).
CODE_BUILTINS = {"eval", "exec", "compile", "__import__"}
CODE_NAMES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "jsonpickle",
              "unsafe_load", "full_load", "read_pickle", "to_pickle", "instantiate", "get_method", "get_class",
              "get_object"}


def test_there_are_sources_to_check():
    assert len(SOURCES) > 10 and PACKAGE / "config" / "portfolio.py" in SOURCES


def code_names(path: Path) -> list[str]:
    """Code names, not words in comments or docstrings: the tokens of the source."""
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
              if t.type in (tokenize.NAME, tokenize.OP)]
    found = []
    for before, tok in zip([None, *tokens], tokens):
        if tok.type != tokenize.NAME:
            continue
        attribute = before is not None and before.string == "."
        if (tok.string in CODE_BUILTINS and not attribute) or tok.string in CODE_NAMES:
            found.append(f"{path.name}:{tok.start[0]}: {tok.string}")
    return found


def unsafe_calls(path: Path) -> list[str]:
    """np.load without allow_pickle=False, yaml.load, a shell subprocess, os.system."""
    problems = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
        keywords = {k.arg: k.value for k in node.keywords}
        where = f"{path.name}:{node.lineno}"
        if node.func.attr == "load" and owner in ("np", "numpy"):
            flag = keywords.get("allow_pickle")
            if not (isinstance(flag, ast.Constant) and flag.value is False):
                problems.append(f"{where}: np.load without allow_pickle=False")
        if node.func.attr == "load" and owner == "yaml":
            problems.append(f"{where}: yaml.load (use yaml.safe_load)")
        if owner == "subprocess" and isinstance(keywords.get("shell"), ast.Constant) and keywords["shell"].value:
            problems.append(f"{where}: subprocess with shell=True")
        if owner == "os" and node.func.attr in ("system", "popen"):
            problems.append(f"{where}: os.{node.func.attr}")
    return problems


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_eval_exec_or_pickle(path):
    assert code_names(path) == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_npz_and_yaml_are_read_without_code(path):
    """np.load(..., allow_pickle=False) wherever arrays are read; yaml only with a safe loader;
    subprocesses without a shell."""
    assert unsafe_calls(path) == []


def test_the_checks_catch_what_they_look_for(tmp_path):
    """The two source checks above, on a file that does everything they forbid."""
    bad = tmp_path / "bad.py"
    bad.write_text("import pickle\nimport numpy as np\nimport yaml\nx = eval('1')\nnp.load('a.npz')\n"
                   "np.load('b.npz', allow_pickle=True)\nyaml.load('a')\nre.compile('x')\n")
    assert code_names(bad) == ["bad.py:1: pickle", "bad.py:4: eval"]
    assert unsafe_calls(bad) == ["bad.py:5: np.load without allow_pickle=False",
                                 "bad.py:6: np.load without allow_pickle=False", "bad.py:7: yaml.load (use yaml.safe_load)"]


def test_config_values_are_not_evaluated(tmp_path):
    """A value that looks like code stays a string: OmegaConf resolvers and Hydra overrides
    never run it (and the key it lands in then fails validation as text)."""
    marker = tmp_path / "pwned"
    payload = f'__import__("pathlib").Path("{marker}").touch()'

    r = subprocess.run([sys.executable, "-m", "stress.cli", f"backend='{payload}'", "mc.paths=8",
                        f"output.dir={tmp_path / 'out'}"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "backend: must be one of" in r.stderr
    assert not marker.exists()


def test_tape_cells_are_not_evaluated(tmp_path, tape):
    from stress.config.portfolio import load_portfolio
    from stress.errors import TapeError

    marker = tmp_path / "pwned"
    path = tape([{"principal": f"__import__('pathlib').Path('{marker}').touch()"}, {"loan_id": "=cmd|'/c calc'!A1"}])
    with pytest.raises(TapeError, match="column 'principal': must be a number"):
        load_portfolio(path, ["H100"])
    assert not marker.exists()


def test_generated_file_names_are_plain_names():
    """Every name the package writes into output.dir is fixed or built from integers: no path
    separator or '..' can come from a config or a tape (scenario and loan names never name files)."""
    names = [dataset.FILENAMES[f] for f in dataset.FILENAMES] + [html.REPORT_NAME]
    names += [figures.figure_filename(name) for name in figures.FIGURES]
    from stress.engine import checkpoint

    names += [checkpoint.chunk_name(0, 2**40), checkpoint.MANIFEST, checkpoint.DIRNAME]
    for name in names:
        assert Path(name).name == name and ".." not in name and "/" not in name and "\\" not in name, name


def test_a_run_writes_only_inside_output_dir(tmp_path):
    out = tmp_path / "a" / "out"
    r = subprocess.run([sys.executable, "-m", "stress.cli", "scenario=[baseline]", "tenors=[36]", "mc.paths=16",
                        "mc.fan_paths=4", f"output.dir={out}", "hydra.run.dir=run", "quiet=true"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    outside = [p for p in written if p.parts[0] != "a" and p.parts[0] != "run"]
    assert outside == [], outside
    assert all(p.parts[:2] == ("a", "out") for p in written if p.parts[0] == "a")
    assert {p.name for p in written if p.parts[0] == "a"} >= {"results.nc", "report.html"}
    run_files = [p for p in written if p.parts[0] == "run"]
    assert all(p.parts[1] == ".hydra" or p.suffix == ".log" for p in run_files), run_files


def test_zarr_stores_with_a_pickle_codec_are_refused(tmp_path):
    store = tmp_path / "results.zarr"
    (store / "loss").mkdir(parents=True)
    (store / ".zgroup").write_text('{"zarr_format": 2}')
    (store / "loss" / ".zarray").write_text('{"dtype": "|O", "filters": [{"id": "pickle", "protocol": 5}]}')
    assert dataset.unsafe_zarr_codecs(store) == [store / "loss" / ".zarray"]
    with pytest.raises(UserError, match="declares a pickle codec"):
        open_results(store)
    (store / "loss" / ".zarray").write_text('{"dtype": "<f8", "compressor": {"id": "blosc"}}')
    assert dataset.unsafe_zarr_codecs(store) == []


SECRET = "s3cr3t-4f1e-token"


def user_conf(tmp_path: Path) -> Path:
    import shutil

    from stress.config.install import conf_dir

    target = tmp_path / "myconf"
    shutil.copytree(conf_dir(), target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def test_environment_variables_never_reach_the_outputs(tmp_path):
    """A shared scenario file that reads ${oc.env:...} is refused, naming the file and the key, and
    the variable's value is in no file written and no message."""
    conf = user_conf(tmp_path)
    leaky = conf / "scenario" / "leaky.yaml"
    leaky.write_text('leaky:\n  description: "for ${oc.env:STRESS_SECRET}"\n  shocks: []\n')
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "stress.cli", "--config-dir", str(conf), "scenario=[leaky]",
                        "tenors=[36]", "mc.paths=16", "mc.fan_paths=4", f"output.dir={out}", "hydra.run.dir=run"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "STRESS_SECRET": SECRET})
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith(f"stress-test: error: invalid config:\n  - scenario.leaky.description: the config file "
                               f"{leaky} holds 'for ${{oc.env:STRESS_SECRET}}', an interpolation"), r.stderr
    assert "Traceback" not in r.stderr and SECRET not in r.stdout + r.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.parent != conf / "scenario"]
    assert [p for p in written if SECRET.encode() in p.read_bytes()] == []
    assert not (out / "results.nc").exists() and not (out / "report.html").exists()


@pytest.mark.parametrize("text", ["${oc.env:HOME}", "${oc.decode:'0.04'}", "${now:%Y}", "${market.demand.persistence}",
                                  "0.0${oc.env:DIGIT,4}"])
def test_no_interpolation_in_a_market_file(tmp_path, text):
    from stress import ConfigError, compose

    conf = user_conf(tmp_path)
    market = conf / "market" / "gpu_2026q4.yaml"
    lines = market.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("base_rate:"))
    lines[i] = f'base_rate: "{text}"'
    market.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        compose(["scenario=[baseline]"], config_dir=conf)
    assert str(info.value).startswith(f"invalid config:\n  - market.base_rate: the config file {market} holds {text!r}")


def test_no_interpolation_in_a_command_line_override():
    from stress import ConfigError, compose

    override = "scenario.baseline.description=${oc.env:STRESS_SECRET}"
    with pytest.raises(ConfigError, match=r"scenario.baseline.description: the command-line override "
                                          + re.escape(repr(override))):
        compose(["scenario=[baseline]", override])


def test_no_interpolation_in_a_config_built_in_python():
    from omegaconf import OmegaConf

    from stress import ConfigError, compose
    from stress.config.compose import to_schema

    cfg = compose(["scenario=[baseline]"])
    cfg.scenario = OmegaConf.create({"x": {"description": "${oc.env:STRESS_SECRET}", "shocks": []}})
    with pytest.raises(ConfigError, match=r"scenario.x.description: the config holds '\$\{oc.env:STRESS_SECRET\}'"):
        to_schema(cfg)
    typed = to_schema(compose(["scenario=[baseline]"]))
    typed.market.valuation.method = "${oc.env:STRESS_SECRET}"
    with pytest.raises(ConfigError, match=r"market.valuation.method: the config holds '\$\{oc.env:STRESS_SECRET\}'"):
        to_schema(typed)
