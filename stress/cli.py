"""``stress-test``: the Hydra command line. A thin shell around ``stress.run``."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from .config.compose import refuse_interpolations, register_schemas
from .config.install import conf_dir
from .engine import lock
from .errors import StressError

register_schemas()
_started = False  # set once Hydra has composed the config and handed it to the task
_out_dir: str | None = None  # output.dir of the running job (for the message after an interrupt)
_written: str | None = None  # the results file, once it is safely on disk


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def _task(cfg: DictConfig) -> None:
    global _started, _out_dir, _written
    _started = True
    _written = None
    hydra_cfg = HydraConfig.get()
    try:  # before any value is read: a resolver such as ${oc.env:...} must never run
        refuse_interpolations(cfg, hydra_cfg.overrides.task, [Path(s.path) for s in hydra_cfg.runtime.config_sources
                                                                if s.schema == "file"])
    except StressError as exc:
        print(f"stress-test: error: {exc}", file=sys.stderr)
        sys.exit(2)
    with open_dict(cfg):
        if cfg.output.dir is None:
            cfg.output.dir = hydra_cfg.runtime.output_dir
        for source in hydra_cfg.runtime.config_sources:  # --config-dir DIR became the primary config path
            if source.provider == "main" and Path(source.path).resolve() != conf_dir():
                cfg.config_dir = str(Path(source.path).resolve())
    _out_dir = str(cfg.output.dir)
    with contextlib.ExitStack() as stack:
        try:  # one run per output directory, held until the report is written too
            stack.enter_context(lock.held(_out_dir))
        except StressError as exc:
            print(f"stress-test: error: {exc}", file=sys.stderr)
            sys.exit(2)
        _job(cfg)


def _job(cfg: DictConfig) -> None:
    global _written
    from rich.console import Console

    from .pipeline import run
    from .results import dataset

    if cfg.get("analysis", "run") != "run":  # analysis=breakeven|reverse|sensitivities: output.dir/analysis_NAME.nc
        from .analysis.runner import cli_main

        cli_main(cfg)
        return
    from .report.html import check_writable, write_all

    try:
        check_writable(cfg.output.dir, cfg.output.overwrite, cfg.output.figures)  # protected as the results are
        ds = run(cfg)
    except StressError as exc:
        print(f"stress-test: error: {exc}", file=sys.stderr)
        sys.exit(2)
    _written = ds.attrs["written_to"]

    try:  # the dataset is already safe on disk; a failed report loses nothing
        written = write_all(ds, Path(ds.attrs["written_to"]).parent, figures=cfg.output.figures)
    except OSError as exc:
        print(f"stress-test: error: could not write the report: {exc}", file=sys.stderr)
        sys.exit(2)
    if not cfg.quiet:
        console = Console()
        if not console.is_terminal:  # piped or logged: do not squeeze the tables to 80 columns
            console = Console(width=130)
        for table in dataset.summary_tables(ds):
            console.print(table)
        note = dataset.tenor_note(ds)
        if note:
            console.print(note)
        console.print(f"Results written to {ds.attrs['written_to']}")
        drawn = f"Report and {len(written) - 1} figures" if cfg.output.figures else "Report (no figures: output.figures=false)"
        console.print(f"{drawn} written to {written[-1].parent}")


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` (temporary files) runs on the way out."""


def _on_signal(signum, frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _interrupted_message(signame: str) -> str:
    if _written is not None:
        return f"stress-test: interrupted by {signame} after the results were written to {_written}"
    resume = ""
    if _out_dir is not None and (Path(_out_dir) / "chunks").is_dir():
        resume = f"; rerun with output.dir={_out_dir} output.resume=true to reuse the finished chunks"
    return f"stress-test: interrupted by {signame}; no results file was written{resume}"


def init(argv: list[str]) -> None:
    """``stress-test init [DIR]``: copy the bundled conf/ into DIR (default ``stress-conf``), which
    must not exist or be empty; then ``stress-test --config-dir DIR`` runs with the edited copy."""
    import shutil

    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print("stress-test: error: usage: stress-test init [DIR]", file=sys.stderr)
        sys.exit(2)
    target = Path(argv[0] if argv else "stress-conf")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        print(f"stress-test: error: {target} exists and is not an empty folder; nothing was copied "
              "(choose another DIR, or remove it)", file=sys.stderr)
        sys.exit(2)
    try:
        shutil.copytree(conf_dir(), target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    except OSError as exc:
        print(f"stress-test: error: could not copy the config into {target}: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"Config copied to {target}; edit it (e.g. {target / 'market' / 'gpu_2026q4.yaml'}) and run "
          f"stress-test --config-dir {target}")


def _config_dir_first(args: list[str]) -> list[str]:
    """Hydra's ``--config-dir DIR`` (``-cd``) adds DIR *after* the bundled conf/, so the bundled files
    would win; make DIR the primary config path instead, with the bundled conf/ searched after it for
    files DIR lacks (unless the command line sets ``hydra.searchpath`` itself)."""
    out, i, user = [], 0, None
    while i < len(args):
        a = args[i]
        if a in ("--config-dir", "-cd") and i + 1 < len(args):
            user, i = args[i + 1], i + 2
            continue
        if a.startswith("--config-dir="):
            user = a.split("=", 1)[1]
        else:
            out.append(a)
        i += 1
    if user is None:
        return args
    out = ["--config-path", str(Path(user).expanduser().resolve())] + out
    if not any(a.startswith(("hydra.searchpath=", "+hydra.searchpath=")) for a in out):
        out.append(f"hydra.searchpath=[file://{conf_dir()}]")
    return out


def main() -> None:
    """Console entry point. A config Hydra cannot compose is a user error (exit code 2, one
    message); SIGINT and SIGTERM stop the run without leaving a partial results file (exit code
    128 + the signal number, one line)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .config.messages import explain, file_errors

    if sys.argv[1:2] == ["init"]:
        init(sys.argv[2:])
        return
    sys.argv[1:] = _config_dir_first(sys.argv[1:])
    logging.getLogger("stress").setLevel(logging.INFO)
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing; the messages are ours
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        _task()
    except KeyboardInterrupt as exc:
        name = str(exc) if isinstance(exc, Interrupted) else "SIGINT"
        print(_interrupted_message(name), file=sys.stderr)
        sys.exit(128 + signal.Signals[name].value)
    except (HydraException, OmegaConfBaseException, ValueError, *file_errors()) as exc:
        if _started:  # not a config problem: a bug, with its traceback
            raise
        print(f"stress-test: error: invalid config: {explain(exc)}", file=sys.stderr)
        sys.exit(2)
    except SystemExit as exc:
        if exc.code == 1 and not _started:
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
