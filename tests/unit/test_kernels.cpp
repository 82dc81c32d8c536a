// Kernels and thread pool: every kernel of every ISA against the scalar
// reference (or a double-precision definition) on random inputs with odd sizes
// and tails; threading and tiling must not change a single bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernel_test_util.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"

using namespace g4;
using namespace g4::kernels;

namespace {

using g4::kernels::test::randn;
using g4::kernels::test::tables;

const GgmlType kTypes[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0};

bool is_block_type(GgmlType t) { return t == GgmlType::Q8_0 || t == GgmlType::Q4_0; }

// A random weight matrix of `type` plus its exact fp32 dequantization.
struct TestMatrix {
  GgmlType type;
  int64_t n_in, n_out;
  std::vector<uint8_t> bytes;
  std::vector<float> deq;  // n_out × n_in
  WeightMatrix view() const { return WeightMatrix::raw(type, bytes.data(), n_in, n_out); }
};

TestMatrix make_matrix(GgmlType type, int64_t n_in, int64_t n_out, uint32_t seed) {
  TestMatrix m{type, n_in, n_out, {}, {}};
  auto src = randn(static_cast<size_t>(n_in * n_out), seed, 0.5f);
  m.bytes.resize(ggml_row_bytes(type, n_in) * static_cast<size_t>(n_out));
  quantize_rows(type, src.data(), m.bytes.data(), n_out, n_in);
  m.deq.resize(src.size());
  const WeightMatrix w = m.view();
  for (int64_t r = 0; r < n_out; ++r) dequantize_row(w, r, m.deq.data() + r * n_in, &table(Isa::Scalar));
  return m;
}

}  // namespace

// ---- thread pool ---------------------------------------------------------------

TEST(ThreadPool, DefaultCountIsPositive) {
  EXPECT_GE(ThreadPool::default_thread_count(), 1);
  EXPECT_GE(ThreadPool::global().size(), 1);
}

TEST(ThreadPool, EveryTaskRunsExactlyOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int64_t n : {0, 1, 2, 3, 7, 64, 1001}) {
      for (int rep = 0; rep < 20; ++rep) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<int> bad_tid{0};
        pool.parallel_for(n, [&](int64_t b, int64_t e, int tid) {
          if (tid < 0 || tid >= threads) bad_tid++;
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << threads << " " << n;
        EXPECT_EQ(bad_tid.load(), 0);
      }
    }
  }
}

TEST(ThreadPool, RangesAreContiguousPerThread) {
  ThreadPool pool(3);
  std::vector<std::pair<int64_t, int64_t>> ranges(3, {-1, -1});
  pool.parallel_for(10, [&](int64_t b, int64_t e, int tid) { ranges[static_cast<size_t>(tid)] = {b, e}; });
  EXPECT_EQ(ranges[0], (std::pair<int64_t, int64_t>{0, 3}));
  EXPECT_EQ(ranges[1], (std::pair<int64_t, int64_t>{3, 6}));
  EXPECT_EQ(ranges[2], (std::pair<int64_t, int64_t>{6, 10}));
}

TEST(ThreadPool, ExceptionsPropagateAndPoolSurvives) {
  ThreadPool pool(3);
  EXPECT_THROW(pool.parallel_for(9,
                                 [&](int64_t b, int64_t, int) {
                                   if (b >= 6) throw std::runtime_error("boom");
                                 }),
               std::runtime_error);
  std::atomic<int64_t> sum{0};
  pool.parallel_for(100, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) sum += i;
  });
  EXPECT_EQ(sum.load(), 4950);
}

TEST(ThreadPool, NestedCallsRunSerially) {
  ThreadPool pool(2);
  std::atomic<int64_t> count{0};
  pool.parallel_for(4, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i)
      pool.parallel_for(10, [&](int64_t bb, int64_t ee, int) { count += ee - bb; });
  });
  EXPECT_EQ(count.load(), 40);
}

TEST(ThreadPool, DynamicRunsEveryTaskExactlyOnceInChunks) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 3, 7, 64, 1001}) {
      for (int64_t grain : {0, 1, 3, 64}) {
        for (int rep = 0; rep < 10; ++rep) {
          std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
          std::atomic<int> bad{0};
          pool.parallel_for_dynamic(n, grain, [&](int64_t b, int64_t e, int tid) {
            if (tid < 0 || tid >= threads || e <= b || (grain > 0 && e - b > grain)) bad++;
            for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
          });
          for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << threads << " " << n;
          EXPECT_EQ(bad.load(), 0);
        }
      }
    }
  }
}

TEST(ThreadPool, DynamicAndStaticJobsInterleaveBackToBack) {
  // Many short jobs of both kinds in a row: a worker that arrives late for a
  // dynamic job must neither run a chunk of it twice nor miss the next job.
  ThreadPool pool(3);
  int64_t expect = 0;
  std::atomic<int64_t> sum{0};
  for (int rep = 0; rep < 3000; ++rep) {
    const int64_t n = 1 + rep % 13;
    if (rep % 3 == 0) {
      pool.parallel_for(n, [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) sum += i + 1;
      });
    } else {
      pool.parallel_for_dynamic(n, rep % 2, [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) sum += i + 1;
      });
    }
    expect += n * (n + 1) / 2;
    ASSERT_EQ(sum.load(), expect) << rep;
  }
}

TEST(ThreadPool, DynamicExceptionsPropagateAndNestedRunSerially) {
  ThreadPool pool(3);
  EXPECT_THROW(pool.parallel_for_dynamic(40, 2,
                                         [&](int64_t b, int64_t, int) {
                                           if (b == 20) throw std::runtime_error("boom");
                                         }),
               std::runtime_error);
  std::atomic<int64_t> count{0};
  pool.parallel_for_dynamic(6, 1, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i)
      pool.parallel_for_dynamic(10, 0, [&](int64_t bb, int64_t ee, int) { count += ee - bb; });
  });
  EXPECT_EQ(count.load(), 60);
}

// ---- quantization ----------------------------------------------------------------

TEST(Quant, Q8_0RoundTripErrorBound) {
  const int64_t n = 32 * 37;
  auto x = randn(n, 1, 2.0f);
  x[5] = 0.f;
  for (int j = 64; j < 96; ++j) x[j] = 0.f;  // an all-zero block: d = 0
  std::vector<BlockQ8_0> q(n / 32);
  quantize_row_q8_0(x.data(), q.data(), n);
  std::vector<float> y(n);
  table(Isa::Scalar).dequant_for(GgmlType::Q8_0)(reinterpret_cast<const uint8_t*>(q.data()), y.data(), n);
  for (int64_t b = 0; b < n / 32; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const float d = amax / 127.f;
    for (int j = 0; j < 32; ++j) {
      const float err = std::fabs(x[b * 32 + j] - y[b * 32 + j]);
      EXPECT_LE(err, 0.5f * d + amax * 1e-3f) << b << " " << j;
    }
    // The largest magnitude maps to ±127.
    if (amax > 0) {
      int maxq = 0;
      for (int j = 0; j < 32; ++j) maxq = std::max(maxq, std::abs(static_cast<int>(q[b].qs[j])));
      EXPECT_EQ(maxq, 127);
    }
  }
  for (int j = 64; j < 96; ++j) EXPECT_EQ(y[j], 0.f);
}

TEST(Quant, Q4_0RoundTripErrorBound) {
  const int64_t n = 32 * 41;
  auto x = randn(n, 2, 1.5f);
  std::vector<BlockQ4_0> q(n / 32);
  quantize_row_q4_0(x.data(), q.data(), n);
  std::vector<float> y(n);
  table(Isa::Scalar).dequant_for(GgmlType::Q4_0)(reinterpret_cast<const uint8_t*>(q.data()), y.data(), n);
  for (int64_t b = 0; b < n / 32; ++b) {
    float amax = 0, mx = 0;
    for (int j = 0; j < 32; ++j)
      if (std::fabs(x[b * 32 + j]) > amax) amax = std::fabs(x[b * 32 + j]), mx = x[b * 32 + j];
    const float d = std::fabs(mx / -8.f);
    for (int j = 0; j < 32; ++j) {
      const float err = std::fabs(x[b * 32 + j] - y[b * 32 + j]);
      // Round-to-nearest (d/2) except on the side opposite the max, where 16
      // clamps to 15 (error up to d).
      EXPECT_LE(err, d + amax * 2e-3f) << b << " " << j;
      if (x[b * 32 + j] * mx >= 0) {
        EXPECT_LE(err, 0.5f * d + amax * 2e-3f) << b << " " << j;
      }
    }
    // The signed max is exactly representable: q = 0 -> -8·d = max.
    for (int j = 0; j < 32; ++j)
      if (x[b * 32 + j] == mx) {
        EXPECT_NEAR(y[b * 32 + j], mx, amax * 1e-3f);
      }
  }
}

TEST(Quant, Q4_0NibbleLayout) {
  // Element j in the low nibble of byte j, element j+16 in the high nibble.
  float x[32];
  for (int j = 0; j < 32; ++j) x[j] = (j < 16) ? -8.f + static_cast<float>(j % 8) : 7.0f - static_cast<float>(j % 4);
  x[0] = -8.f;  // signed max: d = 1
  BlockQ4_0 b;
  quantize_row_q4_0(x, &b, 32);
  uint16_t dh;
  std::memcpy(&dh, &b.d, 2);
  EXPECT_EQ(fp16_to_f32(dh), 1.0f);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ((b.qs[j] & 0x0F), static_cast<int>(x[j]) + 8) << j;
    EXPECT_EQ((b.qs[j] >> 4), static_cast<int>(x[j + 16]) + 8) << j;
  }
}

TEST(Quant, Q8_0MatchesGgmlRounding) {
  float x[32];
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j) - 15.5f;  // amax 15.5 at both ends
  BlockQ8_0 b;
  quantize_row_q8_0(x, &b, 32);
  const float amax = 15.5f, d = amax / 127.f, id = 1.0f / d;
  for (int j = 0; j < 32; ++j) EXPECT_EQ(b.qs[j], static_cast<int8_t>(std::round(x[j] * id))) << j;
  EXPECT_EQ(b.qs[0], -127);
  EXPECT_EQ(b.qs[31], 127);
}

TEST(Quant, DequantIsaPathsAreBitIdentical) {
  for (GgmlType type : kTypes) {
    for (int64_t n : {32, 96, 416}) {
      auto x = randn(static_cast<size_t>(n), 3 + static_cast<uint32_t>(n), 3.f);
      std::vector<uint8_t> bytes(ggml_row_bytes(type, n));
      quantize_rows(type, x.data(), bytes.data(), 1, n);
      std::vector<float> ref(static_cast<size_t>(n));
      table(Isa::Scalar).dequant_for(type)(bytes.data(), ref.data(), n);
      for (const KernelTable* k : tables()) {
        std::vector<float> y(static_cast<size_t>(n), -1.f);
        k->dequant_for(type)(bytes.data(), y.data(), n);
        EXPECT_EQ(0, std::memcmp(y.data(), ref.data(), ref.size() * 4)) << ggml_type_name(type) << " " << isa_name(k->isa);
      }
    }
  }
  // Plain types with tails (not a multiple of 8).
  for (GgmlType type : {GgmlType::F16, GgmlType::BF16}) {
    const int64_t n = 37;
    auto x = randn(n, 9, 100.f);
    std::vector<uint8_t> bytes(ggml_row_bytes(type, n));
    quantize_rows(type, x.data(), bytes.data(), 1, n);
    std::vector<float> ref(n), y(n);
    table(Isa::Scalar).dequant_for(type)(bytes.data(), ref.data(), n);
    for (const KernelTable* k : tables()) {
      k->dequant_for(type)(bytes.data(), y.data(), n);
      EXPECT_EQ(0, std::memcmp(y.data(), ref.data(), ref.size() * 4)) << ggml_type_name(type);
    }
  }
}

TEST(Quant, UnsupportedTypesAreClearErrors) {
  TensorView t;
  t.name = "blk.0.attn_q.weight";
  t.type = GgmlType::Q2_K;
  t.ne = {256, 4};
  try {
    (void)WeightMatrix::of(t);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.attn_q.weight"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("Q2_K"), std::string::npos);
  }
  EXPECT_THROW(quantize_row_q8_0(nullptr, nullptr, 33), Error);
}

// ---- matmul ----------------------------------------------------------------------

TEST(Matmul, AllTypesAllIsasMatchDoubleReference) {
  for (GgmlType type : kTypes) {
    const std::vector<int64_t> n_ins = is_block_type(type) ? std::vector<int64_t>{32, 96, 160, 544}
                                                           : std::vector<int64_t>{1, 7, 37, 64, 203};
    for (int64_t n_in : n_ins) {
      for (int64_t n_out : {1, 3, 5, 19, 33}) {
        TestMatrix m = make_matrix(type, n_in, n_out, static_cast<uint32_t>(n_in * 131 + n_out));
        for (int64_t n_tok : {1, 2, 3, 7}) {
          // Strided activations and outputs (stride > row length).
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
                  ref += p;
                  mag += std::fabs(p);
                }
                const double tol = static_cast<double>(n_in + 2) * 1.2e-7 * mag + 1e-30;
                ASSERT_NEAR(y[t * ys + o], ref, tol) << ggml_type_name(type) << " " << isa_name(k->isa) << " n_in=" << n_in
                                                    << " n_out=" << n_out << " t=" << t << " o=" << o;
              }
              for (int64_t o = n_out; o < ys; ++o) ASSERT_EQ(y[t * ys + o], 1234.f) << "wrote past the row";
            }
          }
        }
      }
    }
  }
}

TEST(Matmul, ThreadsAndBatchingDoNotChangeBits) {
  ThreadPool pool1(1), pool3(3), pool4(4);
  for (GgmlType type : kTypes) {
    const int64_t n_in = is_block_type(type) ? 288 : 203, n_out = 157, n_tok = 5;
    TestMatrix m = make_matrix(type, n_in, n_out, 77);
    auto x = randn(static_cast<size_t>(n_in * n_tok), 78);
    for (const KernelTable* k : tables()) {
      for (ActMode mode : {ActMode::F32, ActMode::Q8}) {
        const bool q8 = quantizes_activations(type, mode);
        if (mode == ActMode::Q8 && !q8) continue;  // same path as F32
        const std::string what = std::string(ggml_type_name(type)) + " " + isa_name(k->isa) + (q8 ? " q8-act" : " f32-act");
        std::vector<float> ref(static_cast<size_t>(n_out * n_tok));
        matmul(m.view(), x.data(), n_tok, n_in, ref.data(), n_out, nullptr, k, mode);
        for (ThreadPool* p : {&pool1, &pool3, &pool4}) {
          std::vector<float> y(ref.size());
          matmul(m.view(), x.data(), n_tok, n_in, y.data(), n_out, p, k, mode);
          EXPECT_EQ(0, std::memcmp(y.data(), ref.data(), ref.size() * 4)) << what << " threads=" << p->size();
        }
        // One token at a time (decode) gives the same bits as the batch (prefill).
        for (int64_t t = 0; t < n_tok; ++t) {
          std::vector<float> y(static_cast<size_t>(n_out));
          matmul(m.view(), x.data() + t * n_in, 1, n_in, y.data(), n_out, &pool3, k, mode);
          EXPECT_EQ(0, std::memcmp(y.data(), ref.data() + t * n_out, y.size() * 4)) << what << " token " << t;
        }
        // A row range on its own gives the same bits as the whole matrix.
        std::vector<float> part(static_cast<size_t>(n_out * n_tok), 0.f);
        if (q8) {
          const int64_t nb = n_in / kQK;
          std::vector<BlockQ8_0> xq(static_cast<size_t>(nb * n_tok));
          for (int64_t t = 0; t < n_tok; ++t)
            k->quantize_act_for(GgmlType::Q8_0)(x.data() + t * n_in, xq.data() + t * nb, n_in);
          k->matmul_q_for(type)(m.view(), 5, 12, xq.data(), n_tok, static_cast<size_t>(nb) * sizeof(BlockQ8_0),
                                part.data(), n_out);
        } else {
          k->matmul_for(type)(m.view(), 5, 12, x.data(), n_tok, n_in, part.data(), n_out);
        }
        for (int64_t t = 0; t < n_tok; ++t)
          for (int64_t o = 5; o < 12; ++o) EXPECT_EQ(part[t * n_out + o], ref[t * n_out + o]) << what;
      }
    }
  }
}

TEST(Matmul, AvxMatchesScalarClosely) {
  if (!isa_available(Isa::Avx2)) GTEST_SKIP() << "no AVX2 on this CPU";
  for (GgmlType type : kTypes) {
    const int64_t n_in = is_block_type(type) ? 1024 : 1000, n_out = 67, n_tok = 3;
    TestMatrix m = make_matrix(type, n_in, n_out, 5);
    auto x = randn(static_cast<size_t>(n_in * n_tok), 6);
    std::vector<float> a(static_cast<size_t>(n_out * n_tok)), b(a.size());
    matmul(m.view(), x.data(), n_tok, n_in, a.data(), n_out, nullptr, &table(Isa::Scalar), ActMode::F32);
    matmul(m.view(), x.data(), n_tok, n_in, b.data(), n_out, nullptr, &table(Isa::Avx2), ActMode::F32);
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 2e-4 * (1 + std::fabs(a[i]))) << ggml_type_name(type);
  }
}

// ---- Q8_0-activation path (ggml semantics) -----------------------------------------

namespace {

// Independent restatement of the ggml math: Q8_0 activation blocks, exact
// integer block sums, sumf += float(sumi) · (d_w · d_a) in block order.
// Also returns Σ_b |d_w·d_a|·Σ_j |q_w·q_a| (the scale of fp32 rounding when
// partial block sums are accumulated in another order).
float q8_dot_ref(const TestMatrix& m, int64_t row, const BlockQ8_0* a, double* mag) {
  const int64_t nb = m.n_in / kQK;
  const uint8_t* wr = m.bytes.data() + ggml_row_bytes(m.type, m.n_in) * static_cast<size_t>(row);
  float sumf = 0.f;
  double mg = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int sumi = 0, sumabs = 0;
    uint16_t dwh;
    if (m.type == GgmlType::Q8_0) {
      const auto* w = reinterpret_cast<const BlockQ8_0*>(wr) + b;
      for (int j = 0; j < kQK; ++j) {
        sumi += w->qs[j] * a[b].qs[j];
        sumabs += std::abs(w->qs[j] * a[b].qs[j]);
      }
      std::memcpy(&dwh, &w->d, 2);
    } else {
      const auto* w = reinterpret_cast<const BlockQ4_0*>(wr) + b;
      for (int j = 0; j < kQK / 2; ++j) {
        const int p0 = ((w->qs[j] & 15) - 8) * a[b].qs[j], p1 = ((w->qs[j] >> 4) - 8) * a[b].qs[j + 16];
        sumi += p0 + p1;
        sumabs += std::abs(p0) + std::abs(p1);
      }
      std::memcpy(&dwh, &w->d, 2);
    }
    uint16_t dah;
    std::memcpy(&dah, &a[b].d, 2);
    const float scale = fp16_to_f32(dwh) * fp16_to_f32(dah);
    const float term = static_cast<float>(sumi) * scale;
    sumf += term;
    mg += std::fabs(static_cast<double>(scale)) * sumabs;
  }
  if (mag) *mag = mg;
  return sumf;
}

std::vector<BlockQ8_0> quantize_acts(const std::vector<float>& x, int64_t n_tok, int64_t n_in, int64_t xs) {
  const int64_t nb = n_in / kQK;
  std::vector<BlockQ8_0> q(static_cast<size_t>(nb * n_tok));
  for (int64_t t = 0; t < n_tok; ++t) quantize_act_q8_0(x.data() + t * xs, q.data() + t * nb, n_in);
  return q;
}

}  // namespace

TEST(MatmulQ8, ActivationQuantizeIsaPathsAreBitIdentical) {
  // Includes exact .5 ties of x·id (round half to even), zeros, an
  // all-zero block and large magnitudes.
  for (int64_t n : {32, 96, 2048 + 32}) {
    auto x = randn(static_cast<size_t>(n), static_cast<uint32_t>(n), 3.f);
    for (int64_t j = 0; j < 32; ++j) x[static_cast<size_t>(j)] = static_cast<float>(j) - 15.5f;  // ties
    if (n > 32)
      for (int64_t j = 32; j < 64; ++j) x[static_cast<size_t>(j)] = 0.f;
    x[static_cast<size_t>(n - 1)] = 1e6f;
    std::vector<BlockQ8_0> ref(static_cast<size_t>(n / kQK));
    quantize_act_q8_0(x.data(), ref.data(), n);
    for (const KernelTable* k : tables()) {
      std::vector<BlockQ8_0> q(ref.size());
      k->quantize_act_for(GgmlType::Q8_0)(x.data(), q.data(), n);
      EXPECT_EQ(0, std::memcmp(q.data(), ref.data(), q.size() * sizeof(BlockQ8_0))) << isa_name(k->isa) << " n=" << n;
    }
  }
  // ggml's x86 run-time quantizer rounds half to even: 2.5 -> 2, -2.5 -> -2, 0.5 -> 0.
  float x[32] = {};
  x[0] = 127.f;
  x[1] = 2.5f;
  x[2] = -2.5f;
  x[3] = 0.5f;
  for (const KernelTable* k : tables()) {
    BlockQ8_0 b;
    k->quantize_act_for(GgmlType::Q8_0)(x, &b, 32);
    EXPECT_EQ(b.qs[0], 127);
    EXPECT_EQ(b.qs[1], 2) << isa_name(k->isa);
    EXPECT_EQ(b.qs[2], -2) << isa_name(k->isa);
    EXPECT_EQ(b.qs[3], 0) << isa_name(k->isa);
  }
}

TEST(MatmulQ8, MatchesReferenceOfTheSameMath) {
  // Odd block counts, many rows, 1..N tokens, strided activations/outputs.
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0}) {
    for (int64_t n_in : {32, 96, 224, 1056}) {
      for (int64_t n_out : {1, 3, 17, 70}) {
        TestMatrix m = make_matrix(type, n_in, n_out, static_cast<uint32_t>(n_in * 7 + n_out));
        for (int64_t n_tok : {1, 2, 3, 4, 5, 9}) {
          const int64_t xs = n_in + 5, ys = n_out + 1;
          auto x = randn(static_cast<size_t>(xs * n_tok), static_cast<uint32_t>(n_tok * 3 + n_in));
          const auto xq = quantize_acts(x, n_tok, n_in, xs);
          for (const KernelTable* k : tables()) {
            std::vector<float> y(static_cast<size_t>(ys * n_tok), 1234.f);
            matmul(m.view(), x.data(), n_tok, xs, y.data(), ys, nullptr, k, ActMode::Q8);
            for (int64_t t = 0; t < n_tok; ++t) {
              for (int64_t o = 0; o < n_out; ++o) {
                double mag = 0;
                const float ref = q8_dot_ref(m, o, xq.data() + t * (n_in / kQK), &mag);
                const float got = y[static_cast<size_t>(t * ys + o)];
                if (k->isa == Isa::Scalar) {
                  ASSERT_EQ(got, ref) << ggml_type_name(type) << " n_in=" << n_in << " o=" << o << " t=" << t;
                } else {
                  // Only the fp32 accumulation order differs.
                  ASSERT_NEAR(got, ref, 4e-7 * static_cast<double>(n_in / kQK + 8) * mag + 1e-30)
                      << ggml_type_name(type) << " " << isa_name(k->isa) << " n_in=" << n_in << " o=" << o << " t=" << t;
                }
              }
              for (int64_t o = n_out; o < ys; ++o) ASSERT_EQ(y[static_cast<size_t>(t * ys + o)], 1234.f);
            }
          }
        }
      }
    }
  }
}

TEST(MatmulQ8, CloseToFp32PathWithinActivationQuantizationError) {
  // |q8 − f32| <= Σ_b Σ_j |w_j|·|a_j − dequant(q_a)_j| + rounding, and
  // |a_j − d·q_j| <= d/2 + |a_j|·2^-11 (fp16 rounding of d).
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0}) {
    const int64_t n_in = 1536, n_out = 41, n_tok = 6;
    TestMatrix m = make_matrix(type, n_in, n_out, 91);
    auto x = randn(static_cast<size_t>(n_in * n_tok), 92);
    for (const KernelTable* k : tables()) {
      std::vector<float> a(static_cast<size_t>(n_out * n_tok)), b(a.size());
      matmul(m.view(), x.data(), n_tok, n_in, a.data(), n_out, nullptr, k, ActMode::F32);
      matmul(m.view(), x.data(), n_tok, n_in, b.data(), n_out, nullptr, k, ActMode::Q8);
      double worst_rel = 0;
      for (int64_t t = 0; t < n_tok; ++t) {
        for (int64_t o = 0; o < n_out; ++o) {
          double bound = 0, mag = 0;
          for (int64_t blk = 0; blk < n_in / kQK; ++blk) {
            float amax = 0;
            for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[t * n_in + blk * kQK + j]));
            const double d = amax / 127.0;
            for (int j = 0; j < kQK; ++j) {
              const double w = std::fabs(m.deq[o * n_in + blk * kQK + j]);
              const double xv = std::fabs(x[t * n_in + blk * kQK + j]);
              bound += w * (0.5 * d * 1.001 + xv * 1.0 / 1024);
              mag += w * xv;
            }
          }
          const double diff = std::fabs(static_cast<double>(a[t * n_out + o]) - b[t * n_out + o]);
          ASSERT_LE(diff, bound + 1e-5 * mag) << ggml_type_name(type) << " " << isa_name(k->isa);
          worst_rel = std::max(worst_rel, diff / (mag + 1e-30));
        }
      }
      // It is a real (small) perturbation, not a no-op and not a blow-up.
      EXPECT_GT(worst_rel, 0.0) << ggml_type_name(type);
      EXPECT_LT(worst_rel, 0.02) << ggml_type_name(type);
    }
  }
}

TEST(MatmulQ8, DefaultModeIsQ8ForBlockTypesOnly) {
  if (const char* env = std::getenv("G4_MATMUL_ACT"); env && std::string(env) == "f32") GTEST_SKIP();
  EXPECT_TRUE(quantizes_activations(GgmlType::Q8_0));
  EXPECT_TRUE(quantizes_activations(GgmlType::Q4_0));
  EXPECT_FALSE(quantizes_activations(GgmlType::Q4_0, ActMode::F32));
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16})
    EXPECT_FALSE(quantizes_activations(t, ActMode::Q8)) << ggml_type_name(t);
  EXPECT_THROW(active().matmul_q_for(GgmlType::F16), Error);
  // Default == Q8 bit for bit.
  TestMatrix m = make_matrix(GgmlType::Q4_0, 160, 9, 3);
  auto x = randn(160 * 2, 4);
  std::vector<float> a(18), b(18);
  matmul(m.view(), x.data(), 2, 160, a.data(), 9, nullptr);
  matmul(m.view(), x.data(), 2, 160, b.data(), 9, nullptr, nullptr, ActMode::Q8);
  EXPECT_EQ(a, b);
}

TEST(Matmul, ExpertSliceOf3dTensor) {
  const int64_t n_in = 64, n_out = 24, n_exp = 5, n_tok = 3;
  for (GgmlType type : kTypes) {
    auto src = randn(static_cast<size_t>(n_in * n_out * n_exp), 11);
    std::vector<uint8_t> bytes(ggml_row_bytes(type, n_in) * n_out * n_exp);
    quantize_rows(type, src.data(), bytes.data(), n_out * n_exp, n_in);
    TensorView t;
    t.name = "blk.0.ffn_down_exps.weight";
    t.type = type;
    t.ne = {n_in, n_out, n_exp};
    t.data = bytes.data();
    t.nbytes = bytes.size();
    auto x = randn(static_cast<size_t>(n_in * n_tok), 12);
    for (int64_t e = 0; e < n_exp; ++e) {
      const WeightMatrix we = WeightMatrix::expert(t, e);
      EXPECT_EQ(we.n_in, n_in);
      EXPECT_EQ(we.n_out, n_out);
      const WeightMatrix ref =
          WeightMatrix::raw(type, bytes.data() + ggml_row_bytes(type, n_in) * n_out * e, n_in, n_out);
      std::vector<float> a(n_out * n_tok), b(n_out * n_tok);
      matmul(we, x.data(), n_tok, n_in, a.data(), n_out, nullptr);
      matmul(ref, x.data(), n_tok, n_in, b.data(), n_out, nullptr);
      EXPECT_EQ(a, b);
    }
    EXPECT_THROW(WeightMatrix::expert(t, n_exp), Error);
  }
}

// ---- get_rows --------------------------------------------------------------------

TEST(GetRows, AllTypes) {
  for (GgmlType type : kTypes) {
    const int64_t n_in = 96, n_rows = 11;
    TestMatrix m = make_matrix(type, n_in, n_rows, 21);
    const int32_t ids[] = {3, 0, 10, 3, 7};
    for (const KernelTable* k : tables()) {
      std::vector<float> out(5 * (n_in + 1), -7.f);
      get_rows(m.view(), ids, 5, out.data(), n_in + 1, k);
      for (int i = 0; i < 5; ++i) {
        for (int64_t j = 0; j < n_in; ++j) EXPECT_EQ(out[i * (n_in + 1) + j], m.deq[ids[i] * n_in + j]);
        EXPECT_EQ(out[i * (n_in + 1) + n_in], -7.f);
      }
    }
    const int32_t bad[] = {11};
    std::vector<float> out(n_in);
    EXPECT_THROW(get_rows(m.view(), bad, 1, out.data(), n_in), Error);
    const int32_t neg[] = {-1};
    EXPECT_THROW(get_rows(m.view(), neg, 1, out.data(), n_in), Error);
  }
}

// ---- element-wise ----------------------------------------------------------------

TEST(Elementwise, RmsNormMatchesDefinition) {
  for (int64_t n : {1, 7, 16, 37, 64, 255, 1536}) {
    auto x = randn(static_cast<size_t>(n), static_cast<uint32_t>(n), 3.f);
    auto w = randn(static_cast<size_t>(n), static_cast<uint32_t>(n + 1));
    double ss = 0;
    for (float v : x) ss += static_cast<double>(v) * v;
    const double r = 1.0 / std::sqrt(ss / static_cast<double>(n) + 1e-6);
    for (const KernelTable* k : tables()) {
      std::vector<float> y(static_cast<size_t>(n)), y1(static_cast<size_t>(n)), ones(static_cast<size_t>(n), 1.f);
      k->rmsnorm(x.data(), w.data(), y.data(), n, 1e-6f);
      k->rmsnorm(x.data(), nullptr, y1.data(), n, 1e-6f);
      for (int64_t i = 0; i < n; ++i) {
        EXPECT_NEAR(y[i], x[i] * r * w[i], 1e-6 * (1 + std::fabs(x[i] * r * w[i]))) << isa_name(k->isa);
        EXPECT_NEAR(y1[i], x[i] * r, 1e-6 * (1 + std::fabs(x[i] * r))) << isa_name(k->isa);
      }
      // A weight of ones is plain normalisation (Gemma 4 multiplies by w, no 1 + w).
      std::vector<float> y2(static_cast<size_t>(n));
      k->rmsnorm(x.data(), ones.data(), y2.data(), n, 1e-6f);
      EXPECT_EQ(y1, y2) << isa_name(k->isa);
      // In place.
      std::vector<float> xi = x;
      k->rmsnorm(xi.data(), w.data(), xi.data(), n, 1e-6f);
      EXPECT_EQ(xi, y);
    }
  }
}

TEST(Elementwise, GeluAndGeglu) {
  std::vector<float> x;
  for (float v = -12.f; v <= 12.f; v += 0.0137f) x.push_back(v);
  x.push_back(0.f);
  x.push_back(1e-8f);
  x.push_back(-30.f);
  x.push_back(30.f);
  const int64_t n = static_cast<int64_t>(x.size());  // not a multiple of 8
  auto u = randn(x.size(), 4);
  for (const KernelTable* k : tables()) {
    std::vector<float> y(x.size()), z(x.size());
    k->gelu_tanh(x.data(), y.data(), n);
    k->geglu(x.data(), u.data(), z.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double v = x[i];
      const double ref = 0.5 * v * (1 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
      // fp32 tanh near -1 has an ulp of 6e-8, so 1 + tanh carries ~0.5·|x|·6e-8 absolute.
      const double tol = 3e-7 * std::fabs(ref) + 4e-8 * std::fabs(v) + 1e-12;
      EXPECT_NEAR(y[i], ref, tol) << isa_name(k->isa) << " x=" << v;
      EXPECT_NEAR(z[i], ref * u[i], tol * (1 + std::fabs(u[i]))) << isa_name(k->isa) << " x=" << v;
    }
  }
}

TEST(Elementwise, SoftmaxAndSoftcap) {
  for (int64_t n : {1, 5, 8, 13, 128, 263}) {
    auto x = randn(static_cast<size_t>(n), static_cast<uint32_t>(n), 4.f);
    if (n > 3) x[2] = -INFINITY;  // masked logit
    double mx = -INFINITY;
    for (float v : x) mx = std::max<double>(mx, v);
    double sum = 0;
    for (float v : x) sum += std::exp(v - mx);
    auto c = randn(static_cast<size_t>(n), static_cast<uint32_t>(n) + 5, 40.f);
    for (const KernelTable* k : tables()) {
      std::vector<float> y = x;
      k->softmax(y.data(), n);
      for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(y[i], std::exp(x[i] - mx) / sum, 1e-6) << isa_name(k->isa);
      if (n > 3) {
        EXPECT_EQ(y[2], 0.f);
      }
      std::vector<float> s = c;
      k->softcap(s.data(), n, 30.f);
      for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(s[i], 30.0 * std::tanh(c[i] / 30.0), 4e-6) << isa_name(k->isa);
    }
  }
}

TEST(Elementwise, DotAndAxpy) {
  for (int64_t n : {1, 7, 8, 15, 16, 33, 512, 517}) {
    auto a = randn(static_cast<size_t>(n), 1), b = randn(static_cast<size_t>(n), 2);
    double ref = 0, mag = 0;
    for (int64_t i = 0; i < n; ++i) ref += static_cast<double>(a[i]) * b[i], mag += std::fabs(a[i] * b[i]);
    for (const KernelTable* k : tables()) {
      EXPECT_NEAR(k->dot(a.data(), b.data(), n), ref, (n + 2) * 1.2e-7 * mag) << isa_name(k->isa);
      std::vector<float> y = b;
      k->axpy(0.37f, a.data(), y.data(), n);
      for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(y[i], b[i] + 0.37 * a[i], 1e-6 * (1 + std::fabs(b[i]))) << isa_name(k->isa);
    }
  }
}

TEST(Elementwise, RopeNeoxMatchesScalarAndDefinition) {
  for (int64_t d : {16, 32, 64, 256, 512}) {
    const int64_t half = d / 2;
    std::vector<float> freqs(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i) freqs[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / d));
    for (int64_t pos : {0, 1, 17, 4095}) {
      std::vector<float> c(half), s(half);
      rope_cos_sin(pos, freqs.data(), half, c.data(), s.data());
      auto x = randn(static_cast<size_t>(d), static_cast<uint32_t>(d + pos));
      std::vector<float> ref = x;
      table(Isa::Scalar).rope_neox(ref.data(), d, c.data(), s.data());
      for (int64_t i = 0; i < half; ++i) {
        const double ang = static_cast<double>(static_cast<float>(pos) * freqs[i]);
        EXPECT_NEAR(ref[i], x[i] * std::cos(ang) - x[i + half] * std::sin(ang), 1e-5);
        EXPECT_NEAR(ref[i + half], x[i + half] * std::cos(ang) + x[i] * std::sin(ang), 1e-5);
      }
      for (const KernelTable* k : tables()) {
        std::vector<float> y = x;
        k->rope_neox(y.data(), d, c.data(), s.data());
        for (int64_t i = 0; i < d; ++i) EXPECT_NEAR(y[i], ref[i], 1e-6 * (1 + std::fabs(ref[i])));
      }
    }
  }
}
