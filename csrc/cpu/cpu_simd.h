// Per-ISA builds of the CPU inner loops.
//
// The extension is compiled for the baseline ISA (no -mavx2), where
// at::vec::Vectorized falls back to its generic, scalar implementation. The
// inner loops are therefore plain fixed-width loops that the compiler
// vectorises, and each L2L_CPU_CLONES function is built for x86-64-v4 (AVX-512),
// x86-64-v3 (AVX2, FMA, F16C) and the baseline, the best one picked at load
// time (GCC target_clones). Elsewhere they are built once, for the baseline.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) && \
    defined(__linux__)
#define L2L_CPU_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define L2L_CPU_CLONES
#endif

#if defined(__GNUC__) || defined(__clang__)
#define L2L_ALWAYS_INLINE inline __attribute__((always_inline))
#define L2L_RESTRICT __restrict__
#elif defined(_MSC_VER)
#define L2L_ALWAYS_INLINE __forceinline
#define L2L_RESTRICT __restrict
#else
#define L2L_ALWAYS_INLINE inline
#define L2L_RESTRICT
#endif

namespace l2l_fast::cpu {

// Independent fp32 accumulators per loop step: wide enough for one AVX-512
// register, and the reduction stays exact-order, so no -ffast-math is needed.
constexpr int64_t kLanes = 16;

}  // namespace l2l_fast::cpu
