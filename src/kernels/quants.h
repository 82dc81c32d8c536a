// The ggml block types beyond Q8_0/Q4_0: Q4_1, Q5_0, Q5_1, MXFP4 (32-element
// blocks) and the K-quants Q4_K, Q5_K, Q6_K, Q8_K (256-element super-blocks),
// with ggml's numerics (byte layouts in quant_blocks.h).
//
// What "ggml's numerics" means for each piece:
//   * weight quantizers: bit-identical to the reference quantizers
//     llama-quantize runs without an importance matrix (the K-quants' scale
//     searches included), so a file we write is the file llama.cpp writes;
//   * activation quantizers: bit-identical to ggml's x86 run-time ones —
//     Q8_1 rounds x·(127/amax) half to even and stores s = fp16(d·Σq); Q8_K is
//     its reference (iscale = −127/max of the signed largest value, q rounded
//     half to even, d = 1/iscale in fp32, bsums = sums of 16 consecutive q);
//   * dequantizers: exact, with ggml's fp32 operation order (e.g. Q4_K:
//     (d·sc)·q − dmin·m, no fused multiply-add), so SIMD versions match bit
//     for bit;
//   * block dot products (the matmul_q kernels): the same exact integer sums
//     as ggml's x86 vec_dot kernels; only the fp32 accumulation order of the
//     per-block terms is ours (see each vec_dot below).
#pragma once
#include <cstdint>
#include <cstring>

#include "kernels/kernels.h"

namespace g4::kernels {

// ---- weight quantizers (llama-quantize reference, no importance matrix) -----
// n: elements, a multiple of the block (32 or 256); throws g4::Error otherwise.

// Q4_1: d = (max − min)/15, m = min, q = min(15, trunc((x − min)/d + 0.5)).
void quantize_row_q4_1(const float* x, BlockQ4_1* dst, int64_t n);
// Q5_0: d = max/−16 (max = the signed value of largest magnitude),
// q = min(31, trunc(x/d + 16.5)).
void quantize_row_q5_0(const float* x, BlockQ5_0* dst, int64_t n);
// Q5_1: d = (max − min)/31, m = min, q = trunc((x − min)/d + 0.5).
void quantize_row_q5_1(const float* x, BlockQ5_1* dst, int64_t n);
// MXFP4: e = floor(log2(amax)) − 2 + 127, each value the nearest of the 16
// E2M1 codes times 2^(e−127) (first code on a tie).
void quantize_row_mxfp4(const float* x, BlockMxfp4* dst, int64_t n);
// Q4_K / Q5_K: per 32-element sub-block a weighted least-squares search for
// (scale, min) over 21 / 16 candidate grids (weights av|x| + |x|), scales and
// mins quantized to 6 bits against the super-block's largest, then every
// value re-quantized with the 6-bit scales.
void quantize_row_q4_K(const float* x, BlockQ4_K* dst, int64_t n);
void quantize_row_q5_K(const float* x, BlockQ5_K* dst, int64_t n);
// Q6_K: per 16-element sub-block a signed scale search (19 candidates,
// weights x²), scales quantized to int8 against the largest, values
// re-quantized to [−32, 31].
void quantize_row_q6_K(const float* x, BlockQ6_K* dst, int64_t n);
// Q8_K (weights and activations, one definition in ggml): see the header.
void quantize_row_q8_K(const float* x, BlockQ8_K* dst, int64_t n);

// ---- activation quantizers (ggml x86 run time) -------------------------------

// Q8_1 for Q4_1/Q5_1 dots: Q8_0's x86 rounding plus s = fp16(d · Σq).
void quantize_act_q8_1(const float* x, BlockQ8_1* dst, int64_t n);
// Q8_K for the K-quant dots: quantize_row_q8_K.
void quantize_act_q8_K(const float* x, BlockQ8_K* dst, int64_t n);

// ---- block layout helpers (shared by the scalar and SIMD kernels) -----------
namespace detail {

// The 16 E2M1 codes of MXFP4 as int8, doubled (ggml's kvalues_mxfp4: 0, ±0.5,
// ±1, ±1.5, ±2, ±3, ±4, ±6 times 2), so the block scale is half the E8M0 one.
inline constexpr int8_t kMxfp4Values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// 2^(e−128) (half the E8M0 scale 2^(e−127)), exactly as ggml builds the bits:
// e < 2 gives the subnormals 2^-128 / 2^-127.
inline float e8m0_half(uint8_t e) {
  const uint32_t bits = e < 2 ? (uint32_t{0x00200000} << e) : (static_cast<uint32_t>(e - 1) << 23);
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Q4_K/Q5_K packed scales: 12 bytes hold eight 6-bit scales sc[j] and mins
// m[j]. Bytes 0-3: sc[0..3] in bits 0-5; bytes 4-7: m[0..3] in bits 0-5;
// bytes 8-11: sc[4..7] low nibble, m[4..7] high nibble; the top two bits of
// sc[4..7] sit in bits 6-7 of bytes 0-3 and those of m[4..7] in bytes 4-7.
struct KScales {
  uint8_t sc[8];
  uint8_t m[8];
};
inline KScales unpack_k_scales(const uint8_t* s) {
  KScales k;
  for (int j = 0; j < 4; ++j) {
    k.sc[j] = s[j] & 63;
    k.m[j] = s[j + 4] & 63;
    k.sc[j + 4] = static_cast<uint8_t>((s[j + 8] & 0x0F) | ((s[j] >> 6) << 4));
    k.m[j + 4] = static_cast<uint8_t>((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
  }
  return k;
}

// Exact dequantizers (scalar references; every ISA's version matches them bit
// for bit). n: a multiple of the type's block.
void dequant_q4_1_scalar(const uint8_t* src, float* dst, int64_t n);
void dequant_q5_0_scalar(const uint8_t* src, float* dst, int64_t n);
void dequant_q5_1_scalar(const uint8_t* src, float* dst, int64_t n);
void dequant_mxfp4_scalar(const uint8_t* src, float* dst, int64_t n);
void dequant_q4_K_scalar(const uint8_t* src, float* dst, int64_t n);
void dequant_q5_K_scalar(const uint8_t* src, float* dst, int64_t n);
void dequant_q6_K_scalar(const uint8_t* src, float* dst, int64_t n);
void dequant_q8_K_scalar(const uint8_t* src, float* dst, int64_t n);

// Scalar block dot products of nb blocks (the definition matmul_q kernels are
// tested against). Exact integer sum per block, then in block order:
//   Q4_1/Q5_1:  sumf += float(Σ q_w·q_a) · (d_w·d_a);  summ += m_w·s_a;  → sumf + summ
//   Q5_0:       sumf += float(Σ (q_w−16)·q_a) · (d_w·d_a)
//   MXFP4:      sumf += float(Σ v_w·q_a) · (d_a·e8m0_half(e))   (v: doubled E2M1)
//   Q4_K/Q5_K:  sumf += (d_a·d_w) · float(Σ_j sc_j·Σ q_w·q_a);
//               summ += (−d_a·dmin_w) · float(Σ_j m_j·(bsums[2j] + bsums[2j+1]));  → sumf + summ
//   Q6_K:       sumf += (d_a·d_w) · float(Σ_j sc_j·Σ (q_w−32)·q_a)
//   Q8_K:       sumf += (d_a·d_w) · float(Σ q_w·q_a)
float vec_dot_q4_1_q8_1(const BlockQ4_1* w, const BlockQ8_1* a, int64_t nb);
float vec_dot_q5_0_q8_0(const BlockQ5_0* w, const BlockQ8_0* a, int64_t nb);
float vec_dot_q5_1_q8_1(const BlockQ5_1* w, const BlockQ8_1* a, int64_t nb);
float vec_dot_mxfp4_q8_0(const BlockMxfp4* w, const BlockQ8_0* a, int64_t nb);
float vec_dot_q4_K_q8_K(const BlockQ4_K* w, const BlockQ8_K* a, int64_t nb);
float vec_dot_q5_K_q8_K(const BlockQ5_K* w, const BlockQ8_K* a, int64_t nb);
float vec_dot_q6_K_q8_K(const BlockQ6_K* w, const BlockQ8_K* a, int64_t nb);
float vec_dot_q8_K_q8_K(const BlockQ8_K* w, const BlockQ8_K* a, int64_t nb);

}  // namespace detail
}  // namespace g4::kernels
