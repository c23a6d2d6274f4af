// Test entries for philox.cuh: the raw Philox4x32-10 block (known-answer vectors) and the numbers
// of the project's stream layout, for comparison with stress/model/rng.py (tests/test_kernels.py).
// Grid-stride loops, so any launch geometry (or the host build's single thread) covers all n items.

#include "philox.cuh"

// words[i] = Philox4x32-10 of counter/key input[i] = (c0, c1, c2, c3, k0, k1).
extern "C" __global__ void philox_words(const unsigned* input, unsigned* words, long long n) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    const unsigned* x = input + 6 * i;
    const philox::Words w = philox::philox4x32_10(x[0], x[1], x[2], x[3], philox::Key{x[4], x[5]});
    for (int lane = 0; lane < 4; ++lane) words[4 * i + lane] = w.w[lane];
  }
}

// For each tuple (path, month, stream, index): the uniform and the normal at that position, and the
// normal again through normals4 (the engine's block-at-a-time path).
extern "C" __global__ void philox_numbers(unsigned long long seed, const long long* tuples, double* uniforms,
                                          double* normals, double* block_normals, long long n) {
  const philox::Key key = philox::seed_key(seed);
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    const long long* q = tuples + 4 * i;
    const unsigned month = unsigned(q[1]), stream = unsigned(q[2]), index = unsigned(q[3]);
    uniforms[i] = philox::uniform_at(key, (unsigned long long)q[0], month, stream, index);
    normals[i] = philox::normal_at(key, (unsigned long long)q[0], month, stream, index);
    double z[4];
    philox::normals4(key, (unsigned long long)q[0], month, stream, index / 4, z);
    block_normals[i] = z[index % 4];
  }
}
