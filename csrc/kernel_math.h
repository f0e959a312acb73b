// Inline math shared by the CPU and CUDA kernels: the same formula, compiled
// for the host and for the device.
#pragma once

#include <math.h>

#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define L2L_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define L2L_HOST_DEVICE inline
#endif

namespace l2l_fast {

// One row of encoder_distance from its sum (s - t)^2 over n elements.
struct RowDistance {
  float value;       // w * d: d the mean square ("mse") or the norm ("l2")
  float grad_scale;  // w / d, the "l2" gradient's factor on (s - t); 0 for d = 0
};

L2L_HOST_DEVICE RowDistance finalize_row(double sum, int64_t n, float w, bool l2) {
  const float d = l2 ? static_cast<float>(sqrt(sum)) : static_cast<float>(sum / static_cast<double>(n));
  return {d * w, d > 0.0f ? w / d : 0.0f};
}

// Unbiased variance from the sums of d and d^2 over count values (d shifted by
// any constant); 0 below 2 values. NaN propagates.
L2L_HOST_DEVICE double unbiased_variance(double sum, double sq, double count) {
  if (count < 2.0) {
    return 0.0;
  }
  const double var = (sq - sum * sum / count) / (count - 1.0);
  return var < 0.0 ? 0.0 : var;
}

struct MeanStd {
  float mu;
  float sigma;
};

// mu and sigma (unbiased) of count values from sums of (x - shift) and (x - shift)^2.
L2L_HOST_DEVICE MeanStd mean_std_from_sums(double shift, double sum, double sq, double count) {
  return {static_cast<float>(shift + sum / count),
          static_cast<float>(sqrt(unbiased_variance(sum, sq, count)))};
}

// clamp(mu + sigma * z, lo, hi), NaN passing through as in torch.clamp.
L2L_HOST_DEVICE float clamped_noise(float mu, float sigma, float z, float lo, float hi) {
  float n = mu + sigma * z;
  n = n < lo ? lo : n;
  return hi < n ? hi : n;
}

// The corruption T: keep * noise + (1 - keep) * fill.
L2L_HOST_DEVICE float blend_keep(float keep, float noise, float fill) {
  return keep * noise + (1.0f - keep) * fill;
}

}  // namespace l2l_fast
