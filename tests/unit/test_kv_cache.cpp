// KV cache element types through the whole model, on the tiny random-weight
// models of all four families (f32 weights, so only the cache differs):
//  * f16 / bf16 / q8_0 caches against the f32 cache: KL(f32 || type) and
//    max |Δ log-prob| over every position of a prompt that wraps the sliding
//    rings three times, within bounds measured on these models;
//  * for every type and attention ISA: whole-prompt prefill, token-by-token
//    decode and chunks of 7 give the same logits bit for bit (each attention
//    row is independent of its chunk; see kernels/attention.h);
//  * the attention ISAs agree with each other through the model;
//  * the decode loop allocates nothing, for every type.
// (KV byte accounting and lazy commit: test_memory.cpp; the kernels on their
// own: test_attention.cpp; f32-cache logits against the official
// implementation: the golden tests in test_forward.cpp.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "alloc_counter.h"  // replaces operator new in this test binary
#include "test_util.h"
#include "kernels/attention.h"
#include "model/forward.h"
#include "tools/test_model.h"

using namespace g4;

namespace {

constexpr TestArch kArchs[] = {TestArch::E2B, TestArch::E4B, TestArch::A26B, TestArch::D31B};

std::string model_path(TestArch arch) {
  static std::map<TestArch, std::string> made;
  auto it = made.find(arch);
  if (it != made.end()) return it->second;
  TestModelOptions o;
  o.arch = arch;
  o.type = GgmlType::F32;
  o.seed = 3;
  o.threads = 2;
  o.out = (testutil::process_temp_dir("g4_kv") / (std::string(test_arch_name(arch)) + ".gguf")).string();
  write_test_model(o);
  return made[arch] = o.out;
}

std::vector<int32_t> prompt(int64_t n, int vocab, uint64_t seed) {
  std::vector<int32_t> ids{2};
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 7;
  while (static_cast<int64_t>(ids.size()) < n) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    ids.push_back(3 + static_cast<int32_t>((x >> 33) % static_cast<uint64_t>(vocab - 3)));
  }
  return ids;
}

// Every position's logits, fed in pieces of `chunk` tokens (1 = decode).
std::vector<float> logits(const std::string& path, const std::vector<int32_t>& ids, GgmlType kv, int64_t chunk,
                          std::optional<attn::Isa> isa = std::nullopt) {
  ModelParams p;
  p.n_ctx = static_cast<int64_t>(ids.size());
  p.max_batch = chunk;
  p.n_threads = 2;
  p.kv_type = kv;
  p.attn_isa = isa;
  auto m = Model::open(path, p);
  EXPECT_EQ(m->cache().type(), kv);
  std::vector<float> out;
  for (size_t b = 0; b < ids.size(); b += static_cast<size_t>(chunk)) {
    const size_t n = std::min(ids.size() - b, static_cast<size_t>(chunk));
    auto l = m->forward(std::span<const int32_t>(ids.data() + b, n), LogitsMode::All);
    out.insert(out.end(), l.begin(), l.end());
  }
  return out;
}

// Worst over positions of KL(p || q) and of max |log p − log q| (log-softmax in double).
struct Divergence {
  double kl = 0, max_dlp = 0;
};
Divergence divergence(const std::vector<float>& p_logits, const std::vector<float>& q_logits, size_t V) {
  Divergence d;
  std::vector<double> lp(V), lq(V);
  auto log_softmax = [V](const float* x, std::vector<double>& out) {
    double mx = x[0], s = 0;
    for (size_t i = 1; i < V; ++i) mx = std::max(mx, static_cast<double>(x[i]));
    for (size_t i = 0; i < V; ++i) s += std::exp(x[i] - mx);
    const double lse = mx + std::log(s);
    for (size_t i = 0; i < V; ++i) out[i] = x[i] - lse;
  };
  for (size_t r = 0; r < p_logits.size() / V; ++r) {
    log_softmax(p_logits.data() + r * V, lp);
    log_softmax(q_logits.data() + r * V, lq);
    double kl = 0;
    for (size_t i = 0; i < V; ++i) {
      kl += std::exp(lp[i]) * (lp[i] - lq[i]);
      d.max_dlp = std::max(d.max_dlp, std::fabs(lp[i] - lq[i]));
    }
    d.kl = std::max(d.kl, kl);
  }
  return d;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m;
}

std::vector<attn::Isa> attention_isas() {
  std::vector<attn::Isa> v;
  for (int i = 0; i < attn::kIsaCount; ++i)
    if (attn::isa_available(static_cast<attn::Isa>(i))) v.push_back(static_cast<attn::Isa>(i));
  return v;
}

// Bounds per cache type vs the f32 cache, worst position of a 3W+5-token
// prompt. Measured on these models (all four families, every attention ISA,
// this prompt and a second one of 130 tokens):
//   f16:  KL ≤ 5.1e-6, max |Δ log-prob| ≤ 0.013
//   bf16: KL ≤ 3.7e-4, max |Δ log-prob| ≤ 0.10
//   q8_0: KL ≤ 3.2e-3, max |Δ log-prob| ≤ 0.32 (e4b, the prompt of tests/cli/kv_type.sh)
// (random tiny models are far more sensitive than trained ones: the same
// rounding on the matmul activations moves them by KL ~1e-3..1e-2).
// The bounds leave ~3× headroom.
struct Bound {
  GgmlType type;
  double kl, max_dlp;
};
constexpr Bound kBounds[] = {
    {GgmlType::F16, 2e-5, 0.03},
    {GgmlType::BF16, 1.5e-3, 0.3},
    {GgmlType::Q8_0, 8e-3, 0.8},
};

}  // namespace

TEST(KvCacheTypes, ReducedPrecisionCachesStayCloseToF32) {
  for (TestArch arch : kArchs) {
    const std::string path = model_path(arch);
    const ModelConfig c = Checkpoint::open(path).config();
    const std::vector<int32_t> ids = prompt(3 * c.sliding_window + 5, c.vocab_size, 11);
    const size_t V = static_cast<size_t>(c.vocab_size);
    const std::vector<float> ref = logits(path, ids, GgmlType::F32, 16);
    for (const Bound& b : kBounds) {
      const std::vector<float> got = logits(path, ids, b.type, 16);
      const Divergence d = divergence(ref, got, V);
      std::printf("  %-8s %-5s vs f32 cache: KL %.2e, max |dlogprob| %.3g\n", test_arch_name(arch),
                  attn::kv_type_name(b.type).c_str(), d.kl, d.max_dlp);
      EXPECT_LE(d.kl, b.kl) << test_arch_name(arch) << " " << attn::kv_type_name(b.type);
      EXPECT_LE(d.max_dlp, b.max_dlp) << test_arch_name(arch) << " " << attn::kv_type_name(b.type);
      EXPECT_GT(d.max_dlp, 0.0) << "the cache type made no difference at all: was it used?";
    }
  }
}

TEST(KvCacheTypes, PrefillDecodeAndChunksAgreeBitForBit) {
  for (TestArch arch : kArchs) {
    const std::string path = model_path(arch);
    const ModelConfig c = Checkpoint::open(path).config();
    const std::vector<int32_t> ids = prompt(2 * c.sliding_window + 3, c.vocab_size, 5);
    for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0}) {
      for (attn::Isa isa : attention_isas()) {
        SCOPED_TRACE(std::string(test_arch_name(arch)) + " " + attn::kv_type_name(type) + " " + attn::isa_name(isa));
        const std::vector<float> whole = logits(path, ids, type, 64, isa);
        const std::vector<float> decode = logits(path, ids, type, 1, isa);
        const std::vector<float> sevens = logits(path, ids, type, 7, isa);
        ASSERT_EQ(whole.size(), decode.size());
        EXPECT_EQ(0, std::memcmp(whole.data(), decode.data(), whole.size() * sizeof(float)));
        EXPECT_EQ(0, std::memcmp(whole.data(), sevens.data(), whole.size() * sizeof(float)));
      }
    }
  }
}

TEST(KvCacheTypes, AttentionIsasAgreeThroughTheModel) {
  // f32 cache, same matmul kernels: only the attention kernels' fp32 rounding
  // differs. Measured max |Δ logit| ≤ ~2e-5.
  for (TestArch arch : kArchs) {
    const std::string path = model_path(arch);
    const ModelConfig c = Checkpoint::open(path).config();
    const std::vector<int32_t> ids = prompt(3 * c.sliding_window + 5, c.vocab_size, 2);
    const std::vector<float> ref = logits(path, ids, GgmlType::F32, 16, attn::Isa::Scalar);
    for (attn::Isa isa : attention_isas()) {
      const double d = max_abs_diff(logits(path, ids, GgmlType::F32, 16, isa), ref);
      std::printf("  %-8s attention %-6s vs scalar (f32 cache): max |dlogit| %.3g\n", test_arch_name(arch),
                  attn::isa_name(isa), d);
      EXPECT_LE(d, 1e-4) << test_arch_name(arch) << " " << attn::isa_name(isa);
    }
  }
}

TEST(KvCacheTypes, DecodeLoopDoesNotAllocate) {
  if (!G4_COUNT_ALLOCS) GTEST_SKIP() << "allocation counting is off under AddressSanitizer";
  const std::string path = model_path(TestArch::E2B);
  for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0}) {
    ModelParams p;
    p.n_ctx = 128;
    p.max_batch = 16;
    p.n_threads = 2;
    p.kv_type = type;
    auto m = Model::open(path, p);
    const std::vector<int32_t> ids = prompt(40, static_cast<int>(m->vocab_size()), 9);
    m->forward(ids);
    int32_t next = 5;
    m->forward(std::span<const int32_t>(&next, 1));  // first decode step (warm-up)
    const long before = g_allocs.load();
    for (int step = 0; step < 60; ++step) {  // across the sliding rings' wrap
      next = static_cast<int32_t>((next * 31 + 7) % m->vocab_size());
      m->forward(std::span<const int32_t>(&next, 1));
    }
    EXPECT_EQ(g_allocs.load(), before) << attn::kv_type_name(type) << ": the decode loop allocated";
  }
}
