// AVX-512 VNNI int8 matmuls of Q4_0 / Q8_0 weights with Q8_0 activations
// (the main matmul of quantized models, prefill and decode).
//
// Numerics: bit-identical to the scalar reference (vec_dot_q*_q8_0_scalar).
// Every output keeps one fp32 accumulator per (row, token) and adds the block
// terms in block order exactly as the reference does:
//   acc = acc + float(sumi_b) · (fp32(d_w,b) · fp32(d_a,b))
// with sumi_b the exact integer block dot (separate multiply and add, no FMA),
// so results do not depend on tiles, row ranges, token counts or threads.
//
// Compute layout: "rows in lanes". A panel is 16 weight rows; lane r of a zmm
// belongs to row r. For one 32-element block, vpdpbusd(acc, W_k, bcast(a_k))
// with W_k = 4 weight bytes of each of the 16 rows and a_k = the same 4
// activation bytes broadcast to all lanes adds 4 products per lane; eight
// such steps (k = 0..7) leave the 16 block sums in one register with no
// horizontal reduction. vpdpbusd multiplies unsigned by signed bytes, so the
// weights enter as unsigned and a per-(token, block) correction restores the
// signed sum exactly:
//   Q4_0:  q_w = u − 8,     u ∈ [0, 15]  (the stored nibble):  Σ q_w·a = Σ u·a − 8·Σ a
//   Q8_0:  q_w = u − 128,   u = q_w ^ 0x80 ∈ [0, 255]:        Σ q_w·a = Σ u·a − 128·Σ a
// (|Σ u·a| <= 32·255·127 fits int32). The chain starts from −c·Σa, so the
// correction costs no instruction. The activations are the broadcast operand,
// so one register of weights serves every token of a tile.
//
// Two paths over the ggml row layout (no repacking at load: the weights stay
// mapped from the file):
//  * n_tok <= kFusedMaxTok (decode): each block of 16 rows is transposed in
//    registers (4×4 dword transposes of 16-byte row pieces) and used at once;
//    rows are prefetched kPrefetchBytes ahead. Memory-bound.
//  * more tokens (prefill): each 16-row panel is packed once into L1/L2
//    scratch, then every tile of kTokTile tokens runs over it; the next
//    panel's rows are prefetched into L2 meanwhile. Compute-bound.
//
// Packed panel (64-byte aligned): for each block b the quants, then after all
// blocks the scales:
//   Q4_0: 4 zmm per block; zmm k, lane r = bytes 4k..4k+3 of row r's qs
//         (low nibbles: elements 4k..4k+3, high nibbles: 16+4k..16+4k+3)
//   Q8_0: 8 zmm per block; zmm k, lane r = bytes 4k..4k+3 of row r's qs ^ 0x80
//   scales: 16 fp16 per block (row r at index r)
// A panel past the end of the matrix reads a zero-padded copy of its rows.
//
// Activation records (per call, from the Q8_0 blocks the driver quantized):
//   {int32 qs[8] (the 32 quants as dwords); int32 neg_corr (−c·Σa); float d}
// grouped by token tile: tile i (tokens [8i, 8i + nt)) starts at record
// 8i·nb and holds (block b, token t) at b·nt + t, so a tile reads one stream.
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
#include <vector>

#include "core/dtype.h"
#include "kernels/kernels_internal.h"

#define G4_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

namespace g4::kernels::detail {
namespace {

constexpr int kPanel = 16;              // rows per panel (one zmm of int32 lanes)
constexpr int kTokTile = 8;             // tokens per register tile (8 accumulators + 8 weight registers)
constexpr int64_t kFusedMaxTok = 4;     // up to this many tokens: the fused (decode) path
// Decode: how far ahead each of the 16 row streams is prefetched (into L1).
// On the E2B decode sweep (bench_matmul) 512 beat 256 and 1024, and no
// software prefetch was ~10 % slower; a sequential L2 prefetch of the next
// panel instead (as prefill does) measured the same within noise.
constexpr size_t kPrefetchBytes = 512;

struct ActRec {
  int32_t qs[kQK / 4];
  int32_t neg_corr;
  float d;
};
static_assert(sizeof(ActRec) == 40, "activation record layout");

// 64-byte aligned per-thread scratch, one buffer per tag; grows, never shrinks.
template <int kTag>
uint8_t* scratch64(size_t n) {
  thread_local std::vector<uint64_t> buf;
  const size_t words = (n + 64 + 7) / 8;
  if (buf.size() < words) buf.resize(words);
  auto p = reinterpret_cast<uintptr_t>(buf.data());
  return reinterpret_cast<uint8_t*>((p + 63) & ~uintptr_t{63});
}

template <typename WBlock>
struct Traits;
template <>
struct Traits<BlockQ4_0> {
  static constexpr int kZmm = 4;          // packed quant zmm per block
  static constexpr int32_t kCorr = 8;     // Σ q·a = Σ u·a − kCorr·Σ a
  static constexpr int64_t kPfEvery = 4;  // blocks per 64-byte line of a row (18-byte blocks)
};
template <>
struct Traits<BlockQ8_0> {
  static constexpr int kZmm = 8;
  static constexpr int32_t kCorr = 128;
  static constexpr int64_t kPfEvery = 2;  // 34-byte blocks
};

// Records of n_tok rows of nb Q8_0 blocks (layout in the header comment).
G4_VNNI void prep_act(const BlockQ8_0* xq, int64_t xq_stride, int64_t n_tok, int64_t nb, int32_t c, ActRec* out) {
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t t = 0; t < n_tok; ++t) {
    const int64_t tile0 = t / kTokTile * kTokTile;
    const int64_t nt = n_tok - tile0 < kTokTile ? n_tok - tile0 : kTokTile;
    ActRec* o = out + tile0 * nb + (t - tile0);
    const BlockQ8_0* a = xq + t * xq_stride;
    for (int64_t b = 0; b < nb; ++b) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
      ActRec& r = o[b * nt];
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(r.qs), q);
      // Σ (a + 128) over the block as four u64 partial sums (vpsadbw), minus 32·128.
      const __m256i s = _mm256_sad_epu8(_mm256_xor_si256(q, bias), _mm256_setzero_si256());
      const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
      const int32_t sum = static_cast<int32_t>(_mm_cvtsi128_si64(s2) + _mm_extract_epi64(s2, 1)) - 32 * 128;
      r.neg_corr = -c * sum;
      uint16_t h;
      std::memcpy(&h, &a[b].d, 2);
      r.d = _cvtsh_ss(h);
    }
  }
}

// ---- from ggml rows to rows-in-lanes ------------------------------------------

// 16 consecutive rows of a matrix: row r at base + r·rb.
struct Rows16 {
  const uint8_t* base;
  size_t rb;
};

// 16 bytes of rows g, g+4, g+8, g+12 at byte offset o, in 128-bit lanes 0..3.
G4_VNNI inline __m512i load_rows4(const Rows16& m, int g, size_t o) {
  const uint8_t* p = m.base + static_cast<size_t>(g) * m.rb + o;
  const size_t q = 4 * m.rb;
  __m512i z = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  z = _mm512_inserti32x4(z, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + q)), 1);
  z = _mm512_inserti32x4(z, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * q)), 2);
  return _mm512_inserti32x4(z, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 3 * q)), 3);
}

// The 16 bytes at offset o of all 16 rows as out[k], lane r = dword k of row
// r: with z[g] holding rows g + 4j in lane j, a 4×4 dword transpose inside
// each 128-bit lane puts row 4j + g at dword 4j + g.
G4_VNNI inline void rows16_dwords(const Rows16& m, size_t o, __m512i out[4]) {
  __m512i z[4];
  for (int g = 0; g < 4; ++g) z[g] = load_rows4(m, g, o);
  const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]);
  const __m512i t1 = _mm512_unpackhi_epi32(z[0], z[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]);
  const __m512i t3 = _mm512_unpackhi_epi32(z[2], z[3]);
  out[0] = _mm512_unpacklo_epi64(t0, t2);
  out[1] = _mm512_unpackhi_epi64(t0, t2);
  out[2] = _mm512_unpacklo_epi64(t1, t3);
  out[3] = _mm512_unpackhi_epi64(t1, t3);
}

// Block b of the 16 rows as the raw (packed-layout) quant vectors.
template <typename WBlock>
G4_VNNI inline void block_raw(const Rows16& m, int64_t b, __m512i raw[Traits<WBlock>::kZmm]) {
  const size_t o = static_cast<size_t>(b) * sizeof(WBlock) + 2;  // qs after the fp16 d
  rows16_dwords(m, o, raw);
  if constexpr (Traits<WBlock>::kZmm == 8) {
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
    rows16_dwords(m, o + 16, raw + 4);
    for (int k = 0; k < 8; ++k) raw[k] = _mm512_xor_si512(raw[k], bias);
  }
}

// The fp16 scales of block b of the 16 rows: a dword gather at the row
// offsets, truncated to the low 16 bits (the d that starts each block).
G4_VNNI inline __m256i block_scales(const Rows16& m, int64_t b, __m512i row_off, size_t block_bytes) {
  const __m512i v = _mm512_i32gather_epi32(row_off, m.base + static_cast<size_t>(b) * block_bytes, 1);
  return _mm512_cvtepi32_epi16(v);
}

G4_VNNI inline __m512i row_offsets(size_t rb) {
  alignas(64) int32_t off[kPanel];
  for (int r = 0; r < kPanel; ++r) off[r] = static_cast<int32_t>(static_cast<size_t>(r) * rb);
  return _mm512_load_si512(off);
}

// Raw quant vectors to the 8 unsigned weight vectors (vector k pairs with
// activation dword k).
template <typename WBlock>
G4_VNNI inline void unpack_weights(const __m512i raw[Traits<WBlock>::kZmm], __m512i wv[8]) {
  if constexpr (Traits<WBlock>::kZmm == 4) {
    const __m512i m = _mm512_set1_epi8(0x0F);
    for (int k = 0; k < 4; ++k) {
      wv[k] = _mm512_and_si512(raw[k], m);
      wv[k + 4] = _mm512_and_si512(_mm512_srli_epi16(raw[k], 4), m);
    }
  } else {
    for (int k = 0; k < 8; ++k) wv[k] = raw[k];
  }
}

// ---- the block step shared by both paths -------------------------------------

// acc[t] += float(Σ_k dpbusd) · (dw · d_a) for the NT records a[0..NT) of one block.
template <int NT>
G4_VNNI inline void block_step(const __m512i wv[8], __m512 dw, const ActRec* a, __m512 acc[NT]) {
  for (int t = 0; t < NT; ++t) {
    __m512i s = _mm512_set1_epi32(a[t].neg_corr);
    for (int k = 0; k < 8; ++k) s = _mm512_dpbusd_epi32(s, wv[k], _mm512_set1_epi32(a[t].qs[k]));
    const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(a[t].d));
    // The builtin-backed _round_ form keeps GCC from contracting the multiply
    // and the add into an FMA (the reference rounds both).
    acc[t] = _mm512_add_round_ps(acc[t], _mm512_mul_ps(_mm512_cvtepi32_ps(s), scale), _MM_FROUND_CUR_DIRECTION);
  }
}

template <int NT>
G4_VNNI inline void store_tile(const __m512 acc[NT], float* y, int64_t ys, __mmask16 mask) {
  for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(y + t * ys, mask, acc[t]);
}

// ---- decode: fused transpose + dot ---------------------------------------------

template <typename WBlock, int NT>
G4_VNNI void fused_tile(const Rows16& m, int64_t nb, const ActRec* act, float* y, int64_t ys, __mmask16 mask) {
  const __m512i row_off = row_offsets(m.rb);
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    if (b % Traits<WBlock>::kPfEvery == 0) {
      const uint8_t* p = m.base + static_cast<size_t>(b) * sizeof(WBlock) + kPrefetchBytes;
      for (int r = 0; r < kPanel; ++r) _mm_prefetch(reinterpret_cast<const char*>(p + r * m.rb), _MM_HINT_T0);
    }
    __m512i raw[Traits<WBlock>::kZmm], wv[8];
    block_raw<WBlock>(m, b, raw);
    unpack_weights<WBlock>(raw, wv);
    const __m512 dw = _mm512_cvtph_ps(block_scales(m, b, row_off, sizeof(WBlock)));
    block_step<NT>(wv, dw, act + b * NT, acc);
  }
  store_tile<NT>(acc, y, ys, mask);
}

template <typename WBlock>
G4_VNNI void fused_tokens(const Rows16& m, int64_t nb, const ActRec* act, int64_t n_tok, float* y, int64_t ys,
                          __mmask16 mask) {
  switch (n_tok) {
    case 4: fused_tile<WBlock, 4>(m, nb, act, y, ys, mask); break;
    case 3: fused_tile<WBlock, 3>(m, nb, act, y, ys, mask); break;
    case 2: fused_tile<WBlock, 2>(m, nb, act, y, ys, mask); break;
    default: fused_tile<WBlock, 1>(m, nb, act, y, ys, mask); break;
  }
}
static_assert(kFusedMaxTok <= 4, "fused_tokens instantiates up to 4 tokens");

// ---- prefill: packed panel × token tiles ---------------------------------------

template <typename WBlock>
G4_VNNI void pack_panel(const Rows16& m, int64_t nb, uint8_t* q, uint16_t* d) {
  const __m512i row_off = row_offsets(m.rb);
  for (int64_t b = 0; b < nb; ++b) {
    __m512i raw[Traits<WBlock>::kZmm];
    block_raw<WBlock>(m, b, raw);
    auto* qo = reinterpret_cast<__m512i*>(q + static_cast<size_t>(b) * Traits<WBlock>::kZmm * 64);
    for (int k = 0; k < Traits<WBlock>::kZmm; ++k) _mm512_store_si512(qo + k, raw[k]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(d + b * kPanel), block_scales(m, b, row_off, sizeof(WBlock)));
  }
}

// Prefetch of the next panel's rows into L2 while a panel computes: `pf`
// (nullptr: none) and the part [l0, l1) of its 64-byte lines this tile
// covers, spread over the tile's blocks so the misses stream at the pace of
// the compute instead of piling up in the fill buffers.
struct PanelPrefetch {
  const uint8_t* pf = nullptr;
  int64_t l0 = 0, l1 = 0;
};

// Issues the lines of `pre` that fall to block b of nb.
G4_VNNI inline void prefetch_share(const PanelPrefetch& pre, int64_t b, int64_t nb) {
  if (!pre.pf) return;
  const int64_t n = pre.l1 - pre.l0;
  for (int64_t l = pre.l0 + n * b / nb, le = pre.l0 + n * (b + 1) / nb; l < le; ++l)
    _mm_prefetch(reinterpret_cast<const char*>(pre.pf + l * 64), _MM_HINT_T1);
}

template <typename WBlock, int NT>
G4_VNNI void panel_tile(const uint8_t* q, const uint16_t* d, int64_t nb, const ActRec* act, float* y, int64_t ys,
                        __mmask16 mask, PanelPrefetch pre) {
  constexpr size_t kQBytes = Traits<WBlock>::kZmm * 64;
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    prefetch_share(pre, b, nb);
    __m512i raw[Traits<WBlock>::kZmm], wv[8];
    const auto* z = reinterpret_cast<const __m512i*>(q + static_cast<size_t>(b) * kQBytes);
    for (int k = 0; k < Traits<WBlock>::kZmm; ++k) raw[k] = _mm512_load_si512(z + k);
    unpack_weights<WBlock>(raw, wv);
    const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(d + b * kPanel)));
    block_step<NT>(wv, dw, act + b * NT, acc);
  }
  store_tile<NT>(acc, y, ys, mask);
}

// All tokens of one packed panel in tiles of kTokTile (then the tail), each
// tile prefetching its share of the next panel's rows [next, next + next_bytes).
template <typename WBlock>
G4_VNNI void panel_tokens(const uint8_t* q, const uint16_t* d, int64_t nb, const ActRec* act, int64_t n_tok,
                          float* y, int64_t ys, __mmask16 mask, const uint8_t* next, size_t next_bytes) {
  const int64_t tiles = (n_tok + kTokTile - 1) / kTokTile;
  const auto lines = static_cast<int64_t>((next_bytes + 63) / 64);
  auto part = [&](int64_t i) { return PanelPrefetch{next, lines * i / tiles, lines * (i + 1) / tiles}; };
  int64_t t = 0, i = 0;
  for (; t + kTokTile <= n_tok; t += kTokTile, ++i)
    panel_tile<WBlock, kTokTile>(q, d, nb, act + t * nb, y + t * ys, ys, mask, part(i));
  const ActRec* a = act + t * nb;
  float* yt = y + t * ys;
  switch (n_tok - t) {
    case 7: panel_tile<WBlock, 7>(q, d, nb, a, yt, ys, mask, part(i)); break;
    case 6: panel_tile<WBlock, 6>(q, d, nb, a, yt, ys, mask, part(i)); break;
    case 5: panel_tile<WBlock, 5>(q, d, nb, a, yt, ys, mask, part(i)); break;
    case 4: panel_tile<WBlock, 4>(q, d, nb, a, yt, ys, mask, part(i)); break;
    case 3: panel_tile<WBlock, 3>(q, d, nb, a, yt, ys, mask, part(i)); break;
    case 2: panel_tile<WBlock, 2>(q, d, nb, a, yt, ys, mask, part(i)); break;
    case 1: panel_tile<WBlock, 1>(q, d, nb, a, yt, ys, mask, part(i)); break;
    default: break;
  }
}

// ---- the table entry -------------------------------------------------------------

template <typename WBlock>
G4_VNNI void matmul_q8act_avx512(const WeightMatrix& w, int64_t r0, int64_t r1, const void* xq_bytes, int64_t n_tok,
                                 size_t xq_row_bytes, float* y, int64_t y_stride) {
  if (r1 <= r0 || n_tok <= 0) return;
  const int64_t nb = w.n_in / kQK;
  auto* act = reinterpret_cast<ActRec*>(scratch64<1>(static_cast<size_t>(n_tok * nb) * sizeof(ActRec)));
  prep_act(static_cast<const BlockQ8_0*>(xq_bytes), static_cast<int64_t>(xq_row_bytes / sizeof(BlockQ8_0)), n_tok,
           nb, Traits<WBlock>::kCorr, act);
  const bool fused = n_tok <= kFusedMaxTok;
  constexpr size_t kQBytes = Traits<WBlock>::kZmm * 64;
  const size_t q_bytes = static_cast<size_t>(nb) * kQBytes;
  uint8_t* panel = fused ? nullptr : scratch64<0>(q_bytes + static_cast<size_t>(nb) * kPanel * 2);
  // (no pointer arithmetic on the null panel of the fused path)
  auto* pd = fused ? nullptr : reinterpret_cast<uint16_t*>(panel + q_bytes);
  for (int64_t r = r0; r < r1; r += kPanel) {
    const int64_t nr = r1 - r < kPanel ? r1 - r : kPanel;
    const auto mask = static_cast<__mmask16>((1u << nr) - 1);
    Rows16 m{w.row(r), w.row_bytes};
    if (nr < kPanel) {  // past the last row: a zero-padded copy of the 16 rows
      uint8_t* tmp = scratch64<2>(kPanel * w.row_bytes);
      std::memcpy(tmp, m.base, static_cast<size_t>(nr) * w.row_bytes);
      std::memset(tmp + static_cast<size_t>(nr) * w.row_bytes, 0, static_cast<size_t>(kPanel - nr) * w.row_bytes);
      m.base = tmp;
    }
    if (fused) {
      fused_tokens<WBlock>(m, nb, act, n_tok, y + r, y_stride, mask);
    } else {
      pack_panel<WBlock>(m, nb, panel, pd);
      const int64_t rn = r + kPanel, nn = r1 - rn < kPanel ? r1 - rn : kPanel;  // the next panel's rows
      panel_tokens<WBlock>(panel, pd, nb, act, n_tok, y + r, y_stride, mask, nn > 0 ? w.row(rn) : nullptr,
                           nn > 0 ? static_cast<size_t>(nn) * w.row_bytes : 0);
    }
  }
}

}  // namespace

void install_avx512_int8(KernelTable& t) {
  t.types[static_cast<int>(GgmlType::Q8_0)].matmul_q = matmul_q8act_avx512<BlockQ8_0>;
  t.types[static_cast<int>(GgmlType::Q4_0)].matmul_q = matmul_q8act_avx512<BlockQ4_0>;
}

}  // namespace g4::kernels::detail
