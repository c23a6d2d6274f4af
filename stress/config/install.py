"""Where a run's config comes from: the config tree shipped with the package, the user's own
config folder, the loan tape of a run, and the package version recorded with every result."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .schema import StressConfig

try:
    VERSION = version("gpu-credit-stress")  # recorded in every result's attributes
except PackageNotFoundError:  # running from a source checkout without installing
    VERSION = "0+unknown"


def conf_dir() -> Path:
    """The config tree: ``stress/conf`` in an installed wheel, ``conf/`` in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here.parent.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise ConfigError(f"the bundled config tree was not found next to {here}; reinstall the package")


def config_dirs(config_dir: str | None) -> list[Path]:
    """The config folders a run looks in, first match wins: the user's ``config_dir``, then the bundled one."""
    return ([Path(config_dir)] if config_dir else []) + [conf_dir()]


def tape_path(cfg: StressConfig) -> Path:
    """The loan tape of the run: ``portfolio.path``, or the example tape of the config folder when null
    (the user's ``config_dir`` first, then the bundled conf/)."""
    path = Path("portfolio/example_loans.csv" if cfg.portfolio.path is None else cfg.portfolio.path).expanduser()
    if cfg.portfolio.path is not None and (path.is_absolute() or path.exists()):
        return path
    for root in config_dirs(cfg.config_dir):
        if (root / path).is_file():
            return root / path  # a tape of the config folder, e.g. portfolio/h100_2023_loans.csv
    return path
