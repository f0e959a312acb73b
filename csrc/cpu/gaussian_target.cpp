// CPU kernel of gaussian_target: one parallel pass for the statistics (double
// sums, shifted by each group's first element), one that draws the Philox
// normals and writes keep * clamp(mu + sigma * z) + (1 - keep) * fill.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "cpu/cpu_simd.h"
#include "kernel_math.h"
#include "op_host.h"
#include "philox.h"

namespace l2l_fast {
namespace {

// x as [rows, row_len]; every row belongs to one statistics group.
struct StatsLayout {
  int64_t rows;
  int64_t row_len;
  int64_t groups;
  int64_t group_period;  // group = row % group_period (batch: 1 group of 1 row)
  int64_t group_stride;  // index of the first element of group g = g * group_stride
};

StatsLayout stats_layout(Stats stats, const BCS& v) {
  switch (stats) {
    case Stats::kSample:
      return {v.b, v.c * v.s, v.b, v.b, v.c * v.s};
    case Stats::kChannel:
      return {v.b * v.c, v.s, v.c, v.c, v.s};
    default:
      return {1, v.b * v.c * v.s, 1, 1, 0};
  }
}

constexpr int kStatLanes = 8;

template <typename T>
L2L_ALWAYS_INLINE void accumulate_shifted_impl(const T* L2L_RESTRICT x, int64_t n, double shift,
                                               double* L2L_RESTRICT sum_sq) {
  double s[kStatLanes] = {};
  double q[kStatLanes] = {};
  int64_t i = 0;
  for (; i + kStatLanes <= n; i += kStatLanes) {
    for (int k = 0; k < kStatLanes; ++k) {
      const double d = static_cast<double>(x[i + k]) - shift;
      s[k] += d;
      q[k] += d * d;
    }
  }
  for (; i < n; ++i) {
    const double d = static_cast<double>(x[i]) - shift;
    s[0] += d;
    q[0] += d * d;
  }
  for (int k = 0; k < kStatLanes; ++k) {
    sum_sq[0] += s[k];
    sum_sq[1] += q[k];
  }
}

// sum_sq += (sum (x - shift), sum (x - shift)^2) over n elements of `dtype`.
L2L_CPU_CLONES void accumulate_shifted(at::ScalarType dtype, const void* x, int64_t n, double shift,
                                       double* sum_sq) {
  switch (dtype) {
    case at::kFloat:
      return accumulate_shifted_impl(static_cast<const float*>(x), n, shift, sum_sq);
    case at::kBFloat16:
      return accumulate_shifted_impl(static_cast<const at::BFloat16*>(x), n, shift, sum_sq);
    default:  // at::kHalf
      return accumulate_shifted_impl(static_cast<const at::Half*>(x), n, shift, sum_sq);
  }
}

// Sets call.mu and call.sigma (unbiased; 0 when a group has fewer than 2 elements).
void group_statistics(GaussianCall& call) {
  const StatsLayout l = stats_layout(call.stats, call.v);
  const at::Tensor& x = call.x;
  const at::ScalarType dtype = x.scalar_type();
  const int64_t itemsize = x.element_size();
  const char* data = static_cast<const char*>(x.const_data_ptr());
  const int64_t threads = at::get_num_threads();
  std::vector<double> acc(2 * threads * l.groups, 0.0);
  // Each group's first element, the shift of its sums.
  const at::Tensor shift_t = x.view(-1).as_strided({l.groups}, {l.group_stride}).to(at::kDouble);
  const double* shift = shift_t.const_data_ptr<double>();
  const int64_t numel = l.rows * l.row_len;
  at::parallel_for(0, numel, 32768, [&](int64_t begin, int64_t end) {
    double* mine = acc.data() + 2 * l.groups * at::get_thread_num();
    int64_t row = begin / l.row_len;
    int64_t col = begin - row * l.row_len;
    for (int64_t i = begin; i < end; ++row, col = 0) {
      const int64_t len = std::min(l.row_len - col, end - i);
      const int64_t g = row % l.group_period;
      accumulate_shifted(dtype, data + i * itemsize, len, shift[g], mine + 2 * g);
      i += len;
    }
  });
  const double count = static_cast<double>(numel / l.groups);
  call.mu = at::empty({l.groups}, x.options().dtype(at::kFloat));
  call.sigma = at::empty({l.groups}, x.options().dtype(at::kFloat));
  float* mu = call.mu.mutable_data_ptr<float>();
  float* sigma = call.sigma.mutable_data_ptr<float>();
  for (int64_t g = 0; g < l.groups; ++g) {
    double sum = 0.0;
    double sq = 0.0;
    for (int64_t t = 0; t < threads; ++t) {
      sum += acc[2 * (t * l.groups + g)];
      sq += acc[2 * (t * l.groups + g) + 1];
    }
    const MeanStd ms = mean_std_from_sums(shift[g], sum, sq, count);
    mu[g] = ms.mu;
    sigma[g] = ms.sigma;
  }
}

constexpr int64_t kDrawBlock = 64;

struct NoiseParams {
  uint64_t seed;
  float mu;
  float sigma;
  float lo;
  float hi;
  float fill;
};

template <typename T>
L2L_ALWAYS_INLINE void blend_store(T* L2L_RESTRICT out, const float* L2L_RESTRICT z,
                                   const float* L2L_RESTRICT keep, const NoiseParams& p, int64_t n) {
  if (keep == nullptr) {
    for (int64_t j = 0; j < n; ++j) {
      out[j] = static_cast<T>(clamped_noise(p.mu, p.sigma, z[j], p.lo, p.hi));
    }
    return;
  }
  for (int64_t j = 0; j < n; ++j) {
    const float noise = clamped_noise(p.mu, p.sigma, z[j], p.lo, p.hi);
    out[j] = static_cast<T>(blend_keep(keep[j], noise, p.fill));
  }
}

// out[j] = keep[j] * clamp(mu + sigma * z_j) + (1 - keep[j]) * fill for
// j < n <= kDrawBlock, z_j = philox_normal(seed, counter + j); keep may be null.
L2L_CPU_CLONES void draw_block(at::ScalarType dtype, void* out, const float* keep,
                               const NoiseParams& p, uint64_t counter, int64_t n) {
  float u1[kDrawBlock];
  float u2[kDrawBlock];
  for (int64_t j = 0; j < n; ++j) {
    const PhiloxPair r = philox4x32_10(p.seed, counter + static_cast<uint64_t>(j));
    u1[j] = uint_to_uniform(r.x0);
    u2[j] = uint_to_uniform(r.x1);
  }
  float z[kDrawBlock];
  for (int64_t j = 0; j < n; ++j) {
    z[j] = box_muller(u1[j], u2[j]);
  }
  switch (dtype) {
    case at::kFloat:
      return blend_store(static_cast<float*>(out), z, keep, p, n);
    case at::kBFloat16:
      return blend_store(static_cast<at::BFloat16*>(out), z, keep, p, n);
    default:  // at::kHalf
      return blend_store(static_cast<at::Half*>(out), z, keep, p, n);
  }
}

// The group of row b * C + c.
int64_t group_of_row(Stats stats, int64_t row, int64_t c) {
  return stats == Stats::kSample ? row / c : stats == Stats::kChannel ? row % c : 0;
}

// K is the keep dtype; void when there is no keep.
template <typename K>
void draw(GaussianCall& call) {
  const BCS& v = call.v;
  const int64_t numel = v.b * v.c * v.s;
  const at::ScalarType dtype = call.out.scalar_type();
  const int64_t itemsize = call.out.element_size();
  char* out_data = static_cast<char*>(call.out.mutable_data_ptr());
  const float* mu = call.mu.defined() ? call.mu.const_data_ptr<float>() : nullptr;
  const float* sigma = call.sigma.defined() ? call.sigma.const_data_ptr<float>() : nullptr;
  const K* keep_data = nullptr;
  int64_t ks[3] = {0, 0, 0};
  if constexpr (!std::is_void_v<K>) {
    keep_data = call.keep.const_data_ptr<K>();
    ks[0] = call.keep.stride(0);
    ks[1] = call.keep.stride(1);
    ks[2] = call.keep.stride(2);
  }
  at::parallel_for(0, numel, 4096, [&](int64_t begin, int64_t end) {
    float keep_block[kDrawBlock];
    int64_t row = begin / v.s;
    int64_t col = begin - row * v.s;
    for (int64_t i = begin; i < end; ++row, col = 0) {
      const int64_t len = std::min(v.s - col, end - i);
      NoiseParams p{call.seed, 0.0f, 1.0f, call.lo, call.hi, call.fill};
      if (mu != nullptr) {
        const int64_t g = group_of_row(call.stats, row, v.c);
        p.mu = mu[g];
        p.sigma = sigma[g];
      }
      for (int64_t j0 = 0; j0 < len; j0 += kDrawBlock) {
        const int64_t n = std::min(kDrawBlock, len - j0);
        const float* keep_ptr = nullptr;
        if constexpr (!std::is_void_v<K>) {
          const K* k = keep_data + (row / v.c) * ks[0] + (row % v.c) * ks[1] + (col + j0) * ks[2];
          for (int64_t j = 0; j < n; ++j) {
            keep_block[j] = static_cast<float>(k[j * ks[2]]);
          }
          keep_ptr = keep_block;
        }
        draw_block(dtype, out_data + (i + j0) * itemsize, keep_ptr, p,
                   call.offset + static_cast<uint64_t>(i + j0), n);
      }
      i += len;
    }
  });
}

void gaussian_target_kernel(GaussianCall& call) {
  if (call.stats != Stats::kStandard && !call.mu.defined()) {
    group_statistics(call);
  }
  if (!call.keep.defined()) {
    draw<void>(call);
    return;
  }
  AT_DISPATCH_ALL_TYPES_AND3(at::kBool, at::kHalf, at::kBFloat16, call.keep.scalar_type(),
                             "gaussian_target", [&] { draw<scalar_t>(call); });
}

}  // namespace

TORCH_LIBRARY_IMPL(l2l_fast, CPU, m) {
  m.impl("gaussian_target", &gaussian_target_op<gaussian_target_kernel>);
}

}  // namespace l2l_fast
