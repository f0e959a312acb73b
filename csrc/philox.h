// Philox4x32-10 and the uniform / normal transforms of Triton's tl.randn, shared
// by the CPU and CUDA kernels. z = philox_normal(seed, counter) equals
// tl.randn(seed, counter) on the integers and to float rounding on the result.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernel_math.h"

namespace l2l_fast {

constexpr uint32_t kPhiloxRoundA = 0xD2511F53u;
constexpr uint32_t kPhiloxRoundB = 0xCD9E8D57u;
constexpr uint32_t kPhiloxKeyA = 0x9E3779B9u;
constexpr uint32_t kPhiloxKeyB = 0xBB67AE85u;
constexpr int kPhiloxRounds = 10;
constexpr float kUniformScale = 4.6566127342e-10f;
constexpr float kBoxMullerMinU = 1.0e-7f;
constexpr float kTwoPi = 6.283185307179586f;

struct PhiloxPair {
  uint32_t x0;
  uint32_t x1;
};

L2L_HOST_DEVICE uint32_t mul_hi32(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

// First two outputs of Philox4x32-10 at counter (lo32(c), hi32(c), 0, 0), key
// (lo32(seed), hi32(seed)); the other two are never used by tl.randn.
L2L_HOST_DEVICE PhiloxPair philox4x32_10(uint64_t seed, uint64_t counter) {
  uint32_t c0 = static_cast<uint32_t>(counter);
  uint32_t c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = 0;
  uint32_t c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed);
  uint32_t k1 = static_cast<uint32_t>(seed >> 32);
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < kPhiloxRounds; ++round) {
    const uint32_t prev_c0 = c0;
    const uint32_t prev_c2 = c2;
    c0 = mul_hi32(kPhiloxRoundB, prev_c2) ^ c1 ^ k0;
    c2 = mul_hi32(kPhiloxRoundA, prev_c0) ^ c3 ^ k1;
    c1 = kPhiloxRoundB * prev_c2;
    c3 = kPhiloxRoundA * prev_c0;
    k0 += kPhiloxKeyA;
    k1 += kPhiloxKeyB;
  }
  return {c0, c1};
}

// Triton's uint_to_uniform_float: bitcast to int32, negatives to ~x (= -x - 1).
L2L_HOST_DEVICE float uint_to_uniform(uint32_t bits) {
  int32_t x = static_cast<int32_t>(bits);
  x = x < 0 ? ~x : x;
  return static_cast<float>(x) * kUniformScale;
}

// First output of Triton's pair_uniform_to_normal, in float32.
L2L_HOST_DEVICE float box_muller(float u1, float u2) {
  u1 = u1 < kBoxMullerMinU ? kBoxMullerMinU : u1;
  const float theta = kTwoPi * u2;
  const float radius = sqrtf(-2.0f * logf(u1));
  return radius * cosf(theta);
}

L2L_HOST_DEVICE float philox_normal(uint64_t seed, uint64_t counter) {
  const PhiloxPair r = philox4x32_10(seed, counter);
  return box_muller(uint_to_uniform(r.x0), uint_to_uniform(r.x1));
}

}  // namespace l2l_fast
