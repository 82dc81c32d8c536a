// AVX-512 kernels at the edges of their register tiles (16-row panels ×
// 8-token tiles for the VNNI int8 matmuls, 4/8 rows × 4 tokens for the fp32
// ones): row counts and token counts around the tile sizes, odd block counts,
// strided activations and outputs, row ranges that start mid-panel, extreme
// quant values. The int8 matmuls are bit-identical to the scalar reference
// (same integer block sums, same fp32 block accumulation order); the fp32
// matmuls agree with a double-precision dot within fp32 rounding.
// test_kernels.cpp covers every table (this one included) with the generic
// tests; this file skips itself on CPUs without AVX-512.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernel_test_util.h"
#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"

using namespace g4;
using namespace g4::kernels;

namespace {

using g4::kernels::test::randn;
using g4::kernels::test::tables;

bool have_avx512() { return isa_available(Isa::Avx512); }

struct QMatrix {
  GgmlType type;
  int64_t n_in, n_out;
  std::vector<uint8_t> bytes;
  WeightMatrix view() const { return WeightMatrix::raw(type, bytes.data(), n_in, n_out); }
};

QMatrix make_q(GgmlType type, int64_t n_in, int64_t n_out, uint32_t seed) {
  QMatrix m{type, n_in, n_out, {}};
  auto src = randn(static_cast<size_t>(n_in * n_out), seed, 0.5f);
  m.bytes.resize(ggml_row_bytes(type, n_in) * static_cast<size_t>(n_out));
  quantize_rows(type, src.data(), m.bytes.data(), n_out, n_in);
  return m;
}

// Raw blocks with every quant value reachable in a file: Q8_0 in [-128, 127]
// (llama-quantize never writes -128, other writers may), Q4_0 nibbles 0..15,
// scales of both signs.
QMatrix make_q_extreme(GgmlType type, int64_t n_in, int64_t n_out, uint32_t seed) {
  QMatrix m{type, n_in, n_out, {}};
  const size_t bs = type == GgmlType::Q8_0 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0);
  m.bytes.resize(ggml_row_bytes(type, n_in) * static_cast<size_t>(n_out));
  std::mt19937 rng(seed);
  for (auto& b : m.bytes) {
    const uint32_t r = rng() % 4;
    b = r == 0 ? 0x00 : r == 1 ? 0xFF : r == 2 ? 0x80 : static_cast<uint8_t>(rng());
  }
  std::uniform_real_distribution<float> d(-0.05f, 0.05f);
  for (size_t off = 0; off + bs <= m.bytes.size(); off += bs) {
    const uint16_t h = f32_to_fp16(d(rng));
    std::memcpy(m.bytes.data() + off, &h, 2);
  }
  return m;
}

std::string where(GgmlType type, int64_t n_in, int64_t n_out, int64_t n_tok) {
  return std::string(ggml_type_name(type)) + " n_in=" + std::to_string(n_in) + " n_out=" + std::to_string(n_out) +
         " n_tok=" + std::to_string(n_tok);
}

}  // namespace

TEST(Avx512, TableIsRegisteredAndCapped) {
  EXPECT_STREQ(isa_name(Isa::Avx512), "avx512");
  EXPECT_EQ(kIsaCount, 3);
  if (!have_avx512()) GTEST_SKIP() << "no AVX-512 F/BW/VL/DQ on this CPU";
  EXPECT_EQ(table(Isa::Avx512).isa, Isa::Avx512);
  // With VNNI the int8 matmuls are the AVX-512 ones, not the inherited AVX2 ones.
  if (cpu_features().avx512vnni) {
    EXPECT_NE(table(Isa::Avx512).matmul_q_for(GgmlType::Q4_0), table(Isa::Avx2).matmul_q_for(GgmlType::Q4_0));
    EXPECT_NE(table(Isa::Avx512).matmul_q_for(GgmlType::Q8_0), table(Isa::Avx2).matmul_q_for(GgmlType::Q8_0));
  }
  // Every slot the AVX2 table fills is filled here too (the table starts as its copy).
  for (int id = 0; id < KernelTable::kTypeSlots; ++id) {
    const auto& a = table(Isa::Avx2).types[id];
    const auto& b = table(Isa::Avx512).types[id];
    EXPECT_EQ(a.dequant != nullptr, b.dequant != nullptr) << id;
    EXPECT_EQ(a.matmul != nullptr, b.matmul != nullptr) << id;
    EXPECT_EQ(a.matmul_q != nullptr, b.matmul_q != nullptr) << id;
    EXPECT_EQ(table(Isa::Avx2).quantize_act[id] != nullptr, table(Isa::Avx512).quantize_act[id] != nullptr) << id;
  }
}

TEST(Avx512, Int8MatmulIsBitIdenticalToScalarAtTileEdges) {
  if (!have_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const KernelTable& s = table(Isa::Scalar);
  const KernelTable& v = table(Isa::Avx512);
  for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q8_0}) {
    for (int64_t n_in : {32, 96, 160, 544}) {
      for (int64_t n_out : {1, 7, 15, 16, 17, 33, 50}) {
        const QMatrix m = make_q(type, n_in, n_out, static_cast<uint32_t>(n_in * 31 + n_out));
        for (int64_t n_tok : {1, 2, 3, 7, 8, 9, 15, 16, 17, 23}) {
          const int64_t xs = n_in + 7, ys = n_out + 3;
          const auto x = randn(static_cast<size_t>(xs * n_tok), static_cast<uint32_t>(n_tok + n_in), 2.f);
          std::vector<float> a(static_cast<size_t>(ys * n_tok), 1234.f), b = a;
          matmul(m.view(), x.data(), n_tok, xs, a.data(), ys, nullptr, &s, ActMode::Q8);
          matmul(m.view(), x.data(), n_tok, xs, b.data(), ys, nullptr, &v, ActMode::Q8);
          ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << where(type, n_in, n_out, n_tok);
        }
      }
    }
  }
}

TEST(Avx512, Int8MatmulExtremeQuantsAndRowRanges) {
  if (!have_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const KernelTable& s = table(Isa::Scalar);
  const KernelTable& v = table(Isa::Avx512);
  for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q8_0}) {
    const int64_t n_in = 32 * 13, n_out = 45, n_tok = 11;
    const QMatrix m = make_q_extreme(type, n_in, n_out, 5);
    const int64_t nb = n_in / 32;
    // Activations that quantize to ±127 and 0 everywhere (|Σ u·a| near its bound).
    std::vector<float> x(static_cast<size_t>(n_in * n_tok));
    std::mt19937 rng(9);
    for (auto& e : x) e = (rng() % 3 == 0) ? 0.f : ((rng() & 1) ? 3.f : -3.f);
    std::vector<BlockQ8_0> xq(static_cast<size_t>(nb * n_tok));
    for (int64_t t = 0; t < n_tok; ++t) quantize_act_q8_0(x.data() + t * n_in, xq.data() + t * nb, n_in);
    // Every row range [r0, r1), including ones that start inside a 16-row panel.
    for (int64_t r0 : {0, 1, 5, 15, 16, 30}) {
      for (int64_t r1 : {r0 + 1, r0 + 14, n_out}) {
        if (r1 > n_out || r1 <= r0) continue;
        std::vector<float> a(static_cast<size_t>(n_out * n_tok), -1.f), b = a;
        s.matmul_q_for(type)(m.view(), r0, r1, xq.data(), n_tok, nb * sizeof(BlockQ8_0), a.data(), n_out);
        v.matmul_q_for(type)(m.view(), r0, r1, xq.data(), n_tok, nb * sizeof(BlockQ8_0), b.data(), n_out);
        ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
            << ggml_type_name(type) << " rows [" << r0 << ", " << r1 << ")";
      }
    }
  }
}

TEST(Avx512, Int8MatmulPrefillDecodeAndThreadsAgree) {
  if (!have_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const KernelTable& v = table(Isa::Avx512);
  ThreadPool p2(2), p5(5);
  // 341 rows: row tasks only; 24 rows: too few row tasks for the threads, so
  // the driver also splits the 70 tokens (> 64: several tiles and a tail).
  for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q8_0})
  for (int64_t n_out : {16 * 21 + 5, 24}) {
    const int64_t n_in = 1536, n_tok = 70;
    const QMatrix m = make_q(type, n_in, n_out, 17);
    const auto x = randn(static_cast<size_t>(n_in * n_tok), 18);
    std::vector<float> ref(static_cast<size_t>(n_out * n_tok));
    matmul(m.view(), x.data(), n_tok, n_in, ref.data(), n_out, nullptr, &v, ActMode::Q8);
    for (ThreadPool* p : {&p2, &p5}) {
      std::vector<float> y(ref.size());
      matmul(m.view(), x.data(), n_tok, n_in, y.data(), n_out, p, &v, ActMode::Q8);
      EXPECT_EQ(0, std::memcmp(y.data(), ref.data(), y.size() * 4)) << ggml_type_name(type) << " " << p->size();
    }
    for (int64_t t : {0, 33, 69}) {
      std::vector<float> y(static_cast<size_t>(n_out));
      matmul(m.view(), x.data() + t * n_in, 1, n_in, y.data(), n_out, &p2, &v, ActMode::Q8);
      EXPECT_EQ(0, std::memcmp(y.data(), ref.data() + t * n_out, y.size() * 4)) << ggml_type_name(type) << " " << t;
    }
  }
}

TEST(Avx512, FloatMatmulsAtTileEdges) {
  if (!have_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const KernelTable& v = table(Isa::Avx512);
  ThreadPool p3(3);
  for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::BF16}) {
    for (int64_t n_in : {1, 15, 16, 17, 33, 200}) {
      for (int64_t n_out : {1, 3, 4, 5, 8, 9, 13, 21}) {
        const QMatrix m = make_q(type, n_in, n_out, static_cast<uint32_t>(n_in * 3 + n_out));
        std::vector<float> deq(static_cast<size_t>(n_in * n_out));
        for (int64_t r = 0; r < n_out; ++r) dequantize_row(m.view(), r, deq.data() + r * n_in, &table(Isa::Scalar));
        for (int64_t n_tok : {1, 2, 3, 4, 5, 7, 9}) {
          const int64_t xs = n_in + 2, ys = n_out + 1;
          const auto x = randn(static_cast<size_t>(xs * n_tok), static_cast<uint32_t>(n_tok * 5 + n_in));
          std::vector<float> y(static_cast<size_t>(ys * n_tok), 1234.f);
          matmul(m.view(), x.data(), n_tok, xs, y.data(), ys, nullptr, &v);
          std::vector<float> y3(y.size(), 1234.f);
          matmul(m.view(), x.data(), n_tok, xs, y3.data(), ys, &p3, &v);
          ASSERT_EQ(0, std::memcmp(y.data(), y3.data(), y.size() * 4)) << where(type, n_in, n_out, n_tok);
          for (int64_t t = 0; t < n_tok; ++t) {
            for (int64_t o = 0; o < n_out; ++o) {
              double ref = 0, mag = 0;
              for (int64_t i = 0; i < n_in; ++i) {
                const double p = static_cast<double>(deq[o * n_in + i]) * x[t * xs + i];
                ref += p;
                mag += std::fabs(p);
              }
              ASSERT_NEAR(y[t * ys + o], ref, (n_in + 2) * 1.2e-7 * mag + 1e-30) << where(type, n_in, n_out, n_tok);
            }
            ASSERT_EQ(y[t * ys + n_out], 1234.f) << "wrote past the row";
            // Decode (one token) gives the bits of the batch.
            std::vector<float> y1(static_cast<size_t>(n_out));
            matmul(m.view(), x.data() + t * xs, 1, xs, y1.data(), n_out, nullptr, &v);
            ASSERT_EQ(0, std::memcmp(y1.data(), y.data() + t * ys, y1.size() * 4)) << where(type, n_in, n_out, n_tok);
          }
        }
      }
    }
  }
}

TEST(AllTables, Fp32ActivationPathEqualsTheDequantizedF32Twin) {
  // In every table and for every weight type with a quantizer, ActMode::F32
  // computes exactly what an F32 matrix of the dequantized values gives (the
  // forward-pass tests rely on it: a quantized file and its dequantized twin
  // give bit-identical logits).
  for (int i = 0; i < kIsaCount; ++i) {
    if (!isa_available(static_cast<Isa>(i))) continue;
    const KernelTable& k = table(static_cast<Isa>(i));
    for (int id = 0; id < KernelTable::kTypeSlots; ++id) {
      const auto type = static_cast<GgmlType>(id);
      if (!k.types[id].matmul || !weight_quantizer(type) || type == GgmlType::F32) continue;
      const int64_t n_in = 512, n_out = 37, n_tok = 6;
      const QMatrix m = make_q(type, n_in, n_out, 23);
      std::vector<float> deq(static_cast<size_t>(n_in * n_out));
      for (int64_t r = 0; r < n_out; ++r) dequantize_row(m.view(), r, deq.data() + r * n_in, &k);
      const auto x = randn(static_cast<size_t>(n_in * n_tok), 24);
      for (int64_t nt : {int64_t{1}, n_tok}) {
        std::vector<float> a(static_cast<size_t>(n_out * nt)), b(a.size());
        matmul(m.view(), x.data(), nt, n_in, a.data(), n_out, nullptr, &k, ActMode::F32);
        matmul(WeightMatrix::raw(GgmlType::F32, deq.data(), n_in, n_out), x.data(), nt, n_in, b.data(), n_out, nullptr,
               &k, ActMode::F32);
        EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << isa_name(k.isa) << " " << ggml_type_name(type);
      }
    }
  }
}

TEST(Avx512, GeluAndGegluAreTheAvx2BitsOn16Lanes) {
  // Same polynomial and operation sequence per lane as the AVX2 kernels
  // (which test_kernels.cpp checks against the definition).
  if (!have_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  std::vector<float> x;
  for (float v = -12.f; v <= 12.f; v += 0.00731f) x.push_back(v);
  for (float v : {0.f, -0.f, 1e-8f, -30.f, 30.f, 88.f, -88.f, 0.625f, -0.625f, 9.f, -9.f}) x.push_back(v);
  const auto u = randn(x.size(), 8);
  for (int64_t n : {static_cast<int64_t>(x.size()), int64_t{1}, int64_t{15}, int64_t{17}}) {
    std::vector<float> a(static_cast<size_t>(n)), b(a.size()), c(a.size()), d(a.size());
    table(Isa::Avx2).gelu_tanh(x.data(), a.data(), n);
    table(Isa::Avx512).gelu_tanh(x.data(), b.data(), n);
    table(Isa::Avx2).geglu(x.data(), u.data(), c.data(), n);
    table(Isa::Avx512).geglu(x.data(), u.data(), d.data(), n);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << n;
    EXPECT_EQ(0, std::memcmp(c.data(), d.data(), c.size() * 4)) << n;
  }
}
