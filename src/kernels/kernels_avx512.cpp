// AVX-512 (F/BW/VL/DQ) kernel table: starts as a copy of the AVX2 table and
// overrides the Q8_0 activation quantizer, GELU/GeGLU and the fp32-activation
// matmuls (float weight types directly, the others dequantized); the int8 matmuls of Q4_0/Q8_0 come from
// kernels_avx512_int8.cpp when the CPU also has AVX-512 VNNI (otherwise those
// slots keep the AVX2 kernels). Per-function target attributes, run-time
// dispatch only: this file is safe in a binary for any x86-64.
//
// GCC 12 reports its own _mm512_undefined_*() self-initialisation inside
// avx512fintrin.h as uninitialised once inlined (GCC PR 105593): silence that
// header only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <cstring>

#include "core/cpu_features.h"
#include "core/dtype.h"
#include "kernels/kernels_internal.h"

#define G4_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))

namespace g4::kernels::detail {
namespace {

// ---- Q8_0 activation quantizer ------------------------------------------------

// Bit-identical to quantize_act_q8_0: the same amax (max of |x|, exact in any
// order), d = amax/127 and id = 127/amax in scalar fp32, the same fp32
// products x·id, rounded half to even (vcvtps2dq under the default MXCSR
// rounding, as std::nearbyint), |q| <= 127 so the narrowing never saturates.
G4_AVX512 void quantize_q8_0_avx512(const float* x, void* dst_bytes, int64_t n) {
  auto* dst = static_cast<BlockQ8_0*>(dst_bytes);
  if (n % kQK != 0) {
    quantize_act_q8_0(x, dst, n);  // throws the reference's error
    return;
  }
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    const __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.f;
    const float id = amax != 0.f ? 127.f / amax : 0.f;
    const uint16_t dh = f32_to_fp16(d);
    std::memcpy(&dst[b].d, &dh, 2);
    const __m512 idv = _mm512_set1_ps(id);
    const __m128i q0 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v0, idv)));
    const __m128i q1 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v1, idv)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst[b].qs), q0);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst[b].qs + 16), q1);
  }
}

// ---- GELU (tanh form) ------------------------------------------------------------

// The AVX2 table's exp / tanh / gelu (kernels_avx2.cpp) on 16 lanes: the same
// constants and the same operation sequence per lane, so each lane gives the
// bits the AVX2 kernel gives.
G4_AVX512 inline __m512 exp16(__m512 x) {
  const __mmask16 underflow = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3365478515625f), _CMP_LT_OQ);
  x = _mm512_min_ps(x, _mm512_set1_ps(88.3762626647949f));
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.3365478515625f));
  __m512 fx = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f));
  fx = _mm512_roundscale_ps(fx, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 x2 = _mm512_mul_ps(x, x);
  y = _mm512_fmadd_ps(y, x2, _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
  __m512i n = _mm512_cvttps_epi32(fx);
  n = _mm512_slli_epi32(_mm512_add_epi32(n, _mm512_set1_epi32(127)), 23);
  y = _mm512_mul_ps(y, _mm512_castsi512_ps(n));
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~underflow), y);
}

G4_AVX512 inline __m512 tanh16(__m512 x) {
  const __m512 sign_bit = _mm512_set1_ps(-0.0f);
  const __m512 sign = _mm512_and_ps(x, sign_bit);
  const __m512 ax = _mm512_andnot_ps(sign_bit, x);
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 p = _mm512_set1_ps(-5.70498872745e-3f);
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954e-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531e-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036e-1f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422e-1f));
  const __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
  const __m512 e = exp16(_mm512_mul_ps(_mm512_min_ps(ax, _mm512_set1_ps(9.0f)), _mm512_set1_ps(2.0f)));
  __m512 big = _mm512_sub_ps(_mm512_set1_ps(1.0f), _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
  big = _mm512_mask_mov_ps(big, _mm512_cmp_ps_mask(ax, _mm512_set1_ps(9.0f), _CMP_GE_OQ), _mm512_set1_ps(1.0f));
  big = _mm512_or_ps(big, sign);
  return _mm512_mask_mov_ps(big, _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_LT_OQ), small);
}

G4_AVX512 inline __m512 gelu16(__m512 x) {
  const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
  const __m512 inner =
      _mm512_mul_ps(_mm512_set1_ps(0.7978845608028654f), _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), x3, x));
  return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), _mm512_add_ps(_mm512_set1_ps(1.0f), tanh16(inner)));
}

G4_AVX512 void gelu_avx512(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, gelu16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const auto m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, gelu16(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

G4_AVX512 void geglu_avx512(const float* g, const float* u, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_mul_ps(gelu16(_mm512_loadu_ps(g + i)), _mm512_loadu_ps(u + i)));
  if (i < n) {
    const auto m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m,
                          _mm512_mul_ps(gelu16(_mm512_maskz_loadu_ps(m, g + i)), _mm512_maskz_loadu_ps(m, u + i)));
  }
}

// ---- fp32-activation matmuls (F32 / F16 / BF16 weights) ---------------------

// Weight loaders: 16 consecutive elements of a row from element i, exactly
// converted to fp32 (all n of them if the mask variant is used for a tail).
struct LoadF32 {
  G4_AVX512 static __m512 load(const uint8_t* row, int64_t i) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + i);
  }
  G4_AVX512 static __m512 load_mask(const uint8_t* row, int64_t i, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + i);
  }
};
struct LoadF16 {
  G4_AVX512 static __m512 load(const uint8_t* row, int64_t i) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * i)));
  }
  G4_AVX512 static __m512 load_mask(const uint8_t* row, int64_t i, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * i));
  }
};
struct LoadBF16 {
  G4_AVX512 static __m512 widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  G4_AVX512 static __m512 load(const uint8_t* row, int64_t i) {
    return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * i)));
  }
  G4_AVX512 static __m512 load_mask(const uint8_t* row, int64_t i, __mmask16 m) {
    return widen(_mm256_maskz_loadu_epi16(m, row + 2 * i));
  }
};

// NR rows × NT tokens. Each (row, token) pair has exactly one 16-lane FMA
// accumulator over the 16-element chunks (the tail chunk masked to zero),
// then a fixed horizontal sum: its value does not depend on NR/NT, the row
// range or n_tok (tiling never changes results).
template <class L, int NR, int NT>
G4_AVX512 inline void micro_f(const uint8_t* w, size_t w_stride, const float* x, int64_t xs, int64_t n, float* y,
                              int64_t ys) {
  __m512 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 xv[NT];
    for (int t = 0; t < NT; ++t) xv[t] = _mm512_loadu_ps(x + t * xs + i);
    for (int r = 0; r < NR; ++r) {
      const __m512 wv = L::load(w + r * w_stride, i);
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  }
  if (i < n) {
    const auto m = static_cast<__mmask16>((1u << (n - i)) - 1);
    __m512 xv[NT];
    for (int t = 0; t < NT; ++t) xv[t] = _mm512_maskz_loadu_ps(m, x + t * xs + i);
    for (int r = 0; r < NR; ++r) {
      const __m512 wv = L::load_mask(w + r * w_stride, i, m);
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) y[t * ys + r] = _mm512_reduce_add_ps(acc[r][t]);
}

// NR rows over all tokens: tiles of 4 tokens, then the 1..3 left.
template <class L, int NR>
G4_AVX512 void tokens_f(const uint8_t* w, size_t w_stride, const float* x, int64_t n_tok, int64_t xs, int64_t n,
                        float* y, int64_t ys) {
  int64_t t = 0;
  for (; t + 4 <= n_tok; t += 4) micro_f<L, NR, 4>(w, w_stride, x + t * xs, xs, n, y + t * ys, ys);
  switch (n_tok - t) {
    case 3: micro_f<L, NR, 3>(w, w_stride, x + t * xs, xs, n, y + t * ys, ys); break;
    case 2: micro_f<L, NR, 2>(w, w_stride, x + t * xs, xs, n, y + t * ys, ys); break;
    case 1: micro_f<L, NR, 1>(w, w_stride, x + t * xs, xs, n, y + t * ys, ys); break;
    default: break;
  }
}

// nr rows at w (row stride rs bytes) times all tokens: row tiles of 4 (8
// when decoding one token, which streams the weights and wants more
// independent accumulators), then single rows.
template <class L>
G4_AVX512 void rows_f(const uint8_t* w, size_t rs, int64_t nr, int64_t n, const float* x, int64_t n_tok,
                      int64_t x_stride, float* y, int64_t y_stride) {
  int64_t r = 0;
  if (n_tok == 1) {
    for (; r + 8 <= nr; r += 8) micro_f<L, 8, 1>(w + r * rs, rs, x, x_stride, n, y + r, y_stride);
  }
  for (; r + 4 <= nr; r += 4) tokens_f<L, 4>(w + r * rs, rs, x, n_tok, x_stride, n, y + r, y_stride);
  for (; r < nr; ++r) tokens_f<L, 1>(w + r * rs, rs, x, n_tok, x_stride, n, y + r, y_stride);
}

template <class L>
G4_AVX512 void matmul_f_avx512(const WeightMatrix& w, int64_t r0, int64_t r1, const float* x, int64_t n_tok,
                               int64_t x_stride, float* y, int64_t y_stride) {
  rows_f<L>(w.row(r0), w.row_bytes, r1 - r0, w.n_in, x, n_tok, x_stride, y + r0, y_stride);
}

// fp32 activations with any other weight type (ActMode::F32): tiles of rows
// dequantized exactly (by this table's dequantizer of the type) into
// per-thread scratch, then the F32 kernel, so the result is bit for bit that
// of an F32 matrix holding the dequantized values.
G4_AVX512 void matmul_deq_avx512(const WeightMatrix& w, int64_t r0, int64_t r1, const float* x, int64_t n_tok,
                                 int64_t x_stride, float* y, int64_t y_stride) {
  const KernelTable::DequantFn dq = avx512_table().dequant_for(w.type);
  const int64_t n = w.n_in;
  int64_t tile = (int64_t{1} << 16) / (n > 0 ? n : 1);
  tile = tile < 8 ? 8 : (tile > 32 ? 32 : tile & ~int64_t{7});
  float* buf = scratch_floats(static_cast<size_t>(tile * n));
  for (int64_t r = r0; r < r1; r += tile) {
    const int64_t nr = (r + tile <= r1) ? tile : r1 - r;
    for (int64_t k = 0; k < nr; ++k) dq(w.row(r + k), buf + k * n, n);
    rows_f<LoadF32>(reinterpret_cast<const uint8_t*>(buf), static_cast<size_t>(n) * sizeof(float), nr, n, x, n_tok,
                    x_stride, y + r, y_stride);
  }
}

KernelTable make_avx512_table() {
  KernelTable t = avx2_table();
  t.isa = Isa::Avx512;
  t.types[static_cast<int>(GgmlType::F32)].matmul = matmul_f_avx512<LoadF32>;
  t.types[static_cast<int>(GgmlType::F16)].matmul = matmul_f_avx512<LoadF16>;
  t.types[static_cast<int>(GgmlType::BF16)].matmul = matmul_f_avx512<LoadBF16>;
  // Every other type's fp32-activation matmul: dequantize, then the F32 kernel.
  for (int id = 0; id < KernelTable::kTypeSlots; ++id) {
    const auto type = static_cast<GgmlType>(id);
    if (t.types[id].matmul && type != GgmlType::F32 && type != GgmlType::F16 && type != GgmlType::BF16)
      t.types[id].matmul = matmul_deq_avx512;
  }
  t.quantize_act[static_cast<int>(GgmlType::Q8_0)] = quantize_q8_0_avx512;
  t.gelu_tanh = gelu_avx512;
  t.geglu = geglu_avx512;
  if (cpu_features().avx512vnni) install_avx512_int8(t);
  return t;
}

}  // namespace

const KernelTable& avx512_table() {
  static const KernelTable t = make_avx512_table();
  return t;
}

}  // namespace g4::kernels::detail
