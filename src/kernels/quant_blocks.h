// On-disk block layouts of the ggml quantized types (byte-exact with ggml's
// ggml-common.h, so GGUF tensor data is read in place), and the activation
// block types its integer dot products use.
//
// Legacy 32-element blocks:  value = d·q (Q8_0, Q4_0, Q5_0) or d·q + m (Q4_1, Q5_1).
// K-quants: 256-element super-blocks of 8 (Q4_K/Q5_K) or 16 (Q6_K) sub-blocks
// with 6-bit (packed) or 8-bit sub-block scales.
// MXFP4: 32 FP4 (E2M1) values sharing one E8M0 power-of-two scale.
#pragma once
#include <cstdint>

namespace g4::kernels {

constexpr int64_t kQK = 32;        // elements per legacy block (Q4_0 … Q8_1, MXFP4)
constexpr int64_t kQK_K = 256;     // elements per K-quant super-block
constexpr int kKScaleSize = 12;    // bytes of packed 6-bit scales/mins in Q4_K/Q5_K

// block_q8_0: fp16 scale d, 32 int8; value = q·d.
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
// block_q8_1 (activations of Q4_1/Q5_1 dots): d, s = d·Σq (both fp16), 32 int8.
struct BlockQ8_1 {
  uint16_t d;
  uint16_t s;
  int8_t qs[kQK];
};
// block_q4_0: byte j holds element j (low nibble) and j+16 (high); value = (q−8)·d.
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
// block_q4_1: as Q4_0 but unsigned: value = q·d + m.
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQK / 2];
};
// block_q5_0: the 5th bit of element j is bit j of qh (little-endian u32);
// value = (q − 16)·d.
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
// block_q5_1: value = q·d + m, q in [0, 31].
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
// block_mxfp4: e = E8M0 exponent (scale 2^(e−127), ggml uses half of it with a
// doubled value table), qs like Q4_0 (element j low nibble, j+16 high nibble),
// each nibble an E2M1 code.
struct BlockMxfp4 {
  uint8_t e;
  uint8_t qs[kQK / 2];
};

// block_q4_K: 8 sub-blocks of 32; value = d·sc_j·q − dmin·m_j with 6-bit
// sc_j/m_j packed in `scales`; qs: 4 groups of 32 bytes, each holding two
// sub-blocks (low nibbles, then high nibbles).
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qs[kQK_K / 2];
};
// block_q5_K: as Q4_K plus the 5th bits in qh (bit pair per 64-element group).
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
// block_q6_K: 16 sub-blocks of 16; value = d·sc_j·(q − 32), q = 4 low bits in
// ql + 2 high bits in qh; int8 scales.
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};
// block_q8_K (activations of the K-quant dots, also a storage type): fp32 d,
// 256 int8, and the sums of each 16 consecutive q (for the min terms).
struct BlockQ8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];
};

static_assert(sizeof(BlockQ8_0) == 34, "block_q8_0 layout");
static_assert(sizeof(BlockQ8_1) == 36, "block_q8_1 layout");
static_assert(sizeof(BlockQ4_0) == 18, "block_q4_0 layout");
static_assert(sizeof(BlockQ4_1) == 20, "block_q4_1 layout");
static_assert(sizeof(BlockQ5_0) == 22, "block_q5_0 layout");
static_assert(sizeof(BlockQ5_1) == 24, "block_q5_1 layout");
static_assert(sizeof(BlockMxfp4) == 17, "block_mxfp4 layout");
static_assert(sizeof(BlockQ4_K) == 144, "block_q4_K layout");
static_assert(sizeof(BlockQ5_K) == 176, "block_q5_K layout");
static_assert(sizeof(BlockQ6_K) == 210, "block_q6_K layout");
static_assert(sizeof(BlockQ8_K) == 292, "block_q8_K layout");

}  // namespace g4::kernels
