// The quants.h types (Q4_1, Q5_0, Q5_1, MXFP4, Q4_K, Q5_K, Q6_K, Q8_K) on every
// ISA table: hand-built blocks decode to the values the layout description
// gives; SIMD dequantization and activation quantization equal the scalar
// reference bit for bit; quantize → dequantize stays within each type's
// error bound; quantized-activation matmuls match a double-precision
// restatement of ggml's integer math (decoded here independently of the
// kernels) within fp32 rounding; fp32-activation matmuls match the
// dequantized weights; threads, row ranges and token batching never change a
// bit. Odd sizes throughout: odd block counts, 1..N rows, 1..9 tokens, strided
// activations and outputs. (Byte-exactness against ggml itself:
// test_quants_ggml.cpp.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernel_test_util.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/quants.h"

using namespace g4;
using namespace g4::kernels;

namespace {

using g4::kernels::test::randn;
using g4::kernels::test::tables;

const GgmlType kTypes[] = {GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::MXFP4,
                           GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q8_K};

int64_t block_of(GgmlType t) { return ggml_type_info(t).block_size; }
std::string name(GgmlType t) { return ggml_type_name(t); }

uint16_t h(float f) { return f32_to_fp16(f); }
float fh(uint16_t v) { return fp16_to_f32(v); }

// ---- an independent decoding of the layouts (quant_blocks.h) ------------------------

// One weight block as integers: value[i] = scale[i / sub]·q[i] + offset[i / sub].
struct IntBlock {
  int n = 0, sub = 0;
  int q[256] = {};
  double scale[16] = {}, offset[16] = {};
};

// The 6-bit scale/min pairs of Q4_K/Q5_K, read bit by bit from the 12 bytes.
void k_scale_min(const uint8_t* s, int j, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 0x3F;
    m = s[j + 4] & 0x3F;
  } else {
    sc = (s[j + 4] & 0x0F) + 16 * (s[j - 4] >> 6);
    m = (s[j + 4] >> 4) + 16 * (s[j] >> 6);
  }
}

// E2M1 (sign, 2-bit exponent, 1-bit mantissa) from the OCP MX spec.
double e2m1(int code) {
  const int e = (code >> 1) & 3, m = code & 1;
  const double mag = e == 0 ? 0.5 * m : (1.0 + 0.5 * m) * std::ldexp(1.0, e - 1);
  return (code & 8) ? -mag : mag;
}

IntBlock decode(GgmlType t, const uint8_t* p) {
  IntBlock b;
  auto fp16 = [&](size_t off) {
    uint16_t v;
    std::memcpy(&v, p + off, 2);
    return static_cast<double>(fh(v));
  };
  auto nib = [&](const uint8_t* qs, int i) { return i < 16 ? qs[i] & 15 : qs[i - 16] >> 4; };  // 32-blocks
  auto bit = [&](const uint8_t* qh, int i) { return (qh[i / 8] >> (i % 8)) & 1; };
  switch (t) {
    case GgmlType::Q4_1:
      b.n = b.sub = 32;
      b.scale[0] = fp16(0), b.offset[0] = fp16(2);
      for (int i = 0; i < 32; ++i) b.q[i] = nib(p + 4, i);
      break;
    case GgmlType::Q5_0:
      b.n = b.sub = 32;
      b.scale[0] = fp16(0);
      for (int i = 0; i < 32; ++i) b.q[i] = nib(p + 6, i) + 16 * bit(p + 2, i) - 16;
      break;
    case GgmlType::Q5_1:
      b.n = b.sub = 32;
      b.scale[0] = fp16(0), b.offset[0] = fp16(2);
      for (int i = 0; i < 32; ++i) b.q[i] = nib(p + 8, i) + 16 * bit(p + 4, i);
      break;
    case GgmlType::MXFP4:
      b.n = b.sub = 32;
      // Levels: E2M1 values doubled (integers), scale half of 2^(e − 127).
      b.scale[0] = std::ldexp(1.0, static_cast<int>(p[0]) - 128);
      for (int i = 0; i < 32; ++i) b.q[i] = static_cast<int>(2 * e2m1(nib(p + 1, i)));
      break;
    case GgmlType::Q4_K:
    case GgmlType::Q5_K: {
      const bool five = t == GgmlType::Q5_K;
      b.n = 256, b.sub = 32;
      const double d = fp16(0), dmin = fp16(2);
      const uint8_t* qh = p + 16;
      const uint8_t* qs = p + (five ? 48 : 16);
      for (int j = 0; j < 8; ++j) {
        int sc, m;
        k_scale_min(p + 4, j, sc, m);
        b.scale[j] = d * sc, b.offset[j] = -dmin * m;
      }
      for (int i = 0; i < 256; ++i) {
        const int g = i / 64, l = i % 32, upper = (i % 64) >= 32;
        b.q[i] = (upper ? qs[32 * g + l] >> 4 : qs[32 * g + l] & 15);
        if (five) b.q[i] += 16 * ((qh[l] >> (2 * g + upper)) & 1);
      }
      break;
    }
    case GgmlType::Q6_K: {
      b.n = 256, b.sub = 16;
      const uint8_t* ql = p;
      const uint8_t* qh = p + 128;
      const auto* sc = reinterpret_cast<const int8_t*>(p + 192);
      const double d = fp16(208);
      for (int s = 0; s < 16; ++s) b.scale[s] = d * sc[s];
      for (int i = 0; i < 256; ++i) {
        const int half = i / 128, k = (i % 128) / 32, l = i % 32;
        const uint8_t lo = ql[64 * half + 32 * (k & 1) + l];
        const int low4 = k < 2 ? lo & 15 : lo >> 4;
        const int high2 = (qh[32 * half + l] >> (2 * k)) & 3;
        b.q[i] = low4 + 16 * high2 - 32;
      }
      break;
    }
    case GgmlType::Q8_K: {
      b.n = b.sub = 256;
      float d;
      std::memcpy(&d, p, 4);
      b.scale[0] = d;
      for (int i = 0; i < 256; ++i) b.q[i] = static_cast<int8_t>(p[4 + i]);
      break;
    }
    default: ADD_FAILURE() << "no decoder for " << name(t);
  }
  return b;
}

// A random weight matrix quantized with the type's weight quantizer, its
// exact dequantization (scalar table) and the bytes.
struct TestMatrix {
  GgmlType type;
  int64_t n_in, n_out;
  std::vector<uint8_t> bytes;
  std::vector<float> deq;
  WeightMatrix view() const { return WeightMatrix::raw(type, bytes.data(), n_in, n_out); }
  const uint8_t* block(int64_t row, int64_t b) const {
    return bytes.data() + ggml_row_bytes(type, n_in) * static_cast<size_t>(row) +
           static_cast<size_t>(b) * ggml_type_info(type).block_bytes;
  }
};

TestMatrix make_matrix(GgmlType type, int64_t n_in, int64_t n_out, uint32_t seed) {
  TestMatrix m{type, n_in, n_out, {}, {}};
  auto src = randn(static_cast<size_t>(n_in * n_out), seed, 0.5f);
  // Some rows with an offset (exercises the min terms) and one all-zero block.
  for (int64_t r = 0; r < n_out; r += 3)
    for (int64_t i = 0; i < n_in; ++i) src[static_cast<size_t>(r * n_in + i)] += 0.7f;
  if (n_out > 1)
    for (int64_t i = 0; i < block_of(type); ++i) src[static_cast<size_t>(n_in + i)] = 0.f;
  m.bytes.resize(ggml_row_bytes(type, n_in) * static_cast<size_t>(n_out));
  quantize_rows(type, src.data(), m.bytes.data(), n_out, n_in);
  m.deq.resize(src.size());
  for (int64_t r = 0; r < n_out; ++r) dequantize_row(m.view(), r, m.deq.data() + r * n_in, &table(Isa::Scalar));
  return m;
}

// Activation rows quantized to activation_type(type) by the scalar reference.
std::vector<uint8_t> quantize_acts(GgmlType type, const std::vector<float>& x, int64_t n_tok, int64_t n_in,
                                   int64_t xs) {
  const GgmlType act = activation_type(type);
  const size_t rb = ggml_row_bytes(act, n_in);
  std::vector<uint8_t> q(rb * static_cast<size_t>(n_tok));
  for (int64_t t = 0; t < n_tok; ++t)
    table(Isa::Scalar).quantize_act_for(act)(x.data() + t * xs, q.data() + rb * static_cast<size_t>(t), n_in);
  return q;
}

// ggml's integer math for one (row, activation row), in double: per block
// Σ_sub scale·d_a·Σ q_w·q_a plus the offset terms — m·s_a for Q4_1/Q5_1 (the
// Q8_1 block's stored s), offset_j·d_a·Σ_{i∈j} q_a for the K-quants. *mag:
// the same sum of absolute values (the scale of fp32 rounding).
double dot_ref(const TestMatrix& m, int64_t row, const uint8_t* act_row, double* mag) {
  const GgmlType act = activation_type(m.type);
  const int64_t bw = block_of(m.type), nb = m.n_in / bw;
  double ref = 0, mg = 0;
  for (int64_t b = 0; b < nb; ++b) {
    const IntBlock w = decode(m.type, m.block(row, b));
    for (int s = 0; s < w.n / w.sub; ++s) {
      // Activation scale and levels of elements [b·bw + s·sub, + sub).
      int64_t sum_qq = 0, sum_abs = 0, sum_qa = 0;
      double da = 0;
      for (int i = s * w.sub; i < (s + 1) * w.sub; ++i) {
        const int64_t e = b * bw + i;
        int qa;
        if (act == GgmlType::Q8_K) {
          const auto* a = reinterpret_cast<const BlockQ8_K*>(act_row) + e / 256;
          qa = a->qs[e % 256];
          da = a->d;
        } else if (act == GgmlType::Q8_1) {
          const auto* a = reinterpret_cast<const BlockQ8_1*>(act_row) + e / 32;
          qa = a->qs[e % 32];
          da = fh(a->d);
        } else {
          const auto* a = reinterpret_cast<const BlockQ8_0*>(act_row) + e / 32;
          qa = a->qs[e % 32];
          da = fh(a->d);
        }
        sum_qq += static_cast<int64_t>(w.q[i]) * qa;
        sum_abs += std::abs(static_cast<int64_t>(w.q[i]) * qa);
        sum_qa += qa;
      }
      ref += w.scale[s] * da * static_cast<double>(sum_qq);
      mg += std::fabs(w.scale[s] * da) * static_cast<double>(sum_abs);
      if (act == GgmlType::Q8_K && w.offset[s] != 0) {
        ref += w.offset[s] * da * static_cast<double>(sum_qa);
        mg += std::fabs(w.offset[s] * da * static_cast<double>(sum_qa));
      }
    }
    if (act == GgmlType::Q8_1) {
      const auto* a = reinterpret_cast<const BlockQ8_1*>(act_row) + b;
      const double ms = w.offset[0] * fh(a->s);
      ref += ms;
      mg += std::fabs(ms);
    }
  }
  *mag = mg;
  return ref;
}

}  // namespace

// ---- hand-built blocks ---------------------------------------------------------------

namespace {
// Dequantizes one hand-built block with every ISA and compares with `want`.
void expect_decodes_to(GgmlType t, const void* blk, const std::vector<double>& want) {
  const int64_t n = static_cast<int64_t>(want.size());
  for (const KernelTable* k : tables()) {
    std::vector<float> got(static_cast<size_t>(n));
    k->dequant_for(t)(static_cast<const uint8_t*>(blk), got.data(), n);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(static_cast<double>(got[i]), want[i]) << name(t) << " " << isa_name(k->isa) << " element " << i;
  }
}
}  // namespace

TEST(QuantLayout, LegacyBlocksDecodeToHandComputedValues) {
  {  // Q4_1: element j in the low nibble of byte j, j + 16 in the high nibble; q·d + m.
    BlockQ4_1 b{};
    b.d = h(0.5f), b.m = h(-1.0f);
    std::vector<double> want(32);
    for (int j = 0; j < 16; ++j) {
      b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
      want[j] = j * 0.5 - 1.0, want[j + 16] = (15 - j) * 0.5 - 1.0;
    }
    expect_decodes_to(GgmlType::Q4_1, &b, want);
  }
  {  // Q5_0: 5th bit of element j = bit j of qh; (q − 16)·d.
    BlockQ5_0 b{};
    b.d = h(0.25f);
    int q[32];
    uint32_t qh = 0;
    std::vector<double> want(32);
    for (int j = 0; j < 32; ++j) q[j] = (j * 7 + 3) % 32, want[j] = (q[j] - 16) * 0.25, qh |= uint32_t(q[j] >> 4) << j;
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>((q[j] & 15) | ((q[j + 16] & 15) << 4));
    std::memcpy(b.qh, &qh, 4);
    expect_decodes_to(GgmlType::Q5_0, &b, want);
  }
  {  // Q5_1: q·d + m.
    BlockQ5_1 b{};
    b.d = h(2.0f), b.m = h(0.5f);
    int q[32];
    uint32_t qh = 0;
    std::vector<double> want(32);
    for (int j = 0; j < 32; ++j) q[j] = (j * 11 + 5) % 32, want[j] = q[j] * 2.0 + 0.5, qh |= uint32_t(q[j] >> 4) << j;
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>((q[j] & 15) | ((q[j + 16] & 15) << 4));
    std::memcpy(b.qh, &qh, 4);
    expect_decodes_to(GgmlType::Q5_1, &b, want);
  }
  // MXFP4: E2M1 codes (0, ±0.5, ±1, ±1.5, ±2, ±3, ±4, ±6) times 2^(e − 127);
  // e = 1 gives subnormal results.
  for (int e : {127, 130, 120, 1}) {
    BlockMxfp4 b{};
    b.e = static_cast<uint8_t>(e);
    std::vector<double> want(32);
    for (int j = 0; j < 16; ++j) {
      const int lo = j, hi = 15 - j;
      b.qs[j] = static_cast<uint8_t>(lo | (hi << 4));
      want[j] = e2m1(lo) * std::ldexp(1.0, e - 127), want[j + 16] = e2m1(hi) * std::ldexp(1.0, e - 127);
    }
    expect_decodes_to(GgmlType::MXFP4, &b, want);
  }
}

TEST(QuantLayout, KQuantBlocksDecodeToHandComputedValues) {
  // Q4_K/Q5_K: 6-bit scales and mins with high bits set (> 15), packed as the
  // layout says: bytes 0-3 sc[0..3] | top bits of sc[4..7]; bytes 4-7 m[0..3]
  // | top bits of m[4..7]; bytes 8-11 low nibbles of sc[4..7] and m[4..7].
  const int sc[8] = {1, 17, 33, 63, 5, 40, 20, 62}, mn[8] = {0, 63, 31, 32, 16, 48, 2, 60};
  uint8_t packed[12] = {};
  for (int j = 0; j < 4; ++j) {
    packed[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    packed[j + 4] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
    packed[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
  }
  {
    BlockQ4_K b{};
    b.d = h(0.5f), b.dmin = h(0.25f);
    std::memcpy(b.scales, packed, 12);
    int L[256];
    std::vector<double> want(256);
    for (int i = 0; i < 256; ++i) L[i] = (i * 5 + 3) % 16, want[i] = 0.5 * sc[i / 32] * L[i] - 0.25 * mn[i / 32];
    // Group g of 64: byte l holds element 64g + l (low) and 64g + 32 + l (high).
    for (int g = 0; g < 4; ++g)
      for (int l = 0; l < 32; ++l) b.qs[32 * g + l] = static_cast<uint8_t>(L[64 * g + l] | (L[64 * g + 32 + l] << 4));
    expect_decodes_to(GgmlType::Q4_K, &b, want);
  }
  {
    BlockQ5_K b{};
    b.d = h(0.125f), b.dmin = h(1.0f);
    std::memcpy(b.scales, packed, 12);
    int L[256];
    std::vector<double> want(256);
    for (int i = 0; i < 256; ++i) L[i] = (i * 7 + 1) % 32, want[i] = 0.125 * sc[i / 32] * L[i] - 1.0 * mn[i / 32];
    // 5th bits: element 64g + l → bit 2g of qh[l], 64g + 32 + l → bit 2g + 1.
    for (int g = 0; g < 4; ++g)
      for (int l = 0; l < 32; ++l) {
        const int a = L[64 * g + l], c = L[64 * g + 32 + l];
        b.qs[32 * g + l] = static_cast<uint8_t>((a & 15) | ((c & 15) << 4));
        b.qh[l] = static_cast<uint8_t>(b.qh[l] | ((a >> 4) << (2 * g)) | ((c >> 4) << (2 * g + 1)));
      }
    expect_decodes_to(GgmlType::Q5_K, &b, want);
  }
  {  // Q6_K: int8 scales per 16 (incl. −128), 6-bit levels minus 32.
    BlockQ6_K b{};
    b.d = h(0.0625f);
    const int s6[16] = {-128, 127, -1, 0, 5, 64, -77, 3, 100, -2, 31, -31, 1, 90, -90, 7};
    for (int s = 0; s < 16; ++s) b.scales[s] = static_cast<int8_t>(s6[s]);
    int L[256];
    std::vector<double> want(256);
    for (int i = 0; i < 256; ++i) L[i] = (i * 11 + 5) % 64, want[i] = 0.0625 * s6[i / 16] * (L[i] - 32);
    // Half h of 128, l < 32: ql[64h + l] = elements l (low) and l + 64 (high);
    // ql[64h + 32 + l] = l + 32 and l + 96; qh[32h + l] = top bit pairs of
    // l, l + 32, l + 64, l + 96.
    for (int hf = 0; hf < 2; ++hf) {
      const int* Lh = L + 128 * hf;
      for (int l = 0; l < 32; ++l) {
        b.ql[64 * hf + l] = static_cast<uint8_t>((Lh[l] & 15) | ((Lh[l + 64] & 15) << 4));
        b.ql[64 * hf + 32 + l] = static_cast<uint8_t>((Lh[l + 32] & 15) | ((Lh[l + 96] & 15) << 4));
        b.qh[32 * hf + l] =
            static_cast<uint8_t>((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
      }
    }
    expect_decodes_to(GgmlType::Q6_K, &b, want);
  }
  {  // Q8_K: fp32 d times int8.
    BlockQ8_K b{};
    b.d = 0.375f;
    std::vector<double> want(256);
    for (int i = 0; i < 256; ++i) b.qs[i] = static_cast<int8_t>((i * 37) % 255 - 127), want[i] = 0.375 * b.qs[i];
    expect_decodes_to(GgmlType::Q8_K, &b, want);
  }
}

TEST(QuantLayout, ScaleHelpersMatchTheLayout) {
  // unpack_k_scales on every 6-bit pattern position.
  std::mt19937 rng(3);
  for (int rep = 0; rep < 200; ++rep) {
    uint8_t s[12];
    for (auto& v : s) v = static_cast<uint8_t>(rng());
    const detail::KScales k = detail::unpack_k_scales(s);
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      k_scale_min(s, j, sc, m);
      EXPECT_EQ(k.sc[j], sc);
      EXPECT_EQ(k.m[j], m);
    }
  }
  // e8m0_half(e) = 2^(e − 128), subnormals included.
  for (int e = 0; e < 255; ++e) EXPECT_EQ(detail::e8m0_half(static_cast<uint8_t>(e)), std::ldexp(1.0f, e - 128)) << e;
}

// ---- dequantization: ISAs vs scalar, decode() vs kernels --------------------------

TEST(QuantDequant, IsaPathsAreBitIdenticalAndMatchTheLayout) {
  for (GgmlType type : kTypes) {
    for (int64_t blocks : {1, 3, 9}) {
      const int64_t n = blocks * block_of(type);
      auto x = randn(static_cast<size_t>(n), static_cast<uint32_t>(n) + 5, 3.f);
      std::vector<uint8_t> bytes(ggml_row_bytes(type, n));
      quantize_rows(type, x.data(), bytes.data(), 1, n);
      // Random level bits (every pattern), keeping the quantizer's scales.
      std::mt19937 rng(static_cast<uint32_t>(n));
      const size_t bb = ggml_type_info(type).block_bytes;
      for (size_t b = 0; b < static_cast<size_t>(blocks); ++b) {
        uint8_t* p = bytes.data() + b * bb;
        size_t lo = 0, hi = bb;  // the level bytes of each layout
        switch (type) {
          case GgmlType::Q4_1: lo = 4; break;
          case GgmlType::Q5_0: lo = 2; break;
          case GgmlType::Q5_1: lo = 4; break;
          case GgmlType::MXFP4: lo = 1; break;
          case GgmlType::Q4_K:
          case GgmlType::Q5_K: lo = 4; break;  // scales too: any 12 bytes are valid
          case GgmlType::Q6_K: hi = 208; break;
          case GgmlType::Q8_K: lo = 4, hi = 4 + 256; break;
          default: break;
        }
        if (b % 2 == 1)
          for (size_t i = lo; i < hi; ++i) p[i] = static_cast<uint8_t>(rng());
      }
      std::vector<float> ref(static_cast<size_t>(n));
      table(Isa::Scalar).dequant_for(type)(bytes.data(), ref.data(), n);
      for (int64_t b = 0; b < blocks; ++b) {
        const IntBlock ib = decode(type, bytes.data() + static_cast<size_t>(b) * bb);
        for (int i = 0; i < ib.n; ++i) {
          const double sq = ib.scale[i / ib.sub] * ib.q[i], off = ib.offset[i / ib.sub];
          ASSERT_NEAR(ref[static_cast<size_t>(b * ib.n + i)], sq + off, 1.2e-7 * (std::fabs(sq) + std::fabs(off)) + 1e-37)
              << name(type) << " block " << b << " element " << i;
        }
      }
      for (const KernelTable* k : tables()) {
        std::vector<float> y(static_cast<size_t>(n), -1.f);
        k->dequant_for(type)(bytes.data(), y.data(), n);
        EXPECT_EQ(0, std::memcmp(y.data(), ref.data(), ref.size() * 4)) << name(type) << " " << isa_name(k->isa);
      }
    }
  }
}

// ---- weight quantizers: round-trip error bounds ----------------------------------

TEST(QuantRoundTrip, LegacyTypesWithinHalfAStep) {
  const int64_t n = 32 * 57;
  for (uint32_t seed : {1u, 2u}) {
    auto x = randn(n, seed, 1.5f);
    for (int j = 0; j < 32; ++j) x[64 + j] = 0.f;          // all-zero block
    for (int j = 0; j < 32; ++j) x[128 + j] = 2.f + 0.01f * j;  // all positive
    for (GgmlType type : {GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1}) {
      std::vector<uint8_t> q(ggml_row_bytes(type, n));
      quantize_rows(type, x.data(), q.data(), 1, n);
      std::vector<float> y(n);
      table(Isa::Scalar).dequant_for(type)(q.data(), y.data(), n);
      for (int64_t b = 0; b < n / 32; ++b) {
        float mn = x[b * 32], mx = x[b * 32], amax = 0, smax = 0;
        for (int j = 0; j < 32; ++j) {
          const float v = x[b * 32 + j];
          mn = std::min(mn, v), mx = std::max(mx, v);
          if (std::fabs(v) > amax) amax = std::fabs(v), smax = v;
        }
        for (int j = 0; j < 32; ++j) {
          const float v = x[b * 32 + j], err = std::fabs(v - y[b * 32 + j]);
          if (type == GgmlType::Q5_0) {
            // d = |max|/16; round to nearest except beyond +15·d on the side
            // opposite the max (clamped: error up to d); fp16 d.
            const float d = amax / 16;
            ASSERT_LE(err, (v * smax >= 0 ? 0.5f : 1.0f) * d + amax * 2e-3f) << name(type) << " " << b << " " << j;
          } else {
            const float steps = type == GgmlType::Q4_1 ? 15.f : 31.f, d = (mx - mn) / steps;
            // Round to nearest; fp16 rounding of d (times up to `steps`) and of m.
            ASSERT_LE(err, 0.5f * d + 3 * std::max(std::fabs(mn), std::fabs(mx)) / 2048 + 1e-7f)
                << name(type) << " " << b << " " << j;
          }
        }
      }
      for (int j = 64; j < 96; ++j) EXPECT_EQ(y[j], 0.f) << name(type);
    }
  }
}

TEST(QuantRoundTrip, Mxfp4WithinTheE2M1Grid) {
  const int64_t n = 32 * 61;
  auto x = randn(n, 7, 2.f);
  for (int j = 0; j < 32; ++j) x[32 + j] = 0.f;
  for (int j = 0; j < 32; ++j) x[96 + j] = 1e-30f * static_cast<float>(j + 1);  // subnormal scales
  std::vector<BlockMxfp4> q(n / 32);
  quantize_row_mxfp4(x.data(), q.data(), n);
  std::vector<float> y(n);
  table(Isa::Scalar).dequant_for(GgmlType::MXFP4)(reinterpret_cast<const uint8_t*>(q.data()), y.data(), n);
  for (int64_t b = 0; b < n / 32; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    if (amax == 0) {
      for (int j = 0; j < 32; ++j) EXPECT_EQ(y[b * 32 + j], 0.f);
      continue;
    }
    // Scale s = 2^(floor(log2 amax) − 2): amax/s in [4, 8). Nearest grid point
    // (gaps 0.5s below 2s, s up to 4s, 2s up to 6s); above 6s clamped to 6s.
    const double s = std::ldexp(1.0, static_cast<int>(std::floor(std::log2(amax))) - 2);
    for (int j = 0; j < 32; ++j) {
      const double v = std::fabs(x[b * 32 + j]), err = std::fabs(x[b * 32 + j] - y[b * 32 + j]);
      const double bound = v > 6 * s ? v - 6 * s : v > 4 * s ? s : v > 2 * s ? 0.5 * s : 0.25 * s;
      ASSERT_LE(err, bound * (1 + 1e-6)) << b << " " << j;
    }
  }
}

TEST(QuantRoundTrip, KQuantsWithinTheirSteps) {
  // Per element: Q8_K rounds to nearest (half a step); Q4_K/Q5_K/Q6_K round
  // to nearest on a grid whose 6-/8-bit quantized scale (and min) may leave a
  // value just outside it: at most 1.5 steps of its sub-block (measured worst
  // ~1.07 for Q5_K). Relative RMS error of gaussian super-blocks in each type's
  // usual range; zero super-blocks exact.
  struct Case {
    GgmlType type;
    double steps, max_rel_rms;
  };
  for (const Case c : {Case{GgmlType::Q4_K, 1.5, 0.08}, Case{GgmlType::Q5_K, 1.5, 0.04},
                       Case{GgmlType::Q6_K, 1.5, 0.02}, Case{GgmlType::Q8_K, 0.5, 0.008}}) {
    const int64_t n = 256 * 23;
    auto x = randn(n, 11, 0.8f);
    for (int j = 0; j < 256; ++j) x[256 + j] = 0.f;
    for (int j = 0; j < 256; ++j) x[512 + j] = 0.3f + 0.001f * j;  // positive super-block (min > 0)
    for (int j = 0; j < 256; j += 7) x[768 + j] *= 40.f;           // outliers
    std::vector<uint8_t> q(ggml_row_bytes(c.type, n));
    quantize_rows(c.type, x.data(), q.data(), 1, n);
    std::vector<float> y(n);
    table(Isa::Scalar).dequant_for(c.type)(q.data(), y.data(), n);
    double se = 0, ss = 0;
    for (int64_t b = 0; b < n / 256; ++b) {
      const IntBlock ib = decode(c.type, q.data() + static_cast<size_t>(b) * ggml_type_info(c.type).block_bytes);
      for (int i = 0; i < 256; ++i) {
        const int64_t e = b * 256 + i;
        const double err = std::fabs(static_cast<double>(x[e]) - y[e]);
        const double step = std::fabs(ib.scale[i / ib.sub]);
        // A sub-block whose scale quantized to 0 decodes to its offset.
        double amax = 0;
        for (int k = 0; k < ib.sub; ++k) amax = std::max(amax, std::fabs(static_cast<double>(x[b * 256 + (i / ib.sub) * ib.sub + k])));
        const double bound = step > 0 ? c.steps * step * (1 + 1e-6) : amax;
        ASSERT_LE(err, bound) << name(c.type) << " super-block " << b << " element " << i << " step " << step;
        if (b != 3) se += err * err, ss += static_cast<double>(x[e]) * x[e];
      }
    }
    for (int j = 0; j < 256; ++j) EXPECT_EQ(y[256 + j], 0.f) << name(c.type);
    EXPECT_LT(std::sqrt(se / ss), c.max_rel_rms) << name(c.type);
    EXPECT_GT(std::sqrt(se / ss), 0.0) << name(c.type);
  }
}

TEST(QuantRoundTrip, SizesThatAreNotBlockMultiplesAreErrors) {
  std::vector<float> x(300, 1.f);
  std::vector<uint8_t> out(4096);
  for (GgmlType type : kTypes) {
    EXPECT_THROW(weight_quantizer(type)(x.data(), out.data(), block_of(type) + 16), Error) << name(type);
    EXPECT_TRUE(type_supported(type)) << name(type);
  }
  EXPECT_THROW(quantize_act_q8_1(x.data(), nullptr, 48), Error);
  EXPECT_THROW(quantize_act_q8_K(x.data(), nullptr, 288), Error);
}

// ---- activation quantizers ----------------------------------------------------------

TEST(QuantActivations, Q8_1AndQ8_KAreBitIdenticalAcrossIsas) {
  for (int64_t n : {256, 768, 2304}) {
    auto x = randn(static_cast<size_t>(n), static_cast<uint32_t>(n), 3.f);
    // Exact ties for both: Q8_1 with amax 127 (factor 1); Q8_K with the
    // signed max −127 (iscale 1).
    for (int j = 0; j < 32; ++j) x[static_cast<size_t>(j)] = static_cast<float>(j) - 15.5f;
    x[0] = 127.f;
    for (int j = 0; j < 256; ++j) x[static_cast<size_t>(j)] = 0.5f * static_cast<float>(j % 64) - 16.25f;
    x[3] = -127.f;
    x[200] = 127.f;  // same magnitude later: the first one sets the sign
    if (n > 256)
      for (int j = 256; j < 512; ++j) x[static_cast<size_t>(j)] = 0.f;  // zero blocks
    x[static_cast<size_t>(n - 1)] = 1e6f;
    for (GgmlType act : {GgmlType::Q8_1, GgmlType::Q8_K}) {
      const size_t bytes = ggml_row_bytes(act, n);
      std::vector<uint8_t> ref(bytes, 0);
      table(Isa::Scalar).quantize_act_for(act)(x.data(), ref.data(), n);
      for (const KernelTable* k : tables()) {
        std::vector<uint8_t> got(bytes, 0xEE);
        k->quantize_act_for(act)(x.data(), got.data(), n);
        EXPECT_EQ(0, std::memcmp(got.data(), ref.data(), bytes)) << name(act) << " " << isa_name(k->isa) << " n=" << n;
      }
    }
  }
}

TEST(QuantActivations, Q8_1RoundsHalfToEvenAndCarriesTheSum) {
  float x[32] = {};
  x[0] = 127.f, x[1] = 2.5f, x[2] = -2.5f, x[3] = 0.5f, x[4] = 3.5f, x[5] = -100.f;
  for (const KernelTable* k : tables()) {
    BlockQ8_1 b;
    k->quantize_act_for(GgmlType::Q8_1)(x, &b, 32);
    EXPECT_EQ(b.qs[0], 127);
    EXPECT_EQ(b.qs[1], 2) << isa_name(k->isa);
    EXPECT_EQ(b.qs[2], -2) << isa_name(k->isa);
    EXPECT_EQ(b.qs[3], 0) << isa_name(k->isa);
    EXPECT_EQ(b.qs[4], 4) << isa_name(k->isa);
    EXPECT_EQ(fh(b.d), fh(h(1.0f)));
    EXPECT_EQ(fh(b.s), fh(h(127 + 2 - 2 + 0 + 4 - 100)));
  }
}

TEST(QuantActivations, Q8_KUsesTheFirstSignedMaxAndExactBlockSums) {
  std::vector<float> x = randn(512, 9);
  x[7] = 5.f, x[100] = -5.f;      // block 0: first max positive → maps to −127
  x[256 + 9] = -6.f, x[300] = 6.f;  // block 1: first max negative → maps to −127 as well
  for (const KernelTable* k : tables()) {
    BlockQ8_K b[2];
    k->quantize_act_for(GgmlType::Q8_K)(x.data(), b, 512);
    EXPECT_EQ(b[0].qs[7], -127);
    EXPECT_EQ(b[0].qs[100], 127);
    EXPECT_FLOAT_EQ(b[0].d, -5.f / 127.f);
    EXPECT_EQ(b[1].qs[9], -127);
    EXPECT_EQ(b[1].qs[300 - 256], 127);
    EXPECT_FLOAT_EQ(b[1].d, 6.f / 127.f);
    for (const BlockQ8_K& blk : b) {
      for (int g = 0; g < 16; ++g) {
        int s = 0;
        for (int i = 0; i < 16; ++i) s += blk.qs[16 * g + i];
        EXPECT_EQ(blk.bsums[g], s) << isa_name(k->isa);
      }
      for (int i = 0; i < 256; ++i) EXPECT_LE(std::abs(static_cast<int>(blk.qs[i])), 127);
    }
  }
}

// ---- matmuls ----------------------------------------------------------------------------

TEST(QuantMatmul, QuantizedActivationsMatchTheIntegerMath) {
  for (GgmlType type : kTypes) {
    const int64_t bw = block_of(type);
    for (int64_t blocks : {1, 3, 5}) {
      const int64_t n_in = blocks * bw * (bw == 32 ? 3 : 1);  // 3·32·odd or 256·odd
      for (int64_t n_out : {1, 2, 3, 17}) {
        TestMatrix m = make_matrix(type, n_in, n_out, static_cast<uint32_t>(n_in * 7 + n_out));
        for (int64_t n_tok : {1, 2, 3, 4, 5, 9}) {
          const int64_t xs = n_in + 5, ys = n_out + 1;
          auto x = randn(static_cast<size_t>(xs * n_tok), static_cast<uint32_t>(n_tok * 3 + n_in));
          const auto xq = quantize_acts(type, x, n_tok, n_in, xs);
          const size_t xq_row = ggml_row_bytes(activation_type(type), n_in);
          for (const KernelTable* k : tables()) {
            std::vector<float> y(static_cast<size_t>(ys * n_tok), 1234.f);
            matmul(m.view(), x.data(), n_tok, xs, y.data(), ys, nullptr, k, ActMode::Q8);
            for (int64_t t = 0; t < n_tok; ++t) {
              for (int64_t o = 0; o < n_out; ++o) {
                double mag = 0;
                const double ref = dot_ref(m, o, xq.data() + xq_row * static_cast<size_t>(t), &mag);
                ASSERT_NEAR(y[static_cast<size_t>(t * ys + o)], ref, 3e-7 * static_cast<double>(n_in / 32 + 8) * mag + 1e-30)
                    << name(type) << " " << isa_name(k->isa) << " n_in=" << n_in << " o=" << o << " t=" << t;
              }
              for (int64_t o = n_out; o < ys; ++o) ASSERT_EQ(y[static_cast<size_t>(t * ys + o)], 1234.f);
            }
          }
        }
      }
    }
  }
}

TEST(QuantMatmul, Fp32ActivationsMatchTheDequantizedWeights) {
  for (GgmlType type : kTypes) {
    const int64_t bw = block_of(type);
    for (int64_t n_in : {bw, 3 * bw, 7 * bw}) {
      for (int64_t n_out : {1, 5, 18}) {
        TestMatrix m = make_matrix(type, n_in, n_out, static_cast<uint32_t>(n_in * 131 + n_out));
        for (int64_t n_tok : {1, 2, 7}) {
          const int64_t xs = n_in + 3, ys = n_out + 2;
          auto x = randn(static_cast<size_t>(xs * n_tok), static_cast<uint32_t>(n_tok * 7 + n_in));
          for (const KernelTable* k : tables()) {
            std::vector<float> y(static_cast<size_t>(ys * n_tok), 1234.f);
            matmul(m.view(), x.data(), n_tok, xs, y.data(), ys, nullptr, k, ActMode::F32);
            for (int64_t t = 0; t < n_tok; ++t) {
              for (int64_t o = 0; o < n_out; ++o) {
                double ref = 0, mag = 0;
                for (int64_t i = 0; i < n_in; ++i) {
                  const double p = static_cast<double>(m.deq[o * n_in + i]) * x[t * xs + i];
                  ref += p, mag += std::fabs(p);
                }
                ASSERT_NEAR(y[t * ys + o], ref, static_cast<double>(n_in + 2) * 1.2e-7 * mag + 1e-30)
                    << name(type) << " " << isa_name(k->isa) << " n_in=" << n_in << " o=" << o << " t=" << t;
              }
              for (int64_t o = n_out; o < ys; ++o) ASSERT_EQ(y[t * ys + o], 1234.f);
            }
          }
        }
      }
    }
  }
}

TEST(QuantMatmul, Fp32ActivationsGiveTheDequantizedTwinsBits) {
  // ActMode::F32 on a quantized matrix runs the table's own F32 kernel on the
  // dequantized rows: the same bits as an F32 matrix holding those values
  // (what the --dequantized twin files rely on). Scalar and AVX2 tables; a
  // table that replaces the F32 kernel (AVX-512) but inherits these slots
  // keeps AVX2's F32 order for them.
  for (GgmlType type : kTypes) {
    const int64_t n_in = 3 * block_of(type) + (block_of(type) == 32 ? 32 * 4 : 0), n_out = 37, n_tok = 5;
    TestMatrix m = make_matrix(type, n_in, n_out, 5);
    const WeightMatrix twin = WeightMatrix::raw(GgmlType::F32, m.deq.data(), n_in, n_out);
    auto x = randn(static_cast<size_t>(n_in * n_tok), 6);
    for (Isa isa : {Isa::Scalar, Isa::Avx2}) {
      if (!isa_available(isa)) continue;
      std::vector<float> a(static_cast<size_t>(n_out * n_tok)), b(a.size());
      matmul(m.view(), x.data(), n_tok, n_in, a.data(), n_out, nullptr, &table(isa), ActMode::F32);
      matmul(twin, x.data(), n_tok, n_in, b.data(), n_out, nullptr, &table(isa), ActMode::F32);
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << name(type) << " " << isa_name(isa);
    }
  }
}

TEST(QuantMatmul, CloseToTheFp32Path) {
  // The int8 activations perturb the result by about their rounding (≲1% of
  // Σ|w·x| on gaussian data), not more.
  for (GgmlType type : kTypes) {
    const int64_t n_in = 1536, n_out = 23, n_tok = 3;
    TestMatrix m = make_matrix(type, n_in, n_out, 91);
    auto x = randn(static_cast<size_t>(n_in * n_tok), 92);
    for (const KernelTable* k : tables()) {
      std::vector<float> a(static_cast<size_t>(n_out * n_tok)), b(a.size());
      matmul(m.view(), x.data(), n_tok, n_in, a.data(), n_out, nullptr, k, ActMode::F32);
      matmul(m.view(), x.data(), n_tok, n_in, b.data(), n_out, nullptr, k, ActMode::Q8);
      double worst = 0;
      for (int64_t t = 0; t < n_tok; ++t)
        for (int64_t o = 0; o < n_out; ++o) {
          double mag = 0;
          for (int64_t i = 0; i < n_in; ++i) mag += std::fabs(static_cast<double>(m.deq[o * n_in + i]) * x[t * n_in + i]);
          worst = std::max(worst, std::fabs(static_cast<double>(a[t * n_out + o]) - b[t * n_out + o]) / mag);
        }
      EXPECT_GT(worst, 0.0) << name(type) << " " << isa_name(k->isa);
      EXPECT_LT(worst, 0.01) << name(type) << " " << isa_name(k->isa);
    }
  }
}

TEST(QuantMatmul, ThreadsRowRangesAndBatchingDoNotChangeBits) {
  ThreadPool pool1(1), pool3(3);
  for (GgmlType type : kTypes) {
    const int64_t n_in = block_of(type) == 32 ? 288 : 768, n_out = 157, n_tok = 6;
    TestMatrix m = make_matrix(type, n_in, n_out, 77);
    auto x = randn(static_cast<size_t>(n_in * n_tok), 78);
    for (const KernelTable* k : tables()) {
      for (ActMode mode : {ActMode::F32, ActMode::Q8}) {
        const std::string what = name(type) + " " + isa_name(k->isa) + (mode == ActMode::Q8 ? " q-act" : " f32-act");
        std::vector<float> ref(static_cast<size_t>(n_out * n_tok));
        matmul(m.view(), x.data(), n_tok, n_in, ref.data(), n_out, nullptr, k, mode);
        for (ThreadPool* p : {&pool1, &pool3}) {
          std::vector<float> y(ref.size());
          matmul(m.view(), x.data(), n_tok, n_in, y.data(), n_out, p, k, mode);
          EXPECT_EQ(0, std::memcmp(y.data(), ref.data(), ref.size() * 4)) << what << " threads=" << p->size();
        }
        for (int64_t t = 0; t < n_tok; ++t) {  // decode == prefill
          std::vector<float> y(static_cast<size_t>(n_out));
          matmul(m.view(), x.data() + t * n_in, 1, n_in, y.data(), n_out, &pool3, k, mode);
          EXPECT_EQ(0, std::memcmp(y.data(), ref.data() + t * n_out, y.size() * 4)) << what << " token " << t;
        }
        if (mode == ActMode::Q8) {  // an odd row range on its own
          const auto xq = quantize_acts(type, x, n_tok, n_in, n_in);
          std::vector<float> part(static_cast<size_t>(n_out * n_tok), 0.f);
          k->matmul_q_for(type)(m.view(), 5, 12, xq.data(), n_tok, ggml_row_bytes(activation_type(type), n_in),
                                part.data(), n_out);
          for (int64_t t = 0; t < n_tok; ++t)
            for (int64_t o = 5; o < 12; ++o) EXPECT_EQ(part[t * n_out + o], ref[t * n_out + o]) << what;
        }
      }
    }
  }
}

TEST(QuantMatmul, ActivationTypesFollowGgml) {
  EXPECT_EQ(activation_type(GgmlType::Q4_1), GgmlType::Q8_1);
  EXPECT_EQ(activation_type(GgmlType::Q5_1), GgmlType::Q8_1);
  EXPECT_EQ(activation_type(GgmlType::Q5_0), GgmlType::Q8_0);
  EXPECT_EQ(activation_type(GgmlType::MXFP4), GgmlType::Q8_0);
  for (GgmlType t : {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q8_K})
    EXPECT_EQ(activation_type(t), GgmlType::Q8_K) << name(t);
  for (GgmlType t : kTypes) {
    EXPECT_NE(weight_quantizer(t), nullptr) << name(t);
    EXPECT_NE(quantizable_types().find(name(t)), std::string::npos) << name(t);
    EXPECT_NE(supported_types().find(name(t)), std::string::npos) << name(t);
  }
}
