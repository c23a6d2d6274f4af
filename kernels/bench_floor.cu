// Floor kernel of benchmarks/bench_gpu.py: the random-number work of the engine and nothing else.
// One thread per (scenario, path), like simulate_paths: for every month it draws the loans'
// utilisation normals (stream 2, the engine's largest random draw) from their Philox counters and
// sums them, so the engine's time over this kernel's is the cost of the model beyond its RNG.

#include "philox.cuh"

extern "C" __global__ void philox_floor(long long scenarios, long long paths, int months, int loans,
                                        unsigned long long seed, double* out) {
  const philox::Key key = philox::seed_key(seed);
  const long long n_threads = (long long)gridDim.x * blockDim.x;
  for (long long w = (long long)blockIdx.x * blockDim.x + threadIdx.x; w < scenarios * paths; w += n_threads) {
    const unsigned long long path = (unsigned long long)(w % paths);
    double sum = 0.0, z[4];
    for (int t = 1; t <= months; ++t)
      for (int block = 0; block < (loans + 3) / 4; ++block) {
        philox::normals4(key, path, (unsigned)t, philox::STREAM_UTILIZATION, (unsigned)block, z);
        sum += z[0] + z[1] + z[2] + z[3];
      }
    out[w] = sum;
  }
}
