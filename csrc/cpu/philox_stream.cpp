#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "philox.h"

namespace l2l_fast {

at::Tensor philox_stream_cpu(const at::Tensor& like, int64_t seed, int64_t offset) {
  TORCH_CHECK_VALUE(offset >= 0, "philox_stream: offset must be >= 0, got ", offset);
  const int64_t numel = like.numel();
  at::Tensor out = at::empty({numel, 2}, like.options().dtype(at::kLong));
  int64_t* data = out.data_ptr<int64_t>();
  at::parallel_for(0, numel, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const PhiloxPair r = philox4x32_10(static_cast<uint64_t>(seed), static_cast<uint64_t>(offset + i));
      data[2 * i] = r.x0;
      data[2 * i + 1] = r.x1;
    }
  });
  return out;
}

TORCH_LIBRARY_IMPL(l2l_fast, CPU, m) {
  m.impl("philox_stream", &philox_stream_cpu);
}

}  // namespace l2l_fast
