// Shared between the kernel files only (not part of the public API).
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/kernels.h"

namespace g4::kernels::detail {

const KernelTable& scalar_table();
const KernelTable& avx2_table();  // callable only when the CPU has AVX2+FMA+F16C
// Fills the AVX2 slots of the quants.h types (quants_avx2.cpp); called by the
// AVX2 table's constructor.
void add_avx2_quant_kernels(KernelTable& t);
// Callable only when isa_available(Isa::Avx512) (AVX-512 F/BW/VL/DQ + AVX2).
const KernelTable& avx512_table();
// Puts the AVX-512 VNNI Q4_0/Q8_0 matmuls into t (kernels_avx512_int8.cpp);
// only for a CPU with AVX-512 VNNI.
void install_avx512_int8(KernelTable& t);

// Per-thread scratch buffer of at least n floats; grows, never shrinks, so a
// steady-state forward pass does not allocate.
inline float* scratch_floats(size_t n) {
  thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// Per-thread scratch of at least n bytes (64-byte aligned) for quantized
// activation rows (separate from scratch_floats, which the matmul kernels use
// on the worker threads).
inline uint8_t* scratch_act(size_t n) {
  thread_local std::vector<uint64_t> buf;  // 8-byte elements; +8 for alignment
  const size_t words = (n + 64 + 7) / 8;
  if (buf.size() < words) buf.resize(words);
  auto p = reinterpret_cast<uintptr_t>(buf.data());
  return reinterpret_cast<uint8_t*>((p + 63) & ~uintptr_t{63});
}

// Scalar dequantizers (exact; the SIMD paths produce the same values).
void dequant_f32_scalar(const uint8_t* src, float* dst, int64_t n);
void dequant_f16_scalar(const uint8_t* src, float* dst, int64_t n);
void dequant_bf16_scalar(const uint8_t* src, float* dst, int64_t n);
void dequant_q8_0_scalar(const uint8_t* src, float* dst, int64_t n);
void dequant_q4_0_scalar(const uint8_t* src, float* dst, int64_t n);

}  // namespace g4::kernels::detail
