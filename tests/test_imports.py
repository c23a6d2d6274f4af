"""``import stress`` stays light: the libraries a run may not need are imported where they are used."""

import os
import subprocess
import sys

from support import REPO

HEAVY = ("matplotlib", "dask", "distributed", "scipy", "xarray", "pandas", "pyarrow", "hydra", "cupy")


def test_import_stress_loads_no_heavy_library_and_the_accessor_follows_xarray():
    probe = (f"import sys, stress; print(sorted(m for m in {HEAVY!r} if m in sys.modules)); "
             "import xarray; print(hasattr(xarray.Dataset, 'stress'))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "True"]  # none loaded; ds.stress registered once xarray is


def test_every_module_imports_first_in_a_fresh_interpreter():
    """The accessor registers while xarray is first imported, which may be in the middle of any module
    of the package: each module imported first, alone, must not meet a half-initialised one (a
    default stress-test run once died this way: stress.results.dataset -> xarray -> accessor -> stress.results.dataset)."""
    names = sorted(".".join(p.relative_to(REPO / "stress").with_suffix("").parts) for p in (REPO / "stress").rglob("*.py")
                   if p.stem not in ("__init__", "__main__", "gpu"))
    probe = ("import importlib, sys\nname = sys.argv[1]\nmod = importlib.import_module('stress.' + name)\n"
             "import xarray\nassert hasattr(xarray.Dataset, 'stress'), name\n")
    for name in names:
        done = subprocess.run([sys.executable, "-c", probe, name], cwd=REPO, capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 0, f"import stress.{name} first: {done.stderr[-1500:]}"
