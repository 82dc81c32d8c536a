// AVX2 + FMA + F16C kernels. Every function carries its own target attribute
// (no -mavx2 for the file), and the table is only handed out after a run-time
// CPU check, so this file is safe in a binary for any x86-64.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "kernels/avx2_util.h"
#include "kernels/kernels_internal.h"


namespace g4::kernels::detail {
namespace {

// ---- helpers ----------------------------------------------------------------

G4_AVX2 inline float fma1(float a, float b, float c) {
  return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
}

// exp(x) for fp32 lanes, Cephes-style range reduction + degree-6 polynomial
// (about 1-2 ulp). Lanes below -87.3 (including -inf) give exactly 0.
G4_AVX2 inline __m256 exp8(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.3762626647949f);
  const __m256 lo = _mm256_set1_ps(-87.3365478515625f);
  const __m256 underflow = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_min_ps(x, hi);
  x = _mm256_max_ps(x, lo);
  __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
  fx = _mm256_floor_ps(fx);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 x2 = _mm256_mul_ps(x, x);
  y = _mm256_fmadd_ps(y, x2, _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  __m256i n = _mm256_cvttps_epi32(fx);
  n = _mm256_add_epi32(n, _mm256_set1_epi32(127));
  n = _mm256_slli_epi32(n, 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(n));
  return _mm256_andnot_ps(underflow, y);
}

// tanh(x): odd polynomial for |x| < 0.625, 1 - 2/(exp(2|x|) + 1) above.
G4_AVX2 inline __m256 tanh8(__m256 x) {
  const __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
  const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
  // small branch
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
  // large branch (clamped so exp does not overflow; tanh(9) == 1 in fp32)
  const __m256 e = exp8(_mm256_mul_ps(_mm256_min_ps(ax, _mm256_set1_ps(9.0f)), _mm256_set1_ps(2.0f)));
  __m256 big = _mm256_sub_ps(_mm256_set1_ps(1.0f),
                             _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
  // tanh(x) rounds to ±1 in fp32 for |x| >= 9: saturate exactly, as libm does.
  big = _mm256_blendv_ps(big, _mm256_set1_ps(1.0f), _mm256_cmp_ps(ax, _mm256_set1_ps(9.0f), _CMP_GE_OQ));
  big = _mm256_or_ps(big, sign);
  const __m256 is_small = _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ);
  return _mm256_blendv_ps(big, small, is_small);
}

G4_AVX2 inline __m256 gelu8(__m256 x) {
  const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
  const __m256 inner =
      _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
  const __m256 t = tanh8(inner);
  return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(_mm256_set1_ps(1.0f), t));
}

// Tail lanes: load/store the first `n` (< 8) floats through a small buffer.
G4_AVX2 inline __m256 load_partial(const float* p, int64_t n, float fill) {
  alignas(32) float tmp[8];
  for (int i = 0; i < 8; ++i) tmp[i] = i < n ? p[i] : fill;
  return _mm256_load_ps(tmp);
}
G4_AVX2 inline void store_partial(float* p, __m256 v, int64_t n) {
  alignas(32) float tmp[8];
  _mm256_store_ps(tmp, v);
  for (int64_t i = 0; i < n; ++i) p[i] = tmp[i];
}

// ---- dequantization (bit-identical to the scalar versions) -----------------

G4_AVX2 void dequant_f16_avx2(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i))));
  if (i < n) dequant_f16_scalar(src + 2 * i, dst + i, n - i);
}

G4_AVX2 void dequant_bf16_avx2(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i)));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
  }
  if (i < n) dequant_bf16_scalar(src + 2 * i, dst + i, n - i);
}

G4_AVX2 void dequant_q8_0_avx2(const uint8_t* src, float* dst, int64_t n) {
  const auto* b = reinterpret_cast<const BlockQ8_0*>(src);
  for (int64_t blk = 0; blk < n / kQK; ++blk) {
    uint16_t dh;
    std::memcpy(&dh, &b[blk].d, 2);
    const __m256 d = _mm256_set1_ps(fp16_to_f32(dh));
    float* o = dst + blk * kQK;
    for (int j = 0; j < kQK; j += 8) {
      const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b[blk].qs + j));
      const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8));
      _mm256_storeu_ps(o + j, _mm256_mul_ps(q, d));
    }
  }
}

G4_AVX2 void dequant_q4_0_avx2(const uint8_t* src, float* dst, int64_t n) {
  const auto* b = reinterpret_cast<const BlockQ4_0*>(src);
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i eight = _mm_set1_epi8(8);
  for (int64_t blk = 0; blk < n / kQK; ++blk) {
    uint16_t dh;
    std::memcpy(&dh, &b[blk].d, 2);
    const __m256 d = _mm256_set1_ps(fp16_to_f32(dh));
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[blk].qs));
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(raw, mask), eight);                     // elements 0..15
    const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), mask), eight);  // elements 16..31
    float* o = dst + blk * kQK;
    _mm256_storeu_ps(o + 0, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), d));
    _mm256_storeu_ps(o + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), d));
    _mm256_storeu_ps(o + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), d));
    _mm256_storeu_ps(o + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), d));
  }
}

// ---- matmul -----------------------------------------------------------------

// NR rows × NT tokens of fp32 dots. Each (row, token) pair has exactly one
// 8-lane accumulator, then a fixed horizontal sum and a sequential FMA tail,
// so its value does not depend on NR/NT (tiling never changes results).
template <int NR, int NT>
G4_AVX2 inline void micro(const float* w, int64_t w_stride, const float* x, int64_t x_stride, int64_t n,
                          float* y, int64_t y_stride) {
  __m256 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
  const int64_t n8 = n & ~int64_t{7};
  for (int64_t i = 0; i < n8; i += 8) {
    __m256 xv[NT];
    for (int t = 0; t < NT; ++t) xv[t] = _mm256_loadu_ps(x + t * x_stride + i);
    for (int r = 0; r < NR; ++r) {
      const __m256 wv = _mm256_loadu_ps(w + r * w_stride + i);
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  }
  for (int r = 0; r < NR; ++r) {
    for (int t = 0; t < NT; ++t) {
      float s = hsum8(acc[r][t]);
      for (int64_t i = n8; i < n; ++i) s = fma1(w[r * w_stride + i], x[t * x_stride + i], s);
      y[t * y_stride + r] = s;
    }
  }
}

// Rows given as fp32 (in place for F32 weights, dequantized otherwise).
G4_AVX2 void rows_f32(const float* w, int64_t w_stride, int64_t nr, int64_t n, const float* x, int64_t n_tok,
                      int64_t x_stride, float* y, int64_t y_stride) {
  int64_t r = 0;
  for (; r + 4 <= nr; r += 4) {
    int64_t t = 0;
    for (; t + 2 <= n_tok; t += 2)
      micro<4, 2>(w + r * w_stride, w_stride, x + t * x_stride, x_stride, n, y + t * y_stride + r, y_stride);
    if (t < n_tok) micro<4, 1>(w + r * w_stride, w_stride, x + t * x_stride, x_stride, n, y + t * y_stride + r, y_stride);
  }
  for (; r < nr; ++r) {
    int64_t t = 0;
    for (; t + 2 <= n_tok; t += 2)
      micro<1, 2>(w + r * w_stride, w_stride, x + t * x_stride, x_stride, n, y + t * y_stride + r, y_stride);
    if (t < n_tok) micro<1, 1>(w + r * w_stride, w_stride, x + t * x_stride, x_stride, n, y + t * y_stride + r, y_stride);
  }
}

G4_AVX2 void matmul_f32_avx2(const WeightMatrix& w, int64_t r0, int64_t r1, const float* x, int64_t n_tok,
                             int64_t x_stride, float* y, int64_t y_stride) {
  const auto* base = reinterpret_cast<const float*>(w.row(r0));
  rows_f32(base, static_cast<int64_t>(w.row_bytes / sizeof(float)), r1 - r0, w.n_in, x, n_tok, x_stride, y + r0,
           y_stride);
}

// Dequantize tiles of rows into per-thread scratch (at most ~64K floats), then
// run the fp32 micro-kernels over all tokens.
template <KernelTable::DequantFn Dequant>
G4_AVX2 void matmul_deq_avx2(const WeightMatrix& w, int64_t r0, int64_t r1, const float* x, int64_t n_tok,
                             int64_t x_stride, float* y, int64_t y_stride) {
  const int64_t n = w.n_in;
  int64_t tile = (int64_t{1} << 16) / (n > 0 ? n : 1);
  tile = tile < 4 ? 4 : (tile > 32 ? 32 : tile & ~int64_t{3});
  float* buf = scratch_floats(static_cast<size_t>(tile * n));
  for (int64_t r = r0; r < r1; r += tile) {
    const int64_t nr = (r + tile <= r1) ? tile : r1 - r;
    for (int64_t k = 0; k < nr; ++k) Dequant(w.row(r + k), buf + k * n, n);
    rows_f32(buf, n, nr, n, x, n_tok, x_stride, y + r, y_stride);
  }
}

// ---- Q8_0-activation path --------------------------------------------------

// quantize_act_q8_0, bit-identical to the scalar reference: same amax, same
// d = amax/127 and id = 127/amax (scalar fp32), same x·id products, rounding
// half to even (_mm256_round_ps to nearest).
G4_AVX2 void quantize_q8_0_avx2(const float* x, void* dst_bytes, int64_t n) {
  auto* dst = static_cast<BlockQ8_0*>(dst_bytes);
  if (n % kQK != 0) {
    quantize_act_q8_0(x, dst, n);  // throws the reference's error
    return;
  }
  const __m256 sign_mask = _mm256_set1_ps(-0.0f);
  const __m256 half = _mm256_set1_ps(0.5f);
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    __m256 v[4];
    for (int i = 0; i < 4; ++i) v[i] = _mm256_loadu_ps(xb + 8 * i);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign_mask, v[0]), _mm256_andnot_ps(sign_mask, v[1])),
                             _mm256_max_ps(_mm256_andnot_ps(sign_mask, v[2]), _mm256_andnot_ps(sign_mask, v[3])));
    const float amax = hmax8(m);
    const float d = amax / 127.f;
    const float id = amax != 0.f ? 127.f / amax : 0.f;
    const uint16_t dh = f32_to_fp16(d);
    std::memcpy(&dst[b].d, &dh, 2);
    const __m256 idv = _mm256_set1_ps(id);
    __m256i q[4];
    for (int i = 0; i < 4; ++i) {
      const __m256 p = _mm256_mul_ps(v[i], idv);
      const __m256 r = _mm256_round_ps(p, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      q[i] = _mm256_cvttps_epi32(r);
    }
    const __m256i p16a = _mm256_packs_epi32(q[0], q[1]);
    const __m256i p16b = _mm256_packs_epi32(q[2], q[3]);
    const __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b), perm);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst[b].qs), p8);
  }
}

G4_AVX2 inline __m256i load_w_block(const BlockQ8_0* b) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs));
}
// Q4_0 block to 32 int8 in [-8, 7]: low nibbles are elements 0..15, high 16..31.
G4_AVX2 inline __m256i load_w_block(const BlockQ4_0* b) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->qs));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(raw, mask);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
  return _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
}
G4_AVX2 inline float block_d(uint16_t h) { return _cvtsh_ss(h); }

// NR weight rows × NT tokens. Per block: signed×signed int8 dot via the sign
// trick (maddubs(|w|, sign(a, w)), |products| <= 2·127·128 fits int16), pairs
// to int32 (madd with ones), to fp32, then acc += (d_w·d_a) · that, one 8-lane
// accumulator per (row, token); fixed horizontal sum at the end. The value of
// each (row, token) does not depend on NR/NT.
template <typename WBlock, int NR, int NT>
G4_AVX2 inline void micro_q8(const WeightMatrix& w, int64_t r, const BlockQ8_0* xq, int64_t xq_stride, int64_t nb,
                             float* y, int64_t y_stride) {
  __m256 acc[NR][NT];
  for (int i = 0; i < NR; ++i)
    for (int t = 0; t < NT; ++t) acc[i][t] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  const WBlock* wr[NR];
  for (int i = 0; i < NR; ++i) wr[i] = reinterpret_cast<const WBlock*>(w.row(r + i));
  for (int64_t b = 0; b < nb; ++b) {
    __m256i wv[NR], wa[NR];
    float dw[NR];
    for (int i = 0; i < NR; ++i) {
      wv[i] = load_w_block(wr[i] + b);
      wa[i] = _mm256_sign_epi8(wv[i], wv[i]);
      uint16_t h;
      std::memcpy(&h, &wr[i][b].d, 2);
      dw[i] = block_d(h);
    }
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_0* a = xq + t * xq_stride + b;
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a->qs));
      uint16_t h;
      std::memcpy(&h, &a->d, 2);
      const float da = block_d(h);
      for (int i = 0; i < NR; ++i) {
        const __m256i p16 = _mm256_maddubs_epi16(wa[i], _mm256_sign_epi8(av, wv[i]));
        const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
        acc[i][t] = _mm256_fmadd_ps(_mm256_set1_ps(dw[i] * da), p, acc[i][t]);
      }
    }
  }
  for (int i = 0; i < NR; ++i)
    for (int t = 0; t < NT; ++t) y[t * y_stride + r + i] = hsum8(acc[i][t]);
}

template <typename WBlock, int NR>
G4_AVX2 inline void rows_q8(const WeightMatrix& w, int64_t r, const BlockQ8_0* xq, int64_t n_tok, int64_t xq_stride,
                            int64_t nb, float* y, int64_t y_stride) {
  int64_t t = 0;
  for (; t + 4 <= n_tok; t += 4) micro_q8<WBlock, NR, 4>(w, r, xq + t * xq_stride, xq_stride, nb, y + t * y_stride, y_stride);
  switch (n_tok - t) {
    case 3: micro_q8<WBlock, NR, 3>(w, r, xq + t * xq_stride, xq_stride, nb, y + t * y_stride, y_stride); break;
    case 2: micro_q8<WBlock, NR, 2>(w, r, xq + t * xq_stride, xq_stride, nb, y + t * y_stride, y_stride); break;
    case 1: micro_q8<WBlock, NR, 1>(w, r, xq + t * xq_stride, xq_stride, nb, y + t * y_stride, y_stride); break;
    default: break;
  }
}

template <typename WBlock>
G4_AVX2 void matmul_q8act_avx2(const WeightMatrix& w, int64_t r0, int64_t r1, const void* xq_bytes, int64_t n_tok,
                               size_t xq_row_bytes, float* y, int64_t y_stride) {
  const int64_t nb = w.n_in / kQK;
  const auto* xq = static_cast<const BlockQ8_0*>(xq_bytes);
  const auto xq_stride = static_cast<int64_t>(xq_row_bytes / sizeof(BlockQ8_0));
  int64_t r = r0;
  for (; r + 2 <= r1; r += 2) rows_q8<WBlock, 2>(w, r, xq, n_tok, xq_stride, nb, y, y_stride);
  if (r < r1) rows_q8<WBlock, 1>(w, r, xq, n_tok, xq_stride, nb, y, y_stride);
}

// ---- element-wise -----------------------------------------------------------

G4_AVX2 float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  float s = hsum8(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s = fma1(a[i], b[i], s);
  return s;
}

G4_AVX2 void axpy_avx2(float a, const float* x, float* y, int64_t n) {
  const __m256 av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] = fma1(a, x[i], y[i]);
}

G4_AVX2 void rmsnorm_avx2(const float* x, const float* w, float* y, int64_t n, float eps) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    acc0 = _mm256_fmadd_ps(a, a, acc0);
    acc1 = _mm256_fmadd_ps(b, b, acc1);
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 a = _mm256_loadu_ps(x + i);
    acc0 = _mm256_fmadd_ps(a, a, acc0);
  }
  float ss = hsum8(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) ss = fma1(x[i], x[i], ss);
  const float ms = ss / static_cast<float>(n) + eps;
  const float r = 1.0f / std::sqrt(ms);
  const __m256 rv = _mm256_set1_ps(r);
  i = 0;
  if (w) {
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), rv), _mm256_loadu_ps(w + i)));
    for (; i < n; ++i) y[i] = (x[i] * r) * w[i];
  } else {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), rv));
    for (; i < n; ++i) y[i] = x[i] * r;
  }
}

G4_AVX2 void gelu_avx2(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, gelu8(_mm256_loadu_ps(x + i)));
  if (i < n) store_partial(y + i, gelu8(load_partial(x + i, n - i, 0.f)), n - i);
}

G4_AVX2 void geglu_avx2(const float* g, const float* u, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_mul_ps(gelu8(_mm256_loadu_ps(g + i)), _mm256_loadu_ps(u + i)));
  if (i < n)
    store_partial(y + i, _mm256_mul_ps(gelu8(load_partial(g + i, n - i, 0.f)), load_partial(u + i, n - i, 0.f)),
                  n - i);
}

G4_AVX2 void rope_neox_avx2(float* x, int64_t head_dim, const float* c, const float* s) {
  const int64_t half = head_dim / 2;
  int64_t i = 0;
  for (; i + 8 <= half; i += 8) {
    const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + half);
    const __m256 cv = _mm256_loadu_ps(c + i), sv = _mm256_loadu_ps(s + i);
    _mm256_storeu_ps(x + i, _mm256_sub_ps(_mm256_mul_ps(x0, cv), _mm256_mul_ps(x1, sv)));
    _mm256_storeu_ps(x + i + half, _mm256_add_ps(_mm256_mul_ps(x1, cv), _mm256_mul_ps(x0, sv)));
  }
  for (; i < half; ++i) {
    const float x0 = x[i], x1 = x[i + half];
    const float a = x0 * c[i], b = x1 * s[i];
    const float e = x1 * c[i], f = x0 * s[i];
    x[i] = a - b;
    x[i + half] = e + f;
  }
}

G4_AVX2 void softmax_avx2(float* x, int64_t n) {
  if (n <= 0) return;
  const float ninf = -INFINITY;
  __m256 mv = _mm256_set1_ps(ninf);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + i));
  float mx = hmax8(mv);
  for (; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  const __m256 mxv = _mm256_set1_ps(mx);
  __m256 sv = _mm256_setzero_ps();
  i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mxv));
    _mm256_storeu_ps(x + i, e);
    sv = _mm256_add_ps(sv, e);
  }
  if (i < n) {
    const __m256 e = exp8(_mm256_sub_ps(load_partial(x + i, n - i, ninf), mxv));  // padding lanes -> 0
    store_partial(x + i, e, n - i);
    sv = _mm256_add_ps(sv, e);
  }
  const float inv = 1.0f / hsum8(sv);
  const __m256 iv = _mm256_set1_ps(inv);
  i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), iv));
  for (; i < n; ++i) x[i] *= inv;
}

G4_AVX2 void softcap_avx2(float* x, int64_t n, float cap) {
  const __m256 cv = _mm256_set1_ps(cap);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(x + i, _mm256_mul_ps(tanh8(_mm256_div_ps(_mm256_loadu_ps(x + i), cv)), cv));
  if (i < n) store_partial(x + i, _mm256_mul_ps(tanh8(_mm256_div_ps(load_partial(x + i, n - i, 0.f), cv)), cv), n - i);
}

KernelTable make_avx2_table() {
  KernelTable t = scalar_table();
  t.isa = Isa::Avx2;
  auto set = [&t](GgmlType type, KernelTable::DequantFn dq, KernelTable::MatmulFn mm, KernelTable::MatmulQFn mq) {
    t.types[static_cast<int>(type)] = {dq, mm, mq};
  };
  set(GgmlType::F32, dequant_f32_scalar, matmul_f32_avx2, nullptr);
  set(GgmlType::F16, dequant_f16_avx2, matmul_deq_avx2<dequant_f16_avx2>, nullptr);
  set(GgmlType::BF16, dequant_bf16_avx2, matmul_deq_avx2<dequant_bf16_avx2>, nullptr);
  set(GgmlType::Q8_0, dequant_q8_0_avx2, matmul_deq_avx2<dequant_q8_0_avx2>, matmul_q8act_avx2<BlockQ8_0>);
  set(GgmlType::Q4_0, dequant_q4_0_avx2, matmul_deq_avx2<dequant_q4_0_avx2>, matmul_q8act_avx2<BlockQ4_0>);
  t.quantize_act[static_cast<int>(GgmlType::Q8_0)] = quantize_q8_0_avx2;
  add_avx2_quant_kernels(t);  // Q4_1, Q5_0, Q5_1, MXFP4, K-quants, Q8_1/Q8_K activations
  t.dot = dot_avx2;
  t.axpy = axpy_avx2;
  t.rmsnorm = rmsnorm_avx2;
  t.gelu_tanh = gelu_avx2;
  t.geglu = geglu_avx2;
  t.rope_neox = rope_neox_avx2;
  t.softmax = softmax_avx2;
  t.softcap = softcap_avx2;
  return t;
}

}  // namespace

const KernelTable& avx2_table() {
  static const KernelTable t = make_avx2_table();
  return t;
}

}  // namespace g4::kernels::detail
