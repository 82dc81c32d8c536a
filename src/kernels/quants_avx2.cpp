// AVX2 + FMA + F16C kernels of the quants.h types: dequantization (bit-identical
// to the scalar references), the Q8_1/Q8_K activation quantizers (bit-identical
// to quants_quantize.cpp, i.e. to ggml's x86 ones), quantized-activation
// matmuls with a rows × tokens tile (prefill reuses every unpacked weight
// vector for up to four tokens, every activation vector for two rows), and
// fp32-activation matmuls over dequantized rows. Registered into the AVX2
// table by add_avx2_quant_kernels(); per-function target attributes as in
// kernels_avx2.cpp, so the file is safe in a binary for any x86-64.
//
// Integer dots: _mm256_maddubs_epi16(unsigned, signed) multiplies bytes and adds
// adjacent pairs to int16. With unsigned weights (Q4_1/Q5_1/K-quant levels,
// at most 63) and activations in [−127, 127] no pair exceeds 2·63·127 < 2^15,
// so it never saturates; signed weights (Q5_0, MXFP4, Q8_K) go through the
// sign trick |w| · (a·sign(w)).
#include <immintrin.h>

#include <cstring>

#include "core/dtype.h"
#include "kernels/avx2_util.h"
#include "kernels/kernels_internal.h"
#include "kernels/quants.h"


namespace g4::kernels::detail {
namespace {

// ---- helpers ------------------------------------------------------------------

G4_AVX2 inline float hsum4(__m128 s) {
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
G4_AVX2 inline float half(uint16_t h) { return _cvtsh_ss(h); }

// GCC contracts a·b + c written with separate intrinsics into an FMA when FMA
// is enabled (C++ defaults to -ffp-contract=fast). Dequantization must round
// the product first, as the scalar reference does: this opaque step forces the
// product into a register.
G4_AVX2 inline __m256 rounded(__m256 v) {
  __asm__("" : "+x"(v));
  return v;
}

// 8 bytes (signed or unsigned) of `v` starting at byte `k` (0, 8, 16, 24) to fp32.
template <int k>
G4_AVX2 inline __m256 i8_to_f32(__m256i v) {
  const __m128i h = k < 16 ? _mm256_castsi256_si128(v) : _mm256_extracti128_si256(v, 1);
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(k % 16 ? _mm_srli_si128(h, 8) : h));
}

// 32 bits to 32 bytes: byte j = 0xFF when bit j is set, else 0.
G4_AVX2 inline __m256i bits_to_bytes(uint32_t bits) {
  const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
  const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), spread);
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

// 16 bytes of packed nibbles to 32 bytes in element order (low nibbles are
// elements 0..15, high nibbles 16..31).
G4_AVX2 inline __m256i nibbles_32(const uint8_t* qs) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m), _mm_and_si128(raw, m));
}

G4_AVX2 inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// ---- 32-element block types: weights as 32 int8 -------------------------------------

G4_AVX2 inline __m256i q5_levels(const uint8_t* qs, const uint8_t* qh) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  return _mm256_or_si256(nibbles_32(qs), _mm256_and_si256(bits_to_bytes(bits), _mm256_set1_epi8(0x10)));
}

// Per-type view for the dequantizers and the block micro-kernel:
// levels() (unsigned, or signed when kSigned), scale d, and for the types with
// an offset the fp16 m (the Q8_1 partner's s carries Σq).
struct Q4_1Ops {
  using W = BlockQ4_1;
  using A = BlockQ8_1;
  static constexpr bool kSigned = false, kMin = true;
  G4_AVX2 static __m256i levels(const W& b) { return nibbles_32(b.qs); }
  G4_AVX2 static float d(const W& b) { return half(b.d); }
  G4_AVX2 static float m(const W& b) { return half(b.m); }
};
struct Q5_0Ops {
  using W = BlockQ5_0;
  using A = BlockQ8_0;
  static constexpr bool kSigned = true, kMin = false;
  G4_AVX2 static __m256i levels(const W& b) { return _mm256_sub_epi8(q5_levels(b.qs, b.qh), _mm256_set1_epi8(16)); }
  G4_AVX2 static float d(const W& b) { return half(b.d); }
  G4_AVX2 static float m(const W&) { return 0.f; }
};
struct Q5_1Ops {
  using W = BlockQ5_1;
  using A = BlockQ8_1;
  static constexpr bool kSigned = false, kMin = true;
  G4_AVX2 static __m256i levels(const W& b) { return q5_levels(b.qs, b.qh); }
  G4_AVX2 static float d(const W& b) { return half(b.d); }
  G4_AVX2 static float m(const W& b) { return half(b.m); }
};
struct Mxfp4Ops {
  using W = BlockMxfp4;
  using A = BlockQ8_0;
  static constexpr bool kSigned = true, kMin = false;
  G4_AVX2 static __m256i levels(const W& b) {
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kMxfp4Values)));
    return _mm256_shuffle_epi8(lut, nibbles_32(b.qs));
  }
  G4_AVX2 static float d(const W& b) { return e8m0_half(b.e); }
  G4_AVX2 static float m(const W&) { return 0.f; }
};

template <class Ops>
G4_AVX2 void dequant_block32_avx2(const uint8_t* src, float* dst, int64_t n) {
  const auto* b = reinterpret_cast<const typename Ops::W*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const __m256i q = Ops::levels(b[i]);
    const __m256 d = _mm256_set1_ps(Ops::d(b[i]));
    // Signed widening: exact for the unsigned levels too (all < 128).
    const __m256 v[4] = {i8_to_f32<0>(q), i8_to_f32<8>(q), i8_to_f32<16>(q), i8_to_f32<24>(q)};
    float* o = dst + i * kQK;
    for (int k = 0; k < 4; ++k) {
      __m256 r = rounded(_mm256_mul_ps(v[k], d));
      if constexpr (Ops::kMin) r = _mm256_add_ps(r, _mm256_set1_ps(Ops::m(b[i])));
      _mm256_storeu_ps(o + 8 * k, r);
    }
  }
}

// ---- K-quants: weights as eight chunks of 32 int8 per super-block -------------------

// Chunk c (elements 32c .. 32c + 31) of a super-block's levels.
G4_AVX2 inline __m256i q4k_chunk(const BlockQ4_K& b, int c) {
  const __m256i raw = load32(b.qs + 32 * (c / 2));
  const __m256i m = _mm256_set1_epi8(0x0F);
  return (c & 1) ? _mm256_and_si256(_mm256_srli_epi16(raw, 4), m) : _mm256_and_si256(raw, m);
}
// Q5_K: bit c of qh[l] is the 5th bit of element 32c + l.
G4_AVX2 inline __m256i q5k_chunk(const BlockQ5_K& b, int c) {
  const __m256i raw = load32(b.qs + 32 * (c / 2));
  const __m256i m = _mm256_set1_epi8(0x0F);
  const __m256i lo = (c & 1) ? _mm256_and_si256(_mm256_srli_epi16(raw, 4), m) : _mm256_and_si256(raw, m);
  // In 16-bit lanes: bits c and 8 + c move to 4 and 12, i.e. bit 4 of each byte.
  const __m256i hb = _mm256_slli_epi16(_mm256_srli_epi16(load32(b.qh), c), 4);
  return _mm256_or_si256(lo, _mm256_and_si256(hb, _mm256_set1_epi8(0x10)));
}
// Q6_K (unsigned 0..63; the −32 is applied separately): chunk c = 4h + k reads
// ql[64h + 32(k & 1) ..] (low nibbles for k < 2, high for k >= 2) and bit pair
// 2k of qh[32h ..].
G4_AVX2 inline __m256i q6k_chunk(const BlockQ6_K& b, int c) {
  const int h = c / 4, k = c % 4;
  const __m256i raw = load32(b.ql + 64 * h + 32 * (k & 1));
  const __m256i m = _mm256_set1_epi8(0x0F);
  const __m256i lo = k >= 2 ? _mm256_and_si256(_mm256_srli_epi16(raw, 4), m) : _mm256_and_si256(raw, m);
  const __m256i hb = _mm256_slli_epi16(_mm256_srli_epi16(load32(b.qh + 32 * h), 2 * k), 4);
  return _mm256_or_si256(lo, _mm256_and_si256(hb, _mm256_set1_epi8(0x30)));
}

// Eight 6-bit scales and mins of Q4_K/Q5_K as 16 int16: [sc0..sc7 | m0..m7]
// (the same unpacking as unpack_k_scales, on 32-bit words).
G4_AVX2 inline __m256i k_scales_mins(const uint8_t* s) {
  uint32_t a[3];
  std::memcpy(a, s, 12);
  const uint32_t sc_lo = a[0] & 0x3F3F3F3Fu;
  const uint32_t m_lo = a[1] & 0x3F3F3F3Fu;
  const uint32_t sc_hi = (a[2] & 0x0F0F0F0Fu) | (((a[0] >> 6) & 0x03030303u) << 4);
  const uint32_t m_hi = ((a[2] >> 4) & 0x0F0F0F0Fu) | (((a[1] >> 6) & 0x03030303u) << 4);
  return _mm256_cvtepu8_epi16(_mm_set_epi32(static_cast<int>(m_hi), static_cast<int>(m_lo), static_cast<int>(sc_hi),
                                            static_cast<int>(sc_lo)));
}

// value = (d·sc_j)·q − dmin·m_j for the chunk's 32 levels (< 32).
G4_AVX2 inline void store_k_chunk(float* o, __m256i q, float ds, float dm) {
  const __m256 d = _mm256_set1_ps(ds), m = _mm256_set1_ps(dm);
  _mm256_storeu_ps(o + 0, _mm256_sub_ps(rounded(_mm256_mul_ps(i8_to_f32<0>(q), d)), m));
  _mm256_storeu_ps(o + 8, _mm256_sub_ps(rounded(_mm256_mul_ps(i8_to_f32<8>(q), d)), m));
  _mm256_storeu_ps(o + 16, _mm256_sub_ps(rounded(_mm256_mul_ps(i8_to_f32<16>(q), d)), m));
  _mm256_storeu_ps(o + 24, _mm256_sub_ps(rounded(_mm256_mul_ps(i8_to_f32<24>(q), d)), m));
}

template <class Block, __m256i (*Chunk)(const Block&, int)>
G4_AVX2 void dequant_q45_K_avx2(const uint8_t* src, float* dst, int64_t n) {
  const auto* b = reinterpret_cast<const Block*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = half(b[i].d), dmin = half(b[i].dmin);
    const KScales k = unpack_k_scales(b[i].scales);
    for (int c = 0; c < 8; ++c)
      store_k_chunk(dst + i * kQK_K + 32 * c, Chunk(b[i], c), d * static_cast<float>(k.sc[c]),
                    dmin * static_cast<float>(k.m[c]));
  }
}

G4_AVX2 void dequant_q6_K_avx2(const uint8_t* src, float* dst, int64_t n) {
  const auto* b = reinterpret_cast<const BlockQ6_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = half(b[i].d);
    for (int c = 0; c < 8; ++c) {
      const __m256i q = _mm256_sub_epi8(q6k_chunk(b[i], c), _mm256_set1_epi8(32));
      const __m256 d0 = _mm256_set1_ps(d * static_cast<float>(b[i].scales[2 * c]));
      const __m256 d1 = _mm256_set1_ps(d * static_cast<float>(b[i].scales[2 * c + 1]));
      float* o = dst + i * kQK_K + 32 * c;
      _mm256_storeu_ps(o + 0, _mm256_mul_ps(d0, i8_to_f32<0>(q)));
      _mm256_storeu_ps(o + 8, _mm256_mul_ps(d0, i8_to_f32<8>(q)));
      _mm256_storeu_ps(o + 16, _mm256_mul_ps(d1, i8_to_f32<16>(q)));
      _mm256_storeu_ps(o + 24, _mm256_mul_ps(d1, i8_to_f32<24>(q)));
    }
  }
}

G4_AVX2 void dequant_q8_K_avx2(const uint8_t* src, float* dst, int64_t n) {
  const auto* b = reinterpret_cast<const BlockQ8_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const __m256 d = _mm256_set1_ps(b[i].d);
    for (int c = 0; c < 8; ++c) {
      const __m256i q = load32(b[i].qs + 32 * c);
      float* o = dst + i * kQK_K + 32 * c;
      _mm256_storeu_ps(o + 0, _mm256_mul_ps(d, i8_to_f32<0>(q)));
      _mm256_storeu_ps(o + 8, _mm256_mul_ps(d, i8_to_f32<8>(q)));
      _mm256_storeu_ps(o + 16, _mm256_mul_ps(d, i8_to_f32<16>(q)));
      _mm256_storeu_ps(o + 24, _mm256_mul_ps(d, i8_to_f32<24>(q)));
    }
  }
}

// ---- activation quantizers (bit-identical to quants_quantize.cpp) -------------------

// 4 × 8 int32 (each in [−128, 127]) to 32 int8 in order.
G4_AVX2 inline __m256i pack_i32x32(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
  return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

G4_AVX2 void quantize_q8_1_avx2(const float* x, void* dst_bytes, int64_t n) {
  auto* dst = static_cast<BlockQ8_1*>(dst_bytes);
  if (n % kQK != 0) {
    quantize_act_q8_1(x, dst, n);  // throws the reference's error
    return;
  }
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < n / kQK; ++b) {
    __m256 v[4];
    for (int k = 0; k < 4; ++k) v[k] = _mm256_loadu_ps(x + b * kQK + 8 * k);
    const __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                                   _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
    const float amax = hmax8(m);
    const float d = amax / 127.f;
    const float id = amax != 0.f ? 127.f / amax : 0.f;
    __m256i q[4];
    for (int k = 0; k < 4; ++k)
      q[k] = _mm256_cvtps_epi32(
          _mm256_round_ps(_mm256_mul_ps(v[k], _mm256_set1_ps(id)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m256i s8 = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
    s4 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 1));
    const int sum = _mm_cvtsi128_si32(s4);
    dst[b].d = f32_to_fp16(d);
    dst[b].s = f32_to_fp16(d * static_cast<float>(sum));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst[b].qs), pack_i32x32(q[0], q[1], q[2], q[3]));
  }
}

// Four 8-lane int32 vectors to their four horizontal sums.
G4_AVX2 inline __m128i hsum4x8(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

G4_AVX2 void quantize_q8_K_avx2(const float* x, void* dst_bytes, int64_t n) {
  auto* dst = static_cast<BlockQ8_K*>(dst_bytes);
  if (n % kQK_K != 0) {
    quantize_act_q8_K(x, dst, n);  // throws the reference's error
    return;
  }
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float* xb = x + b * kQK_K;
    BlockQ8_K& o = dst[b];
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < 32; ++k) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + 8 * k)));
    const float amax = hmax8(m);
    if (amax == 0.f) {
      std::memset(&o, 0, sizeof(o));
      continue;
    }
    // The reference's scale comes from the first element of largest magnitude
    // (with its sign).
    int first = 0;
    for (int k = 0; k < 32; ++k) {
      const int hit = _mm256_movemask_ps(
          _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(xb + 8 * k)), _mm256_set1_ps(amax), _CMP_EQ_OQ));
      if (hit) {
        first = 8 * k + __builtin_ctz(static_cast<unsigned>(hit));
        break;
      }
    }
    const float iscale = -127.f / xb[first];
    const __m256 is = _mm256_set1_ps(iscale);
    const __m256i cap = _mm256_set1_epi32(127);
    __m256i sums[16];
    for (int c = 0; c < 8; ++c) {
      __m256i q[4];
      for (int k = 0; k < 4; ++k) {
        const __m256 p = _mm256_mul_ps(_mm256_loadu_ps(xb + 32 * c + 8 * k), is);
        q[k] = _mm256_min_epi32(
            _mm256_cvtps_epi32(_mm256_round_ps(p, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)), cap);
      }
      sums[2 * c] = _mm256_add_epi32(q[0], q[1]);
      sums[2 * c + 1] = _mm256_add_epi32(q[2], q[3]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.qs + 32 * c), pack_i32x32(q[0], q[1], q[2], q[3]));
    }
    const __m128i s0 = hsum4x8(sums[0], sums[1], sums[2], sums[3]);
    const __m128i s1 = hsum4x8(sums[4], sums[5], sums[6], sums[7]);
    const __m128i s2 = hsum4x8(sums[8], sums[9], sums[10], sums[11]);
    const __m128i s3 = hsum4x8(sums[12], sums[13], sums[14], sums[15]);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o.bsums), _mm_packs_epi32(s0, s1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o.bsums + 8), _mm_packs_epi32(s2, s3));
    o.d = 1 / iscale;
  }
}

// ---- quantized-activation matmul: 32-element blocks ------------------------------------

// NR weight rows × NT (<= 4) tokens, one 8-lane accumulator per (row,
// token): per block acc += (d_w·d_a) · float(int32 pair sums); for Q4_1/Q5_1
// also summ += m_w·s_a, one fused multiply-add per block in lane t of a
// per-row vector (the same single rounding as a scalar FMA); fixed horizontal
// sum at the end, so a (row, token) value does not depend on NR/NT.
template <class Ops, int NR, int NT>
G4_AVX2 inline void micro_blk(const WeightMatrix& w, int64_t r, const typename Ops::A* xq, int64_t xq_stride,
                              int64_t nb, float* y, int64_t y_stride) {
  static_assert(NT >= 1 && NT <= 4, "token tile of at most 4");
  using W = typename Ops::W;
  __m256 acc[NR][NT];
  __m128 summ[NR];
  for (int i = 0; i < NR; ++i) {
    summ[i] = _mm_setzero_ps();
    for (int t = 0; t < NT; ++t) acc[i][t] = _mm256_setzero_ps();
  }
  const __m256i ones = _mm256_set1_epi16(1);
  const W* wr[NR];
  for (int i = 0; i < NR; ++i) wr[i] = reinterpret_cast<const W*>(w.row(r + i));
  for (int64_t b = 0; b < nb; ++b) {
    __m256i wv[NR], wa[NR];
    float dw[NR], mw[NR];
    for (int i = 0; i < NR; ++i) {
      wv[i] = Ops::levels(wr[i][b]);
      if constexpr (Ops::kSigned) wa[i] = _mm256_sign_epi8(wv[i], wv[i]);
      dw[i] = Ops::d(wr[i][b]);
      if constexpr (Ops::kMin) mw[i] = Ops::m(wr[i][b]);
    }
    for (int t = 0; t < NT; ++t) {
      const auto& a = xq[t * xq_stride + b];
      const __m256i av = load32(a.qs);
      const float da = half(a.d);
      for (int i = 0; i < NR; ++i) {
        const __m256i p16 = Ops::kSigned ? _mm256_maddubs_epi16(wa[i], _mm256_sign_epi8(av, wv[i]))
                                         : _mm256_maddubs_epi16(wv[i], av);
        const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
        acc[i][t] = _mm256_fmadd_ps(_mm256_set1_ps(dw[i] * da), p, acc[i][t]);
      }
    }
    if constexpr (Ops::kMin) {
      // The NT tokens' fp16 s in lanes 0..NT-1 (register inserts: a store and
      // a wider reload would stall store forwarding every block).
      __m128i sh = _mm_cvtsi32_si128(xq[b].s);
      if constexpr (NT > 1) sh = _mm_insert_epi16(sh, xq[xq_stride + b].s, 1);
      if constexpr (NT > 2) sh = _mm_insert_epi16(sh, xq[2 * xq_stride + b].s, 2);
      if constexpr (NT > 3) sh = _mm_insert_epi16(sh, xq[3 * xq_stride + b].s, 3);
      const __m128 s4 = _mm_cvtph_ps(sh);
      for (int i = 0; i < NR; ++i) summ[i] = _mm_fmadd_ps(_mm_set1_ps(mw[i]), s4, summ[i]);
    }
  }
  for (int i = 0; i < NR; ++i) {
    alignas(16) float sm[4];
    _mm_store_ps(sm, summ[i]);
    for (int t = 0; t < NT; ++t) y[t * y_stride + r + i] = Ops::kMin ? hsum8(acc[i][t]) + sm[t] : hsum8(acc[i][t]);
  }
}

// ---- quantized-activation matmul: K-quant super-blocks ----------------------------------

// Per (row, super-block) data the tile reads for every token: the sub-block
// scales as int16 vectors (one per 32-element chunk, used as memory operands
// of vpmaddwd) and the fp32 super-scales.
struct KRowPrep {
  __m256i sc[8];
  __m256i all;  // Q4_K/Q5_K: [sc0..7 | m0..7]; Q6_K: the 16 scales
  float d, dmin;
};

// Shuffle controls: int16 lane j of each 128-bit half to all eight lanes.
alignas(32) constexpr uint8_t kBcast16[8][32] = {
#define G4_B(j) 2 * j, 2 * j + 1
#define G4_ROW(j) {G4_B(j), G4_B(j), G4_B(j), G4_B(j), G4_B(j), G4_B(j), G4_B(j), G4_B(j), \
                   G4_B(j), G4_B(j), G4_B(j), G4_B(j), G4_B(j), G4_B(j), G4_B(j), G4_B(j)}
    G4_ROW(0), G4_ROW(1), G4_ROW(2), G4_ROW(3), G4_ROW(4), G4_ROW(5), G4_ROW(6), G4_ROW(7),
#undef G4_ROW
#undef G4_B
};
// Q6_K chunk c: low half ← int16 lane 2c % 8, high half ← lane (2c + 1) % 8.
alignas(32) constexpr uint8_t kBcast16Pair[4][32] = {
#define G4_B(j) 2 * j, 2 * j + 1
#define G4_HALF(j) G4_B(j), G4_B(j), G4_B(j), G4_B(j), G4_B(j), G4_B(j), G4_B(j), G4_B(j)
    {G4_HALF(0), G4_HALF(1)}, {G4_HALF(2), G4_HALF(3)}, {G4_HALF(4), G4_HALF(5)}, {G4_HALF(6), G4_HALF(7)},
#undef G4_HALF
#undef G4_B
};

G4_AVX2 inline __m256i bcast16(__m256i v, const uint8_t* ctrl) {
  return _mm256_shuffle_epi8(v, _mm256_load_si256(reinterpret_cast<const __m256i*>(ctrl)));
}

G4_AVX2 inline void k_prep(const BlockQ4_K& b, KRowPrep& p) {
  p.all = k_scales_mins(b.scales);
  const __m256i s = _mm256_permute2x128_si256(p.all, p.all, 0x00);  // scales in both halves
  for (int c = 0; c < 8; ++c) p.sc[c] = bcast16(s, kBcast16[c]);
  p.d = half(b.d);
  p.dmin = half(b.dmin);
}
G4_AVX2 inline void k_prep(const BlockQ5_K& b, KRowPrep& p) {
  p.all = k_scales_mins(b.scales);
  const __m256i s = _mm256_permute2x128_si256(p.all, p.all, 0x00);
  for (int c = 0; c < 8; ++c) p.sc[c] = bcast16(s, kBcast16[c]);
  p.d = half(b.d);
  p.dmin = half(b.dmin);
}
G4_AVX2 inline void k_prep(const BlockQ6_K& b, KRowPrep& p) {
  p.all = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
  const __m256i lo = _mm256_permute2x128_si256(p.all, p.all, 0x00), hi = _mm256_permute2x128_si256(p.all, p.all, 0x11);
  for (int c = 0; c < 8; ++c) p.sc[c] = bcast16(c < 4 ? lo : hi, kBcast16Pair[c % 4]);
  p.d = half(b.d);
  p.dmin = 0.f;
}
G4_AVX2 inline void k_prep(const BlockQ8_K& b, KRowPrep& p) { p.d = b.d; }

template <class Block>
struct KOps;
template <>
struct KOps<BlockQ4_K> {
  static constexpr bool kMins = true, kOffset32 = false, kSigned = false;
  G4_AVX2 static __m256i chunk(const BlockQ4_K& b, int c) { return q4k_chunk(b, c); }
};
template <>
struct KOps<BlockQ5_K> {
  static constexpr bool kMins = true, kOffset32 = false, kSigned = false;
  G4_AVX2 static __m256i chunk(const BlockQ5_K& b, int c) { return q5k_chunk(b, c); }
};
template <>
struct KOps<BlockQ6_K> {
  static constexpr bool kMins = false, kOffset32 = true, kSigned = false;
  G4_AVX2 static __m256i chunk(const BlockQ6_K& b, int c) { return q6k_chunk(b, c); }
};
template <>
struct KOps<BlockQ8_K> {
  static constexpr bool kMins = false, kOffset32 = false, kSigned = true;
  G4_AVX2 static __m256i chunk(const BlockQ8_K& b, int c) { return load32(b.qs + 32 * c); }
};

// NR rows × NT tokens over K-quant super-blocks. Per super-block and (row,
// token) an exact int32 vector s: Σ_chunks sc·(pair sums of levels·q) — the
// Q6_K −32 offset subtracted as 32·Σ_j sc_j·bsums_j, Q8_K weights signed via
// the sign trick. Then acc += (d_a·d_w)·float(s) (8 lanes) and, for Q4_K/Q5_K,
// mterm += (−d_a·dmin)·float(Σ_j m_j·(bsums_2j + bsums_2j+1)) (4 lanes).
// The result hsum8(acc) + hsum4(mterm) does not depend on NR/NT.
template <class Block, int NR, int NT>
G4_AVX2 inline void micro_k(const WeightMatrix& w, int64_t r, const BlockQ8_K* xq, int64_t xq_stride, int64_t nb,
                            float* y, int64_t y_stride) {
  using Ops = KOps<Block>;
  __m256 acc[NR][NT];
  __m128 mterm[NR][NT];
  for (int i = 0; i < NR; ++i)
    for (int t = 0; t < NT; ++t) acc[i][t] = _mm256_setzero_ps(), mterm[i][t] = _mm_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  const Block* wr[NR];
  for (int i = 0; i < NR; ++i) wr[i] = reinterpret_cast<const Block*>(w.row(r + i));
  KRowPrep prep[NR];
  for (int64_t b = 0; b < nb; ++b) {
    for (int i = 0; i < NR; ++i) k_prep(wr[i][b], prep[i]);
    __m256i s[NR][NT];
    for (int i = 0; i < NR; ++i)
      for (int t = 0; t < NT; ++t) s[i][t] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      __m256i wv[NR], wa[NR];
      for (int i = 0; i < NR; ++i) {
        wv[i] = Ops::chunk(wr[i][b], c);
        if constexpr (Ops::kSigned) wa[i] = _mm256_sign_epi8(wv[i], wv[i]);
      }
      for (int t = 0; t < NT; ++t) {
        const __m256i av = load32(xq[t * xq_stride + b].qs + 32 * c);
        for (int i = 0; i < NR; ++i) {
          if constexpr (Ops::kSigned) {
            const __m256i p16 = _mm256_maddubs_epi16(wa[i], _mm256_sign_epi8(av, wv[i]));
            s[i][t] = _mm256_add_epi32(s[i][t], _mm256_madd_epi16(p16, ones));
          } else {
            const __m256i p16 = _mm256_maddubs_epi16(wv[i], av);
            s[i][t] = _mm256_add_epi32(s[i][t], _mm256_madd_epi16(p16, prep[i].sc[c]));
          }
        }
      }
    }
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_K& a = xq[t * xq_stride + b];
      const __m256i bs = load32(a.bsums);
      // Q4_K/Q5_K: the activation sums of sub-block j (pairs of 16-element sums).
      const __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
      for (int i = 0; i < NR; ++i) {
        __m256i st = s[i][t];
        if constexpr (Ops::kOffset32) st = _mm256_sub_epi32(st, _mm256_slli_epi32(_mm256_madd_epi16(bs, prep[i].all), 5));
        acc[i][t] = _mm256_fmadd_ps(_mm256_set1_ps(a.d * prep[i].d), _mm256_cvtepi32_ps(st), acc[i][t]);
        if constexpr (Ops::kMins) {  // mins: the high half of prep.all
          const __m128i mp = _mm_madd_epi16(_mm256_extracti128_si256(prep[i].all, 1), pairs);
          mterm[i][t] = _mm_fmadd_ps(_mm_set1_ps(-a.d * prep[i].dmin), _mm_cvtepi32_ps(mp), mterm[i][t]);
        }
      }
    }
  }
  for (int i = 0; i < NR; ++i)
    for (int t = 0; t < NT; ++t)
      y[t * y_stride + r + i] = Ops::kMins ? hsum8(acc[i][t]) + hsum4(mterm[i][t]) : hsum8(acc[i][t]);
}

// ---- tiling drivers --------------------------------------------------------------------

// Tokens in tiles of 4 (then 3/2/1) for NR rows starting at r.
template <class Act, int NR, template <int, int> class Micro>
G4_AVX2 inline void rows_tile(const WeightMatrix& w, int64_t r, const Act* xq, int64_t n_tok, int64_t xq_stride,
                              int64_t nb, float* y, int64_t y_stride) {
  int64_t t = 0;
  for (; t + 4 <= n_tok; t += 4) Micro<NR, 4>::run(w, r, xq + t * xq_stride, xq_stride, nb, y + t * y_stride, y_stride);
  switch (n_tok - t) {
    case 3: Micro<NR, 3>::run(w, r, xq + t * xq_stride, xq_stride, nb, y + t * y_stride, y_stride); break;
    case 2: Micro<NR, 2>::run(w, r, xq + t * xq_stride, xq_stride, nb, y + t * y_stride, y_stride); break;
    case 1: Micro<NR, 1>::run(w, r, xq + t * xq_stride, xq_stride, nb, y + t * y_stride, y_stride); break;
    default: break;
  }
}

template <class Ops>
struct BlkMicro {
  template <int NR, int NT>
  struct M {
    G4_AVX2 static void run(const WeightMatrix& w, int64_t r, const typename Ops::A* xq, int64_t s, int64_t nb,
                            float* y, int64_t ys) {
      micro_blk<Ops, NR, NT>(w, r, xq, s, nb, y, ys);
    }
  };
};
template <class Block>
struct KMicro {
  template <int NR, int NT>
  struct M {
    G4_AVX2 static void run(const WeightMatrix& w, int64_t r, const BlockQ8_K* xq, int64_t s, int64_t nb, float* y,
                            int64_t ys) {
      micro_k<Block, NR, NT>(w, r, xq, s, nb, y, ys);
    }
  };
};

// Rows in pairs (the last one alone), each pair over all tokens.
template <class Act, int64_t kBlock, template <int, int> class Micro>
G4_AVX2 void matmul_q_tiled(const WeightMatrix& w, int64_t r0, int64_t r1, const void* xq_bytes, int64_t n_tok,
                            size_t xq_row_bytes, float* y, int64_t y_stride) {
  const int64_t nb = w.n_in / kBlock;
  const auto* xq = static_cast<const Act*>(xq_bytes);
  const auto xq_stride = static_cast<int64_t>(xq_row_bytes / sizeof(Act));
  int64_t r = r0;
  for (; r + 2 <= r1; r += 2) rows_tile<Act, 2, Micro>(w, r, xq, n_tok, xq_stride, nb, y, y_stride);
  if (r < r1) rows_tile<Act, 1, Micro>(w, r, xq, n_tok, xq_stride, nb, y, y_stride);
}

template <class Ops>
G4_AVX2 void matmul_q_blk_avx2(const WeightMatrix& w, int64_t r0, int64_t r1, const void* xq, int64_t n_tok,
                               size_t xq_row_bytes, float* y, int64_t y_stride) {
  matmul_q_tiled<typename Ops::A, kQK, BlkMicro<Ops>::template M>(w, r0, r1, xq, n_tok, xq_row_bytes, y, y_stride);
}
template <class Block>
G4_AVX2 void matmul_q_k_avx2(const WeightMatrix& w, int64_t r0, int64_t r1, const void* xq, int64_t n_tok,
                             size_t xq_row_bytes, float* y, int64_t y_stride) {
  matmul_q_tiled<BlockQ8_K, kQK_K, KMicro<Block>::template M>(w, r0, r1, xq, n_tok, xq_row_bytes, y, y_stride);
}

// ---- fp32-activation matmul (ActMode::F32): dequantized rows × fp32 rows -----------

// The AVX2 table's F32 matmul, recorded when the table is built: dequantized
// row tiles go through the very kernel F32 weights use, so ActMode::F32 on a
// quantized file gives the numbers of its --dequantized F32 twin bit for bit.
KernelTable::MatmulFn g_f32_matmul = nullptr;

// Tiles of rows (at most ~64K floats) dequantized into per-thread scratch.
template <KernelTable::DequantFn Dequant>
G4_AVX2 void matmul_deq_avx2(const WeightMatrix& w, int64_t r0, int64_t r1, const float* x, int64_t n_tok,
                             int64_t x_stride, float* y, int64_t y_stride) {
  const int64_t n = w.n_in;
  int64_t tile = (int64_t{1} << 16) / (n > 0 ? n : 1);
  tile = tile < 4 ? 4 : (tile > 32 ? 32 : tile & ~int64_t{3});
  float* buf = scratch_floats(static_cast<size_t>(tile * n));
  for (int64_t r = r0; r < r1; r += tile) {
    const int64_t nr = r + tile <= r1 ? tile : r1 - r;
    for (int64_t k = 0; k < nr; ++k) Dequant(w.row(r + k), buf + k * n, n);
    g_f32_matmul(WeightMatrix::raw(GgmlType::F32, buf, n, nr), 0, nr, x, n_tok, x_stride, y + r, y_stride);
  }
}

}  // namespace

void add_avx2_quant_kernels(KernelTable& t) {
  g_f32_matmul = t.matmul_for(GgmlType::F32);
  auto set = [&t](GgmlType type, KernelTable::DequantFn dq, KernelTable::MatmulFn mm, KernelTable::MatmulQFn mq) {
    t.types[static_cast<int>(type)] = {dq, mm, mq};
  };
  constexpr auto dq_q4_1 = dequant_block32_avx2<Q4_1Ops>;
  constexpr auto dq_q5_0 = dequant_block32_avx2<Q5_0Ops>;
  constexpr auto dq_q5_1 = dequant_block32_avx2<Q5_1Ops>;
  constexpr auto dq_mxfp4 = dequant_block32_avx2<Mxfp4Ops>;
  constexpr auto dq_q4_K = dequant_q45_K_avx2<BlockQ4_K, q4k_chunk>;
  constexpr auto dq_q5_K = dequant_q45_K_avx2<BlockQ5_K, q5k_chunk>;
  set(GgmlType::Q4_1, dq_q4_1, matmul_deq_avx2<dq_q4_1>, matmul_q_blk_avx2<Q4_1Ops>);
  set(GgmlType::Q5_0, dq_q5_0, matmul_deq_avx2<dq_q5_0>, matmul_q_blk_avx2<Q5_0Ops>);
  set(GgmlType::Q5_1, dq_q5_1, matmul_deq_avx2<dq_q5_1>, matmul_q_blk_avx2<Q5_1Ops>);
  set(GgmlType::MXFP4, dq_mxfp4, matmul_deq_avx2<dq_mxfp4>, matmul_q_blk_avx2<Mxfp4Ops>);
  set(GgmlType::Q4_K, dq_q4_K, matmul_deq_avx2<dq_q4_K>, matmul_q_k_avx2<BlockQ4_K>);
  set(GgmlType::Q5_K, dq_q5_K, matmul_deq_avx2<dq_q5_K>, matmul_q_k_avx2<BlockQ5_K>);
  set(GgmlType::Q6_K, dequant_q6_K_avx2, matmul_deq_avx2<dequant_q6_K_avx2>, matmul_q_k_avx2<BlockQ6_K>);
  set(GgmlType::Q8_K, dequant_q8_K_avx2, matmul_deq_avx2<dequant_q8_K_avx2>, matmul_q_k_avx2<BlockQ8_K>);
  t.quantize_act[static_cast<int>(GgmlType::Q8_1)] = quantize_q8_1_avx2;
  t.quantize_act[static_cast<int>(GgmlType::Q8_K)] = quantize_q8_K_avx2;
}

}  // namespace g4::kernels::detail
