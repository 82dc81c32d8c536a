// Shared between the attention kernel files only (not part of the public API).
#pragma once
#include <cmath>

#include "kernels/attention.h"

namespace g4::attn::detail {

const Table& scalar_table();
const Table& avx2_table();    // callable only when the CPU has AVX2+FMA+F16C
const Table& avx512_table();  // callable only when the CPU has AVX-512F/BW/VL (+FMA, F16C)

// Scalar stores (the definitions every ISA reproduces bit for bit).
void store_f16_scalar(const float* x, uint8_t* dst, int64_t n);
void store_bf16_scalar(const float* x, uint8_t* dst, int64_t n);

// Online-softmax step of one row for one key tile, shared by the SIMD kernels
// so their per-row arithmetic is the same: given the row's running max m and
// the tile's max score mt over its visible keys, returns the new max and sets
// alpha = exp(m − m_new) (0 on the row's first tile, where m = −inf).
inline float online_max(float m, float mt, float* alpha) {
  const float mn = mt > m ? mt : m;
  *alpha = std::exp(m - mn);  // exp(−inf) = 0
  return mn;
}

// Asks for the K and V rows of KV heads [h0, h0 + nh) (adjacent in a slot) at
// positions [a, b] to be brought into L2 (prefetcht1, every 64-byte line):
// called one tile ahead, so a decode step streams the cache from DRAM while
// it computes on the previous tile.
inline void prefetch_rows(const KvView& kv, int h0, int nh, int64_t a, int64_t b) {
  const size_t bytes = kv.head_bytes * static_cast<size_t>(nh);
  for (int64_t pos = a; pos <= b; ++pos) {
    const uint8_t* k = kv.k_head(pos, h0);
    const uint8_t* v = kv.v_head(pos, h0);
    for (size_t off = 0; off < bytes; off += 64) {
      __builtin_prefetch(k + off, 0, 2);
      __builtin_prefetch(v + off, 0, 2);
    }
  }
}

}  // namespace g4::attn::detail
