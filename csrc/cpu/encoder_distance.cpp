// CPU kernels of encoder_distance, encoder_distance_multi and scale_rows.
//
// Every (map, row) is cut into chunks; one parallel loop over the chunks of all
// maps reduces sum (s - t)^2 (fp32 lanes, promoted to double every block) and,
// for "mse", writes the gradient in the same pass. For "l2" the norm comes
// first: a row that is one chunk is rescanned at once while it is in cache, a
// row cut into several chunks is rescanned after all chunks are reduced.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "cpu/cpu_simd.h"
#include "kernel_math.h"
#include "op_host.h"

namespace l2l_fast {
namespace {

using cpu::kLanes;

// Elements summed in fp32 lanes before the sum is promoted to double.
constexpr int64_t kAccumulateBlock = 4096;

// sum_i (s[i] - t[i])^2 over [0, n); with g, also g = scale * (s - t).
template <typename T>
L2L_ALWAYS_INLINE double squared_distance_impl(const T* L2L_RESTRICT s, const T* L2L_RESTRICT t,
                                               T* L2L_RESTRICT g, float scale, int64_t n) {
  double total = 0.0;
  int64_t i = 0;
  while (n - i >= kLanes) {
    const int64_t block_end = i + std::min(kAccumulateBlock, (n - i) / kLanes * kLanes);
    float acc[kLanes] = {};
    if (g != nullptr) {
      for (; i < block_end; i += kLanes) {
        for (int64_t k = 0; k < kLanes; ++k) {
          const float d = static_cast<float>(s[i + k]) - static_cast<float>(t[i + k]);
          acc[k] += d * d;
          g[i + k] = static_cast<T>(d * scale);
        }
      }
    } else {
      for (; i < block_end; i += kLanes) {
        for (int64_t k = 0; k < kLanes; ++k) {
          const float d = static_cast<float>(s[i + k]) - static_cast<float>(t[i + k]);
          acc[k] += d * d;
        }
      }
    }
    for (float a : acc) {
      total += a;
    }
  }
  for (; i < n; ++i) {
    const float d = static_cast<float>(s[i]) - static_cast<float>(t[i]);
    total += static_cast<double>(d * d);
    if (g != nullptr) {
      g[i] = static_cast<T>(d * scale);
    }
  }
  return total;
}

template <typename T>
L2L_ALWAYS_INLINE void scale_impl(const T* L2L_RESTRICT u, T* L2L_RESTRICT r, float f, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    r[i] = static_cast<T>(static_cast<float>(u[i]) * f);
  }
}

// sum (s - t)^2 over n elements of `dtype`; writes g = scale * (s - t) when g
// is not null.
L2L_CPU_CLONES double squared_distance(at::ScalarType dtype, const void* s, const void* t, void* g,
                                       float scale, int64_t n) {
  switch (dtype) {
    case at::kFloat:
      return squared_distance_impl(static_cast<const float*>(s), static_cast<const float*>(t),
                                   static_cast<float*>(g), scale, n);
    case at::kBFloat16:
      return squared_distance_impl(static_cast<const at::BFloat16*>(s),
                                   static_cast<const at::BFloat16*>(t),
                                   static_cast<at::BFloat16*>(g), scale, n);
    default:  // at::kHalf
      return squared_distance_impl(static_cast<const at::Half*>(s), static_cast<const at::Half*>(t),
                                   static_cast<at::Half*>(g), scale, n);
  }
}

L2L_CPU_CLONES void scale_elements(at::ScalarType dtype, const void* u, void* r, float f, int64_t n) {
  switch (dtype) {
    case at::kFloat:
      return scale_impl(static_cast<const float*>(u), static_cast<float*>(r), f, n);
    case at::kBFloat16:
      return scale_impl(static_cast<const at::BFloat16*>(u), static_cast<at::BFloat16*>(r), f, n);
    default:  // at::kHalf
      return scale_impl(static_cast<const at::Half*>(u), static_cast<at::Half*>(r), f, n);
  }
}

struct MapPlan {
  const char* s;
  const char* t;
  char* g;  // gradient, or nullptr
  at::ScalarType dtype;
  int64_t itemsize;
  int64_t n;           // elements per row
  int64_t chunk = 0;   // elements per chunk
  int64_t chunks = 0;  // chunks per row
  int64_t first_item = 0;
};

MapPlan make_plan(const DistanceMap& map) {
  const at::Tensor& s = map.student;
  return {static_cast<const char*>(s.const_data_ptr()),
          static_cast<const char*>(map.target.const_data_ptr()),
          map.grad.defined() ? static_cast<char*>(map.grad.mutable_data_ptr()) : nullptr,
          s.scalar_type(), static_cast<int64_t>(s.element_size()), s.numel() / s.size(0)};
}

constexpr int64_t kMinChunk = 16384;
constexpr int64_t kChunkAlign = 64;

void distance_rows(DistanceCall& call) {
  std::vector<MapPlan> plans;
  for (const auto& map : call.maps) {
    plans.push_back(make_plan(map));
  }
  const int64_t batch = call.batch;
  const bool l2 = call.l2;
  const bool grad = call.grad;
  const int64_t num_maps = static_cast<int64_t>(plans.size());
  const int64_t threads = at::get_num_threads();
  const int64_t wanted_items = 4 * threads;
  const bool split_rows = batch * num_maps < wanted_items;
  int64_t items = 0;
  int64_t elements = 0;
  for (auto& p : plans) {
    int64_t chunks = 1;
    if (split_rows) {
      const int64_t by_size = (p.n + kMinChunk - 1) / kMinChunk;
      const int64_t by_threads = (wanted_items + batch * num_maps - 1) / (batch * num_maps);
      chunks = std::max<int64_t>(1, std::min(by_size, by_threads));
    }
    int64_t chunk = (p.n + chunks - 1) / chunks;
    chunk = (chunk + kChunkAlign - 1) / kChunkAlign * kChunkAlign;
    p.chunk = chunk;
    p.chunks = (p.n + chunk - 1) / chunk;
    p.first_item = items;
    items += batch * p.chunks;
    elements += batch * p.n;
  }
  // Below kMinChunk elements in all, one thread: waking others costs more than the work.
  const int64_t grain = elements < kMinChunk ? std::max<int64_t>(items, 1) : 1;

  const float* w = call.weight.defined() ? call.weight.const_data_ptr<float>() : nullptr;
  auto weight_of = [w](int64_t b) { return w ? w[b] : 1.0f; };
  std::vector<double> partial(items);
  bool rescan_later = false;
  for (const auto& p : plans) {
    rescan_later |= l2 && grad && p.chunks > 1;
  }

  // Calls f(plan, row, begin, end, item) for each item in [begin_item, end_item).
  auto for_items = [&](int64_t begin_item, int64_t end_item, const auto& f) {
    int64_t m = 0;
    while (m + 1 < num_maps && plans[m + 1].first_item <= begin_item) {
      ++m;
    }
    for (int64_t item = begin_item; item < end_item; ++item) {
      while (m + 1 < num_maps && plans[m + 1].first_item <= item) {
        ++m;
      }
      const MapPlan& p = plans[m];
      const int64_t local = item - p.first_item;
      const int64_t row = local / p.chunks;
      const int64_t begin = (local % p.chunks) * p.chunk;
      f(p, row, begin, std::min(p.n, begin + p.chunk), item);
    }
  };

  at::parallel_for(0, items, grain, [&](int64_t begin_item, int64_t end_item) {
    for_items(begin_item, end_item, [&](const MapPlan& p, int64_t row, int64_t begin, int64_t end,
                                        int64_t item) {
      const int64_t at_byte = (row * p.n + begin) * p.itemsize;
      char* g = grad ? p.g + at_byte : nullptr;
      const int64_t len = end - begin;
      if (grad && !l2) {
        const float scale = 2.0f * weight_of(row) / static_cast<float>(p.n);
        partial[item] = squared_distance(p.dtype, p.s + at_byte, p.t + at_byte, g, scale, len);
        return;
      }
      partial[item] = squared_distance(p.dtype, p.s + at_byte, p.t + at_byte, nullptr, 0.0f, len);
      if (grad && p.chunks == 1) {
        const float scale = finalize_row(partial[item], p.n, weight_of(row), true).grad_scale;
        squared_distance(p.dtype, p.s + at_byte, p.t + at_byte, g, scale, len);
      }
    });
  });

  // scale[m * batch + b] of the rows that are rescanned.
  std::vector<float> scale(rescan_later ? num_maps * batch : 0);
  float* out = call.out.mutable_data_ptr<float>();
  for (int64_t b = 0; b < batch; ++b) {
    float total = 0.0f;
    for (int64_t m = 0; m < num_maps; ++m) {
      const MapPlan& p = plans[m];
      const double* part = partial.data() + p.first_item + b * p.chunks;
      double sum = 0.0;
      for (int64_t k = 0; k < p.chunks; ++k) {
        sum += part[k];
      }
      const RowDistance row = finalize_row(sum, p.n, weight_of(b), l2);
      total += row.value;
      if (rescan_later) {
        scale[m * batch + b] = row.grad_scale;
      }
    }
    out[b] = total;
  }

  if (rescan_later) {
    at::parallel_for(0, items, grain, [&](int64_t begin_item, int64_t end_item) {
      for_items(begin_item, end_item, [&](const MapPlan& p, int64_t row, int64_t begin, int64_t end,
                                          int64_t) {
        if (p.chunks == 1) {
          return;
        }
        const float sc = scale[(&p - plans.data()) * batch + row];
        const int64_t at_byte = (row * p.n + begin) * p.itemsize;
        squared_distance(p.dtype, p.s + at_byte, p.t + at_byte, p.g + at_byte, sc, end - begin);
      });
    });
  }
}

void scale_rows_kernel(ScaleRowsCall& call) {
  const int64_t n = call.n;
  const float* sc = call.scale.const_data_ptr<float>();
  const at::ScalarType dtype = call.unit.scalar_type();
  const int64_t itemsize = call.unit.element_size();
  const char* u = static_cast<const char*>(call.unit.const_data_ptr());
  char* r = static_cast<char*>(call.result.mutable_data_ptr());
  at::parallel_for(0, call.unit.numel(), kMinChunk, [&](int64_t begin, int64_t end) {
    while (begin < end) {
      const int64_t row = begin / n;
      const int64_t stop = std::min(end, (row + 1) * n);
      scale_elements(dtype, u + begin * itemsize, r + begin * itemsize, sc[row], stop - begin);
      begin = stop;
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(l2l_fast, CPU, m) {
  register_encoder_distance<distance_rows, scale_rows_kernel>(m);
}

}  // namespace l2l_fast
