// AVX2 + FMA + F16C attention kernels: the same algorithm as
// attention_avx512.cpp (read its header comment) with 8-lane vectors:
// QK register-blocked 4 rows × 2 keys, PV 4 rows × 16 lanes, key tiles of 32
// positions on the absolute grid. Every function carries its own target
// attribute and the table is only handed out after a run-time CPU check.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/dtype.h"
#include "kernels/attention_internal.h"
#include "kernels/kernels.h"

#define G4_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace g4::attn::detail {
namespace {

constexpr int kTile = 32;  // keys per tile
static_assert(kTile <= kMaxTile && kTile % 8 == 0, "tile of whole vectors");
constexpr int kW = 8;      // fp32 lanes per vector

// Lane mask for the first n (0..8) lanes.
G4_AVX2 inline __m256i first_lanes(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// ---- loaders: lanes [d, d+8) of a head row as fp32 (exact) ---------------------
// load_part reads only the first n < 8 lanes (the head_dim tail); others are 0.

struct LoadF32 {
  G4_AVX2 static inline __m256 load(const uint8_t* r, int64_t d) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(r) + d);
  }
  G4_AVX2 static inline __m256 load_part(const uint8_t* r, int64_t d, int n) {
    return _mm256_maskload_ps(reinterpret_cast<const float*>(r) + d, first_lanes(n));
  }
};

struct LoadF16 {
  G4_AVX2 static inline __m256 load(const uint8_t* r, int64_t d) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 2 * d)));
  }
  G4_AVX2 static inline __m256 load_part(const uint8_t* r, int64_t d, int n) {
    uint16_t h[8] = {};
    std::memcpy(h, r + 2 * d, static_cast<size_t>(n) * 2);
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)));
  }
};

struct LoadBF16 {
  G4_AVX2 static inline __m256 widen(__m128i h) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  G4_AVX2 static inline __m256 load(const uint8_t* r, int64_t d) {
    return widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 2 * d)));
  }
  G4_AVX2 static inline __m256 load_part(const uint8_t* r, int64_t d, int n) {
    uint16_t h[8] = {};
    std::memcpy(h, r + 2 * d, static_cast<size_t>(n) * 2);
    return widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)));
  }
};

// block_q8_0: 2-byte fp16 scale, then 32 int8. 8 lanes never straddle a block.
struct LoadQ8_0 {
  G4_AVX2 static inline __m256 scaled(const uint8_t* b, __m128i q) {
    uint16_t h;
    std::memcpy(&h, b, 2);
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), _mm256_set1_ps(_cvtsh_ss(h)));
  }
  G4_AVX2 static inline __m256 load(const uint8_t* r, int64_t d) {
    const uint8_t* b = r + (d / kernels::kQK) * sizeof(kernels::BlockQ8_0);
    return scaled(b, _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 2 + d % kernels::kQK)));
  }
  G4_AVX2 static inline __m256 load_part(const uint8_t* r, int64_t d, int n) {
    const uint8_t* b = r + (d / kernels::kQK) * sizeof(kernels::BlockQ8_0);
    int8_t q[16] = {};
    std::memcpy(q, b + 2 + d % kernels::kQK, static_cast<size_t>(n));
    return scaled(b, _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
  }
};

// exp(x) for fp32 lanes (Cephes-style, ~1-2 ulp); lanes below -87.3 give 0.
G4_AVX2 inline __m256 exp8(__m256 x) {
  const __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3365478515625f), _CMP_LT_OQ);
  x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.3365478515625f));
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
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(n));
  return _mm256_andnot_ps(underflow, y);
}

G4_AVX2 inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// ---- 1. QK: s[i·kTile + j] = q_i · k_j for RB rows × KB keys ---------------------

template <class L, int RB, int KB>
G4_AVX2 inline void qk_block(const float* const* q, const uint8_t* const* kp, int64_t dv, int tail, float* s) {
  __m256 acc[RB][KB];
#pragma GCC unroll 4
  for (int i = 0; i < RB; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < KB; ++j) acc[i][j] = _mm256_setzero_ps();
  for (int64_t d = 0; d < dv; d += kW) {
    __m256 k[KB];
#pragma GCC unroll 2
    for (int j = 0; j < KB; ++j) k[j] = L::load(kp[j], d);
#pragma GCC unroll 4
    for (int i = 0; i < RB; ++i) {
      const __m256 qv = _mm256_loadu_ps(q[i] + d);
#pragma GCC unroll 2
      for (int j = 0; j < KB; ++j) acc[i][j] = _mm256_fmadd_ps(qv, k[j], acc[i][j]);
    }
  }
  if (tail) {
    const __m256i m = first_lanes(tail);
    __m256 k[KB];
#pragma GCC unroll 2
    for (int j = 0; j < KB; ++j) k[j] = L::load_part(kp[j], dv, tail);
#pragma GCC unroll 4
    for (int i = 0; i < RB; ++i) {
      const __m256 qv = _mm256_maskload_ps(q[i] + dv, m);
#pragma GCC unroll 2
      for (int j = 0; j < KB; ++j) acc[i][j] = _mm256_fmadd_ps(qv, k[j], acc[i][j]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < RB; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < KB; ++j) s[i * kTile + j] = hsum8(acc[i][j]);
}

template <class L, int RB>
G4_AVX2 inline void qk_rows(const float* const* q, const uint8_t* const* kp, int ja, int jb, int64_t dv, int tail,
                            float* s) {
  int j = ja;
  for (; j + 2 <= jb + 1; j += 2) qk_block<L, RB, 2>(q, kp + j, dv, tail, s + j);
  for (; j <= jb; ++j) qk_block<L, RB, 1>(q, kp + j, dv, tail, s + j);
}

// ---- 3. PV: o_i[d..] = o_i[d..]·alpha_i + Σ_j p_ij · v_j[d..], RB rows × DC vectors ---

template <class L, int RB, int DC>
G4_AVX2 inline void pv_block(float* const* o, const float* alpha, const float* p, const uint8_t* const* vp, int ja,
                             int jb, int64_t d) {
  __m256 acc[RB][DC];
#pragma GCC unroll 4
  for (int i = 0; i < RB; ++i) {
    const __m256 a = _mm256_set1_ps(alpha[i]);
#pragma GCC unroll 2
    for (int c = 0; c < DC; ++c) acc[i][c] = _mm256_mul_ps(_mm256_loadu_ps(o[i] + d + c * kW), a);
  }
  for (int j = ja; j <= jb; ++j) {
    __m256 v[DC];
#pragma GCC unroll 2
    for (int c = 0; c < DC; ++c) v[c] = L::load(vp[j], d + c * kW);
#pragma GCC unroll 4
    for (int i = 0; i < RB; ++i) {
      const __m256 pb = _mm256_broadcast_ss(p + i * kTile + j);
#pragma GCC unroll 2
      for (int c = 0; c < DC; ++c) acc[i][c] = _mm256_fmadd_ps(pb, v[c], acc[i][c]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < RB; ++i)
#pragma GCC unroll 2
    for (int c = 0; c < DC; ++c) _mm256_storeu_ps(o[i] + d + c * kW, acc[i][c]);
}

template <class L, int RB>
G4_AVX2 inline void pv_tail(float* const* o, const float* alpha, const float* p, const uint8_t* const* vp, int ja,
                            int jb, int64_t d, int tail) {
  const __m256i m = first_lanes(tail);
  __m256 acc[RB];
#pragma GCC unroll 4
  for (int i = 0; i < RB; ++i) acc[i] = _mm256_mul_ps(_mm256_maskload_ps(o[i] + d, m), _mm256_set1_ps(alpha[i]));
  for (int j = ja; j <= jb; ++j) {
    const __m256 v = L::load_part(vp[j], d, tail);
#pragma GCC unroll 4
    for (int i = 0; i < RB; ++i) acc[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + i * kTile + j), v, acc[i]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < RB; ++i) _mm256_maskstore_ps(o[i] + d, m, acc[i]);
}

template <class L, int RB>
G4_AVX2 inline void pv_rows(float* const* o, const float* alpha, const float* p, const uint8_t* const* vp, int ja,
                            int jb, int64_t dv, int tail) {
  int64_t d = 0;
  for (; d + 2 * kW <= dv; d += 2 * kW) pv_block<L, RB, 2>(o, alpha, p, vp, ja, jb, d);
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
G4_AVX2 inline void tile_head(const Seg& sg, const uint8_t* const* kp, const uint8_t* const* vp, int64_t t0, int ja,
                               int jb, int64_t dv, int tail) {
  const int n = sg.n;
  const float* const* q = sg.q;
  float* const* out = sg.out;
  const int64_t* rlo = sg.rlo;
  const int64_t* rhi = sg.rhi;
  float* m = sg.m;
  float* l = sg.l;
  float* alpha = sg.alpha;
  float* scores = sg.scores;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);

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
      for (int c = 0; c < kTile; c += kW) _mm256_storeu_ps(s + c, _mm256_setzero_ps());
      continue;
    }
    const int jl = static_cast<int>(lo - t0), jh = static_cast<int>(hi - t0);
    float mt = s[jl];
    for (int j = jl + 1; j <= jh; ++j) mt = s[j] > mt ? s[j] : mt;
    const float mn = online_max(m[r], mt, &alpha[r]);
    m[r] = mn;
    const __m256 vm = _mm256_set1_ps(mn);
    for (int c = 0; c < kTile; c += kW) {
      const __m256i idx = _mm256_add_epi32(lane, _mm256_set1_epi32(c));
      // jl <= idx <= jh
      const __m256i vis = _mm256_andnot_si256(
          _mm256_or_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(jl), idx), _mm256_cmpgt_epi32(idx, _mm256_set1_epi32(jh))),
          _mm256_set1_epi32(-1));
      const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + c), vm));
      _mm256_storeu_ps(s + c, _mm256_and_ps(e, _mm256_castsi256_ps(vis)));
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
G4_AVX2 void attend_avx2(const KvView& kv, const Rows& rs) {
  const int64_t D = kv.head_dim;
  const int64_t dv = D / kW * kW;
  const int tail = static_cast<int>(D - dv);
  for (int r = 0; r < rs.n; ++r) {
    rs.m[r] = -std::numeric_limits<float>::infinity();
    rs.l[r] = 0.f;
    std::memset(rs.o[r], 0, static_cast<size_t>(D) * sizeof(float));
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
    const __m256 inv = _mm256_set1_ps(rs.l[r] > 0.f ? 1.f / rs.l[r] : 0.f);
    float* o = rs.o[r];
    int64_t d = 0;
    for (; d < dv; d += kW) _mm256_storeu_ps(o + d, _mm256_mul_ps(_mm256_loadu_ps(o + d), inv));
    if (tail) {
      const __m256i m = first_lanes(tail);
      _mm256_maskstore_ps(o + d, m, _mm256_mul_ps(_mm256_maskload_ps(o + d, m), inv));
    }
  }
}

// ---- stores (bit-identical to the scalar definitions) ------------------------------

G4_AVX2 void store_f16_avx2(const float* x, uint8_t* dst, int64_t n) {
  const __m256 hi = _mm256_set1_ps(65504.f), lo = _mm256_set1_ps(-65504.f);
  int64_t i = 0;
  for (; i + kW <= n; i += kW) {
    // min/max(c, x) return x when x is NaN: NaN passes through, as in the scalar form.
    const __m256 c = _mm256_max_ps(lo, _mm256_min_ps(hi, _mm256_loadu_ps(x + i)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i),
                     _mm256_cvtps_ph(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  store_f16_scalar(x + i, dst + 2 * i, n - i);
}

G4_AVX2 void store_bf16_avx2(const float* x, uint8_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + kW <= n; i += kW) {
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    // Round to nearest even: u + 0x7fff + ((u >> 16) & 1), then the top half;
    // NaN: the top half with the quiet bit set (f32_to_bf16).
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i rounded =
        _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff))), 16);
    const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    // |u| > inf as signed compare works: both sides are below 2^31.
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                           _mm256_set1_epi32(0x7f800000));
    const __m256i h = _mm256_blendv_epi8(rounded, quiet, nan);
    // 32 → 16 bits (values fit): pack within lanes, then put the halves in order.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(h, h), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i), _mm256_castsi256_si128(packed));
  }
  store_bf16_scalar(x + i, dst + 2 * i, n - i);
}

}  // namespace

const Table& avx2_table() {
  static const Table t = [] {
    Table x;
    x.isa = Isa::Avx2;
    x.attend_f32 = attend_avx2<LoadF32>;
    x.attend_f16 = attend_avx2<LoadF16>;
    x.attend_bf16 = attend_avx2<LoadBF16>;
    x.attend_q8_0 = attend_avx2<LoadQ8_0>;
    x.store_f16 = store_f16_avx2;
    x.store_bf16 = store_bf16_avx2;
    return x;
  }();
  return t;
}

}  // namespace g4::attn::detail
