"""The CUDA engine (kernels/engine.cu) compiled as host C++ and run on the CPU through ctypes.

This is how CPU-only CI checks the kernel arithmetic against the numpy reference engine path by
path: the same sources, force-including ``kernels/host_shim.h``, built with g++ into a
cache directory keyed by the hash of the sources, compiler and flags. The build is ``-O3
-march=native``; the cache key includes what ``-march=native`` resolves to on this CPU (the
compiler's expanded target options), so a cache shared between machines never loads a library
built for another CPU. ``simulate`` has the
signature and outputs of :func:`stress.engine.montecarlo.simulate` (fans included: the kernel computes them).

``pack`` flattens a :class:`~stress.engine.problem.Problem` into the argument layout documented at the top
of ``kernels/engine.cu``; the GPU launcher can use it as it is. ``packed`` does it once per Problem
object, for every chunk and thread of a run (at 10,000 loans the arrays are hundreds of MB).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import math
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..config.install import conf_dir
from ..errors import ConfigError
from ..model import rng
from ..model.market import FIRST_YEAR
from ..model.recovery import HOURS_PER_MONTH
from .chunk import ChunkResult
from .problem import Problem

HOST_FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off", "-x", "c++")
N_CAUSES = 4  # payment, covenant, refinancing, exogenous
log = logging.getLogger("stress")
CHANNEL_BITS = {"payment": 1, "covenant": 2, "refinancing": 4, "exogenous": 8}  # engine.cu ChannelBit


class KernelBuildError(RuntimeError):
    """The kernel sources cannot be compiled or loaded as host C++ (no g++, compiler error)."""


def kernels_dir() -> Path:
    """The CUDA sources: ``kernels/`` beside ``conf/`` in a checkout, ``stress/kernels`` in a wheel."""
    return conf_dir().parent / "kernels"


def cache_dir() -> Path:
    """Where compiled host libraries are kept: ``$XDG_CACHE_HOME/gpu-credit-stress`` (~/.cache)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpu-credit-stress"


def _compiler() -> tuple[str, str]:
    """(path of g++, its version line), or a KernelBuildError saying how to get one."""
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        raise KernelBuildError("the host kernel build needs a C++17 compiler: g++ was not found on PATH "
                               "(install g++, or set CXX to a g++-compatible compiler)")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()
    return cxx, version[0] if version else "?"


def _native_target(cxx: str) -> str:
    """The target options ``-march=native`` expands to on this CPU (``cc1 ... -march=rocketlake
    -mavx2 ...``, from ``g++ -v``), for the cache key; '' when the compiler does not say."""
    done = subprocess.run([cxx, "-march=native", "-E", "-v", "-x", "c++", os.devnull], capture_output=True, text=True)
    lines = [line for line in done.stderr.splitlines() if "-march=" in line and "cc1" in line]
    return " ".join(w for w in lines[0].split() if w.startswith(("-m", "--param"))) if lines else ""


def trusted_cache() -> Path:
    """cache_dir(), created with mode 0700; a directory of another user, or a symbolic link, is refused
    (KernelBuildError), and one of ours that group or others may write is tightened to 0700 with a warning."""
    path = cache_dir()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise KernelBuildError(f"the kernel cache {path} is not a directory owned by you (uid {os.getuid()}); "
                               "remove it or set XDG_CACHE_HOME to a private directory")
    if st.st_mode & 0o077:
        log.warning("kernel cache %s was open to other users (mode %o): restricted to 0700, and libraries "
                    "in it are checked against their digests", path, stat.S_IMODE(st.st_mode))
        os.chmod(path, 0o700)
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _untrusted(library: Path) -> str | None:
    """Why ``library`` (and its ``.sha256`` sidecar written at build time) must not be loaded, or None."""
    sidecar = library.with_name(library.name + ".sha256")
    for f in (library, sidecar):
        st = os.lstat(f)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
            return f"{f.name} is not a regular file owned by you and writable by you alone"
    if sidecar.read_text().strip() != _sha256(library):
        return f"{library.name} does not match the digest recorded when it was built"
    return None


def _build(cxx: str, flags: tuple, source: Path, target: Path) -> None:
    """Compile ``source`` into ``target`` and its digest into ``target.sha256``, each by one atomic rename."""
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        done = subprocess.run([cxx, *flags, str(source), "-o", str(built)], capture_output=True, text=True)
        if done.returncode != 0:
            raise KernelBuildError(f"g++ could not compile {source} as host C++:\n{done.stderr.strip()}")
        digest = Path(tmp) / "digest"
        digest.write_text(_sha256(built) + "\n")
        os.replace(built, target)  # atomic: concurrent builds of the same hash are harmless
        os.replace(digest, target.with_name(target.name + ".sha256"))


@functools.lru_cache(maxsize=None)
def load(source: str = "engine.cu") -> ctypes.CDLL:
    """Compile ``kernels/<source>`` as host C++ (once per source hash) into the trusted cache and load
    it; a cached library that fails the ownership or digest check is rebuilt, with a warning."""
    root = kernels_dir()
    if not (root / source).is_file():
        raise KernelBuildError(f"kernel source {root / source} not found; reinstall the package")
    cxx, version = _compiler()
    flags = (*HOST_FLAGS, "-include", str(root / "host_shim.h"))
    h = hashlib.sha256(f"{version}\0{' '.join(HOST_FLAGS)}\0{_native_target(cxx)}\0{source}\0".encode())
    for f in sorted(root.glob("*.cu*")) + sorted(root.glob("*.h")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    target = trusted_cache() / f"{Path(source).stem}-{h.hexdigest()[:16]}.so"
    if os.path.lexists(target):
        why = _untrusted(target) if os.path.lexists(target.with_name(target.name + ".sha256")) else \
            f"{target.name} has no digest recorded at build time"
        if why is not None:
            log.warning("not loading the cached host kernel: %s; rebuilding it", why)
            _build(cxx, flags, root / source, target)
    else:
        _build(cxx, flags, root / source, target)
    try:
        return ctypes.CDLL(str(target))
    except OSError as exc:
        raise KernelBuildError(f"cannot load the host kernel library {target}: {exc}") from None


def months_first(a: np.ndarray) -> np.ndarray:
    """A (..., loan, month) table as (..., month, loan), the kernel's layout of per-month tables."""
    return np.swapaxes(np.asarray(a), -1, -2)


def pack(prob: Problem) -> tuple[np.ndarray, np.ndarray]:
    """The Problem as engine.cu's ``reals`` (float64) and ``ints`` (int32), in the documented order.

    The derived constants (sqrt(1 - phi^2), phi^t, sqrt(1 - psi^2), sqrt(1 - rho)) are computed with
    the same numpy/Python expressions as stress.model.market and stress.engine.montecarlo, so they are the same bits.
    """
    m = prob.market
    S, K, L = prob.shape
    C, N, T = len(m.chips), m.launch_month.shape[1], prob.months
    H = T + prob.lag
    phi, psi, load = m.phi, np.asarray(m.psi), np.asarray(prob.copula_load, dtype=np.float64)
    r = prob.demand_corr
    scalars = [phi, np.sqrt(1.0 - phi**2), m.u_max, m.util_beta, m.util_sigma, prob.rules.refi_ltv_max,
               prob.sale_cost, r, np.sqrt(1.0 - r * r), phi**FIRST_YEAR, np.sqrt(1.0 - phi**(2 * FIRST_YEAR)),
               prob.price_impact if prob.inverse_depth is not None else 0.0]
    reals = [
        (scalars, (len(scalars),)), ([phi**t for t in range(1, H + 1)], (H,)),
        (m.log_price0, (C,)), (m.trend_monthly, (C,)), (m.kappa, (C,)), (m.sigma, (C,)), (psi, (C,)),
        (np.sqrt(1.0 - psi**2), (C,)), (m.util_intercept, (C,)),
        (np.zeros(C) if prob.inverse_depth is None else prob.inverse_depth, (C,)),
        (m.launch_ramp, (N,)), (m.launch_jitter, (N,)), (m.launch_month, (S, N)), (m.launch_log_step, (S, N)),
        (m.demand_a, (S, H)), (m.demand_b, (S, H)), (m.util_a, (S, H)), (m.util_b, (S, H)), (prob.haircut, (S, H)),
        (m.price_a, (S, C, H)), (m.price_b, (S, C, H)),
        (prob.principal, (L,)), (prob.dscr_min, (L,)), (prob.ltv_max, (L,)), (load, (L,)),
        (np.sqrt(1.0 - load**2), (L,)), (prob.scrap, (L,)), (prob.cure_capacity, (L,)),
        (np.zeros(L) if prob.rvg is None else prob.rvg, (L,)),
        (prob.reserve_target, (K, L)), (months_first(prob.regular_balance), (K, T, L)),
        (months_first(prob.monthly_rate), (S, T, L)), (months_first(prob.exogenous_threshold), (S, T, L)),
        (months_first(prob.gpus_alive), (H, L)), (months_first(prob.contract_revenue), (H, L)),
        (months_first(prob.merchant_hours), (H, L)), (months_first(prob.value_income), (H, L)),
        (months_first(prob.value_cost), (H, L)),
        (months_first(prob.opex_base), (S, H, L)), (months_first(prob.opex_slope), (S, H, L)),
    ]
    ap = prob.appraisal
    if ap is not None:
        W1 = ap.window + 1
        lags = np.arange(W1, dtype=np.float64)  # h = 0..W: phi^h and psi^h as stress.model.appraisal.expected_prices has them
        reals += [(ap.discount, (C, W1)), (ap.annuity, (C, W1)), (HOURS_PER_MONTH * ap.utilization, (C,)),
                  (ap.opex, (S, C, H + 1)), (ap.life, (L,)), (ap.contract_months, (L,)),
                  (ap.contracted_share, (L,)), (ap.contract_rent, (L,)), (ap.gpus, (L,)),
                  (phi ** lags, (W1,)), (psi[:, None] ** lags[None, :], (C, W1))]
    cp = prob.contracts
    if cp is not None:
        O = cp.drawn
        reals += [(cp.sqrt_rho, (O,)), (cp.loading, (O,)), (cp.loading_c, (O,)), (cp.idio, (O,)),
                  (cp.threshold, (S, O, H)), (cp.price, (L,)), (cp.renewal_prob, (S, L)), (cp.renewal_factor, (L,)),
                  (months_first(cp.hours_on), (H, L)), (months_first(cp.merchant_on), (H, L)),
                  (months_first(cp.merchant_off), (H, L)),
                  (months_first(cp.base_on), (S, H, L)), (months_first(cp.slope_on), (S, H, L)),
                  (months_first(cp.base_off), (S, H, L)), (months_first(cp.slope_off), (S, H, L))]
    borrower = np.zeros(L, dtype=np.int64) if prob.borrower is None else np.argmax(prob.borrower, axis=1)
    facility = np.full(L, -1, dtype=np.int64) if prob.facility_of_loan is None else prob.facility_of_loan
    ints = [(prob.chip_of_loan, (L,)), (prob.refinanced, (L,)), (borrower, (L,)), (prob.tenor, (K, L)), (facility, (L,))]
    if cp is not None:
        ints += [(cp.of_loan, (L,)), (cp.months, (L,)), (cp.renewal_months, (L,)), (cp.forced, (S, cp.drawn))]

    def flat(pieces, dtype):  # each piece copied once, straight into its place (no temporary copies)
        out = np.empty(sum(math.prod(shape) for _, shape in pieces), dtype=dtype)
        at = 0
        for a, shape in pieces:
            a = np.asarray(a)
            assert a.shape == shape, f"Problem array of shape {a.shape}, expected {shape}"
            n = math.prod(shape)
            out[at:at + n].reshape(shape)[...] = a
            at += n
        return out

    return flat(reals, np.float64), flat(ints, np.int32)


_PACKED: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id(Problem) -> pack(Problem), while that Problem lives
_PACKED_LOCK = threading.Lock()


def packed(prob: Problem) -> tuple[np.ndarray, np.ndarray]:
    """``pack(prob)``, computed on the first call for this Problem object and shared (read-only) by
    every later chunk and thread; dropped when the Problem is."""
    key = id(prob)
    with _PACKED_LOCK:
        if key not in _PACKED:
            arrays = pack(prob)
            for a in arrays:
                a.flags.writeable = False
            _PACKED[key] = arrays
            weakref.finalize(prob, _PACKED.pop, key, None)
        return _PACKED[key]


def config_vector(prob: Problem, seed: int, start: int, stop: int, fan_paths: int) -> np.ndarray:
    """engine.cu's ``config`` vector for paths [start, stop); the first ``fan_paths`` paths overall are fan paths."""
    S, K, L = prob.shape
    k0, k1 = rng.seed_key(seed)
    rules = prob.rules
    channels = sum(bit for name, bit in CHANNEL_BITS.items() if getattr(rules, name))
    borrowers = 0 if prob.borrower is None else prob.borrower.shape[1]
    fan = max(0, min(fan_paths, stop) - start)
    return np.array([S, K, L, len(prob.market.chips), prob.market.launch_month.shape[1], borrowers, prob.months,
                     prob.lag, stop - start, start, fan, k0, k1, channels, int(rules.cross_default),
                     rules.cure_months, int(rules.cash_trap), rules.max_cures,
                     0 if prob.appraisal is None else prob.appraisal.every,
                     0 if prob.appraisal is None else prob.appraisal.window, len(prob.facilities),
                     0 if prob.contracts is None else prob.contracts.drawn, int(prob.contracts is not None)],
                    dtype=np.int64)


def _ptr(a):
    return None if a is None or a.size == 0 else a.ctypes.data


def simulate(prob: Problem, seed: int, start: int, stop: int, fan_paths: int, dtype=np.float64,
             keep_paths: bool = False, threads: int = 1) -> ChunkResult:
    """Run paths [start, stop) through the host-compiled kernel; same outputs as stress.engine.montecarlo.simulate.

    ``threads`` emulated CUDA threads (one block) share the work by the kernel's grid-stride loop; they
    run one after the other, so this only exercises the launch geometry, not parallelism.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    if getattr(prob, "importance_sampling", False):
        raise ConfigError("mc.importance_sampling runs on backend=numpy only, not on the kernel engine")
    lib = load()
    P, F = stop - start, max(0, min(fan_paths, stop) - start)
    cfg = config_vector(prob, seed, start, stop, fan_paths)
    reals, ints = packed(prob)
    sizes = np.zeros(4, dtype=np.int64)
    lib.simulate_layout(ctypes.c_void_p(cfg.ctypes.data), ctypes.c_void_p(sizes.ctypes.data))
    assert (sizes[0], sizes[1]) == (reals.size, ints.size), "pack() and engine.cu disagree on the layout"
    scratch = np.empty(int(sizes[2 if dtype == np.float64 else 3]) * threads, dtype=np.uint8)

    out = kernel_outputs(np, prob, P, F, keep_paths)
    kernel = lib.simulate_paths_f64 if dtype == np.float64 else lib.simulate_paths_f32
    kernel.restype = None
    args = [ctypes.c_void_p(_ptr(a)) for a in (cfg, reals, ints, *out.values(), scratch)]
    for thread in range(threads):
        lib.host_set_thread(1, threads, 0, thread)
        kernel(*args)
    return chunk_result(start, out)


def kernel_outputs(xp, prob: Problem, paths: int, fan_paths: int, keep_paths: bool) -> dict:
    """The kernel's output arrays (library ``xp``), in its argument order: accumulators zeroed,
    fans NaN-filled, per-path detail only with ``keep_paths`` (None otherwise)."""
    S, K, L = prob.shape
    C, T, P, F = len(prob.market.chips), prob.months, paths, fan_paths
    return dict(
        loss=xp.zeros((S, K, P)),
        loan_loss=xp.zeros((S, K, L)),
        loan_defaults=xp.zeros((S, K, L), dtype=xp.uint64),
        loan_lgd=xp.zeros((S, K, L)),
        defaulted_exposure=xp.zeros((S, K, T)),
        cause_count=xp.zeros((S, K, N_CAUSES), dtype=xp.uint64),
        price=xp.full((S, F, C, T), xp.nan),
        ltv=xp.full((S, K, F, T), xp.nan),
        dscr=xp.full((S, K, F, T), xp.nan),
        default_month=xp.zeros((S, K, P, L), dtype=xp.int16) if keep_paths else None,
        default_cause=xp.zeros((S, K, P, L), dtype=xp.int8) if keep_paths else None,
        loan_equity=xp.zeros((S, K, L)) if prob.rules.max_cures > 0 else None,
        loan_equity_sq=xp.zeros((S, K, L)) if prob.rules.max_cures > 0 else None,
        loan_equity_lost=xp.zeros((S, K, L)) if prob.rules.max_cures > 0 else None,
        loan_equity_lost_sq=xp.zeros((S, K, L)) if prob.rules.max_cures > 0 else None,
        facility_loss=xp.zeros((S, K, P, len(prob.facilities))) if prob.facilities else None,
        offtaker_defaults=(xp.zeros((S, K, prob.contracts.drawn), dtype=xp.uint64)
                           if prob.contracts is not None else None),
    )


def chunk_result(start: int, out: dict) -> ChunkResult:
    """The kernel's outputs (numpy arrays) as a ChunkResult."""
    counts = {name: out[name].astype(np.int64) for name in ("loan_defaults", "cause_count", "offtaker_defaults")
              if out[name] is not None}
    return ChunkResult(start=start, **{**out, **counts})


def simulate_threads(prob: Problem, seed: int, start: int, stop: int, fan_paths: int, dtype=np.float64,
                     keep_paths: bool = False, workers: int | None = None) -> list[ChunkResult]:
    """``backend=host``: paths [start, stop) split into one contiguous range per worker thread,
    each run by the host-compiled kernel (ctypes releases the GIL, so the threads run in parallel).
    Returns the ranges' results in path order, for ``results.combine``."""
    workers = max(1, min(workers or os.cpu_count() or 1, stop - start))
    edges = np.linspace(start, stop, workers + 1).astype(int)
    load()  # compile once, before the threads start
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = [pool.submit(simulate, prob, seed, int(a), int(b), fan_paths, dtype, keep_paths)
                for a, b in zip(edges[:-1], edges[1:]) if b > a]
        return [job.result() for job in jobs]


def kernel_hash() -> str:
    """SHA-256 over the kernel sources shipped with the package ('none' when there are none)."""
    root = conf_dir().parent / "kernels"
    files = sorted(root.glob("*.cu*")) + sorted(root.glob("*.h"))
    if not files:
        return "none"
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]
