// Philox4x32-10 counter-based random numbers and the project's stream layout, for the GPU
// (nvcc, NVRTC) and for the host build (g++ with host_shim.h). Mirror of stress/model/rng.py: a given
// (seed, path, month, stream, index) gives the same 32-bit words, hence bit-identical uniforms.
//
// Philox4x32-10 is from Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011 (the Random123 library). Key = the 64-bit seed as (low word, high word). Counter =
// (path, month, stream, index / 4); the number at `index` comes from lane index % 4 of that block.
// Uniform u = (x + 0.5) 2^-32, strictly inside (0, 1). Normals by Box-Muller on the lane pairs
// (0, 1) and (2, 3): lanes 0 and 2 take sqrt(-2 ln u_a) cos(2 pi u_b), lanes 1 and 3 the sine.
//
// Normals go through log, cos and sin, so they are bit-identical to stress.model.rng only where the math
// libraries agree (glibc and numpy's SIMD log can differ in the last bit; CUDA's differ too): the
// model tolerates that, the tests quantify it. No standard header is included, so that NVRTC
// compiles this file as it is.
#pragma once

namespace philox {

// Streams, the third counter word.
enum Stream : unsigned {
  STREAM_DEMAND = 0,       // demand factor, index 0
  STREAM_PRICE = 1,        // chip price noise, index = chip
  STREAM_UTILIZATION = 2,  // utilisation noise, index = loan
  STREAM_COPULA_IDIO = 3,  // copula idiosyncratic, month 0, index = loan
  STREAM_COPULA_SYS = 4,   // copula systematic, month 0, index 0
  STREAM_LAUNCH = 5,       // launch jitter (a uniform), month 0, index = launch event
  STREAM_OFFTAKER = 6,     // offtaker idiosyncratic normal, month 0, index = offtaker
  STREAM_RENEWAL = 7,      // contract renewal (a uniform), month = the contract's last month, index = loan
};

constexpr unsigned M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;  // round multipliers (PHILOX_M4x32_0, _1)
constexpr unsigned W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;  // key bumps (golden ratio, sqrt(3) - 1)
constexpr int ROUNDS = 10;
constexpr double U32_SCALE = 0x1p-32;          // 2^-32
constexpr double TWO_PI = 6.283185307179586;   // 2.0 * math.pi as rng.py rounds it

struct Words {
  unsigned w[4];
};

// The 64-bit seed as a key: (low word, high word).
struct Key {
  unsigned k0, k1;
};

__host__ __device__ __forceinline__ Key seed_key(unsigned long long seed) {
  return Key{static_cast<unsigned>(seed & 0xFFFFFFFFull), static_cast<unsigned>(seed >> 32)};
}

// One Philox4x32-10 block. Each round: (hi0, lo0) = M0 c0, (hi1, lo1) = M1 c2 (32 x 32 -> 64 bits),
// c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0); the key is bumped by (W0, W1) between rounds.
__host__ __device__ __forceinline__ Words philox4x32_10(unsigned c0, unsigned c1, unsigned c2, unsigned c3,
                                                        Key key) {
  unsigned k0 = key.k0, k1 = key.k1;
  for (int r = 0; r < ROUNDS; ++r) {
    const unsigned long long p0 = static_cast<unsigned long long>(M0) * c0;
    const unsigned long long p1 = static_cast<unsigned long long>(M1) * c2;
    const unsigned hi0 = static_cast<unsigned>(p0 >> 32), lo0 = static_cast<unsigned>(p0);
    const unsigned hi1 = static_cast<unsigned>(p1 >> 32), lo1 = static_cast<unsigned>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += W0;
    k1 += W1;
  }
  return Words{{c0, c1, c2, c3}};
}

// The block at counter (path, month, stream, block); path is truncated to 32 bits as rng.py does.
__host__ __device__ __forceinline__ Words block(Key key, unsigned long long path, unsigned month, unsigned stream,
                                                unsigned blk) {
  return philox4x32_10(static_cast<unsigned>(path), month, stream, blk, key);
}

// uint32 word -> uniform (x + 0.5) 2^-32 (exact in float64: 33 significant bits).
__host__ __device__ __forceinline__ double uniform(unsigned x) {
  return (static_cast<double>(x) + 0.5) * U32_SCALE;
}

// Box-Muller pair in rng._box_muller's order of operations: r = sqrt(log(ua) * -2),
// (cos(ub 2 pi) r, sin(ub 2 pi) r).
__host__ __device__ __forceinline__ void box_muller(unsigned xa, unsigned xb, double& z_cos, double& z_sin) {
  const double radius = sqrt(log(uniform(xa)) * -2.0);
  const double theta = uniform(xb) * TWO_PI;
  z_cos = cos(theta) * radius;
  z_sin = sin(theta) * radius;
}

// Uniform at (path, month, stream, index): lane index % 4 of block index / 4.
__host__ __device__ __forceinline__ double uniform_at(Key key, unsigned long long path, unsigned month,
                                                      unsigned stream, unsigned index) {
  const Words x = block(key, path, month, stream, index / 4);
  return uniform(x.w[index % 4]);
}

// Normal at (path, month, stream, index), as rng.normals.
__host__ __device__ __forceinline__ double normal_at(Key key, unsigned long long path, unsigned month,
                                                     unsigned stream, unsigned index) {
  const Words x = block(key, path, month, stream, index / 4);
  const unsigned lane = index % 4, pair = lane & 2u;
  double z_cos, z_sin;
  box_muller(x.w[pair], x.w[pair + 1], z_cos, z_sin);
  return (lane & 1u) ? z_sin : z_cos;
}

// The four normals of block `blk` (indices 4 blk .. 4 blk + 3), as rng.normals_block.
__host__ __device__ __forceinline__ void normals4(Key key, unsigned long long path, unsigned month, unsigned stream,
                                                  unsigned blk, double z[4]) {
  const Words x = block(key, path, month, stream, blk);
  box_muller(x.w[0], x.w[1], z[0], z[1]);
  box_muller(x.w[2], x.w[3], z[2], z[3]);
}

}  // namespace philox
