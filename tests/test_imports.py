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
