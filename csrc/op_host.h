// The host side of every operator, shared by the CPU and CUDA backends: checks,
// contiguous inputs, output allocation. A backend supplies only its kernels, as
// the template argument of the *_op functions it registers.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <limits>
#include <optional>
#include <tuple>
#include <vector>

#include "op_checks.h"

// AT_DISPATCH over the dtypes the checks admit.
#define L2L_DISPATCH_FLOAT(TYPE, NAME, ...)                                      \
  AT_DISPATCH_SWITCH(TYPE, NAME, AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__)      \
                                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__) \
                                         AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__))

namespace l2l_fast {
namespace {

struct DistanceMap {
  at::Tensor student;  // contiguous
  at::Tensor target;   // contiguous
  at::Tensor grad;     // contiguous, or undefined
};

struct DistanceCall {
  std::vector<DistanceMap> maps;
  int64_t batch = 0;
  bool l2 = false;
  bool grad = false;
  at::Tensor weight;  // float32 [B], or undefined (ones)
  at::Tensor out;     // float32 [B]
};

// Writes out[b] = sum_m w[b] * d(s_m[b], t_m[b]) and, when asked, each map's grad.
using DistanceKernel = void (*)(DistanceCall&);

inline DistanceCall prepare_distance(
    at::TensorList students, at::TensorList targets, const std::optional<at::Tensor>& weight,
    c10::string_view distance, bool compute_grad, const char* op, bool single) {
  DistanceCall call;
  call.batch = check_distance_maps(students, targets, op, single);
  call.l2 = parse_distance(distance, op);
  call.grad = compute_grad;
  call.weight = check_weight(weight, call.batch, students[0].device(), op);
  for (size_t m = 0; m < students.size(); ++m) {
    DistanceMap map{students[m].contiguous(), targets[m].contiguous(), at::Tensor()};
    if (compute_grad) {
      map.grad = at::empty(students[m].sizes(), map.student.options());
    }
    call.maps.push_back(std::move(map));
  }
  call.out = at::empty({call.batch}, students[0].options().dtype(at::kFloat));
  return call;
}

template <DistanceKernel kernel>
std::tuple<at::Tensor, at::Tensor> encoder_distance_op(
    const at::Tensor& student, const at::Tensor& target, const std::optional<at::Tensor>& weight,
    c10::string_view distance, bool compute_grad) {
  DistanceCall call =
      prepare_distance({student}, {target}, weight, distance, compute_grad, "encoder_distance", true);
  kernel(call);
  at::Tensor grad = compute_grad ? call.maps[0].grad : at::empty({0}, student.options());
  return {call.out, grad};
}

template <DistanceKernel kernel>
std::tuple<at::Tensor, std::vector<at::Tensor>> encoder_distance_multi_op(
    at::TensorList students, at::TensorList targets, const std::optional<at::Tensor>& weight,
    c10::string_view distance, bool compute_grad) {
  DistanceCall call = prepare_distance(
      students, targets, weight, distance, compute_grad, "encoder_distance_multi", false);
  kernel(call);
  std::vector<at::Tensor> grads;
  if (compute_grad) {
    for (auto& map : call.maps) {
      grads.push_back(map.grad);
    }
  }
  return {call.out, grads};
}

struct ScaleRowsCall {
  at::Tensor unit;    // contiguous, non-empty
  at::Tensor scale;   // float32 [B], contiguous
  at::Tensor result;  // like unit
  int64_t n = 0;      // elements per row
};

// Writes result[b, ...] = unit[b, ...] * scale[b].
using ScaleRowsKernel = void (*)(ScaleRowsCall&);

template <ScaleRowsKernel kernel>
at::Tensor scale_rows_op(const at::Tensor& grad_unit, const at::Tensor& grad_out) {
  constexpr const char* op = "scale_rows";
  TORCH_CHECK_VALUE(
      grad_unit.dim() >= 1, op, ": grad_unit must have a batch dimension [B, ...], got a 0-d tensor");
  check_float_dtype(grad_unit, op, {"grad_unit"});
  check_float_dtype(grad_out, op, {"grad_out"});
  const int64_t batch = grad_unit.size(0);
  TORCH_CHECK_VALUE(
      grad_out.dim() == 1 && grad_out.size(0) == batch, op, ": grad_out must have shape [", batch,
      "], got ", grad_out.sizes());
  TORCH_CHECK_VALUE(
      grad_out.device() == grad_unit.device(), op, ": grad_out must be on grad_unit's device ",
      grad_unit.device(), ", got ", grad_out.device());
  ScaleRowsCall call{grad_unit.contiguous(), grad_out.to(at::kFloat).contiguous(), at::Tensor()};
  call.result = at::empty(grad_unit.sizes(), call.unit.options());
  if (call.unit.numel() > 0) {
    call.n = call.unit.numel() / batch;
    kernel(call);
  }
  return call.result;
}

struct GaussianCall {
  at::Tensor x;      // contiguous
  at::Tensor out;    // contiguous, like x
  at::Tensor keep;   // keep expanded to x and viewed as [B, C, S], or undefined
  at::Tensor mu;     // float32, one per group: given, or undefined until the kernel computes it
  at::Tensor sigma;  // as mu
  BCS v{};
  Stats stats = Stats::kStandard;
  uint64_t seed = 0;
  uint64_t offset = 0;
  float lo = 0.0f;
  float hi = 0.0f;
  float fill = 0.0f;
};

// Computes mu and sigma where they are neither given nor "standard", then writes
// out = keep * clamp(mu + sigma * z) + (1 - keep) * fill.
using GaussianKernel = void (*)(GaussianCall&);

// The three encoder_distance operators of one backend, registered together.
template <DistanceKernel distance, ScaleRowsKernel scale>
void register_encoder_distance(torch::Library& m) {
  m.impl("encoder_distance", &encoder_distance_op<distance>);
  m.impl("encoder_distance_multi", &encoder_distance_multi_op<distance>);
  m.impl("scale_rows", &scale_rows_op<scale>);
}

template <GaussianKernel kernel>
at::Tensor gaussian_target_op(
    const at::Tensor& x, int64_t seed, int64_t offset, c10::string_view stats,
    std::optional<double> clamp_lo, std::optional<double> clamp_hi,
    const std::optional<at::Tensor>& keep, double fill, const std::optional<at::Tensor>& mean,
    const std::optional<at::Tensor>& std_dev) {
  constexpr const char* op = "gaussian_target";
  constexpr float kInf = std::numeric_limits<float>::infinity();
  GaussianCall call;
  call.v = check_gaussian_args(x, offset, keep, op);
  call.stats = parse_stats(stats, op);
  if (check_given_stats(mean, std_dev, call.stats, x, call.v, op)) {
    call.mu = mean->to(at::kFloat).contiguous().view(-1);
    call.sigma = std_dev->to(at::kFloat).contiguous().view(-1);
  }
  call.x = x.contiguous();
  call.out = at::empty(x.sizes(), call.x.options());
  if (keep.has_value() && keep->defined()) {
    call.keep = keep_as_bcs(*keep, x, call.v);
  }
  call.seed = static_cast<uint64_t>(seed);
  call.offset = static_cast<uint64_t>(offset);
  call.lo = clamp_lo.has_value() ? static_cast<float>(*clamp_lo) : -kInf;
  call.hi = clamp_hi.has_value() ? static_cast<float>(*clamp_hi) : kInf;
  call.fill = static_cast<float>(fill);
  kernel(call);
  return call.out;
}

}  // namespace
}  // namespace l2l_fast
