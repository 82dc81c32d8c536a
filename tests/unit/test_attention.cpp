// Fused attention kernels (kernels/attention.h) on random data, every ISA the
// CPU has against a straightforward definition computed in double (scores,
// softmax and weighted sum over exactly the values the cache stores):
// head dims 256, 512 and odd ones (tails), GQA ratios 1/2/8, query chunks of
// 1, 7 and 64, sliding windows on a ring that has wrapped many times, full
// layers with keys far back, peaky softmaxes; all four KV element types.
// Plus: a row's output does not depend on its chunk, task or thread count
// (bit for bit); stale slots are refused; the element-type stores are the same
// bytes on every ISA.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/attention.h"
#include "kernels/kernels.h"

using namespace g4;
using namespace g4::attn;

namespace {

constexpr GgmlType kTypes[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0};

std::vector<const Table*> tables() {
  std::vector<const Table*> t;
  for (int i = 0; i < kIsaCount; ++i)
    if (isa_available(static_cast<Isa>(i))) t.push_back(&table(static_cast<Isa>(i)));
  return t;
}

std::vector<float> randn(size_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// A KV cache layer as KvCache lays it out ([slot][kv head][lane] in `type`,
// tags per slot), with the dequantized values the kernels will read kept
// beside it for the reference.
struct FakeCache {
  GgmlType type;
  int n_kv_heads, head_dim;
  int64_t capacity;
  bool ring;
  size_t head_bytes, row_bytes;
  std::vector<uint8_t> k, v;
  std::vector<int64_t> tags;
  std::vector<float> kd, vd;  // per slot, dequantized

  FakeCache(GgmlType t, int hkv, int d, int64_t cap, bool r)
      : type(t), n_kv_heads(hkv), head_dim(d), capacity(cap), ring(r) {
    head_bytes = kv_head_bytes(t, d);
    row_bytes = head_bytes * static_cast<size_t>(hkv);
    k.assign(static_cast<size_t>(cap) * row_bytes, 0);
    v.assign(k.size(), 0);
    tags.assign(static_cast<size_t>(cap), 0);
    kd.assign(static_cast<size_t>(cap) * static_cast<size_t>(hkv * d), 0.f);
    vd.assign(kd.size(), 0.f);
  }
  int64_t slot(int64_t pos) const { return ring ? pos % capacity : pos; }
  int64_t row() const { return int64_t(n_kv_heads) * head_dim; }
  void put(int64_t pos, const float* kx, const float* vx) {
    const size_t s = static_cast<size_t>(slot(pos));
    store_row(type, kx, k.data() + s * row_bytes, row());
    store_row(type, vx, v.data() + s * row_bytes, row());
    load_row(type, k.data() + s * row_bytes, kd.data() + s * static_cast<size_t>(row()), row());
    load_row(type, v.data() + s * row_bytes, vd.data() + s * static_cast<size_t>(row()), row());
    tags[s] = pos + 1;
  }
  const float* kf(int64_t pos, int h) const { return kd.data() + slot(pos) * row() + int64_t(h) * head_dim; }
  const float* vf(int64_t pos, int h) const { return vd.data() + slot(pos) * row() + int64_t(h) * head_dim; }
  KvView view() const {
    KvView x;
    x.type = type;
    x.n_kv_heads = n_kv_heads;
    x.head_dim = head_dim;
    x.k = k.data();
    x.v = v.data();
    x.row_bytes = row_bytes;
    x.head_bytes = head_bytes;
    x.capacity = capacity;
    x.ring = ring;
    x.tags = tags.data();
    return x;
  }
};

// The definition, in double: softmax over the visible keys of q·k (scale 1), then Σ p·v.
std::vector<double> reference(const FakeCache& c, const std::vector<float>& q, int n_heads, int64_t n_tok, int64_t p0,
                              int64_t window) {
  const int64_t D = c.head_dim;
  const int G = n_heads / c.n_kv_heads;
  std::vector<double> out(static_cast<size_t>(n_tok * n_heads * D), 0.0), s;
  for (int64_t t = 0; t < n_tok; ++t) {
    const int64_t pos = p0 + t;
    const int64_t lo = first_visible(window, pos);
    for (int h = 0; h < n_heads; ++h) {
      const float* qh = q.data() + (t * n_heads + h) * D;
      s.assign(static_cast<size_t>(pos - lo + 1), 0.0);
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = lo; j <= pos; ++j) {
        const float* kh = c.kf(j, h / G);
        double d = 0;
        for (int64_t i = 0; i < D; ++i) d += static_cast<double>(qh[i]) * kh[i];
        s[static_cast<size_t>(j - lo)] = d;
        mx = std::max(mx, d);
      }
      double sum = 0;
      for (double& x : s) sum += (x = std::exp(x - mx));
      double* o = out.data() + (t * n_heads + h) * D;
      for (int64_t j = lo; j <= pos; ++j) {
        const float* vh = c.vf(j, h / G);
        const double p = s[static_cast<size_t>(j - lo)] / sum;
        for (int64_t i = 0; i < D; ++i) o[i] += p * vh[i];
      }
    }
  }
  return out;
}

struct Shape {
  int head_dim, n_kv_heads, group;  // n_heads = n_kv_heads × group
  int64_t n_tok, p0, window;        // window 0: full causal
  float q_scale;                    // score spread: ~q_scale · |k| per head
};

// A cache holding every position a batch of `s` needs, written in position
// order (a ring has wrapped p0 / capacity times by then), and the queries.
struct Filled {
  FakeCache cache;
  std::vector<float> q;
  Filled(GgmlType type, const Shape& s, uint32_t seed)
      : cache(type, s.n_kv_heads, s.head_dim,
              s.window > 0 ? s.window + s.n_tok - 1 : s.p0 + s.n_tok,  // KvCache's capacities
              s.window > 0) {
    std::mt19937 rng(seed);
    const int64_t row = cache.row();
    // Write every position from 0 (rings overwrite), values ~N(0, 1).
    for (int64_t pos = 0; pos < s.p0 + s.n_tok; ++pos) {
      const std::vector<float> k = randn(static_cast<size_t>(row), rng, 1.f);
      const std::vector<float> v = randn(static_cast<size_t>(row), rng, 1.f);
      cache.put(pos, k.data(), v.data());
    }
    q = randn(static_cast<size_t>(s.n_tok * s.n_kv_heads * s.group * s.head_dim), rng,
              s.q_scale / std::sqrt(static_cast<float>(s.head_dim)));
  }
};

std::vector<float> run(const Table& t, const Filled& su, const Shape& s, ThreadPool* pool) {
  const int n_heads = s.n_kv_heads * s.group;
  std::vector<float> out(static_cast<size_t>(s.n_tok * n_heads * s.head_dim), std::nanf(""));
  Batch b;
  b.q = su.q.data();
  b.q_stride = int64_t(n_heads) * s.head_dim;
  b.out = out.data();
  b.out_stride = b.q_stride;
  b.n_heads = n_heads;
  b.n_tok = s.n_tok;
  b.p0 = s.p0;
  b.window = s.window;
  Workspace ws(pool ? pool->size() : 1, max_task_rows(n_heads, s.n_kv_heads));
  attend(su.cache.view(), b, ws, pool, t);
  return out;
}

std::string describe(GgmlType type, const Shape& s) {
  return kv_type_name(type) + " D=" + std::to_string(s.head_dim) + " kv=" + std::to_string(s.n_kv_heads) +
         " G=" + std::to_string(s.group) + " n=" + std::to_string(s.n_tok) + " p0=" + std::to_string(s.p0) +
         (s.window ? " window=" + std::to_string(s.window) : std::string(" full")) +
         " qscale=" + std::to_string(s.q_scale);
}

// Worst |kernel − reference| over the batch, and the largest |reference|.
struct Err {
  double abs = 0, scale = 0;
};
Err compare(const std::vector<float>& got, const std::vector<double>& ref) {
  Err e;
  for (size_t i = 0; i < ref.size(); ++i) {
    e.abs = std::max(e.abs, std::fabs(static_cast<double>(got[i]) - ref[i]));
    e.scale = std::max(e.scale, std::fabs(ref[i]));
    if (!std::isfinite(got[i])) e.abs = std::numeric_limits<double>::infinity();
  }
  return e;
}

// fp32 arithmetic on ~N(0,1) values: outputs (convex combinations of V rows)
// are O(1); the error comes from the fp32 scores (|s| up to ~q_scale·4, fp32
// relative error ~1e-7·√D) through exp, and the fp32 sums. Measured worst over
// every case below, every ISA: 2.9e-6 (q_scale ≤ 3), 2.1e-5 (q_scale 30).
double tolerance(const Shape& s) { return 2e-5 * std::max(1.0f, s.q_scale / 3.f); }

std::vector<Shape> shapes() {
  std::vector<Shape> v;
  for (int D : {256, 512}) {
    for (auto [hkv, g] : {std::pair{2, 1}, std::pair{1, 2}, std::pair{1, 8}}) {
      for (int64_t n : {1, 7, 64}) {
        // Sliding: window 48 on a ring that has wrapped ~20 times.
        v.push_back({D, hkv, g, n, 1000 + 3 * n, 48, 1.f});
        // Full: every key from position 0; decode from far back.
        v.push_back({D, hkv, g, n, n == 1 ? 1500 : 150, 0, 1.f});
      }
    }
  }
  return v;
}

}  // namespace

TEST(Attention, EveryIsaMatchesTheDoubleReference) {
  double worst_rel = 0;
  for (GgmlType type : kTypes) {
    for (const Shape& s : shapes()) {
      const Filled su(type, s, 17 + static_cast<uint32_t>(s.head_dim + s.n_tok));
      const std::vector<double> ref = reference(su.cache, su.q, s.n_kv_heads * s.group, s.n_tok, s.p0, s.window);
      for (const Table* t : tables()) {
        const Err e = compare(run(*t, su, s, nullptr), ref);
        EXPECT_LE(e.abs, tolerance(s)) << isa_name(t->isa) << " " << describe(type, s);
        EXPECT_GT(e.scale, 0.05) << "degenerate output";
        worst_rel = std::max(worst_rel, e.abs);
      }
    }
  }
  RecordProperty("worst_abs_error", std::to_string(worst_rel));
  std::printf("  worst |kernel - double reference| over all shapes, types, ISAs: %.3g\n", worst_rel);
}

TEST(Attention, OddHeadDimsAndPeakySoftmax) {
  // Head dims with SIMD tails (not multiples of 8 or 16; q8_0 needs multiples
  // of 32) and large score spreads, where the running max moves often and
  // most probabilities underflow.
  double worst = 0;
  for (GgmlType type : kTypes) {
    const std::vector<int> dims = type == GgmlType::Q8_0 ? std::vector<int>{32, 96, 160} : std::vector<int>{1, 17, 40, 100};
    for (int D : dims) {
      for (float qs : {1.f, 30.f}) {
        for (const Shape& s : {Shape{D, 2, 2, 7, 200, 0, qs}, Shape{D, 1, 8, 1, 90, 16, qs},
                               Shape{D, 2, 1, 33, 500, 40, qs}}) {
          const Filled su(type, s, 5 + static_cast<uint32_t>(D));
          const std::vector<double> ref = reference(su.cache, su.q, s.n_kv_heads * s.group, s.n_tok, s.p0, s.window);
          for (const Table* t : tables()) {
            const Err e = compare(run(*t, su, s, nullptr), ref);
            EXPECT_LE(e.abs, tolerance(s)) << isa_name(t->isa) << " " << describe(type, s);
            worst = std::max(worst, e.abs);
          }
        }
      }
    }
  }
  std::printf("  worst |kernel - double reference| (odd dims, peaky): %.3g\n", worst);
}

TEST(Attention, LongContextDecodeHeadDim512) {
  // One query at position 4095 over a full 4096-key cache, GQA 8 (the E2B
  // full-layer shape): every key from far back contributes.
  for (GgmlType type : kTypes) {
    const Shape s{512, 1, 8, 1, 4095, 0, 3.f};
    const Filled su(type, s, 99);
    const std::vector<double> ref = reference(su.cache, su.q, 8, 1, s.p0, 0);
    for (const Table* t : tables()) {
      const Err e = compare(run(*t, su, s, nullptr), ref);
      EXPECT_LE(e.abs, tolerance(s)) << isa_name(t->isa) << " " << describe(type, s);
    }
  }
}

TEST(Attention, RowsDoNotDependOnChunkTaskOrThreads) {
  // The same query rows through: one chunk on 1 thread, the chunk on 3
  // threads, and one decode step per query: identical bits (the property that
  // makes prefill, decode and any chunking agree exactly).
  ThreadPool pool3(3);
  for (GgmlType type : kTypes) {
    for (const Shape& s : {Shape{256, 2, 2, 20, 700, 48, 2.f}, Shape{512, 1, 8, 9, 100, 0, 2.f},
                           Shape{96, 2, 1, 40, 37, 0, 2.f}}) {
      const Filled su(type, s, 3);
      const int n_heads = s.n_kv_heads * s.group;
      const size_t per_tok = static_cast<size_t>(n_heads * s.head_dim);
      for (const Table* t : tables()) {
        SCOPED_TRACE(std::string(isa_name(t->isa)) + " " + describe(type, s));
        const std::vector<float> a = run(*t, su, s, nullptr);
        const std::vector<float> b = run(*t, su, s, &pool3);
        EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << "thread count changed bits";
        for (int64_t tk = 0; tk < s.n_tok; ++tk) {
          Shape one = s;
          one.n_tok = 1;
          one.p0 = s.p0 + tk;
          Filled single = su;  // same cache, just this token's query
          single.q.assign(su.q.begin() + static_cast<std::ptrdiff_t>(tk * per_tok),
                          su.q.begin() + static_cast<std::ptrdiff_t>((tk + 1) * per_tok));
          const std::vector<float> d = run(*t, single, one, tk % 2 ? &pool3 : nullptr);
          ASSERT_EQ(0, std::memcmp(d.data(), a.data() + tk * per_tok, per_tok * sizeof(float)))
              << "decode of token " << tk << " differs from its row in the chunk";
        }
      }
    }
  }
}

TEST(Attention, StaleOrMissingSlotsAreNeverAttended) {
  const Shape s{64, 1, 2, 4, 100, 16, 1.f};
  for (const Table* t : tables()) {
    Filled su(GgmlType::F16, s, 8);
    EXPECT_NO_THROW(run(*t, su, s, nullptr));
    // A position the window needs was overwritten by a later one (its slot now holds pos + capacity).
    Filled stale = su;
    const int64_t victim = s.p0 - 3;
    stale.cache.tags[static_cast<size_t>(stale.cache.slot(victim))] = victim + stale.cache.capacity + 1;
    EXPECT_THROW(run(*t, stale, s, nullptr), Error) << isa_name(t->isa);
    // An empty slot.
    Filled empty = su;
    empty.cache.tags[static_cast<size_t>(empty.cache.slot(s.p0 + 1))] = 0;
    EXPECT_THROW(run(*t, empty, s, nullptr), Error) << isa_name(t->isa);
    // The query's own position missing (the chunk was not stored first).
    Shape ahead = s;
    ahead.p0 = s.p0 + 2;  // positions p0+2 .. p0+5: the last two were never written
    EXPECT_THROW(run(*t, su, ahead, nullptr), Error) << isa_name(t->isa);
  }
  // A full (linear) cache shorter than the positions asked for.
  const Shape f{32, 1, 1, 1, 50, 0, 1.f};
  Filled su(GgmlType::F32, f, 1);
  Shape beyond = f;
  beyond.p0 = 51;
  EXPECT_THROW(run(table(Isa::Scalar), su, beyond, nullptr), Error);
}

TEST(Attention, ShapeErrorsAreClear) {
  const Shape s{64, 2, 2, 3, 20, 0, 1.f};
  Filled su(GgmlType::F32, s, 2);
  std::vector<float> out(static_cast<size_t>(3 * 4 * 64));
  Batch b;
  b.q = su.q.data();
  b.q_stride = 4 * 64;
  b.out = out.data();
  b.out_stride = 4 * 64;
  b.n_heads = 3;  // not a multiple of 2 KV heads
  b.n_tok = 3;
  b.p0 = 20;
  Workspace ws(1, 64);
  EXPECT_THROW(attend(su.cache.view(), b, ws, nullptr, table(Isa::Scalar)), Error);
  b.n_heads = 4;
  Workspace tiny(1, 1);  // too few rows for a task
  EXPECT_THROW(attend(su.cache.view(), b, tiny, nullptr, table(Isa::Scalar)), Error);
  EXPECT_NO_THROW(attend(su.cache.view(), b, ws, nullptr, table(Isa::Scalar)));
  EXPECT_THROW(kv_head_bytes(GgmlType::Q8_0, 48), Error);  // q8_0 blocks run along head_dim
  EXPECT_THROW(kv_head_bytes(GgmlType::Q4_0, 64), Error);
  EXPECT_EQ(kv_head_bytes(GgmlType::Q8_0, 64), 68u);
  EXPECT_EQ(kv_head_bytes(GgmlType::F16, 100), 200u);
}

TEST(Attention, KvTypeNames) {
  for (GgmlType t : kTypes) {
    EXPECT_TRUE(kv_type_supported(t));
    EXPECT_EQ(parse_kv_type(kv_type_name(t)), t);
  }
  EXPECT_EQ(parse_kv_type("F16"), GgmlType::F16);
  EXPECT_EQ(parse_kv_type("Q8_0"), GgmlType::Q8_0);
  EXPECT_THROW(parse_kv_type("q4_0"), Error);
  EXPECT_THROW(parse_kv_type("fp16"), Error);
  EXPECT_EQ(kDefaultKvType, GgmlType::F16);
  EXPECT_EQ(kv_elem_bytes(GgmlType::F32), 4.0);
  EXPECT_EQ(kv_elem_bytes(GgmlType::BF16), 2.0);
  EXPECT_EQ(kv_elem_bytes(GgmlType::Q8_0), 34.0 / 32.0);
  // Kernel ISA names map onto attention ISAs (unknown, newer names: the best we have).
  EXPECT_EQ(isa_for_kernel_isa("scalar"), Isa::Scalar);
  if (isa_available(Isa::Avx2)) {
    EXPECT_EQ(isa_for_kernel_isa("avx2"), Isa::Avx2);
  }
  if (isa_available(Isa::Avx512)) {
    EXPECT_EQ(isa_for_kernel_isa("avx512"), Isa::Avx512);
    EXPECT_EQ(isa_for_kernel_isa("avx512vnni"), Isa::Avx512);
  }
}

TEST(Attention, StoresAreTheScalarDefinitionOnEveryIsa) {
  std::mt19937 rng(4);
  std::vector<float> x = randn(1003, rng, 3.f);
  // Special values: signed zeros, halfway cases, f16 subnormals and overflow,
  // bf16 rounding carries, infinities.
  const float specials[] = {0.f,       -0.f,       1.f,         -1.f,       65504.f,   65519.f,    65520.f,
                            1e6f,      -1e6f,      6.0e-8f,     -3.0e-5f,   1e-10f,    1.00390625f, 1.01171875f,
                            3.4e38f,   -3.4e38f,   INFINITY,    -INFINITY,  2049.f,    0.1f,        -7.5e-39f};
  for (size_t i = 0; i < std::size(specials); ++i) x[i * 7] = specials[i];
  for (GgmlType type : {GgmlType::F16, GgmlType::BF16}) {
    std::vector<uint8_t> ref(x.size() * 2), got(x.size() * 2);
    const Table& s = table(Isa::Scalar);
    (type == GgmlType::F16 ? s.store_f16 : s.store_bf16)(x.data(), ref.data(), static_cast<int64_t>(x.size()));
    for (const Table* t : tables()) {
      std::fill(got.begin(), got.end(), 0xAA);
      (type == GgmlType::F16 ? t->store_f16 : t->store_bf16)(x.data(), got.data(), static_cast<int64_t>(x.size()));
      EXPECT_EQ(ref, got) << isa_name(t->isa) << " " << kv_type_name(type);
    }
    // The definitions: f16 rounds to nearest even and saturates at ±65504; bf16 rounds to nearest even.
    for (size_t i = 0; i < x.size(); ++i) {
      uint16_t h;
      std::memcpy(&h, ref.data() + 2 * i, 2);
      if (type == GgmlType::F16) {
        const float c = std::max(-65504.f, std::min(65504.f, x[i]));
        EXPECT_EQ(h, f32_to_fp16(c)) << x[i];
        EXPECT_TRUE(std::isfinite(fp16_to_f32(h))) << x[i];
      } else {
        EXPECT_EQ(h, f32_to_bf16(x[i])) << x[i];
      }
    }
  }
  // bf16 keeps NaN a NaN on every ISA.
  std::vector<float> nan(16, std::nanf(""));
  for (const Table* t : tables()) {
    std::vector<uint8_t> b(32);
    t->store_bf16(nan.data(), b.data(), 16);
    uint16_t h;
    std::memcpy(&h, b.data() + 30, 2);
    EXPECT_TRUE(std::isnan(bf16_to_f32(h))) << isa_name(t->isa);
  }
  // q8_0: ggml's run-time quantizer (what llama.cpp writes into a q8_0 cache).
  std::vector<uint8_t> q(kv_head_bytes(GgmlType::Q8_0, 96)), qr(q.size());
  store_row(GgmlType::Q8_0, x.data(), q.data(), 96);
  kernels::quantize_act_q8_0(x.data(), reinterpret_cast<kernels::BlockQ8_0*>(qr.data()), 96);
  EXPECT_EQ(q, qr);
  // Round trips are exact for f32 and within the type's rounding otherwise.
  for (GgmlType type : kTypes) {
    std::vector<uint8_t> bytes(kv_head_bytes(type, 96));
    std::vector<float> in = randn(96, rng, 1.f), back(96);
    store_row(type, in.data(), bytes.data(), 96);
    load_row(type, bytes.data(), back.data(), 96);
    const double rel = type == GgmlType::F32 ? 0.0 : type == GgmlType::F16 ? 1.0 / 2048 : type == GgmlType::BF16 ? 1.0 / 256 : 0.0;
    for (int i = 0; i < 96; ++i) {
      if (type == GgmlType::Q8_0) {
        float amax = 0;
        for (int j = i / 32 * 32; j < i / 32 * 32 + 32; ++j) amax = std::max(amax, std::fabs(in[static_cast<size_t>(j)]));
        EXPECT_NEAR(back[static_cast<size_t>(i)], in[static_cast<size_t>(i)], amax / 127.0 * 0.51 + amax * 1e-3);
      } else {
        EXPECT_NEAR(back[static_cast<size_t>(i)], in[static_cast<size_t>(i)], rel * std::fabs(in[static_cast<size_t>(i)]));
      }
    }
  }
}
