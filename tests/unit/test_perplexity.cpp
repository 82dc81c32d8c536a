// Perplexity / KL (tools/perplexity.h) on tiny models. The reference NLL is
// recomputed here from the model's full logits in long double, chunk by
// chunk, with llama-perplexity's rules written out independently: <bos>
// replaces each chunk's first token, positions ctx/2 .. ctx-2 are scored.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "model/forward.h"
#include "test_util.h"
#include "tools/perplexity.h"
#include "tools/quantize.h"
#include "tools/test_model.h"

namespace g4 {
namespace {

namespace fs = std::filesystem;
using testutil::expect_error;

fs::path tmpdir() { return testutil::process_temp_dir("g4_ppl"); }

std::string make_model(TestArch arch, GgmlType type) {
  TestModelOptions o;
  o.arch = arch;
  o.type = type;
  o.seed = 3;
  o.threads = 2;
  o.out = (tmpdir() / (std::string(test_arch_name(arch)) + "-" + ggml_type_name(type) + ".gguf")).string();
  if (!fs::exists(o.out)) write_test_model(o);
  return o.out;
}

std::unique_ptr<Model> open_model(const std::string& path, int64_t ctx) {
  ModelParams p;
  p.n_ctx = ctx;
  p.max_batch = 5;  // the scored half crosses several forward calls
  p.n_threads = 2;
  return Model::open(path, p);
}

std::vector<int32_t> text_ids(int64_t n, int vocab) {
  std::vector<int32_t> ids{2};
  uint64_t x = 777;
  while (static_cast<int64_t>(ids.size()) < n) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    ids.push_back(3 + static_cast<int32_t>((x >> 33) % static_cast<uint64_t>(vocab - 3)));
  }
  return ids;
}

TEST(Perplexity, EqualsExpOfTheMeanNllOverTheScoredHalves) {
  const std::string path = make_model(TestArch::E2B, GgmlType::F32);
  const int64_t ctx = 24;
  const std::vector<int32_t> ids = text_ids(3 * ctx + 7, 1024);  // 3 chunks, 7 tokens left over
  auto m = open_model(path, ctx);
  PerplexityOptions o;
  o.ctx = ctx;
  std::vector<double> seen;
  const PerplexityResult r =
      run_perplexity(*m, nullptr, ids, o, [&](const PerplexityChunk& c) { seen.push_back(c.ppl); });
  ASSERT_EQ(r.n_chunks, 3);
  EXPECT_EQ(r.n_scored, 3 * (ctx - ctx / 2 - 1));

  // Reference: whole chunks with every position's logits, in long double.
  auto ref = open_model(path, ctx);
  long double nll = 0, nll2 = 0;
  int64_t n = 0;
  std::vector<double> running;
  for (int64_t c = 0; c < 3; ++c) {
    std::vector<int32_t> chunk(ids.begin() + c * ctx, ids.begin() + (c + 1) * ctx);
    chunk[0] = 2;  // <bos>
    ref->reset();
    std::vector<float> all;
    for (int64_t b = 0; b < ctx; b += 5) {
      const auto l =
          ref->forward(std::span<const int32_t>(chunk.data() + b, std::min<int64_t>(5, ctx - b)), LogitsMode::All);
      all.insert(all.end(), l.begin(), l.end());
    }
    const int64_t V = ref->vocab_size();
    for (int64_t pos = ctx / 2; pos <= ctx - 2; ++pos) {
      const float* row = all.data() + pos * V;
      long double mx = row[0], s = 0;
      for (int64_t i = 1; i < V; ++i) mx = std::max<long double>(mx, row[i]);
      for (int64_t i = 0; i < V; ++i) s += std::exp(static_cast<long double>(row[i]) - mx);
      const long double v = mx + std::log(s) - row[chunk[pos + 1]];
      nll += v;
      nll2 += v * v;
      ++n;
    }
    running.push_back(static_cast<double>(std::exp(nll / n)));
  }
  const long double mean = nll / n;
  EXPECT_NEAR(r.mean_nll, static_cast<double>(mean), 1e-9);
  EXPECT_NEAR(r.ppl, static_cast<double>(std::exp(mean)), 1e-9 * r.ppl);
  const long double var = nll2 / n - mean * mean;
  EXPECT_NEAR(r.ppl_err, static_cast<double>(std::exp(mean) * std::sqrt(var / (n - 1))), 1e-9 * r.ppl);
  ASSERT_EQ(seen.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_NEAR(seen[i], running[i], 1e-9 * running[i]);
    EXPECT_NEAR(r.chunk_ppl[i], running[i], 1e-9 * running[i]);
  }
  EXPECT_GT(r.ppl, 1.0);
  EXPECT_FALSE(r.has_base);
}

TEST(Perplexity, ChunksOptionLimitsTheWork) {
  const std::string path = make_model(TestArch::D31B, GgmlType::F32);
  auto m = open_model(path, 16);
  PerplexityOptions o;
  o.ctx = 16;
  o.chunks = 2;
  const PerplexityResult r = run_perplexity(*m, nullptr, text_ids(100, 1024), o);
  EXPECT_EQ(r.n_chunks, 2);
  EXPECT_EQ(r.n_scored, 2 * 7);
}

TEST(Perplexity, KlOfAModelAgainstItselfIsZero) {
  const std::string path = make_model(TestArch::A26B, GgmlType::F32);
  auto a = open_model(path, 16), b = open_model(path, 16);
  PerplexityOptions o;
  o.ctx = 16;
  const PerplexityResult r = run_perplexity(*a, b.get(), text_ids(48, 1024), o);
  ASSERT_TRUE(r.has_base);
  EXPECT_EQ(r.kl_mean, 0.0);
  EXPECT_EQ(r.kl_max, 0.0);
  EXPECT_EQ(r.same_top, 1.0);
  EXPECT_EQ(r.ppl, r.ppl_base);
  EXPECT_EQ(r.ln_ppl_ratio, 0.0);
  EXPECT_EQ(r.rms_dp, 0.0);
}

TEST(Perplexity, KlOfAQuantizedModel) {
  const std::string f32 = make_model(TestArch::E4B, GgmlType::F32);
  const std::string q8 = make_model(TestArch::E4B, GgmlType::Q8_0);
  auto base = open_model(f32, 16), q = open_model(q8, 16);
  PerplexityOptions o;
  o.ctx = 16;
  const PerplexityResult r = run_perplexity(*q, base.get(), text_ids(64, 1024), o);
  std::printf("[ppl e4b q8_0 vs f32] PPL %.4f vs %.4f, KL mean %.3g p99 %.3g max %.3g, same top %.1f %%\n", r.ppl,
              r.ppl_base, r.kl_mean, r.kl_p99, r.kl_max, 100 * r.same_top);
  EXPECT_GT(r.kl_mean, 0.0);
  EXPECT_LT(r.kl_mean, 0.05);
  EXPECT_LE(r.kl_min, r.kl_median);
  EXPECT_LE(r.kl_median, r.kl_p90);
  EXPECT_LE(r.kl_p90, r.kl_p95);
  EXPECT_LE(r.kl_p95, r.kl_p99);
  EXPECT_LE(r.kl_p99, r.kl_max);
  EXPECT_GE(r.same_top, 0.5);
  EXPECT_LE(r.same_top, 1.0);
  EXPECT_NEAR(r.ln_ppl_ratio, std::log(r.ppl / r.ppl_base), 1e-9);
}

TEST(Perplexity, PercentileIsLlamasInterpolation) {
  const std::vector<double> v = {0, 1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(sorted_percentile(v, 0.99), 3.96);  // 0.99 x 4 = 3.96: between ranks 3 and 4
  EXPECT_DOUBLE_EQ(sorted_percentile(v, 0.5), 2.0);
  EXPECT_DOUBLE_EQ(sorted_percentile(v, 0.0), 0.0);
  EXPECT_DOUBLE_EQ(sorted_percentile(v, 1.0), 4.0);
}

TEST(Perplexity, Errors) {
  const std::string path = make_model(TestArch::D31B, GgmlType::F32);
  auto m = open_model(path, 16);
  PerplexityOptions o;
  o.ctx = 16;
  expect_error([&] { run_perplexity(*m, nullptr, text_ids(31, 1024), o); }, {"at least 32 tokens", "31"});
  o.ctx = 2;
  expect_error([&] { run_perplexity(*m, nullptr, text_ids(40, 1024), o); }, {"--ctx must be at least 4"});
  o.ctx = 32;
  expect_error([&] { run_perplexity(*m, nullptr, text_ids(64, 1024), o); }, {"context holds 16"});
  o.ctx = 16;
  std::vector<int32_t> bad = text_ids(40, 1024);
  bad[20] = 5000;
  expect_error([&] { run_perplexity(*m, nullptr, bad, o); }, {"token id 5000"});
}

}  // namespace
}  // namespace g4
