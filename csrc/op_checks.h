// Argument checks shared by the CPU and CUDA kernels: the same errors, with the
// same messages, whatever the backend. Internal linkage: the host compilers of
// the .cpp and .cu files never have to agree on one out-of-line copy.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>

#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace l2l_fast {
namespace {

inline bool is_supported_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf;
}

// "torch.float32", as Python prints a dtype.
inline std::string dtype_name(at::ScalarType t) {
  return c10::str("torch.", c10::getDtypeNames(t).first);
}

// An argument's name in messages: "students[2]", or "student" (index < 0).
// Formatted only when a check fails.
struct ArgName {
  const char* base;
  int64_t index = -1;
};

inline std::ostream& operator<<(std::ostream& os, const ArgName& n) {
  os << n.base;
  if (n.index >= 0) {
    os << "[" << n.index << "]";
  }
  return os;
}

inline void check_float_dtype(const at::Tensor& t, const char* op, const ArgName& name) {
  TORCH_CHECK_TYPE(
      is_supported_float(t.scalar_type()), op, ": ", name,
      " must be float32, bfloat16 or float16, got ", dtype_name(t.scalar_type()));
}

// True for "l2", false for "mse".
inline bool parse_distance(std::string_view distance, const char* op) {
  if (distance == "l2") {
    return true;
  }
  TORCH_CHECK_VALUE(
      distance == "mse", op, ": distance must be 'mse' or 'l2', got '", std::string(distance), "'");
  return false;
}

// Checks one (student, target) pair; returns the batch size.
inline int64_t check_distance_pair(
    const at::Tensor& student, const at::Tensor& target, const char* op, const ArgName& s_name,
    const ArgName& t_name) {
  TORCH_CHECK_VALUE(
      student.dim() >= 1, op, ": ", s_name, " must have a batch dimension [B, ...], got a 0-d tensor");
  check_float_dtype(student, op, s_name);
  TORCH_CHECK_TYPE(
      target.scalar_type() == student.scalar_type(), op, ": ", t_name, " must have ", s_name,
      "'s dtype ", dtype_name(student.scalar_type()), ", got ",
      dtype_name(target.scalar_type()));
  TORCH_CHECK_VALUE(
      target.sizes() == student.sizes(), op, ": ", t_name, " must have ", s_name, "'s shape ",
      student.sizes(), ", got ", target.sizes());
  TORCH_CHECK_VALUE(
      target.device() == student.device(), op, ": ", t_name, " must be on ", s_name, "'s device ",
      student.device(), ", got ", target.device());
  TORCH_CHECK_VALUE(
      student.size(0) > 0 && student.numel() > 0, op, ": empty batch: ", s_name, " has shape ",
      student.sizes());
  return student.size(0);
}

// Every map checked as a pair; all maps share the batch size and device. Returns B.
// `single`: the one pair of encoder_distance, named student and target.
inline int64_t check_distance_maps(
    at::TensorList students, at::TensorList targets, const char* op, bool single) {
  if (single) {
    return check_distance_pair(students[0], targets[0], op, {"student"}, {"target"});
  }
  TORCH_CHECK_VALUE(!students.empty(), op, ": students must hold at least one feature map");
  TORCH_CHECK_VALUE(
      students.size() == targets.size(), op, ": targets must hold one map per student map (",
      students.size(), "), got ", targets.size());
  int64_t batch = 0;
  for (size_t m = 0; m < students.size(); ++m) {
    const ArgName s_name{"students", static_cast<int64_t>(m)};
    const int64_t b = check_distance_pair(students[m], targets[m], op, s_name, {"targets", s_name.index});
    if (m == 0) {
      batch = b;
      continue;
    }
    TORCH_CHECK_VALUE(
        b == batch, op, ": ", s_name, " must have the batch size of students[0] (", batch,
        "), got ", b);
    TORCH_CHECK_VALUE(
        students[m].device() == students[0].device(), op, ": ", s_name,
        " must be on students[0]'s device ", students[0].device(), ", got ", students[m].device());
  }
  return batch;
}

// weight as a contiguous float32 [B] tensor on `device`, or an undefined tensor.
inline at::Tensor check_weight(
    const std::optional<at::Tensor>& weight, int64_t batch, const at::Device& device, const char* op) {
  if (!weight.has_value() || !weight->defined()) {
    return at::Tensor();
  }
  const at::Tensor& w = *weight;
  TORCH_CHECK_TYPE(
      at::isFloatingType(w.scalar_type()), op, ": weight must be a floating-point tensor, got ",
      dtype_name(w.scalar_type()));
  TORCH_CHECK_VALUE(
      w.dim() == 1 && w.size(0) == batch, op, ": weight must have shape [", batch, "], got ",
      w.sizes());
  TORCH_CHECK_VALUE(
      w.device() == device, op, ": weight must be on the inputs' device ", device, ", got ",
      w.device());
  return w.to(at::kFloat).contiguous();
}

enum class Stats { kBatch, kSample, kChannel, kStandard };

inline Stats parse_stats(std::string_view stats, const char* op) {
  if (stats == "batch") return Stats::kBatch;
  if (stats == "sample") return Stats::kSample;
  if (stats == "channel") return Stats::kChannel;
  if (stats == "standard") return Stats::kStandard;
  TORCH_CHECK_VALUE(
      false, op, ": stats must be 'batch', 'sample', 'channel' or 'standard', got '",
      std::string(stats), "'");
  return Stats::kStandard;
}

// x viewed as [B, C, S]: C = size(1) when x has two or more dims, S the rest.
struct BCS {
  int64_t b;
  int64_t c;
  int64_t s;
};

inline BCS check_gaussian_args(
    const at::Tensor& x, int64_t offset, const std::optional<at::Tensor>& keep, const char* op) {
  TORCH_CHECK_VALUE(x.dim() >= 1, op, ": x must have a batch dimension [B, ...], got a 0-d tensor");
  check_float_dtype(x, op, {"x"});
  TORCH_CHECK_VALUE(x.size(0) > 0 && x.numel() > 0, op, ": empty batch: x has shape ", x.sizes());
  TORCH_CHECK_VALUE(offset >= 0, op, ": offset must be >= 0, got ", offset);
  if (keep.has_value() && keep->defined()) {
    const at::Tensor& k = *keep;
    TORCH_CHECK_TYPE(
        !at::isComplexType(k.scalar_type()), op, ": keep must be a real or bool tensor, got ",
        dtype_name(k.scalar_type()));
    TORCH_CHECK_VALUE(
        k.device() == x.device(), op, ": keep must be on x's device ", x.device(), ", got ",
        k.device());
    bool expandable = k.dim() <= x.dim();
    for (int64_t i = 1; expandable && i <= k.dim(); ++i) {
      const int64_t ks = k.size(k.dim() - i);
      expandable = ks == 1 || ks == x.size(x.dim() - i);
    }
    TORCH_CHECK_VALUE(
        expandable, op, ": keep must broadcast to x's shape ", x.sizes(), ", got ", k.sizes());
  }
  const int64_t b = x.size(0);
  const int64_t c = x.dim() >= 2 ? x.size(1) : 1;
  return {b, c, x.numel() / (b * c)};
}

// keep expanded to x's shape and viewed as [B, C, S] (a view when the strides allow).
inline at::Tensor keep_as_bcs(const at::Tensor& keep, const at::Tensor& x, const BCS& v) {
  return keep.expand(x.sizes()).reshape({v.b, v.c, v.s});
}

inline const char* stats_name(Stats stats) {
  switch (stats) {
    case Stats::kBatch: return "batch";
    case Stats::kSample: return "sample";
    case Stats::kChannel: return "channel";
    default: return "standard";
  }
}

// The shape of one statistic per group, broadcastable to x: [1, ...], [B, 1, ...], [1, C, 1, ...].
inline std::vector<int64_t> stats_shape(const at::Tensor& x, Stats stats) {
  std::vector<int64_t> shape(x.dim(), 1);
  if (stats == Stats::kSample) {
    shape[0] = x.size(0);
  } else if (stats == Stats::kChannel && x.dim() >= 2) {
    shape[1] = x.size(1);
  }
  return shape;
}

// Given statistics: mean and std together or not at all, floating point, on x's
// device, one element per group of `stats`. Returns whether they are given.
inline bool check_given_stats(
    const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& std_dev, Stats stats,
    const at::Tensor& x, const BCS& v, const char* op) {
  const bool has_mean = mean.has_value() && mean->defined();
  const bool has_std = std_dev.has_value() && std_dev->defined();
  TORCH_CHECK_VALUE(
      has_mean == has_std, op, ": mean and std must be given together, got only ",
      has_mean ? "mean" : "std");
  if (!has_mean) {
    return false;
  }
  TORCH_CHECK_VALUE(stats != Stats::kStandard, op, ": stats='standard' takes no mean and std");
  const int64_t groups = stats == Stats::kSample ? v.b : stats == Stats::kChannel ? v.c : 1;
  for (const auto& [name, t] : {std::pair{"mean", *mean}, std::pair{"std", *std_dev}}) {
    TORCH_CHECK_TYPE(
        at::isFloatingType(t.scalar_type()), op, ": ", name,
        " must be a floating-point tensor, got ", dtype_name(t.scalar_type()));
    TORCH_CHECK_VALUE(
        t.device() == x.device(), op, ": ", name, " must be on x's device ", x.device(), ", got ",
        t.device());
    TORCH_CHECK_VALUE(
        t.numel() == groups, op, ": ", name, " must have ", groups, " element(s) for stats='",
        stats_name(stats), "' (e.g. shape ", at::IntArrayRef(stats_shape(x, stats)), "), got shape ",
        t.sizes());
  }
  return true;
}

}  // namespace
}  // namespace l2l_fast
