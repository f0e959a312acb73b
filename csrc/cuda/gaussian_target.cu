// CUDA kernels of gaussian_target. Statistics, unless given: each block sums one
// chunk of one group in double (shifted by the group's first element), a second
// kernel adds each group's chunks in order and writes mu and sigma to device
// memory; the generator reads them there, so nothing waits on the host. The
// generator is grid-stride, each thread drawing kPerThread consecutive elements.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "cuda/cuda_utils.cuh"
#include "kernel_math.h"
#include "op_host.h"
#include "philox.h"

namespace l2l_fast {
namespace {

using cuda::block_sum;

constexpr int kThreads = 256;
constexpr int64_t kStatsChunk = 16384;  // elements of a group per block
constexpr int kPerThread = 4;
constexpr int64_t kMaxBlocks = 65536;

// A group's elements: `reps` runs of `run` consecutive elements, `run_stride`
// apart, the first at g * group_stride.
struct GroupLayout {
  int64_t groups;
  int64_t count;  // elements per group
  int64_t run;
  int64_t run_stride;
  int64_t group_stride;
};

GroupLayout group_layout(Stats stats, const BCS& v) {
  const int64_t numel = v.b * v.c * v.s;
  switch (stats) {
    case Stats::kSample:
      return {v.b, v.c * v.s, v.c * v.s, 0, v.c * v.s};
    case Stats::kChannel:
      return {v.c, v.b * v.s, v.s, v.c * v.s, v.s};
    default:
      return {1, numel, numel, 0, 0};
  }
}

__device__ __forceinline__ int64_t group_index(const GroupLayout& l, int64_t g, int64_t k) {
  const int64_t first = g * l.group_stride;
  if (l.run == l.count) {
    return first + k;
  }
  return first + (k / l.run) * l.run_stride + k % l.run;
}

// partial[2 * block] = (sum (x - x0), sum (x - x0)^2) over one chunk of one
// group, x0 the group's first element.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    stats_partial_kernel(const T* x, const GroupLayout l, int64_t chunks, double* partial) {
  const int64_t g = blockIdx.x / chunks;
  const int64_t begin = (blockIdx.x % chunks) * kStatsChunk;
  const int64_t end = begin + kStatsChunk < l.count ? begin + kStatsChunk : l.count;
  const double shift = static_cast<double>(x[g * l.group_stride]);
  double sum = 0.0;
  double sq = 0.0;
  for (int64_t k = begin + threadIdx.x; k < end; k += kThreads) {
    const double d = static_cast<double>(x[group_index(l, g, k)]) - shift;
    sum += d;
    sq += d * d;
  }
  sum = block_sum(sum);
  sq = block_sum(sq);
  if (threadIdx.x == 0) {
    partial[2 * blockIdx.x] = sum;
    partial[2 * blockIdx.x + 1] = sq;
  }
}

// mu[g], sigma[g] (unbiased, 0 below 2 elements) from the chunk sums.
template <typename T>
__global__ void stats_finalize_kernel(const T* x, const GroupLayout l, int64_t chunks,
                                      const double* partial, float* mu, float* sigma) {
  const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (g >= l.groups) {
    return;
  }
  double sum = 0.0;
  double sq = 0.0;
  for (int64_t k = 0; k < chunks; ++k) {
    sum += partial[2 * (g * chunks + k)];
    sq += partial[2 * (g * chunks + k) + 1];
  }
  const MeanStd ms = mean_std_from_sums(static_cast<double>(x[g * l.group_stride]), sum, sq,
                                        static_cast<double>(l.count));
  mu[g] = ms.mu;
  sigma[g] = ms.sigma;
}

struct DrawArgs {
  uint64_t seed;
  uint64_t offset;
  int64_t numel;
  int64_t c;
  int64_t s;
  const float* mu;  // per group, or nullptr for the standard normal
  const float* sigma;
  int32_t stats_mode;  // 0 batch, 1 sample, 2 channel
  float lo;
  float hi;
  float fill;
  int64_t keep_strides[3];
};

template <int kSize, typename T>
struct alignas(kSize * sizeof(T)) PackN {
  T v[kSize];
};

// K is the keep dtype; with kKeep false, keep is unused.
template <typename T, typename K, bool kKeep>
__global__ void __launch_bounds__(kThreads)
    generate_kernel(T* out, const K* keep, const DrawArgs a) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads * kPerThread;
  for (int64_t i0 = (blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x) * kPerThread;
       i0 < a.numel; i0 += stride) {
    const int64_t row = i0 / a.s;
    int64_t col = i0 - row * a.s;
    int64_t b = row / a.c;
    int64_t c = row - b * a.c;
    PackN<kPerThread, T> pack;
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int64_t i = i0 + j;
      if (i < a.numel) {
        float mu = 0.0f;
        float sigma = 1.0f;
        if (a.mu != nullptr) {
          const int64_t g = a.stats_mode == 0 ? 0 : a.stats_mode == 1 ? b : c;
          mu = a.mu[g];
          sigma = a.sigma[g];
        }
        const float z = philox_normal(a.seed, a.offset + static_cast<uint64_t>(i));
        float noise = clamped_noise(mu, sigma, z, a.lo, a.hi);
        if constexpr (kKeep) {
          const float k = static_cast<float>(
              keep[b * a.keep_strides[0] + c * a.keep_strides[1] + col * a.keep_strides[2]]);
          noise = blend_keep(k, noise, a.fill);
        }
        pack.v[j] = static_cast<T>(noise);
      }
      if (++col == a.s) {
        col = 0;
        if (++c == a.c) {
          c = 0;
          ++b;
        }
      }
    }
    if (i0 + kPerThread <= a.numel) {
      *reinterpret_cast<PackN<kPerThread, T>*>(out + i0) = pack;
    } else {
      for (int j = 0; i0 + j < a.numel; ++j) {
        out[i0 + j] = pack.v[j];
      }
    }
  }
}

// Sets call.mu and call.sigma from x: per-chunk sums, then one thread per group.
template <typename T>
void launch_statistics(GaussianCall& call, cudaStream_t stream) {
  const GroupLayout l = group_layout(call.stats, call.v);
  const int64_t chunks = (l.count + kStatsChunk - 1) / kStatsChunk;
  const auto opts = call.x.options();
  at::Tensor partial = at::empty({2 * l.groups * chunks}, opts.dtype(at::kDouble));
  call.mu = at::empty({l.groups}, opts.dtype(at::kFloat));
  call.sigma = at::empty({l.groups}, opts.dtype(at::kFloat));
  const T* x = call.x.const_data_ptr<T>();
  stats_partial_kernel<T><<<static_cast<unsigned>(l.groups * chunks), kThreads, 0, stream>>>(
      x, l, chunks, partial.mutable_data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  stats_finalize_kernel<T><<<static_cast<unsigned>((l.groups + kThreads - 1) / kThreads), kThreads, 0,
                             stream>>>(x, l, chunks, partial.const_data_ptr<double>(),
                                       call.mu.mutable_data_ptr<float>(),
                                       call.sigma.mutable_data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void launch_gaussian_target(GaussianCall& call) {
  const c10::cuda::CUDAGuard guard(call.x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  DrawArgs a{};
  a.seed = call.seed;
  a.offset = call.offset;
  a.numel = call.x.numel();
  a.c = call.v.c;
  a.s = call.v.s;
  a.stats_mode = call.stats == Stats::kBatch ? 0 : call.stats == Stats::kSample ? 1 : 2;
  a.lo = call.lo;
  a.hi = call.hi;
  a.fill = call.fill;
  const bool has_keep = call.keep.defined();
  if (has_keep) {
    for (int d = 0; d < 3; ++d) {
      a.keep_strides[d] = call.keep.stride(d);
    }
  }

  const int64_t packs = (a.numel + kPerThread - 1) / kPerThread;
  const int blocks = static_cast<int>(std::min<int64_t>((packs + kThreads - 1) / kThreads, kMaxBlocks));
  L2L_DISPATCH_FLOAT(call.x.scalar_type(), "gaussian_target", [&] {
    using T = scalar_t;
    if (call.stats != Stats::kStandard && !call.mu.defined()) {
      launch_statistics<T>(call, stream);
    }
    if (call.mu.defined()) {
      a.mu = call.mu.const_data_ptr<float>();
      a.sigma = call.sigma.const_data_ptr<float>();
    }
    T* o = call.out.mutable_data_ptr<T>();
    if (!has_keep) {
      generate_kernel<T, float, false><<<blocks, kThreads, 0, stream>>>(o, nullptr, a);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    AT_DISPATCH_ALL_TYPES_AND3(at::kBool, at::kHalf, at::kBFloat16, call.keep.scalar_type(),
                               "gaussian_target_keep", [&] {
      generate_kernel<T, scalar_t, true><<<blocks, kThreads, 0, stream>>>(
          o, call.keep.const_data_ptr<scalar_t>(), a);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(l2l_fast, CUDA, m) {
  m.impl("gaussian_target", &gaussian_target_op<launch_gaussian_target>);
}

}  // namespace l2l_fast
