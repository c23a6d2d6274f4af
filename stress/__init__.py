"""GPU-collateral credit stress tester: Monte Carlo losses of loans secured on data-centre GPUs.

``run(config) -> xarray.Dataset`` is the single entry point shared by the CLI, the tests, Dask
workers and notebooks; ``compose(overrides)`` builds a config from the bundled ``conf/`` tree.

``import stress`` stays light (no xarray, pandas, scipy, pyarrow, Hydra, Dask or matplotlib): those
are imported where a run first needs them. The ``ds.stress`` accessor is registered as soon as
xarray is imported, by this package or by the user (stress/results/accessor.py).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from .config.compose import compose
from .config.install import VERSION as __version__
from .config.schema import StressConfig
from .errors import ConfigError, OutputError, StressError, TapeError
from .pipeline import run

if TYPE_CHECKING:
    import xarray as xr


class _AccessorOnXarrayImport(importlib.abc.MetaPathFinder):
    """Registers ``ds.stress`` (imports stress.results.accessor) right after xarray's first import."""

    def find_spec(self, name, path=None, target=None):
        if name != "xarray":
            return None
        sys.meta_path.remove(self)  # the finders after this one find xarray itself
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            run_module = spec.loader.exec_module

            def exec_module(module):
                run_module(module)
                importlib.import_module(f"{__name__}.results.accessor")

            spec.loader.exec_module = exec_module
        return spec


if "xarray" in sys.modules:
    from .results import accessor  # noqa: F401  (registers ds.stress)
else:
    sys.meta_path.insert(0, _AccessorOnXarrayImport())

__all__ = ["run", "analyze", "compose", "StressConfig", "StressError", "ConfigError", "TapeError", "OutputError",
           "__version__"]


def analyze(config: DictConfig | StressConfig) -> xr.Dataset:
    """The analysis named by ``analysis`` (breakeven, reverse, sensitivities; ``run`` = ``run``) as a
    Dataset; with ``output.dir``, also written to ``output.dir/analysis_<name>.nc`` (stress/analysis/)."""
    from .analysis.runner import analyze as _analyze

    return _analyze(config)
