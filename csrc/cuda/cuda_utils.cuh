// Block reductions and 16-byte vector access shared by the CUDA kernels.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

namespace l2l_fast::cuda {

constexpr int kWarp = 32;

// Sum over the block, valid in thread 0. blockDim.x must be a multiple of 32;
// every thread of the block must call it.
template <typename A>
__device__ __forceinline__ A block_sum(A v) {
  __shared__ A warp_sums[kWarp];
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2) {
    v += __shfl_down_sync(0xffffffffu, v, o);
  }
  if (lane == 0) {
    warp_sums[warp] = v;
  }
  __syncthreads();
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x / kWarp) ? warp_sums[lane] : A(0);
#pragma unroll
    for (int o = kWarp / 2; o > 0; o /= 2) {
      v += __shfl_down_sync(0xffffffffu, v, o);
    }
  }
  __syncthreads();
  return v;
}

// kPack elements of T in one 16-byte load or store.
template <typename T>
struct alignas(16) Pack16 {
  static constexpr int kSize = 16 / sizeof(T);
  T v[kSize];
};

template <typename T>
__device__ __forceinline__ Pack16<T> load16(const T* p) {
  const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
  Pack16<T> out;
  memcpy(&out, &raw, sizeof(raw));
  return out;
}

template <typename T>
__device__ __forceinline__ void store16(T* p, const Pack16<T>& v) {
  uint4 raw;
  memcpy(&raw, &v, sizeof(raw));
  *reinterpret_cast<uint4*>(p) = raw;
}

inline bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

}  // namespace l2l_fast::cuda
