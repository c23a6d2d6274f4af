"""The host-kernel cache is trusted (issue 13): created private, a library is loaded only if it is
ours and matches the digest recorded when it was built; anything else is rebuilt or refused."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from stress.engine import hostkernel

pytestmark = [pytest.mark.kernels,
              pytest.mark.skipif(shutil.which("g++") is None, reason="host kernel tests need g++")]
SOURCE = "bench_floor.cu"  # the smallest kernel source: quick to compile
PLANT = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(getenv("PLANT_MARK"), "w"); if (f) { fputs("ran", f); fclose(f); }
}
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("PLANT_MARK", str(tmp_path / "mark"))
    hostkernel.load.cache_clear()
    yield hostkernel.cache_dir()
    hostkernel.load.cache_clear()


def library(cache: Path) -> Path:
    """The cached library built for SOURCE (built once through load)."""
    hostkernel.load(SOURCE)
    hostkernel.load.cache_clear()
    (lib,) = cache.glob(f"{Path(SOURCE).stem}-*.so")
    return lib


def load_fresh() -> str:
    """load(SOURCE) in a new process (dlopen would reuse this process's library); returns its stderr."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", f"from stress.engine import hostkernel; hostkernel.load({SOURCE!r})"],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(root)), timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stderr


def plant(target: Path, tmp_path: Path) -> None:
    """Replace ``target`` by a library whose constructor writes $PLANT_MARK when it is loaded."""
    src = tmp_path / "plant.c"
    src.write_text(PLANT)
    subprocess.run(["g++", "-shared", "-fPIC", "-x", "c++", str(src), "-o", str(target)], check=True)


def test_cache_directory_is_private(cache):
    library(cache)
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700


def test_a_planted_library_is_rebuilt_not_loaded(cache, tmp_path):
    lib = library(cache)
    plant(lib, tmp_path)
    warned = load_fresh()
    assert not (tmp_path / "mark").exists(), "the planted library's constructor ran"
    assert "digest" in warned and "rebuilding" in warned
    assert load_fresh() == ""  # the rebuilt library and its digest are trusted again


def test_a_library_planted_before_the_first_build_is_not_loaded(cache, tmp_path):
    lib = library(cache)
    for f in cache.iterdir():
        f.unlink()
    plant(lib, tmp_path)  # no digest recorded: the name is predictable from the public sources
    assert "no digest" in load_fresh()
    assert not (tmp_path / "mark").exists()


def test_a_cache_open_to_others_is_tightened_with_a_warning(cache, tmp_path):
    lib = library(cache)
    os.chmod(cache, 0o777)
    plant(lib, tmp_path)
    warned = load_fresh()
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700 and "open to other users" in warned
    assert not (tmp_path / "mark").exists()


def test_a_library_writable_by_others_is_rebuilt(cache, tmp_path):
    lib = library(cache)
    os.chmod(lib, 0o777)
    hostkernel.load(SOURCE)
    assert stat.S_IMODE(os.stat(lib).st_mode) & 0o022 == 0


@pytest.mark.skipif(os.getuid() != 0, reason="giving a directory to another user needs root")
def test_a_cache_directory_of_another_user_is_refused(cache):
    cache.mkdir(parents=True)
    os.chown(cache, 12345, 12345)
    with pytest.raises(hostkernel.KernelBuildError, match="not a directory owned by you"):
        hostkernel.load(SOURCE)


def test_a_symlinked_cache_directory_is_refused(cache, tmp_path):
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    cache.parent.mkdir(parents=True)
    cache.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(hostkernel.KernelBuildError, match="not a directory owned by you"):
        hostkernel.load(SOURCE)
