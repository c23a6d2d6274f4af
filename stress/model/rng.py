"""Philox4x32-10 counter-based random numbers and the project's stream layout.

Philox4x32-10 is from Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as
1, 2, 3", SC 2011 (the Random123 library); ``kernels/philox.cuh`` is the same generator on the
GPU. Every function takes the array module ``xp`` (numpy or cupy) and uses only operations both
have, so a given (seed, path, month, stream, index) gives bit-identical uniforms on either.

Key = the 64-bit seed as (low word, high word). Counter = (path, month, stream, index // 4);
the number at ``index`` comes from lane ``index % 4`` of that counter's output block.
"""

from __future__ import annotations

import math

STREAM_DEMAND = 0  # demand factor
STREAM_PRICE = 1  # chip price noise, index = chip
STREAM_UTILIZATION = 2  # utilisation noise, index = loan
STREAM_COPULA_IDIO = 3  # copula idiosyncratic, month 0, index = loan
STREAM_COPULA_SYS = 4  # copula systematic, month 0, index 0
STREAM_LAUNCH = 5  # launch jitter (a uniform), month 0, index = launch event
STREAM_OFFTAKER = 6  # offtaker idiosyncratic normal, month 0, index = offtaker
STREAM_RENEWAL = 7  # contract renewal (a uniform), month = the contract's last month, index = loan

_MASK32 = 0xFFFFFFFF
_M0, _M1 = 0xD2511F53, 0xCD9E8D57  # round multipliers (Random123 PHILOX_M4x32_0, _1)
_W0, _W1 = 0x9E3779B9, 0xBB67AE85  # key bumps (golden ratio, sqrt(3) - 1)
_ROUNDS = 10
_U32_SCALE = 2.0**-32
_TWO_PI = 2.0 * math.pi


def seed_key(seed: int) -> tuple[int, int]:
    """64-bit seed -> (key0, key1) = (low word, high word)."""
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return seed & _MASK32, seed >> 32


def _u32(xp, value):
    """An integer, or array of integers below 2**32, as a uint32 array."""
    return xp.asarray(value).astype(xp.uint32, copy=False)


def philox4x32(xp, c0, c1, c2, c3, k0: int, k1: int):
    """Philox4x32-10 block: counters (uint32 arrays, broadcastable) and key words -> four uint32 output words.

    Each round: (hi0, lo0) = mulhilo(M0, c0), (hi1, lo1) = mulhilo(M1, c2),
    c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0); the key is bumped by (W0, W1) between rounds.
    mulhilo is one uint64 product: hi = product >> 32, lo = its low 32 bits.
    All work is in place in a few preallocated buffers.
    """
    counters = xp.broadcast_arrays(_u32(xp, c0), _u32(xp, c1), _u32(xp, c2), _u32(xp, c3))
    shape = counters[0].shape
    x0, x1, x2, x3 = (xp.empty(shape, dtype=xp.uint32) for _ in range(4))
    for x, c in zip((x0, x1, x2, x3), counters):
        x[...] = c
    p0, p1 = xp.empty(shape, dtype=xp.uint64), xp.empty(shape, dtype=xp.uint64)
    hi = xp.empty(shape, dtype=xp.uint32)
    m0, m1, shift = xp.uint64(_M0), xp.uint64(_M1), xp.uint64(32)
    for r in range(_ROUNDS):
        p0[...] = x0
        p0 *= m0
        p1[...] = x2
        p1 *= m1
        x0[...] = p0  # lo0 (narrowing keeps the low 32 bits); becomes word 3
        x2[...] = p1  # lo1; becomes word 1
        p0 >>= shift
        p1 >>= shift
        x3 ^= xp.uint32((k1 + r * _W1) & _MASK32)
        hi[...] = p0
        x3 ^= hi  # hi0 ^ c3 ^ k1; becomes word 2
        x1 ^= xp.uint32((k0 + r * _W0) & _MASK32)
        hi[...] = p1
        x1 ^= hi  # hi1 ^ c1 ^ k0; becomes word 0
        x0, x1, x2, x3 = x1, x2, x3, x0
    return x0, x1, x2, x3


def _block(xp, seed: int, path, month, stream: int, block):
    """The four output words of the block at counter (path, month, stream, block)."""
    k0, k1 = seed_key(seed)
    return philox4x32(xp, path, month, stream, block, k0, k1)


def _uniform(xp, x):
    """uint32 word -> float64 uniform (x + 0.5) * 2**-32, strictly inside (0, 1)."""
    u = x.astype(xp.float64)
    u += 0.5
    u *= _U32_SCALE
    return u


def _box_muller(xp, ua, ub):
    """Box-Muller pair: (sqrt(-2 ln ua) cos(2 pi ub), sqrt(-2 ln ua) sin(2 pi ub))."""
    ua, ub = xp.atleast_1d(ua), xp.atleast_1d(ub)  # in-place ufuncs need arrays, not 0-d scalars
    radius = xp.log(ua)
    radius *= -2.0
    xp.sqrt(radius, out=radius)
    theta = ub * _TWO_PI
    cos_term = xp.cos(theta)
    cos_term *= radius
    sin_term = xp.sin(theta, out=theta)
    sin_term *= radius
    return cos_term, sin_term


def uniforms(xp, seed: int, path, month, stream: int, index):
    """float64 uniforms in (0, 1): (x + 0.5) * 2**-32 of lane index % 4 of the block at counter
    (path, month, stream, index // 4). path, month and index broadcast (integer arrays or ints)."""
    index = xp.asarray(index)
    lane = index % 4
    x0, x1, x2, x3 = _block(xp, seed, path, month, stream, index // 4)
    return _uniform(xp, xp.where(lane == 0, x0, xp.where(lane == 1, x1, xp.where(lane == 2, x2, x3))))


def normals(xp, seed: int, path, month, stream: int, index):
    """float64 standard normals by Box-Muller on lane pairs (0, 1) and (2, 3) of the block at counter
    (path, month, stream, index // 4): lanes 0 and 2 take the cosine, lanes 1 and 3 the sine."""
    index = xp.asarray(index)
    lane = index % 4
    x0, x1, x2, x3 = _block(xp, seed, path, month, stream, index // 4)
    first_pair = lane < 2
    ua = _uniform(xp, xp.where(first_pair, x0, x2))
    ub = _uniform(xp, xp.where(first_pair, x1, x3))
    cos_term, sin_term = _box_muller(xp, ua, ub)
    return xp.where(lane % 2 == 0, cos_term, sin_term).reshape(ua.shape)


def normals_block(xp, seed: int, path, month, stream: int, count: int):
    """Standard normals for indices 0..count-1 at each path, shape broadcast(path, month).shape + (count,).

    Each Philox block is computed once and all its lanes are used (the second pair is skipped when
    count <= 2); equal to ``normals`` at the same indices exactly. This is the engine's fast path
    (e.g. one normal per loan per path).
    """
    n_blocks = -(-count // 4)
    path = xp.asarray(path)[..., None]
    month = xp.asarray(month)[..., None]
    blocks = xp.arange(n_blocks, dtype=xp.uint32)
    x0, x1, x2, x3 = _block(xp, seed, path, month, stream, blocks)
    lanes = _box_muller(xp, _uniform(xp, x0), _uniform(xp, x1))
    if count > 2:
        lanes += _box_muller(xp, _uniform(xp, x2), _uniform(xp, x3))
    z = xp.stack(lanes, axis=-1)
    return z.reshape(z.shape[:-2] + (n_blocks * len(lanes),))[..., :count]
