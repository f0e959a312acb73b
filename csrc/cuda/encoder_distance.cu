// CUDA kernels of encoder_distance, encoder_distance_multi and scale_rows.
//
// One launch covers every map: the maps' pointers and sizes travel in a
// by-value kernel argument (up to kMaxMaps maps; more are done kMaxMaps at a
// time). Each block reduces one chunk of one (map, row) with 16-byte loads
// where the data is aligned; for "mse" it writes the gradient in the same pass.
// A second kernel combines the chunk sums of each row in a fixed order (no
// atomics: the result is deterministic). For "l2" with a gradient, a third
// kernel writes w * (s - t) / ||s - t|| once the norms are known.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "cuda/cuda_utils.cuh"
#include "kernel_math.h"
#include "op_host.h"

namespace l2l_fast {
namespace {

using cuda::block_sum;
using cuda::load16;
using cuda::Pack16;
using cuda::store16;

constexpr int kThreads = 256;
constexpr int64_t kChunk = 8192;  // elements of a row per block
constexpr int kMaxMaps = 32;

enum DType : int32_t { kF32 = 0, kBF16 = 1, kF16 = 2 };

struct MapArgs {
  const void* s;
  const void* t;
  void* g;             // gradient, or nullptr
  int64_t n;           // elements per row
  int64_t first_item;  // first block of this map
  int32_t chunks;      // blocks per row
  int32_t dtype;
  int32_t vec;         // 16-byte accesses allowed
};

struct MapBatch {
  MapArgs maps[kMaxMaps];
  int32_t num_maps;
};

struct Item {
  int m;
  int64_t row;
  int64_t begin;
  int64_t end;
};

__device__ __forceinline__ Item locate(const MapBatch& batch, int64_t item) {
  int m = batch.num_maps - 1;
  while (m > 0 && batch.maps[m].first_item > item) {
    --m;
  }
  const MapArgs& a = batch.maps[m];
  const int64_t local = item - a.first_item;
  const int64_t row = local / a.chunks;
  const int64_t begin = (local % a.chunks) * kChunk;
  return {m, row, begin, begin + kChunk < a.n ? begin + kChunk : a.n};
}

// 16-byte packs each thread loads before it uses any, to keep enough loads in
// flight for the memory system.
constexpr int kUnroll = 4;
constexpr int kMinBlocksPerSm = 3;

// Over [begin, end) of one row: returns this thread's share of sum (s - t)^2;
// with kWrite, writes g = scale * (s - t) (also the "l2" gradient, its sum unused).
template <typename T, bool kWrite>
__device__ float chunk_sum(const T* s, const T* t, T* g, int64_t begin, int64_t end, float scale,
                           bool vec) {
  float acc = 0.0f;
  if (vec) {
    constexpr int kPack = Pack16<T>::kSize;
    constexpr int64_t kStep = kThreads * kPack;
    for (int64_t i0 = begin + threadIdx.x * kPack; i0 < end; i0 += kStep * kUnroll) {
      Pack16<T> a[kUnroll];
      Pack16<T> b[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (i0 + u * kStep < end) {
          a[u] = load16(s + i0 + u * kStep);
          b[u] = load16(t + i0 + u * kStep);
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (i0 + u * kStep < end) {
          [[maybe_unused]] Pack16<T> out;
#pragma unroll
          for (int k = 0; k < kPack; ++k) {
            const float d = static_cast<float>(a[u].v[k]) - static_cast<float>(b[u].v[k]);
            acc += d * d;
            if constexpr (kWrite) {
              out.v[k] = static_cast<T>(d * scale);
            }
          }
          if constexpr (kWrite) {
            store16(g + i0 + u * kStep, out);
          }
        }
      }
    }
    return acc;
  }
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    const float d = static_cast<float>(s[i]) - static_cast<float>(t[i]);
    acc += d * d;
    if constexpr (kWrite) {
      g[i] = static_cast<T>(d * scale);
    }
  }
  return acc;
}

template <bool kWrite>
__device__ float item_sum(const MapArgs& a, const Item& it, float scale) {
  const int64_t base = it.row * a.n;
  switch (a.dtype) {
    case kF32:
      return chunk_sum<float, kWrite>(static_cast<const float*>(a.s) + base,
                                      static_cast<const float*>(a.t) + base,
                                      static_cast<float*>(a.g) + base, it.begin, it.end, scale, a.vec);
    case kBF16:
      return chunk_sum<c10::BFloat16, kWrite>(
          static_cast<const c10::BFloat16*>(a.s) + base, static_cast<const c10::BFloat16*>(a.t) + base,
          static_cast<c10::BFloat16*>(a.g) + base, it.begin, it.end, scale, a.vec);
    default:  // kF16
      return chunk_sum<c10::Half, kWrite>(
          static_cast<const c10::Half*>(a.s) + base, static_cast<const c10::Half*>(a.t) + base,
          static_cast<c10::Half*>(a.g) + base, it.begin, it.end, scale, a.vec);
  }
}

// partial[item] = sum (s - t)^2 over the item's chunk; with kMseGrad also
// g = (2 w / n) * (s - t).
template <bool kMseGrad>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm)
    distance_partial_kernel(const MapBatch batch, const float* weight, float* partial) {
  const int64_t item = blockIdx.x;
  const Item it = locate(batch, item);
  const MapArgs& a = batch.maps[it.m];
  float acc;
  if constexpr (kMseGrad) {
    const float w = weight != nullptr ? weight[it.row] : 1.0f;
    acc = item_sum<true>(a, it, 2.0f * w / static_cast<float>(a.n));
  } else {
    acc = item_sum<false>(a, it, 0.0f);
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) {
    partial[item] = acc;
  }
}

// out[b] (+)= sum_m w[b] * d_m[b], the chunk sums of each row added in order;
// row_scale[m * rows + b] = w[b] / ||s_m[b] - t_m[b]|| (0 for a zero norm).
__global__ void distance_finalize_kernel(const MapBatch batch, const float* weight,
                                         const float* partial, float* out, float* row_scale,
                                         int64_t rows, bool l2, bool accumulate) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= rows) {
    return;
  }
  const float w = weight != nullptr ? weight[b] : 1.0f;
  float total = accumulate ? out[b] : 0.0f;
  for (int m = 0; m < batch.num_maps; ++m) {
    const MapArgs& a = batch.maps[m];
    const float* part = partial + a.first_item + b * a.chunks;
    double sum = 0.0;
    for (int k = 0; k < a.chunks; ++k) {
      sum += part[k];
    }
    const RowDistance row = finalize_row(sum, a.n, w, l2);
    total += row.value;
    if (row_scale != nullptr) {
      row_scale[m * rows + b] = row.grad_scale;
    }
  }
  out[b] = total;
}

// g = row_scale * (s - t) over the item's chunk.
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm)
    scaled_difference_kernel(const MapBatch batch, const float* row_scale, int64_t rows) {
  const Item it = locate(batch, blockIdx.x);
  item_sum<true>(batch.maps[it.m], it, row_scale[it.m * rows + it.row]);
}

DType dtype_code(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return kF32;
    case at::kBFloat16: return kBF16;
    default: return kF16;
  }
}

void distance_rows(DistanceCall& call) {
  const c10::cuda::CUDAGuard guard(call.out.device());
  const int64_t num_maps = static_cast<int64_t>(call.maps.size());
  const int64_t rows = call.batch;
  const bool l2 = call.l2;
  const bool grad = call.grad;
  at::Tensor& out = call.out;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const float* w = call.weight.defined() ? call.weight.const_data_ptr<float>() : nullptr;

  std::vector<MapBatch> batches;
  std::vector<int64_t> batch_items;
  int64_t items = 0;
  for (int64_t m0 = 0; m0 < num_maps; m0 += kMaxMaps) {
    MapBatch batch{};
    batch.num_maps = static_cast<int32_t>(std::min<int64_t>(kMaxMaps, num_maps - m0));
    const int64_t first = items;
    for (int32_t j = 0; j < batch.num_maps; ++j) {
      const DistanceMap& mt = call.maps[m0 + j];
      MapArgs& a = batch.maps[j];
      a.s = mt.student.const_data_ptr();
      a.t = mt.target.const_data_ptr();
      a.g = grad ? mt.grad.mutable_data_ptr() : nullptr;
      a.n = mt.student.numel() / rows;
      a.chunks = static_cast<int32_t>((a.n + kChunk - 1) / kChunk);
      a.first_item = items - first;
      a.dtype = dtype_code(mt.student.scalar_type());
      const int64_t pack = 16 / mt.student.element_size();
      a.vec = a.n % pack == 0 && cuda::aligned16(a.s) && cuda::aligned16(a.t) &&
              (a.g == nullptr || cuda::aligned16(a.g));
      items += rows * a.chunks;
    }
    batches.push_back(batch);
    batch_items.push_back(items - first);
  }

  const auto opts = out.options();
  at::Tensor partial = at::empty({items}, opts);
  at::Tensor row_scale =
      l2 && grad ? at::empty({std::min<int64_t>(kMaxMaps, num_maps) * rows}, opts) : at::Tensor();
  float* partial_ptr = partial.mutable_data_ptr<float>();
  float* scale_ptr = row_scale.defined() ? row_scale.mutable_data_ptr<float>() : nullptr;
  const int finalize_blocks = static_cast<int>((rows + kThreads - 1) / kThreads);
  for (size_t i = 0; i < batches.size(); ++i) {
    const int64_t n_items = batch_items[i];
    if (grad && !l2) {
      distance_partial_kernel<true><<<static_cast<unsigned>(n_items), kThreads, 0, stream>>>(batches[i], w, partial_ptr);
    } else {
      distance_partial_kernel<false><<<static_cast<unsigned>(n_items), kThreads, 0, stream>>>(batches[i], w, partial_ptr);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    distance_finalize_kernel<<<finalize_blocks, kThreads, 0, stream>>>(
        batches[i], w, partial_ptr, out.mutable_data_ptr<float>(), scale_ptr, rows, l2, i > 0);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (scale_ptr != nullptr) {
      scaled_difference_kernel<<<static_cast<unsigned>(n_items), kThreads, 0, stream>>>(batches[i], scale_ptr, rows);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    partial_ptr += n_items;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    scale_rows_kernel(const T* unit, const float* scale, T* result, int64_t numel, int64_t n,
                      bool vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t first = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x;
  if (vec) {
    constexpr int kPack = Pack16<T>::kSize;
    for (int64_t p = first; p < numel / kPack; p += stride) {
      const float f = scale[p * kPack / n];
      const Pack16<T> u = load16(unit + p * kPack);
      Pack16<T> r;
#pragma unroll
      for (int k = 0; k < kPack; ++k) {
        r.v[k] = static_cast<T>(static_cast<float>(u.v[k]) * f);
      }
      store16(result + p * kPack, r);
    }
    return;
  }
  for (int64_t i = first; i < numel; i += stride) {
    result[i] = static_cast<T>(static_cast<float>(unit[i]) * scale[i / n]);
  }
}

void launch_scale_rows(ScaleRowsCall& call) {
  const c10::cuda::CUDAGuard guard(call.unit.device());
  const int64_t numel = call.unit.numel();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  L2L_DISPATCH_FLOAT(call.unit.scalar_type(), "scale_rows", [&] {
    constexpr int kPack = Pack16<scalar_t>::kSize;
    const bool vec = call.n % kPack == 0 && cuda::aligned16(call.unit.const_data_ptr()) &&
                     cuda::aligned16(call.result.const_data_ptr());
    const int64_t work = vec ? numel / kPack : numel;
    const int blocks = static_cast<int>(std::min<int64_t>((work + kThreads - 1) / kThreads, 65536));
    scale_rows_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        call.unit.const_data_ptr<scalar_t>(), call.scale.const_data_ptr<float>(),
        call.result.mutable_data_ptr<scalar_t>(), numel, call.n, vec);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(l2l_fast, CUDA, m) {
  register_encoder_distance<distance_rows, launch_scale_rows>(m);
}

}  // namespace l2l_fast
