// Shared between the kernel files only (not part of the public API).
#pragma once
#include <vector>

#include "kernels/kernels.h"

namespace g4::kernels::detail {

const KernelTable& scalar_table();
const KernelTable& avx2_table();  // callable only when the CPU has AVX2+FMA+F16C

// Per-thread scratch buffer of at least n floats; grows, never shrinks, so a
// steady-state forward pass does not allocate.
inline float* scratch_floats(size_t n) {
  thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// Per-thread Q8_0 activation scratch of at least n blocks (separate from
// scratch_floats, which the matmul kernels use on the worker threads).
inline BlockQ8_0* scratch_q8(size_t n) {
  thread_local std::vector<BlockQ8_0> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// Scalar dequantizers (exact; the SIMD paths produce the same values).
void dequant_f32_scalar(const uint8_t* src, float* dst, int64_t n);
void dequant_f16_scalar(const uint8_t* src, float* dst, int64_t n);
void dequant_bf16_scalar(const uint8_t* src, float* dst, int64_t n);
void dequant_q8_0_scalar(const uint8_t* src, float* dst, int64_t n);
void dequant_q4_0_scalar(const uint8_t* src, float* dst, int64_t n);

}  // namespace g4::kernels::detail
