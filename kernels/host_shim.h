// Host shim: lets the CUDA sources in kernels/ compile as plain C++17 with g++, for CPU parity
// tests against the numpy engine. Force-included by stress/engine/hostkernel.py:
//     g++ -O2 -std=c++17 -shared -fPIC -x c++ -include kernels/host_shim.h kernels/engine.cu
// A __global__ kernel becomes an ordinary extern "C" function that runs ONE CUDA thread: the
// thread's indices are thread-local globals set by host_set_thread() below, so a caller emulates a
// launch <<<grid, block>>> by calling host_set_thread and the kernel for every (block, thread),
// one after the other. The kernels' grid-stride loops do the rest; atomicAdd is a plain add.
#pragma once
#ifndef __CUDACC__

#include <cmath>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

// CUDA declares the float and double overloads of the math functions in the global namespace.
using std::cos;
using std::exp;
using std::log;
using std::pow;
using std::sin;
using std::sqrt;

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};

// One-dimensional launch geometry of the thread being run; the default is a single thread.
// thread_local: several OS threads may each run kernel calls at once (stress.engine.hostkernel.simulate_threads).
static thread_local dim3 gridDim, blockDim;
static thread_local uint3 blockIdx, threadIdx;

extern "C" void host_set_thread(unsigned grid_dim, unsigned block_dim, unsigned block_idx, unsigned thread_idx) {
  gridDim.x = grid_dim;
  blockDim.x = block_dim;
  blockIdx.x = block_idx;
  threadIdx.x = thread_idx;
}

// Threads run one after the other, so an atomic add is an add.
template <typename V>
inline V atomicAdd(V* address, V value) {
  const V old = *address;
  *address = old + value;
  return old;
}

#endif  // __CUDACC__
