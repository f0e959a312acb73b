// CPU kernel of gaussian_target: one parallel pass for the statistics (double
// sums, shifted by each group's first element), one that draws the Philox
// normals and writes keep * clamp(mu + sigma * z) + (1 - keep) * fill.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "op_checks.h"
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
void accumulate_shifted(const T* x, int64_t n, double shift, double& sum, double& sq) {
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
    sum += s[k];
    sq += q[k];
  }
}

// mu and sigma (unbiased; 0 when a group has fewer than 2 elements) per group.
template <typename T>
void group_statistics(const T* x, const StatsLayout& l, std::vector<float>& mu,
                      std::vector<float>& sigma) {
  const int64_t threads = at::get_num_threads();
  std::vector<double> acc(2 * threads * l.groups, 0.0);
  std::vector<double> shift(l.groups);
  for (int64_t g = 0; g < l.groups; ++g) {
    shift[g] = static_cast<double>(x[g * l.group_stride]);
  }
  const int64_t numel = l.rows * l.row_len;
  at::parallel_for(0, numel, 32768, [&](int64_t begin, int64_t end) {
    double* mine = acc.data() + 2 * l.groups * at::get_thread_num();
    int64_t row = begin / l.row_len;
    int64_t col = begin - row * l.row_len;
    for (int64_t i = begin; i < end; ++row, col = 0) {
      const int64_t len = std::min(l.row_len - col, end - i);
      const int64_t g = row % l.group_period;
      accumulate_shifted(x + i, len, shift[g], mine[2 * g], mine[2 * g + 1]);
      i += len;
    }
  });
  const double count = static_cast<double>(numel / l.groups);
  mu.resize(l.groups);
  sigma.resize(l.groups);
  for (int64_t g = 0; g < l.groups; ++g) {
    double sum = 0.0;
    double sq = 0.0;
    for (int64_t t = 0; t < threads; ++t) {
      sum += acc[2 * (t * l.groups + g)];
      sq += acc[2 * (t * l.groups + g) + 1];
    }
    mu[g] = static_cast<float>(shift[g] + sum / count);
    const double var = count < 2.0 ? 0.0 : (sq - sum * sum / count) / (count - 1.0);
    sigma[g] = static_cast<float>(std::sqrt(std::max(var, 0.0)));
  }
}

constexpr int64_t kDrawBlock = 64;

// z[j] = philox_normal(seed, counter + j) for j < n <= kDrawBlock; the integer
// part is a plain loop over the block so that it vectorises.
void draw_normals(uint64_t seed, uint64_t counter, int64_t n, float* z) {
  float u1[kDrawBlock];
  float u2[kDrawBlock];
  for (int64_t j = 0; j < n; ++j) {
    const PhiloxPair r = philox4x32_10(seed, counter + static_cast<uint64_t>(j));
    u1[j] = uint_to_uniform(r.x0);
    u2[j] = uint_to_uniform(r.x1);
  }
  for (int64_t j = 0; j < n; ++j) {
    z[j] = box_muller(u1[j], u2[j]);
  }
}

struct DrawArgs {
  uint64_t seed;
  uint64_t offset;
  float lo;
  float hi;
  float fill;
  const float* mu;     // per group, or nullptr for standard normal
  const float* sigma;
  int64_t group_period;  // over rows b * C + c: sample C (group = row / C), channel C
  bool group_by_sample;
};

template <typename T, typename K, bool kKeep>
void draw(const DrawArgs& a, const BCS& v, T* out, const K* keep, const int64_t* keep_strides) {
  const int64_t numel = v.b * v.c * v.s;
  at::parallel_for(0, numel, 4096, [&](int64_t begin, int64_t end) {
    float z[kDrawBlock];
    int64_t row = begin / v.s;
    int64_t col = begin - row * v.s;
    for (int64_t i = begin; i < end; ++row, col = 0) {
      const int64_t len = std::min(v.s - col, end - i);
      float mu = 0.0f;
      float sigma = 1.0f;
      if (a.mu != nullptr) {
        const int64_t g = a.group_by_sample ? row / a.group_period : row % a.group_period;
        mu = a.mu[g];
        sigma = a.sigma[g];
      }
      const K* keep_row = nullptr;
      if constexpr (kKeep) {
        keep_row = keep + (row / v.c) * keep_strides[0] + (row % v.c) * keep_strides[1];
      }
      for (int64_t j0 = 0; j0 < len; j0 += kDrawBlock) {
        const int64_t n = std::min(kDrawBlock, len - j0);
        draw_normals(a.seed, a.offset + static_cast<uint64_t>(i + j0), n, z);
        T* o = out + i + j0;
        for (int64_t j = 0; j < n; ++j) {
          float noise = mu + sigma * z[j];
          noise = std::min(std::max(noise, a.lo), a.hi);
          if constexpr (kKeep) {
            const float k = static_cast<float>(keep_row[(col + j0 + j) * keep_strides[2]]);
            noise = k * noise + (1.0f - k) * a.fill;
          }
          o[j] = static_cast<T>(noise);
        }
      }
      i += len;
    }
  });
}

at::Tensor gaussian_target_cpu(const at::Tensor& x, int64_t seed, int64_t offset,
                               c10::string_view stats, std::optional<double> clamp_lo,
                               std::optional<double> clamp_hi, const std::optional<at::Tensor>& keep,
                               double fill) {
  constexpr const char* op = "gaussian_target";
  const BCS v = check_gaussian_args(x, offset, keep, op);
  const Stats mode = parse_stats(stats, op);
  const at::Tensor xc = x.contiguous();
  at::Tensor out = at::empty(x.sizes(), xc.options());

  constexpr float kInf = std::numeric_limits<float>::infinity();
  DrawArgs a{};
  a.seed = static_cast<uint64_t>(seed);
  a.offset = static_cast<uint64_t>(offset);
  a.lo = clamp_lo.has_value() ? static_cast<float>(*clamp_lo) : -kInf;
  a.hi = clamp_hi.has_value() ? static_cast<float>(*clamp_hi) : kInf;
  a.fill = static_cast<float>(fill);
  a.group_by_sample = mode == Stats::kSample;
  a.group_period = mode == Stats::kBatch ? 1 : v.c;

  std::vector<float> mu;
  std::vector<float> sigma;
  const bool has_keep = keep.has_value() && keep->defined();
  const at::Tensor keep_bcs = has_keep ? keep_as_bcs(*keep, x, v) : at::Tensor();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, xc.scalar_type(), "gaussian_target", [&] {
    using T = scalar_t;
    if (mode != Stats::kStandard) {
      group_statistics<T>(xc.const_data_ptr<T>(), stats_layout(mode, v), mu, sigma);
      a.mu = mu.data();
      a.sigma = sigma.data();
    }
    T* o = out.mutable_data_ptr<T>();
    if (!has_keep) {
      draw<T, float, false>(a, v, o, nullptr, nullptr);
      return;
    }
    const int64_t strides[3] = {keep_bcs.stride(0), keep_bcs.stride(1), keep_bcs.stride(2)};
    AT_DISPATCH_ALL_TYPES_AND3(at::kBool, at::kHalf, at::kBFloat16, keep_bcs.scalar_type(),
                               "gaussian_target_keep", [&] {
      draw<T, scalar_t, true>(a, v, o, keep_bcs.const_data_ptr<scalar_t>(), strides);
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(l2l_fast, CPU, m) {
  m.impl("gaussian_target", &gaussian_target_cpu);
}

}  // namespace l2l_fast
