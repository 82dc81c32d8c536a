// AVX-512 (F/BW/VL, + FMA, F16C) attention kernels. Every function carries its
// own target attribute (no -mavx512f for the file) and the table is only handed
// out after a run-time CPU check, so this file is safe in any x86-64 binary.
//
// One task (attention.h, Rows) walks the keys in tiles of kTile positions on an
// absolute grid (tile i = positions [32i, 32i+32)), clipped to the task's key
// range, prefetching the next tile; per tile, for each KV head of the task
// (the rows of that head):
//   1. QK: s[r][j] = q_r · k_j for every row r and key j, register-blocked
//      4 rows × 4 keys (16 zmm accumulators over the head_dim lanes, then one
//      horizontal sum each), K converted to fp32 as it is loaded;
//   2. softmax step per row over its visible keys of the tile: new max,
//      alpha = exp(m_old − m_new), p_j = exp(s_j − m_new) (0 for keys the row
//      does not see), l = l·alpha + Σ p_j (sequential in j);
//   3. PV: o_r = o_r·alpha_r + Σ_j p_rj · v_j, register-blocked 4 rows × 64
//      lanes, V converted as it is loaded.
// Each (row, key) dot product, each row's softmax step and each output lane's
// chain (o·alpha, then one FMA per key in increasing position) are the same
// instructions whatever the blocking, so a row's result does not depend on the
// other rows of its task (decode = prefill, bit for bit).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/attention_internal.h"
#include "kernels/kernels.h"

// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own
// _mm512_undefined_*() placeholders once inlined (GCC PR 105593), not on this code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define G4_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

namespace g4::attn::detail {
namespace {

constexpr int kTile = 32;  // keys per tile
static_assert(kTile <= kMaxTile && kTile == 32, "the softmax step handles two 16-lane vectors");
constexpr int kW = 16;     // fp32 lanes per vector

// ---- loaders: lanes [d, d+16) of a head row as fp32 (exact) --------------------
// load_mask reads only the lanes set in m (the head_dim tail); others are 0.

struct LoadF32 {
  G4_AVX512 static inline __m512 load(const uint8_t* r, int64_t d) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(r) + d);
  }
  G4_AVX512 static inline __m512 load_mask(const uint8_t* r, int64_t d, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(r) + d);
  }
};

struct LoadF16 {
  G4_AVX512 static inline __m512 load(const uint8_t* r, int64_t d) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r + 2 * d)));
  }
  G4_AVX512 static inline __m512 load_mask(const uint8_t* r, int64_t d, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, r + 2 * d));
  }
};

struct LoadBF16 {
  G4_AVX512 static inline __m512 widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  G4_AVX512 static inline __m512 load(const uint8_t* r, int64_t d) {
    return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r + 2 * d)));
  }
  G4_AVX512 static inline __m512 load_mask(const uint8_t* r, int64_t d, __mmask16 m) {
    return widen(_mm256_maskz_loadu_epi16(m, r + 2 * d));
  }
};

// block_q8_0: 2-byte fp16 scale, then 32 int8. 16 lanes never straddle a block.
struct LoadQ8_0 {
  G4_AVX512 static inline __m512 scaled(const uint8_t* b, __m128i q) {
    uint16_t h;
    std::memcpy(&h, b, 2);
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), _mm512_set1_ps(_cvtsh_ss(h)));
  }
  G4_AVX512 static inline __m512 load(const uint8_t* r, int64_t d) {
    const uint8_t* b = r + (d / kernels::kQK) * sizeof(kernels::BlockQ8_0);
    return scaled(b, _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2 + d % kernels::kQK)));
  }
  G4_AVX512 static inline __m512 load_mask(const uint8_t* r, int64_t d, __mmask16 m) {
    const uint8_t* b = r + (d / kernels::kQK) * sizeof(kernels::BlockQ8_0);
    return scaled(b, _mm_maskz_loadu_epi8(m, b + 2 + d % kernels::kQK));
  }
};

// exp(x) for fp32 lanes (Cephes-style range reduction and degree-6
// polynomial, ~1-2 ulp). Lanes below -87.3 (incl. -inf) give exactly 0.
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
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
  const __m512i n = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(fx), _mm512_set1_epi32(127)), 23);
  y = _mm512_mul_ps(y, _mm512_castsi512_ps(n));
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~underflow), y);
}

// ---- 1. QK: s[i·kTile + j] = q_i · k_j for RB rows × KB keys ---------------------

template <class L, int RB, int KB>
G4_AVX512 inline void qk_block(const float* const* q, const uint8_t* const* kp, int64_t dv, __mmask16 tail,
                               float* s) {
  __m512 acc[RB][KB];
#pragma GCC unroll 4
  for (int i = 0; i < RB; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < KB; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t d = 0; d < dv; d += kW) {
    __m512 k[KB];
#pragma GCC unroll 4
    for (int j = 0; j < KB; ++j) k[j] = L::load(kp[j], d);
#pragma GCC unroll 4
    for (int i = 0; i < RB; ++i) {
      const __m512 qv = _mm512_loadu_ps(q[i] + d);
#pragma GCC unroll 4
      for (int j = 0; j < KB; ++j) acc[i][j] = _mm512_fmadd_ps(qv, k[j], acc[i][j]);
    }
  }
  if (tail) {
    __m512 k[KB];
#pragma GCC unroll 4
    for (int j = 0; j < KB; ++j) k[j] = L::load_mask(kp[j], dv, tail);
#pragma GCC unroll 4
    for (int i = 0; i < RB; ++i) {
      const __m512 qv = _mm512_maskz_loadu_ps(tail, q[i] + dv);
#pragma GCC unroll 4
      for (int j = 0; j < KB; ++j) acc[i][j] = _mm512_fmadd_ps(qv, k[j], acc[i][j]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < RB; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < KB; ++j) s[i * kTile + j] = _mm512_reduce_add_ps(acc[i][j]);
}

template <class L, int RB>
G4_AVX512 inline void qk_rows(const float* const* q, const uint8_t* const* kp, int ja, int jb, int64_t dv,
                              __mmask16 tail, float* s) {
  int j = ja;
  for (; j + 4 <= jb + 1; j += 4) qk_block<L, RB, 4>(q, kp + j, dv, tail, s + j);
  for (; j <= jb; ++j) qk_block<L, RB, 1>(q, kp + j, dv, tail, s + j);
}

// ---- 3. PV: o_i[d..] = o_i[d..]·alpha_i + Σ_j p_ij · v_j[d..], RB rows × DC vectors ---

template <class L, int RB, int DC>
G4_AVX512 inline void pv_block(float* const* o, const float* alpha, const float* p, const uint8_t* const* vp, int ja,
                               int jb, int64_t d) {
  __m512 acc[RB][DC];
#pragma GCC unroll 4
  for (int i = 0; i < RB; ++i) {
    const __m512 a = _mm512_set1_ps(alpha[i]);
#pragma GCC unroll 4
    for (int c = 0; c < DC; ++c) acc[i][c] = _mm512_mul_ps(_mm512_loadu_ps(o[i] + d + c * kW), a);
  }
  for (int j = ja; j <= jb; ++j) {
    __m512 v[DC];
#pragma GCC unroll 4
    for (int c = 0; c < DC; ++c) v[c] = L::load(vp[j], d + c * kW);
#pragma GCC unroll 4
    for (int i = 0; i < RB; ++i) {
      const __m512 pb = _mm512_set1_ps(p[i * kTile + j]);
#pragma GCC unroll 4
      for (int c = 0; c < DC; ++c) acc[i][c] = _mm512_fmadd_ps(pb, v[c], acc[i][c]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < RB; ++i)
#pragma GCC unroll 4
    for (int c = 0; c < DC; ++c) _mm512_storeu_ps(o[i] + d + c * kW, acc[i][c]);
}

// The head_dim tail (< 16 lanes, masked).
template <class L, int RB>
G4_AVX512 inline void pv_tail(float* const* o, const float* alpha, const float* p, const uint8_t* const* vp, int ja,
                              int jb, int64_t d, __mmask16 m) {
  __m512 acc[RB];
#pragma GCC unroll 4
  for (int i = 0; i < RB; ++i) acc[i] = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, o[i] + d), _mm512_set1_ps(alpha[i]));
  for (int j = ja; j <= jb; ++j) {
    const __m512 v = L::load_mask(vp[j], d, m);
#pragma GCC unroll 4
    for (int i = 0; i < RB; ++i) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(p[i * kTile + j]), v, acc[i]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < RB; ++i) _mm512_mask_storeu_ps(o[i] + d, m, acc[i]);
}

template <class L, int RB>
G4_AVX512 inline void pv_rows(float* const* o, const float* alpha, const float* p, const uint8_t* const* vp, int ja,
                              int jb, int64_t dv, __mmask16 tail) {
  int64_t d = 0;
  for (; d + 4 * kW <= dv; d += 4 * kW) pv_block<L, RB, 4>(o, alpha, p, vp, ja, jb, d);
  for (; d < dv; d += kW) pv_block<L, RB, 1>(o, alpha, p, vp, ja, jb, d);
  if (tail) pv_tail<L, RB>(o, alpha, p, vp, ja, jb, dv, tail);
}

// ---- one KV head's rows over one key tile ---------------------------------------

// The rows of one segment (attention.h, Rows), offset to its first row.
struct Seg {
  int n;
  const float* const* q;
  float* const* out;
  const int64_t* rlo;
  const int64_t* rhi;
  float* m;
  float* l;
  float* alpha;
  float* scores;
};

// Keys [t0 + ja, t0 + jb] of the tile starting at t0 (row pointers kp/vp):
// 1. QK, 2. online-softmax step, 3. PV for every row of the segment.
template <class L>
G4_AVX512 inline void tile_head(const Seg& sg, const uint8_t* const* kp, const uint8_t* const* vp, int64_t t0, int ja,
                               int jb, int64_t dv, __mmask16 tail) {
  const int n = sg.n;
  const float* const* q = sg.q;
  float* const* out = sg.out;
  const int64_t* rlo = sg.rlo;
  const int64_t* rhi = sg.rhi;
  float* m = sg.m;
  float* l = sg.l;
  float* alpha = sg.alpha;
  float* scores = sg.scores;
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

  // 1. scores
  int r = 0;
  for (; r + 4 <= n; r += 4) qk_rows<L, 4>(q + r, kp, ja, jb, dv, tail, scores + r * kTile);
  switch (n - r) {  // the last 1-3 rows in one block, so each K chunk is loaded once for them
    case 3: qk_rows<L, 3>(q + r, kp, ja, jb, dv, tail, scores + r * kTile); break;
    case 2: qk_rows<L, 2>(q + r, kp, ja, jb, dv, tail, scores + r * kTile); break;
    case 1: qk_rows<L, 1>(q + r, kp, ja, jb, dv, tail, scores + r * kTile); break;
    default: break;
  }

  // 2. online softmax step per row
  for (r = 0; r < n; ++r) {
    float* s = scores + r * kTile;
    const int64_t lo = rlo[r] > t0 ? rlo[r] : t0;
    const int64_t hi = rhi[r] < t0 + kTile - 1 ? rhi[r] : t0 + kTile - 1;
    if (lo > hi) {  // the row sees no key of this tile: o·1 + Σ 0·v leaves it unchanged
      alpha[r] = 1.f;
      _mm512_storeu_ps(s, _mm512_setzero_ps());
      _mm512_storeu_ps(s + kW, _mm512_setzero_ps());
      continue;
    }
    const int jl = static_cast<int>(lo - t0), jh = static_cast<int>(hi - t0);
    float mt = s[jl];
    for (int j = jl + 1; j <= jh; ++j) mt = s[j] > mt ? s[j] : mt;
    const float mn = online_max(m[r], mt, &alpha[r]);
    m[r] = mn;
    const __m512 vm = _mm512_set1_ps(mn);
    for (int c = 0; c < 2; ++c) {
      const __m512i idx = _mm512_add_epi32(lane, _mm512_set1_epi32(c * kW));
      const __mmask16 vis = _mm512_cmpge_epi32_mask(idx, _mm512_set1_epi32(jl)) &
                            _mm512_cmple_epi32_mask(idx, _mm512_set1_epi32(jh));
      const __m512 x = _mm512_maskz_sub_ps(vis, _mm512_loadu_ps(s + c * kW), vm);
      _mm512_storeu_ps(s + c * kW, _mm512_maskz_mov_ps(vis, exp16(x)));
    }
    float sum = 0.f;
    for (int j = jl; j <= jh; ++j) sum += s[j];
    l[r] = l[r] * alpha[r] + sum;
  }

  // 3. values
  for (r = 0; r + 4 <= n; r += 4)
    pv_rows<L, 4>(out + r, alpha + r, scores + r * kTile, vp, ja, jb, dv, tail);
  switch (n - r) {
    case 3: pv_rows<L, 3>(out + r, alpha + r, scores + r * kTile, vp, ja, jb, dv, tail); break;
    case 2: pv_rows<L, 2>(out + r, alpha + r, scores + r * kTile, vp, ja, jb, dv, tail); break;
    case 1: pv_rows<L, 1>(out + r, alpha + r, scores + r * kTile, vp, ja, jb, dv, tail); break;
    default: break;
  }
}

// ---- the task -------------------------------------------------------------------------

template <class L>
G4_AVX512 void attend_avx512(const KvView& kv, const Rows& rs) {
  const int64_t D = kv.head_dim;
  const int64_t dv = D / kW * kW;
  const __mmask16 tail = static_cast<__mmask16>((1u << (D - dv)) - 1u);
  for (int r = 0; r < rs.n; ++r) {
    rs.m[r] = -std::numeric_limits<float>::infinity();
    rs.l[r] = 0.f;
    float* o = rs.o[r];
    int64_t d = 0;
    for (; d < dv; d += kW) _mm512_storeu_ps(o + d, _mm512_setzero_ps());
    if (tail) _mm512_mask_storeu_ps(o + d, tail, _mm512_setzero_ps());
  }
  const uint8_t* kp[kTile];
  const uint8_t* vp[kTile];
  for (int64_t t0 = rs.k_lo / kTile * kTile; t0 <= rs.k_hi; t0 += kTile) {
    const int ja = static_cast<int>((rs.k_lo > t0 ? rs.k_lo : t0) - t0);
    const int jb = static_cast<int>((rs.k_hi < t0 + kTile - 1 ? rs.k_hi : t0 + kTile - 1) - t0);
    if (t0 + kTile <= rs.k_hi)
      prefetch_rows(kv, rs.kv_head0, rs.n_seg, t0 + kTile, std::min(t0 + 2 * kTile - 1, rs.k_hi));
    // One KV head at a time over this tile (its rows are a contiguous segment).
    for (int sg = 0; sg < rs.n_seg; ++sg) {
      const int h = rs.kv_head0 + sg, rb = rs.seg[sg];
      for (int j = ja; j <= jb; ++j) {
        kp[j] = kv.k_head(t0 + j, h);
        vp[j] = kv.v_head(t0 + j, h);
      }
      const Seg seg{rs.seg[sg + 1] - rb, rs.q + rb, rs.o + rb,     rs.lo + rb,
                    rs.hi + rb,          rs.m + rb, rs.l + rb,     rs.alpha + rb,
                    rs.scores + rb * kTile};
      tile_head<L>(seg, kp, vp, t0, ja, jb, dv, tail);
    }
  }

  for (int r = 0; r < rs.n; ++r) {
    const __m512 inv = _mm512_set1_ps(rs.l[r] > 0.f ? 1.f / rs.l[r] : 0.f);
    float* o = rs.o[r];
    int64_t d = 0;
    for (; d < dv; d += kW) _mm512_storeu_ps(o + d, _mm512_mul_ps(_mm512_loadu_ps(o + d), inv));
    if (tail) _mm512_mask_storeu_ps(o + d, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, o + d), inv));
  }
}

// ---- stores (bit-identical to the scalar definitions) ------------------------------

G4_AVX512 void store_f16_avx512(const float* x, uint8_t* dst, int64_t n) {
  const __m512 hi = _mm512_set1_ps(65504.f), lo = _mm512_set1_ps(-65504.f);
  int64_t i = 0;
  for (; i + kW <= n; i += kW) {
    // min/max(c, x) return x when x is NaN: NaN passes through, as in the scalar form.
    const __m512 c = _mm512_max_ps(lo, _mm512_min_ps(hi, _mm512_loadu_ps(x + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 2 * i),
                        _mm512_cvtps_ph(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  store_f16_scalar(x + i, dst + 2 * i, n - i);
}

G4_AVX512 void store_bf16_avx512(const float* x, uint8_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + kW <= n; i += kW) {
    const __m512i u = _mm512_loadu_si512(x + i);
    // Round to nearest even: u + 0x7fff + ((u >> 16) & 1), then the top half;
    // NaN: the top half with the quiet bit set (f32_to_bf16).
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff))), 16);
    const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                  _mm512_set1_epi32(0x7f800000));
    const __m512i h = _mm512_mask_mov_epi32(rounded, nan, quiet);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 2 * i), _mm512_cvtepi32_epi16(h));
  }
  store_bf16_scalar(x + i, dst + 2 * i, n - i);
}

}  // namespace

const Table& avx512_table() {
  static const Table t = [] {
    Table x;
    x.isa = Isa::Avx512;
    x.attend_f32 = attend_avx512<LoadF32>;
    x.attend_f16 = attend_avx512<LoadF16>;
    x.attend_bf16 = attend_avx512<LoadBF16>;
    x.attend_q8_0 = attend_avx512<LoadQ8_0>;
    x.store_f16 = store_f16_avx512;
    x.store_bf16 = store_bf16_avx512;
    return x;
  }();
  return t;
}

}  // namespace g4::attn::detail
