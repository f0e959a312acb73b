#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "philox.h"

namespace l2l_fast {
namespace {

__global__ void philox_stream_kernel(int64_t* out, uint64_t seed, uint64_t offset, int64_t numel) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < numel;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const PhiloxPair r = philox4x32_10(seed, offset + i);
    out[2 * i] = r.x0;
    out[2 * i + 1] = r.x1;
  }
}

}  // namespace

at::Tensor philox_stream_cuda(const at::Tensor& like, int64_t seed, int64_t offset) {
  TORCH_CHECK_VALUE(offset >= 0, "philox_stream: offset must be >= 0, got ", offset);
  const c10::cuda::CUDAGuard guard(like.device());
  const int64_t numel = like.numel();
  at::Tensor out = at::empty({numel, 2}, like.options().dtype(at::kLong));
  if (numel == 0) {
    return out;
  }
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((numel + kThreads - 1) / kThreads, 65535);
  philox_stream_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      out.data_ptr<int64_t>(), static_cast<uint64_t>(seed), static_cast<uint64_t>(offset), numel);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

TORCH_LIBRARY_IMPL(l2l_fast, CUDA, m) {
  m.impl("philox_stream", &philox_stream_cuda);
}

}  // namespace l2l_fast
