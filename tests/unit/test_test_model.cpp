// make-test-model: configs, vocabulary, determinism, and that the GGUF and HF
// outputs of one seed open as checkpoints with identical weights.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/tensor_specs.h"
#include "model/weights.h"
#include "text/tokenizer.h"
#include "tools/checksum.h"
#include "tools/test_model.h"

namespace fs = std::filesystem;
using namespace g4;

namespace {

const TestArch kArchs[] = {TestArch::E2B, TestArch::E4B, TestArch::A26B, TestArch::D31B};

fs::path temp_dir() { return testutil::process_temp_dir("g4_test_model"); }

// Every config field that both formats carry.
void expect_same_config(const ModelConfig& a, const ModelConfig& b, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.hidden, b.hidden);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.n_kv_heads, b.n_kv_heads);
  EXPECT_EQ(a.n_global_kv_heads, b.n_global_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.global_head_dim, b.global_head_dim);
  EXPECT_EQ(a.ffn_dim, b.ffn_dim);
  EXPECT_EQ(a.double_wide_mlp, b.double_wide_mlp);
  EXPECT_EQ(a.n_kv_shared_layers, b.n_kv_shared_layers);
  EXPECT_EQ(a.ple_dim, b.ple_dim);
  EXPECT_EQ(a.ple_vocab, b.ple_vocab);
  EXPECT_EQ(a.moe, b.moe);
  EXPECT_EQ(a.n_experts, b.n_experts);
  EXPECT_EQ(a.n_experts_used, b.n_experts_used);
  EXPECT_EQ(a.expert_ffn_dim, b.expert_ffn_dim);
  EXPECT_EQ(a.k_eq_v, b.k_eq_v);
  EXPECT_EQ(a.sliding_window, b.sliding_window);
  EXPECT_EQ(a.layer_types, b.layer_types);
  EXPECT_FLOAT_EQ(a.rope_theta_sliding, b.rope_theta_sliding);
  EXPECT_FLOAT_EQ(a.rope_theta_full, b.rope_theta_full);
  EXPECT_FLOAT_EQ(a.partial_rotary_factor_full, b.partial_rotary_factor_full);
  EXPECT_FLOAT_EQ(a.final_softcap, b.final_softcap);
  EXPECT_FLOAT_EQ(a.rms_eps, b.rms_eps);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.max_context, b.max_context);
  EXPECT_EQ(a.bos_id, b.bos_id);
  EXPECT_EQ(a.eos_id, b.eos_id);
  EXPECT_EQ(a.pad_id, b.pad_id);
  EXPECT_EQ(a.tie_embeddings, b.tie_embeddings);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) {
    SCOPED_TRACE("layer " + std::to_string(i));
    const LayerConfig &x = a.layers[i], &y = b.layers[i];
    EXPECT_EQ(x.type, y.type);
    EXPECT_EQ(x.head_dim, y.head_dim);
    EXPECT_EQ(x.n_kv_heads, y.n_kv_heads);
    EXPECT_EQ(x.ffn_dim, y.ffn_dim);
    EXPECT_EQ(x.k_eq_v, y.k_eq_v);
    EXPECT_EQ(x.has_kv, y.has_kv);
    EXPECT_EQ(x.kv_source, y.kv_source);
    EXPECT_FLOAT_EQ(x.rope_theta, y.rope_theta);
    EXPECT_EQ(x.rope_rotated_dims, y.rope_rotated_dims);
  }
}

// The tensors a generated checkpoint holds (what write_test_model writes).
std::vector<TensorSpec> written_specs(const ModelConfig& c, TestFormat f) {
  std::vector<TensorSpec> out;
  for (TensorSpec& s : text_tensor_specs(c, true)) {
    if (!(s.required || s.role == TensorRole::RopeFreqs || s.layer >= 0)) continue;
    if (f == TestFormat::Hf && s.hf_name.empty()) continue;
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<uint8_t> read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

double param_count(const ModelConfig& c) {
  double n = 0;
  for (const TensorSpec& s : text_tensor_specs(c, /*include_dead=*/false)) {
    if (!s.required) continue;
    double e = 1;
    for (int64_t d : s.ne) e *= static_cast<double>(d);
    n += e;
  }
  return n;
}

}  // namespace

// ---------------------------------------------------------------------------

TEST(Checksum, Xxh64KnownVectors) {
  EXPECT_EQ(xxh64("", 0), 0xEF46DB3751D8E999ULL);
  EXPECT_EQ(xxh64("a", 1), 0xD24EC4F1A98C6E5BULL);
  EXPECT_EQ(xxh64("abc", 3), 0x44BC2CF5AD770999ULL);
  EXPECT_EQ(checksum_hex(0xEF46DB3751D8E999ULL), "ef46db3751d8e999");
}

TEST(Checksum, StreamingMatchesOneShot) {
  std::vector<uint8_t> data(1000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 131 + 7);
  for (size_t len : {0u, 1u, 3u, 4u, 7u, 8u, 31u, 32u, 33u, 63u, 64u, 100u, 1000u}) {
    const uint64_t want = xxh64(data.data(), len, 42);
    for (size_t step : {1u, 5u, 13u, 32u, 40u}) {
      Xxh64 s(42);
      for (size_t i = 0; i < len; i += step) s.update(data.data() + i, std::min(step, len - i));
      EXPECT_EQ(s.digest(), want) << "len " << len << " step " << step;
    }
  }
}

TEST(Checksum, ValueChecksumIgnoresStorageType) {
  const float vals[4] = {1.0f, -0.5f, 0.25f, 3.0f};
  uint16_t bf[4], hf[4];
  for (int i = 0; i < 4; ++i) bf[i] = f32_to_bf16(vals[i]), hf[i] = f32_to_fp16(vals[i]);
  TensorView a, b, c;
  a.type = GgmlType::F32, a.data = reinterpret_cast<const uint8_t*>(vals), a.nbytes = 16, a.ne = {4};
  b.type = GgmlType::BF16, b.data = reinterpret_cast<const uint8_t*>(bf), b.nbytes = 8, b.ne = {4};
  c.type = GgmlType::F16, c.data = reinterpret_cast<const uint8_t*>(hf), c.nbytes = 8, c.ne = {4};
  EXPECT_EQ(tensor_value_checksum(a), tensor_value_checksum(b));
  EXPECT_EQ(tensor_value_checksum(a), tensor_value_checksum(c));
  EXPECT_NE(tensor_checksum(a), tensor_checksum(b));
}

// ---------------------------------------------------------------------------

TEST(TestModelConfig, FullMatchesReleasedModels) {
  const Variant want[] = {Variant::E2B, Variant::E4B, Variant::A26B, Variant::D31B};
  // Text parameters without the dead K/V of shared layers (spec §1.1).
  const double params[] = {4.63e9, 7.46e9, 25.23e9, 30.70e9};
  for (int i = 0; i < 4; ++i) {
    const ModelConfig c = test_model_config(kArchs[i], TestScale::Full, 262144);
    SCOPED_TRACE(test_arch_name(kArchs[i]));
    EXPECT_EQ(c.variant(), want[i]);
    EXPECT_NEAR(param_count(c) / params[i], 1.0, 0.005);
  }
}

TEST(TestModelConfig, TinyKeepsEveryMechanism) {
  for (TestArch a : kArchs) {
    const ModelConfig c = test_model_config(a, TestScale::Tiny, 1024);
    SCOPED_TRACE(test_arch_name(a));
    EXPECT_EQ(c.variant(), Variant::Custom);
    EXPECT_LE(c.hidden, 128);
    EXPECT_NE(c.head_dim, c.global_head_dim);
    EXPECT_GE(c.sliding_window, 16);
    EXPECT_LE(c.sliding_window, 32);
    bool sliding = false, full = false;
    for (const LayerConfig& l : c.layers) {
      sliding |= l.type == LayerType::Sliding;
      full |= l.type == LayerType::Full;
      EXPECT_EQ(l.head_dim, l.type == LayerType::Sliding ? c.head_dim : c.global_head_dim);
    }
    EXPECT_TRUE(sliding && full);
    if (c.n_kv_shared_layers > 0) {
      // llama.cpp hard-codes the donors as first_shared-2 (sliding) and
      // first_shared-1 (full); the generated pattern must agree with the HF rule.
      const int fs_ = c.first_kv_shared_layer();
      ASSERT_GE(fs_, 2);
      EXPECT_EQ(c.layer_types[fs_ - 1], LayerType::Full);
      EXPECT_EQ(c.layer_types[fs_ - 2], LayerType::Sliding);
      for (int i = fs_; i < c.n_layers; ++i) {
        EXPECT_FALSE(c.layers[i].has_kv);
        EXPECT_EQ(c.layers[i].kv_source, c.layers[i].type == LayerType::Full ? fs_ - 1 : fs_ - 2);
      }
    }
  }
  const ModelConfig e2b = test_model_config(TestArch::E2B, TestScale::Tiny, 1024);
  EXPECT_EQ(e2b.ple_dim, 16);
  EXPECT_TRUE(e2b.double_wide_mlp);
  EXPECT_EQ(e2b.layers.back().ffn_dim, 2 * e2b.layers.front().ffn_dim);
  EXPECT_GT(e2b.n_kv_shared_layers, 0);
  const ModelConfig e4b = test_model_config(TestArch::E4B, TestScale::Tiny, 1024);
  EXPECT_GT(e4b.n_kv_shared_layers, 0);
  EXPECT_EQ(e4b.n_kv_heads, 2);
  for (TestArch a : {TestArch::A26B, TestArch::D31B}) {
    const ModelConfig c = test_model_config(a, TestScale::Tiny, 1024);
    EXPECT_TRUE(c.k_eq_v);
    EXPECT_NE(c.n_kv_heads, c.n_global_kv_heads);
  }
  const ModelConfig moe = test_model_config(TestArch::A26B, TestScale::Tiny, 1024);
  EXPECT_TRUE(moe.moe);
  EXPECT_GT(moe.n_experts, moe.n_experts_used);
  EXPECT_GT(moe.n_experts_used, 1);
}

TEST(TestModelConfig, Names) {
  for (TestArch a : kArchs) EXPECT_EQ(test_arch_from_name(test_arch_name(a)), a);
  EXPECT_FALSE(test_arch_from_name("e3b").has_value());
  EXPECT_EQ(test_scale_from_name("full"), TestScale::Full);
  EXPECT_EQ(test_format_from_name("hf"), TestFormat::Hf);
}

// ---------------------------------------------------------------------------

TEST(TestVocab, SyntheticLayoutAndMerges) {
  const TestVocab v = synthetic_test_vocab(1024);
  ASSERT_EQ(v.size(), 1024);
  EXPECT_EQ(v.tokens[0], "<pad>");
  EXPECT_EQ(v.tokens[1], "<eos>");
  EXPECT_EQ(v.tokens[2], "<bos>");
  EXPECT_EQ(v.tokens[46], "<|tool>");
  EXPECT_EQ(v.tokens[52], "<|\"|>");
  EXPECT_EQ(v.tokens[98], "<|think|>");
  EXPECT_EQ(v.tokens[100], "<|channel>");
  EXPECT_EQ(v.tokens[105], "<|turn>");
  EXPECT_EQ(v.tokens[106], "<turn|>");
  EXPECT_EQ(v.tokens[107], "\n");
  EXPECT_EQ(v.tokens[138], "\xE2\x96\x81\xE2\x96\x81");
  EXPECT_EQ(v.tokens[168], "<table>");
  EXPECT_EQ(v.tokens[238], "<0x00>");
  EXPECT_EQ(v.tokens[493], "<0xFF>");
  EXPECT_EQ(v.token_types[238], 6);
  EXPECT_EQ(v.token_types[105], 3);
  EXPECT_EQ(v.token_types[48], 4);
  std::map<std::string, int> index;
  for (int i = 0; i < v.size(); ++i) EXPECT_TRUE(index.emplace(v.tokens[i], i).second) << "duplicate " << v.tokens[i];
  EXPECT_GT(v.merges.size(), 500u);
  std::set<std::string> seen;
  for (const std::string& m : v.merges) {
    EXPECT_TRUE(seen.insert(m).second) << "duplicate merge " << m;
    const size_t sp = m.find(' ', 1);
    ASSERT_NE(sp, std::string::npos);
    const std::string a = m.substr(0, sp), b = m.substr(sp + 1);
    EXPECT_TRUE(index.count(a)) << m;
    EXPECT_TRUE(index.count(b)) << m;
    EXPECT_TRUE(index.count(a + b)) << m;
  }
  EXPECT_TRUE(index.count("\xE2\x96\x81the"));
}

TEST(TestVocab, RealVocabLoads) {
  const fs::path p = fs::path(GEMMA4_SOURCE_DIR) / "tests/oracle/llama.cpp-src/models/ggml-vocab-gemma-4.gguf";
  if (!fs::exists(p)) GTEST_SKIP() << "no " << p;
  const TestVocab v = load_test_vocab(p.string());
  EXPECT_TRUE(v.real);
  EXPECT_EQ(v.size(), 262144);
  EXPECT_EQ(v.merges.size(), 514906u);
  EXPECT_EQ(v.tokens[106], "<turn|>");
  EXPECT_FALSE(v.chat_template.empty());
}

// ---------------------------------------------------------------------------

TEST(TestModelWeights, InitRangesAndDeterminism) {
  const ModelConfig c = test_model_config(TestArch::A26B, TestScale::Tiny, 1024);
  std::vector<float> a(4096), b(4096);
  for (const TensorSpec& s : text_tensor_specs(c, true)) {
    const TestInit init = test_init_for(s, c);
    if (init.fixed) continue;
    const uint64_t n = std::min<uint64_t>(4096, [&] {
      uint64_t e = 1;
      for (int64_t d : s.ne) e *= d;
      return e;
    }());
    generate_test_values(test_tensor_key(1, s), init, 0, n, a.data());
    generate_test_values(test_tensor_key(1, s), init, 0, n, b.data());
    for (uint64_t i = 0; i < n; ++i) {
      ASSERT_EQ(a[i], b[i]);
      if (i >= init.zero_begin && i < init.zero_end) {  // the MoE router's channels
        ASSERT_EQ(a[i], 0.f) << s.gguf_name << "[" << i << "]";
        continue;
      }
      ASSERT_GE(a[i], init.lo) << s.gguf_name;
      ASSERT_LT(a[i], init.hi) << s.gguf_name;
    }
    if (s.gguf_name.ends_with("layer_output_scale.weight")) {
      EXPECT_GE(init.lo, 0.3f);
      EXPECT_LE(init.hi, 1.0f);
    }
    const bool branch_post_norm = s.gguf_name.ends_with("post_attention_norm.weight") ||
                                  s.gguf_name.ends_with("post_ffw_norm.weight");
    if (s.role == TensorRole::Norm && !s.gguf_name.ends_with("q_norm.weight") && !s.gguf_name.ends_with("k_norm.weight")) {
      EXPECT_NEAR(0.5f * (init.lo + init.hi), branch_post_norm ? 2.5f : 1.0f, 1e-6) << s.gguf_name;
    }
    // A sub-range equals the same elements of the whole (multi-threading).
    if (n > 100) {
      std::vector<float> part(50);
      generate_test_values(test_tensor_key(1, s), init, 37, 50, part.data());
      for (int i = 0; i < 50; ++i) ASSERT_EQ(part[i], a[37 + i]);
    }
  }
  // Different tensors and seeds give different streams.
  const auto specs = text_tensor_specs(c, true);
  EXPECT_NE(test_tensor_key(1, specs[0]), test_tensor_key(2, specs[0]));
  EXPECT_NE(test_tensor_key(1, specs[1]), test_tensor_key(1, specs[0]));
}

// ---------------------------------------------------------------------------

class TestModelFormats : public ::testing::TestWithParam<std::tuple<TestArch, GgmlType>> {};

TEST_P(TestModelFormats, GgufAndHfHoldIdenticalWeights) {
  const auto [arch, type] = GetParam();
  const std::string tag = std::string(test_arch_name(arch)) + "-" + ggml_type_name(type);
  TestModelOptions o;
  o.arch = arch;
  o.scale = TestScale::Tiny;
  o.type = type;
  o.seed = 1234;
  o.threads = 2;
  o.format = TestFormat::Gguf;
  o.out = (temp_dir() / (tag + ".gguf")).string();
  const TestModelResult rg = write_test_model(o);
  o.format = TestFormat::Hf;
  o.out = (temp_dir() / (tag + "-hf")).string();
  const TestModelResult rh = write_test_model(o);
  const ModelConfig want = test_model_config(arch, TestScale::Tiny, 1024);

  const Checkpoint g = Checkpoint::open(rg.path);
  const Checkpoint h = Checkpoint::open(rh.path);
  EXPECT_EQ(g.format(), CheckpointFormat::Gguf);
  EXPECT_EQ(h.format(), CheckpointFormat::HfSafetensors);
  expect_same_config(g.config(), want, "gguf vs test_model_config");
  expect_same_config(h.config(), want, "hf vs test_model_config");

  // Every tensor of the specs, with its shape and storage type.
  for (TestFormat f : {TestFormat::Gguf, TestFormat::Hf}) {
    const Checkpoint& ck = f == TestFormat::Gguf ? g : h;
    const auto specs = written_specs(want, f);
    EXPECT_EQ((f == TestFormat::Gguf ? rg : rh).n_tensors, specs.size());
    for (const TensorSpec& s : specs) {
      const TensorView* t = ck.tensor(s.gguf_name);
      ASSERT_NE(t, nullptr) << s.gguf_name << (f == TestFormat::Gguf ? " (gguf)" : " (hf)");
      EXPECT_EQ(t->ne, s.ne) << s.gguf_name;
      EXPECT_EQ(t->type, test_tensor_type(s, f, type)) << s.gguf_name;
    }
  }
  // Identical weights: same bytes where the storage type agrees, same values always.
  int compared = 0;
  for (const TensorSpec& s : written_specs(want, TestFormat::Hf)) {
    const TensorView& a = g.require(s.gguf_name);
    const TensorView& b = h.require(s.gguf_name);
    if (a.type == b.type) {
      EXPECT_EQ(tensor_checksum(a), tensor_checksum(b)) << s.gguf_name;
    }
    EXPECT_EQ(tensor_value_checksum(a), tensor_value_checksum(b)) << s.gguf_name;
    ++compared;
  }
  EXPECT_GT(compared, 50);
  // Stored bytes = the generator's values converted by the scalar reference
  // (checks the vectorised F16 path and the documented value stream).
  for (const TensorSpec& s : written_specs(want, TestFormat::Gguf)) {
    if (s.gguf_name != "blk.0.attn_q.weight" && s.gguf_name != "blk.0.attn_norm.weight") continue;
    const TensorView& t = g.require(s.gguf_name);
    const size_t n = t.nelements();
    std::vector<float> vals(n);
    generate_test_values(test_tensor_key(1234, s), test_init_for(s, want), 0, n, vals.data());
    for (size_t i = 0; i < n; ++i) {
      if (t.type == GgmlType::F32) {
        float x, want_x = vals[i];
        if (type == GgmlType::F16) want_x = fp16_to_f32(f32_to_fp16(want_x));
        if (type == GgmlType::BF16) want_x = bf16_to_f32(f32_to_bf16(want_x));
        std::memcpy(&x, t.data + 4 * i, 4);
        ASSERT_EQ(x, want_x) << s.gguf_name << "[" << i << "]";
      } else {
        uint16_t u;
        std::memcpy(&u, t.data + 2 * i, 2);
        ASSERT_EQ(u, t.type == GgmlType::F16 ? f32_to_fp16(vals[i]) : f32_to_bf16(vals[i])) << s.gguf_name << "[" << i << "]";
      }
    }
  }
  // rope_freqs: the proportional-RoPE factors, F32.
  const TensorView& rf = g.require("rope_freqs.weight");
  const std::vector<float> want_rf = rope_freqs_values(want);
  ASSERT_EQ(rf.nbytes, want_rf.size() * 4);
  EXPECT_EQ(std::memcmp(rf.data, want_rf.data(), rf.nbytes), 0);
  // Finite values everywhere.
  for (const TensorView& t : g.tensors()) {
    const size_t n = t.nelements();
    for (size_t i = 0; i < n; ++i) {
      float x;
      if (t.type == GgmlType::F32) {
        std::memcpy(&x, t.data + 4 * i, 4);
      } else {
        uint16_t u;
        std::memcpy(&u, t.data + 2 * i, 2);
        x = t.type == GgmlType::F16 ? fp16_to_f32(u) : bf16_to_f32(u);
      }
      ASSERT_TRUE(std::isfinite(x)) << t.name << "[" << i << "]";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllArchsAndTypes, TestModelFormats,
                         ::testing::Combine(::testing::ValuesIn(kArchs),
                                            ::testing::Values(GgmlType::F32, GgmlType::F16, GgmlType::BF16)),
                         [](const auto& info) {
                           std::string n = std::string(test_arch_name(std::get<0>(info.param))) + "_" +
                                           ggml_type_name(std::get<1>(info.param));
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

TEST(TestModelFiles, SameSeedSameBytesOtherSeedOtherWeights) {
  TestModelOptions o;
  o.arch = TestArch::E2B;
  o.type = GgmlType::BF16;
  o.seed = 5;
  o.out = (temp_dir() / "det-a.gguf").string();
  write_test_model(o);
  o.out = (temp_dir() / "det-b.gguf").string();
  o.threads = 1;
  write_test_model(o);
  o.seed = 6;
  o.out = (temp_dir() / "det-c.gguf").string();
  write_test_model(o);
  const auto a = read_file(temp_dir() / "det-a.gguf"), b = read_file(temp_dir() / "det-b.gguf");
  EXPECT_EQ(a, b);
  const Checkpoint ca = Checkpoint::open((temp_dir() / "det-a.gguf").string());
  const Checkpoint cc = Checkpoint::open((temp_dir() / "det-c.gguf").string());
  EXPECT_NE(tensor_checksum(ca.require("blk.0.attn_q.weight")), tensor_checksum(cc.require("blk.0.attn_q.weight")));
}

TEST(TestModelFiles, HfFolderLooksLikeARelease) {
  TestModelOptions o;
  o.arch = TestArch::A26B;
  o.format = TestFormat::Hf;
  o.type = GgmlType::BF16;
  o.out = (temp_dir() / "hf-26b").string();
  const TestModelResult r = write_test_model(o);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                        "generation_config.json"})
    EXPECT_TRUE(fs::exists(fs::path(r.path) / f)) << f;
  std::ifstream cf(fs::path(r.path) / "config.json");
  const nlohmann::json j = nlohmann::json::parse(cf);
  EXPECT_EQ(j["architectures"][0], "Gemma4ForConditionalGeneration");
  EXPECT_EQ(j["model_type"], "gemma4");
  EXPECT_EQ(j["text_config"]["model_type"], "gemma4_text");
  EXPECT_EQ(j["text_config"]["num_global_key_value_heads"], 1);
  EXPECT_EQ(j["text_config"]["enable_moe_block"], true);
  EXPECT_EQ(j["text_config"]["rms_norm_eps"].get<double>(), 1e-6);
  std::ifstream tf(fs::path(r.path) / "tokenizer.json");
  const nlohmann::json t = nlohmann::json::parse(tf);
  EXPECT_EQ(t["model"]["type"], "BPE");
  EXPECT_EQ(t["model"]["byte_fallback"], true);
  EXPECT_EQ(t["model"]["vocab"].size(), 1024u);
  EXPECT_EQ(t["model"]["vocab"]["<0x41>"], 238 + 0x41);
  EXPECT_EQ(t["normalizer"]["type"], "Replace");
  EXPECT_EQ(t["decoder"]["decoders"][1]["type"], "ByteFallback");
  bool turn = false;
  for (const auto& a : t["added_tokens"]) turn |= a["id"] == 106 && a["content"] == "<turn|>";
  EXPECT_TRUE(turn);
}

TEST(TestModelFiles, TokenizerFromGgufAndHfAgree) {
  TestModelOptions o;
  o.arch = TestArch::E4B;
  o.out = (temp_dir() / "tok.gguf").string();
  write_test_model(o);
  o.format = TestFormat::Hf;
  o.out = (temp_dir() / "tok-hf").string();
  write_test_model(o);
  const Tokenizer tg = Tokenizer::load((temp_dir() / "tok.gguf").string());
  const Tokenizer th = Tokenizer::load((temp_dir() / "tok-hf").string());
  EXPECT_EQ(tg.n_vocab(), 1024);
  EXPECT_EQ(th.n_vocab(), 1024);
  for (const char* text : {"The quick brown fox jumps over the lazy dog.", "Hello world!\n\n  x = 1;",
                           "\xC3\xA9t\xC3\xA9 \xE2\x82\xAC 100"}) {
    const auto a = tg.encode(text), b = th.encode(text);
    EXPECT_EQ(a, b) << text;
    EXPECT_EQ(tg.decode(a), text);
  }
  const auto ids = tg.encode(" the");
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(tg.piece(ids[0]), "\xE2\x96\x81the");
  const auto turn = tg.encode("<|turn>user\n", /*parse_special=*/true);
  ASSERT_FALSE(turn.empty());
  EXPECT_EQ(turn[0], 105);
}

// ---------------------------------------------------------------------------
// Quantized GGUF output (--type q8_0 / q4_0): storage types follow llama.cpp's
// converter + llama-quantize, and every tensor dequantizes to the f32 values
// of the same seed within the type's quantization error.

namespace {

// Largest |x| of elements [b, b+32).
float block_amax(const std::vector<float>& v, size_t b) {
  float m = 0;
  for (size_t i = b; i < b + 32 && i < v.size(); ++i) m = std::max(m, std::fabs(v[i]));
  return m;
}

}  // namespace

class TestModelQuantized : public ::testing::TestWithParam<std::tuple<TestArch, GgmlType>> {};

TEST_P(TestModelQuantized, OpensAndDequantizesWithinTheQuantizationError) {
  const auto [arch, type] = GetParam();
  const std::string tag = std::string(test_arch_name(arch)) + "-" + ggml_type_name(type);
  TestModelOptions o;
  o.arch = arch;
  o.type = type;
  o.seed = 77;
  o.threads = 2;
  o.out = (temp_dir() / (tag + ".gguf")).string();
  const TestModelResult r = write_test_model(o);
  const ModelConfig c = test_model_config(arch, TestScale::Tiny, 1024);
  const Checkpoint ck = Checkpoint::open(r.path);
  expect_same_config(ck.config(), c, tag);
  EXPECT_EQ(ck.gguf()->get_u64("general.file_type"), type == GgmlType::Q8_0 ? 7u : 2u);

  std::map<GgmlType, int> by_type;
  int quantized_matrices = 0;
  for (const TensorSpec& s : written_specs(c, TestFormat::Gguf)) {
    SCOPED_TRACE(s.gguf_name);
    const TensorView& t = ck.require(s.gguf_name);
    ASSERT_EQ(t.ne, s.ne);
    const GgmlType want = test_tensor_type(s, TestFormat::Gguf, type);
    ASSERT_EQ(t.type, want);
    ++by_type[t.type];
    // The storage rules (llama.cpp's converter and llama-quantize).
    if (s.ne.size() <= 1 || s.role == TensorRole::RopeFreqs) EXPECT_EQ(t.type, GgmlType::F32);
    else if (s.gguf_name.ends_with("ffn_gate_inp.weight") || s.gguf_name == "per_layer_model_proj.weight")
      EXPECT_EQ(t.type, GgmlType::F32);
    else if (s.gguf_name == "token_embd.weight" || s.gguf_name == "per_layer_token_embd.weight")
      EXPECT_EQ(t.type, GgmlType::Q8_0);
    else if (s.ne[0] % 32 != 0) EXPECT_EQ(t.type, GgmlType::F16);
    else EXPECT_EQ(t.type, type);

    if (s.role == TensorRole::RopeFreqs) continue;
    const size_t n = static_cast<size_t>(t.nelements());
    std::vector<float> want_vals(n);
    generate_test_values(test_tensor_key(77, s), test_init_for(s, c), 0, n, want_vals.data());
    const std::vector<float> got = tensor_to_f32(t);
    ASSERT_EQ(got.size(), n);
    if (t.type == GgmlType::F32) {
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(got[i], want_vals[i]) << i;
    } else if (t.type == GgmlType::F16) {
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(got[i], fp16_to_f32(f32_to_fp16(want_vals[i]))) << i;
    } else {
      // Q8_0: step d = amax/127, error <= d/2 + 127·d·2^-11 (d is stored in
      // fp16); Q4_0: step amax/8, error <= one step (at the clamped end)
      // + 8·step·2^-11.
      ++quantized_matrices;
      double worst_rel = 0, sum_sq_err = 0, sum_sq = 0;
      for (size_t b = 0; b < n; b += 32) {
        const float amax = block_amax(want_vals, b);
        const float bound = t.type == GgmlType::Q8_0 ? amax / 127.f * 0.563f + 1e-7f : amax / 8.f * 1.005f + 1e-7f;
        for (size_t i = b; i < b + 32; ++i) {
          const float e = std::fabs(got[i] - want_vals[i]);
          ASSERT_LE(e, bound) << "element " << i << ": " << got[i] << " vs " << want_vals[i];
          if (amax > 0) worst_rel = std::max(worst_rel, static_cast<double>(e / amax));
          sum_sq_err += static_cast<double>(e) * e;
          sum_sq += static_cast<double>(want_vals[i]) * want_vals[i];
        }
      }
      // Really quantized (not f32 in disguise), and as accurate as the type allows.
      EXPECT_GT(worst_rel, 0.0);
      const double rel_rms = std::sqrt(sum_sq_err / sum_sq);
      if (t.type == GgmlType::Q8_0) EXPECT_LT(rel_rms, 0.01);
      else EXPECT_LT(rel_rms, 0.12);
    }
  }
  EXPECT_GT(quantized_matrices, 10);
  EXPECT_GT(by_type[type], 10);
  EXPECT_EQ(by_type[GgmlType::Q8_0] + by_type[GgmlType::Q4_0] + by_type[GgmlType::F16] + by_type[GgmlType::F32],
            static_cast<int>(written_specs(c, TestFormat::Gguf).size()));
}

TEST_P(TestModelQuantized, DequantizedTwinHoldsTheSameValuesInF32) {
  const auto [arch, type] = GetParam();
  const std::string tag = std::string(test_arch_name(arch)) + "-" + ggml_type_name(type);
  TestModelOptions o;
  o.arch = arch;
  o.type = type;
  o.seed = 78;
  o.out = (temp_dir() / (tag + "-q.gguf")).string();
  write_test_model(o);
  o.dequantized = true;
  o.out = (temp_dir() / (tag + "-twin.gguf")).string();
  write_test_model(o);
  const Checkpoint q = Checkpoint::open((temp_dir() / (tag + "-q.gguf")).string());
  const Checkpoint d = Checkpoint::open((temp_dir() / (tag + "-twin.gguf")).string());
  EXPECT_EQ(d.gguf()->get_u64("general.file_type"), 0u);
  int n = 0;
  for (const TensorView& t : q.tensors()) {
    const TensorView& u = d.require(t.name);
    ASSERT_EQ(u.type, GgmlType::F32) << t.name;
    ASSERT_EQ(u.ne, t.ne) << t.name;
    const std::vector<float> a = tensor_to_f32(t), b = tensor_to_f32(u);
    ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << t.name;
    ++n;
  }
  EXPECT_EQ(n, static_cast<int>(d.tensors().size()));
}

INSTANTIATE_TEST_SUITE_P(AllArchs, TestModelQuantized,
                         ::testing::Combine(::testing::ValuesIn(kArchs),
                                            ::testing::Values(GgmlType::Q8_0, GgmlType::Q4_0)),
                         [](const auto& info) {
                           std::string n = std::string(test_arch_name(std::get<0>(info.param))) + "_" +
                                           ggml_type_name(std::get<1>(info.param));
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

TEST(TestModelQuantized, HfOutputRefusesBlockTypes) {
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0}) {
    TestModelOptions o;
    o.arch = TestArch::E2B;
    o.format = TestFormat::Hf;
    o.type = type;
    o.out = (temp_dir() / "hf-quant").string();
    try {
      write_test_model(o);
      ADD_FAILURE() << "HF output accepted " << ggml_type_name(type);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--format gguf"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(temp_dir() / "hf-quant" / "model.safetensors"));
  }
  TestModelOptions o;
  o.format = TestFormat::Hf;
  o.dequantized = true;
  o.out = (temp_dir() / "hf-deq").string();
  EXPECT_THROW(write_test_model(o), Error);
}

TEST(TestModelQuantized, MoeRoutesOnChannelsOnlyTheEmbeddingWrites) {
  // The router reads channels [0, H/8) (its scale is 0 elsewhere) and the
  // attention / FFN branches never write them (their post-norms are 0 there).
  const ModelConfig c = test_model_config(TestArch::A26B, TestScale::Tiny, 1024);
  const int64_t rc = test_router_channels(c);
  ASSERT_EQ(rc, c.hidden / 8);
  EXPECT_EQ(test_router_channels(test_model_config(TestArch::D31B, TestScale::Tiny, 1024)), 0);
  int checked = 0;
  for (const TensorSpec& s : text_tensor_specs(c, true)) {
    const bool scale = s.gguf_name.ends_with("ffn_gate_inp.scale");
    const bool post = s.gguf_name.ends_with("post_attention_norm.weight") || s.gguf_name.ends_with("post_ffw_norm.weight");
    if (!scale && !post) continue;
    std::vector<float> v(static_cast<size_t>(c.hidden));
    generate_test_values(test_tensor_key(5, s), test_init_for(s, c), 0, v.size(), v.data());
    for (int64_t i = 0; i < c.hidden; ++i) {
      const bool zero = scale ? i >= rc : i < rc;
      if (zero) ASSERT_EQ(v[static_cast<size_t>(i)], 0.f) << s.gguf_name << "[" << i << "]";
      else ASSERT_GT(v[static_cast<size_t>(i)], 0.5f) << s.gguf_name << "[" << i << "]";
    }
    ++checked;
  }
  EXPECT_EQ(checked, 3 * c.n_layers);
}
