"""``stress-test``: the Hydra command line. A thin shell around ``stress.run``."""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from .config import conf_dir, register_schemas
from .errors import StressError

register_schemas()
_started = False  # set once Hydra has composed the config and handed it to the task


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def _task(cfg: DictConfig) -> None:
    global _started
    _started = True
    from rich.console import Console

    from . import results, run

    if cfg.output.dir is None:
        with open_dict(cfg):
            cfg.output.dir = HydraConfig.get().runtime.output_dir
    try:
        ds = run(cfg)
    except StressError as exc:
        print(f"stress-test: error: {exc}", file=sys.stderr)
        sys.exit(2)
    from pathlib import Path

    from .report import write_all

    try:  # the dataset is already safe on disk; a failed report loses nothing
        written = write_all(ds, Path(ds.attrs["written_to"]).parent)
    except OSError as exc:
        print(f"stress-test: error: could not write the report: {exc}", file=sys.stderr)
        sys.exit(2)
    if not cfg.quiet:
        console = Console()
        if not console.is_terminal:  # piped or logged: do not squeeze the tables to 80 columns
            console = Console(width=130)
        for table in results.summary_tables(ds):
            console.print(table)
        console.print(f"Results written to {ds.attrs['written_to']}")
        console.print(f"Report and {len(written) - 1} figures written to {written[-1].parent}")


def main() -> None:
    """Console entry point; a config Hydra cannot compose is a user error (exit code 2)."""
    logging.getLogger("stress").setLevel(logging.INFO)
    try:
        _task()
    except SystemExit as exc:
        if exc.code == 1 and not _started:
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
