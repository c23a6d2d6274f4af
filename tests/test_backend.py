"""Backend choice, the host-compiled kernel backend, the out-of-memory retry, and (with a GPU)
the CUDA engine against the numpy reference."""

import logging
import shutil

import numpy as np
import pytest

from stress.config.compose import to_schema
from stress.config.install import tape_path
from stress.config.portfolio import load_portfolio
from stress.engine import backend, chunk, gpu, hostkernel, montecarlo, problem
from stress.errors import ConfigError
from stress.pipeline import run

from support import config


def _problem(overrides=()):
    cfg = to_schema(config(["mc.fan_paths=8", *overrides]))
    return cfg, problem.build_problem(cfg, load_portfolio(tape_path(cfg), cfg.market.chips))


def _gpu_or_skip():
    cp, why = backend._cupy()
    if cp is None:
        pytest.skip(f"no usable GPU: {why}")
    return cp


def test_cupy_backend_without_a_gpu_is_a_clear_user_error(monkeypatch):
    monkeypatch.setattr(backend, "_cupy", lambda: (None, "CuPy is not installed"))
    with pytest.raises(ConfigError, match="backend=cupy was requested but CuPy is not installed"):
        backend.select("cupy")


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(backend, "_cupy", lambda: (None, "CuPy found no CUDA device"))


@pytest.fixture
def no_compiler(monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    hostkernel.load.cache_clear()
    yield
    hostkernel.load.cache_clear()


def test_auto_without_gpu_or_compiler_falls_back_to_numpy_and_says_why(no_gpu, no_compiler, caplog):
    with caplog.at_level(logging.INFO, logger="stress"):
        assert backend.select("auto").name == "numpy"
    assert "CuPy found no CUDA device" in caplog.text
    assert "host-compiled kernel is not available" in caplog.text and "g++ was not found" in caplog.text


def test_host_without_compiler_is_a_clear_user_error(no_compiler):
    with pytest.raises(ConfigError, match="backend=host needs the kernels compiled as host C\\+\\+"):
        backend.select("host")


@pytest.mark.kernels
def test_auto_without_gpu_chooses_the_host_kernel_and_says_why(no_gpu, caplog):
    if shutil.which("g++") is None:
        pytest.skip("needs g++")
    with caplog.at_level(logging.INFO, logger="stress"):
        assert backend.select("auto").name == "host"
    assert "using the host-compiled kernel" in caplog.text and "CuPy found no CUDA device" in caplog.text


def test_auto_with_importance_sampling_chooses_numpy_and_says_why(no_gpu, caplog):
    with caplog.at_level(logging.INFO, logger="stress"):
        assert backend.select("auto", importance_sampling=True).name == "numpy"
    assert "mc.importance_sampling runs on backend=numpy only" in caplog.text


@pytest.mark.kernels
def test_auto_run_is_the_host_run_bit_for_bit_and_resolved_once(no_gpu, monkeypatch, caplog):
    """backend=auto without a GPU is the host run to the last bit, and it is resolved (and logged) once."""
    if shutil.which("g++") is None:
        pytest.skip("needs g++")
    common = ["scenario=[baseline,ai_winter]", "tenors=[36]", "mc.paths=60", "mc.fan_paths=6", "mc.chunk_paths=20",
              "output.paths=true"]
    with caplog.at_level(logging.INFO, logger="stress"):
        auto = run(config(common + ["backend=auto"]))
    assert caplog.text.count("backend=auto:") == 1
    host = run(config(common + ["backend=host"]))
    assert auto.attrs["backend"] == host.attrs["backend"] == "host"
    for name in auto.data_vars:
        np.testing.assert_array_equal(auto[name].values, host[name].values, err_msg=name)


def test_memory_retry_halves_the_chunk_and_changes_no_path():
    """A fake out-of-memory error for any range over 40 paths: the retry splits 150 paths into
    halves until they fit; the combined result equals the one-chunk run."""
    _, prob = _problem(["scenario=[baseline,ai_winter]", "tenors=[36,60]"])

    class FakeOutOfMemory(MemoryError):
        pass

    calls = []

    def run_paths(a, b):
        calls.append((a, b))
        if b - a > 40:
            raise FakeOutOfMemory
        return montecarlo.simulate(np, prob, 7, a, b, 8)

    parts = gpu.with_memory_retry(run_paths, 0, 150, FakeOutOfMemory)
    assert [(p.start, p.start + p.loss.shape[-1]) for p in parts] == [(0, 37), (37, 75), (75, 112), (112, 150)]
    whole = montecarlo.simulate(np, prob, 7, 0, 150, 8)
    np.testing.assert_array_equal(chunk.combine(parts).loss, whole.loss)
    with pytest.raises(FakeOutOfMemory):
        gpu.with_memory_retry(lambda a, b: (_ for _ in ()).throw(FakeOutOfMemory()), 0, 4, FakeOutOfMemory)


@pytest.mark.kernels
def test_host_backend_matches_numpy():
    common = ["scenario=[baseline,new_chip_generation]", "tenors=[36,84]", "mc.paths=120", "mc.fan_paths=10",
              "output.paths=true"]
    ref = run(config(common + ["backend=numpy"]))
    host = run(config(common + ["backend=host"]))
    assert host.attrs["backend"] == "host"
    np.testing.assert_array_equal(host.default_month.values, ref.default_month.values)
    np.testing.assert_allclose(host.loss.values, ref.loss.values, rtol=1e-10)
    np.testing.assert_allclose(host.price_fan.values, ref.price_fan.values, rtol=1e-12)


def test_the_problem_is_packed_once_for_every_chunk_and_thread_of_a_run(monkeypatch):
    """The kernel's flat arrays are built on the first chunk and reused by every later chunk and
    thread (they are read-only), and forgotten with the Problem."""
    import gc

    _, prob = _problem(["scenario=[baseline]", "tenors=[36]"])
    calls = []
    real = hostkernel.pack
    monkeypatch.setattr(hostkernel, "pack", lambda p: calls.append(p) or real(p))
    parts = [hostkernel.simulate_threads(prob, 1, a, a + 6, 0, workers=2) for a in (0, 6, 12)]
    assert len(calls) == 1 and calls[0] is prob
    reals, ints = hostkernel.packed(prob)
    assert not reals.flags.writeable and not ints.flags.writeable
    expected = real(prob)
    np.testing.assert_array_equal(reals, expected[0])
    np.testing.assert_array_equal(ints, expected[1])
    whole = hostkernel.simulate(prob, 1, 0, 18, 0)  # one chunk, the same cached arrays: the same paths
    np.testing.assert_array_equal(np.concatenate([r.loss for p in parts for r in p], axis=-1), whole.loss)
    key = id(prob)
    calls.clear()
    del prob, reals, ints
    gc.collect()
    assert key not in hostkernel._PACKED


@pytest.mark.gpu
def test_cuda_engine_matches_numpy_in_float64():
    cp = _gpu_or_skip()
    _, prob = _problem()
    ref = montecarlo.simulate(np, prob, 11, 0, 400, 8, keep_paths=True)
    dev = gpu.simulate(cp, prob, 11, 0, 400, 8, keep_paths=True)
    # nvcc's math library rounds exp/log/pow differently from numpy in the last bits
    assert (dev.default_month != ref.default_month).mean() < 1e-4
    np.testing.assert_allclose(dev.loss, ref.loss, rtol=1e-9, atol=1e-3)


@pytest.mark.gpu
def test_cuda_float32_within_monte_carlo_error():
    """EL in float32 within 3 standard errors of the float64 EL on the same paths."""
    _gpu_or_skip()
    common = ["mc.paths=20000", "mc.fan_paths=0", "backend=cupy"]
    f64 = run(config(common))
    f32 = run(config(common + ["precision=float32"]))
    assert (abs(f32.expected_loss - f64.expected_loss) <= 3 * f64.expected_loss_se + 1e-6).all()


@pytest.mark.gpu
def test_a_million_paths_on_the_gpu():
    _gpu_or_skip()
    ds = run(config(["mc.paths=1000000", "mc.fan_paths=1000", "backend=cupy", "scenario=[baseline,severely_adverse]"]))
    assert ds.sizes["path"] == 1_000_000
    assert (ds.expected_loss.sel(scenario="severely_adverse") >= ds.expected_loss.sel(scenario="baseline")).all()
