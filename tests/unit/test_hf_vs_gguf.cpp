// The same random weights loaded from a Hugging Face folder and from a GGUF
// file (make-test-model, same seed) give the same logits: max |Δlogit| <= 1e-4
// over every position of a prompt longer than three sliding windows, for every
// tiny family. Exercises the two loaders end to end (tensor renaming, HF's
// fused/split expert layout vs GGUF's, partial-rotary config vs GGUF
// rope_freqs, per-layer KV heads, PLE tables) through the forward pass.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "test_util.h"
#include "model/forward.h"
#include "tools/test_model.h"

namespace fs = std::filesystem;
using namespace g4;

namespace {

fs::path temp_dir() { return testutil::process_temp_dir("g4_hf_vs_gguf"); }

// Deterministic ids in [3, vocab) after BOS.
std::vector<int32_t> prompt(int64_t n, int vocab, uint64_t seed) {
  std::vector<int32_t> ids{2};
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
  while (static_cast<int64_t>(ids.size()) < n) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    ids.push_back(3 + static_cast<int32_t>((x >> 33) % static_cast<uint64_t>(vocab - 3)));
  }
  return ids;
}

std::vector<float> all_logits(const std::string& path, const std::vector<int32_t>& ids, int64_t batch) {
  ModelParams p;
  p.n_ctx = static_cast<int64_t>(ids.size());
  p.max_batch = batch;
  p.n_threads = 2;
  auto m = Model::open(path, p);
  std::vector<float> out;
  for (size_t b = 0; b < ids.size(); b += static_cast<size_t>(batch)) {
    const size_t n = std::min(ids.size() - b, static_cast<size_t>(batch));
    auto l = m->forward(std::span<const int32_t>(ids.data() + b, n), LogitsMode::All);
    out.insert(out.end(), l.begin(), l.end());
  }
  return out;
}

}  // namespace

class HfVsGguf : public ::testing::TestWithParam<std::tuple<TestArch, GgmlType>> {};

TEST_P(HfVsGguf, SameLogitsOverEveryPositionOfALongPrompt) {
  const auto [arch, type] = GetParam();
  const std::string tag = std::string(test_arch_name(arch)) + "-" + ggml_type_name(type);
  TestModelOptions o;
  o.arch = arch;
  o.type = type;
  o.seed = 2024;
  o.threads = 2;
  o.format = TestFormat::Gguf;
  o.out = (temp_dir() / (tag + ".gguf")).string();
  const TestModelResult g = write_test_model(o);
  o.format = TestFormat::Hf;
  o.out = (temp_dir() / (tag + "-hf")).string();
  const TestModelResult h = write_test_model(o);

  const ModelConfig& c = g.config;
  const int64_t W = c.sliding_window;
  const std::vector<int32_t> ids = prompt(3 * W + 7, c.vocab_size, 99);
  ASSERT_GT(static_cast<int64_t>(ids.size()), 3 * W);
  // Chunks of 13 tokens: prefill chunks straddle the window boundaries.
  const std::vector<float> a = all_logits(g.path, ids, 13);
  const std::vector<float> b = all_logits(h.path, ids, 13);
  ASSERT_EQ(a.size(), ids.size() * static_cast<size_t>(c.vocab_size));
  ASSERT_EQ(a.size(), b.size());
  double worst = 0, scale = 0;
  size_t worst_at = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(std::isfinite(a[i]) && std::isfinite(b[i])) << i;
    const double d = std::fabs(static_cast<double>(a[i]) - b[i]);
    if (d > worst) {
      worst = d;
      worst_at = i;
    }
    scale = std::max(scale, std::fabs(static_cast<double>(a[i])));
  }
  std::cout << "[ " << tag << " ] " << ids.size() << " positions (window " << W << "): max |dlogit| " << worst
            << " (max |logit| " << scale << ")\n";
  EXPECT_LE(worst, 1e-4) << "at position " << worst_at / static_cast<size_t>(c.vocab_size) << ", token "
                         << worst_at % static_cast<size_t>(c.vocab_size);
  EXPECT_GT(scale, 1.0);  // not a degenerate all-zero output
}

INSTANTIATE_TEST_SUITE_P(
    TinyFamilies, HfVsGguf,
    ::testing::Combine(::testing::Values(TestArch::E2B, TestArch::E4B, TestArch::A26B, TestArch::D31B),
                       ::testing::Values(GgmlType::F32, GgmlType::F16)),
    [](const auto& info) {
      std::string n = std::string(test_arch_name(std::get<0>(info.param))) + "_" + ggml_type_name(std::get<1>(info.param));
      for (char& ch : n)
        if (ch == '-') ch = '_';
      return n;
    });
