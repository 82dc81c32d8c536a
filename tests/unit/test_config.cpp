// ModelConfig: HF config.json parsing, per-layer derivation (spec §1.1), GGUF
// metadata round trip, validation errors, tensor specs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/gguf.h"
#include "test_util.h"
#include "model/config.h"
#include "model/tensor_specs.h"

namespace fs = std::filesystem;
using namespace g4;
using namespace g4::testutil;
using nlohmann::json;

namespace {

// shared/ lives beside the repository (GEMMA4_SOURCE_DIR/../shared) unless
// GEMMA4_SHARED_DIR says otherwise.
json read_json(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}

std::string pattern(const ModelConfig& c) {
  std::string s;
  for (LayerType t : c.layer_types) s += t == LayerType::Full ? 'F' : 'S';
  return s;
}

// The four released variants as HF config.json (Gemma4ForConditionalGeneration),
// from spec table 1.1.
json variant_json(Variant v) {
  struct P {
    int L, H, nh, kv;
    std::optional<int> gkv;
    int ffn;
    bool dw;
    int shared, ple;
    bool moe;
    int E, k, Fe;
    bool keqv;
    int window, period, ctx;
    bool audio;
  };
  P p{};
  switch (v) {
    case Variant::E2B: p = {35, 1536, 8, 1, std::nullopt, 6144, true, 20, 256, false, 0, 0, 0, false, 512, 5, 131072, true}; break;
    case Variant::E4B: p = {42, 2560, 8, 2, std::nullopt, 10240, false, 18, 256, false, 0, 0, 0, false, 512, 6, 131072, true}; break;
    case Variant::A26B: p = {30, 2816, 16, 8, 2, 2112, false, 0, 0, true, 128, 8, 704, true, 1024, 6, 262144, false}; break;
    case Variant::D31B: p = {60, 5376, 32, 16, 4, 21504, false, 0, 0, false, 0, 0, 0, true, 1024, 6, 262144, false}; break;
    default: break;
  }
  json lt = json::array();
  for (int i = 0; i < p.L; ++i) lt.push_back((i + 1) % p.period == 0 ? "full_attention" : "sliding_attention");
  json tc = {
      {"model_type", "gemma4_text"},
      {"num_hidden_layers", p.L},
      {"hidden_size", p.H},
      {"num_attention_heads", p.nh},
      {"num_key_value_heads", p.kv},
      {"num_global_key_value_heads", p.gkv ? json(*p.gkv) : json(nullptr)},
      {"head_dim", 256},
      {"global_head_dim", 512},
      {"intermediate_size", p.ffn},
      {"use_double_wide_mlp", p.dw},
      {"num_kv_shared_layers", p.shared},
      {"hidden_size_per_layer_input", p.ple},
      {"vocab_size_per_layer_input", 262144},
      {"enable_moe_block", p.moe},
      {"num_experts", p.moe ? json(p.E) : json(nullptr)},
      {"top_k_experts", p.moe ? json(p.k) : json(nullptr)},
      {"moe_intermediate_size", p.moe ? json(p.Fe) : json(nullptr)},
      {"attention_k_eq_v", p.keqv},
      {"sliding_window", p.window},
      {"layer_types", lt},
      {"rope_parameters",
       {{"full_attention", {{"partial_rotary_factor", 0.25}, {"rope_theta", 1000000.0}, {"rope_type", "proportional"}}},
        {"sliding_attention", {{"rope_theta", 10000.0}, {"rope_type", "default"}}}}},
      {"final_logit_softcapping", 30.0},
      {"rms_norm_eps", 1e-6},
      {"hidden_activation", "gelu_pytorch_tanh"},
      {"vocab_size", 262144},
      {"tie_word_embeddings", true},
      {"max_position_embeddings", p.ctx},
      {"attention_bias", false},
      {"bos_token_id", 2},
      {"eos_token_id", 1},
      {"pad_token_id", 0},
  };
  return {
      {"architectures", {"Gemma4ForConditionalGeneration"}},
      {"model_type", "gemma4"},
      {"text_config", tc},
      {"vision_config", {{"model_type", "gemma4_vision"}, {"hidden_size", 768}}},
      {"audio_config", p.audio ? json{{"model_type", "gemma4_audio"}} : json(nullptr)},
      {"eos_token_id", {1, 106}},
      {"tie_word_embeddings", true},
  };
}

void expect_same_config(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.hidden, b.hidden);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.n_kv_heads, b.n_kv_heads);
  EXPECT_EQ(a.n_global_kv_heads, b.n_global_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.global_head_dim, b.global_head_dim);
  EXPECT_EQ(a.ffn_dim, b.ffn_dim);
  EXPECT_EQ(a.double_wide_mlp && a.n_kv_shared_layers > 0, b.double_wide_mlp && b.n_kv_shared_layers > 0);
  EXPECT_EQ(a.n_kv_shared_layers, b.n_kv_shared_layers);
  EXPECT_EQ(a.ple_dim, b.ple_dim);
  if (a.ple_dim) {
    EXPECT_EQ(a.ple_vocab, b.ple_vocab);
  }
  EXPECT_EQ(a.moe, b.moe);
  EXPECT_EQ(a.n_experts, b.n_experts);
  EXPECT_EQ(a.n_experts_used, b.n_experts_used);
  EXPECT_EQ(a.expert_ffn_dim, b.expert_ffn_dim);
  EXPECT_EQ(a.k_eq_v, b.k_eq_v);
  EXPECT_EQ(a.sliding_window, b.sliding_window);
  EXPECT_EQ(pattern(a), pattern(b));
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
  EXPECT_EQ(a.variant(), b.variant());
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const LayerConfig &x = a.layers[i], &y = b.layers[i];
    SCOPED_TRACE("layer " + std::to_string(i));
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

// A GGUF holding `c`'s metadata. With `tensors`, every required tensor (zeros)
// plus rope_freqs; otherwise only what config_from_gguf looks at (rope_freqs,
// one-element attn_v markers on full layers without K=V, the vocabulary).
void write_config_gguf(const ModelConfig& c, const std::string& path, bool tensors) {
  GgufWriter w(path);
  write_gguf_config(c, w);
  std::vector<std::pair<std::string, std::vector<int64_t>>> infos;
  if (tensors) {
    for (const TensorSpec& s : text_tensor_specs(c, false))
      if (s.required || s.role == TensorRole::RopeFreqs) infos.emplace_back(s.gguf_name, s.ne);
  } else {
    std::vector<std::string> toks(c.vocab_size);
    for (int i = 0; i < c.vocab_size; ++i) toks[i] = std::to_string(i);
    w.set("tokenizer.ggml.tokens", GgufValue::strings(toks));
    infos.emplace_back("rope_freqs.weight", std::vector<int64_t>{c.global_head_dim / 2});
    for (int i = 0; i < c.n_layers; ++i)
      if (c.layers[i].type == LayerType::Full && c.layers[i].has_kv && !c.k_eq_v)
        infos.emplace_back("blk." + std::to_string(i) + ".attn_v.weight", std::vector<int64_t>{1});
  }
  for (const auto& [name, ne] : infos) w.add_tensor_info(name, GgmlType::F32, ne);
  w.write_header();
  for (const auto& [name, ne] : infos) {
    std::vector<float> data;
    if (name == "rope_freqs.weight") {
      data = rope_freqs_values(c);
    } else {
      int64_t n = 1;
      for (int64_t d : ne) n *= d;
      data.assign(static_cast<size_t>(n), 0.f);
    }
    w.write_tensor_data(name, data.data(), data.size() * 4);
  }
  w.finish();
}

int64_t spec_params(const ModelConfig& c, bool with_ple_table) {
  int64_t n = 0;
  for (const TensorSpec& s : text_tensor_specs(c, false)) {
    if (!s.required) continue;
    if (!with_ple_table && s.gguf_name == "per_layer_token_embd.weight") continue;
    int64_t k = 1;
    for (int64_t d : s.ne) k *= d;
    n += k;
  }
  return n;
}

const TensorSpec* find_spec(const std::vector<TensorSpec>& specs, const std::string& name) {
  for (const auto& s : specs)
    if (s.gguf_name == name) return &s;
  return nullptr;
}

}  // namespace

// ---------------------------------------------------------------------------
// Golden tiny configs (shared/golden/README.md)

TEST(ConfigGolden, E2bLike) {
  const ModelConfig c = config_from_hf_file((golden_text("e2b_like") / "config.json").string());
  EXPECT_EQ(c.source, "hf");
  EXPECT_EQ(c.architecture, "Gemma4ForCausalLM");
  EXPECT_EQ(c.n_layers, 8);
  EXPECT_EQ(pattern(c), "SSSFSSSF");
  EXPECT_EQ(c.sliding_window, 8);
  EXPECT_EQ(c.hidden, 64);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.ple_dim, 16);
  EXPECT_EQ(c.ple_vocab, 512);
  EXPECT_EQ(c.n_heads, 2);
  EXPECT_EQ(c.n_kv_heads, 1);
  EXPECT_EQ(c.first_kv_shared_layer(), 4);
  EXPECT_FALSE(c.moe);
  EXPECT_FALSE(c.k_eq_v);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_FLOAT_EQ(c.final_softcap, 30.f);
  EXPECT_FALSE(c.has_vision);
  EXPECT_FALSE(c.has_audio);
  EXPECT_EQ(c.variant(), Variant::Custom);
  ASSERT_EQ(c.layers.size(), 8u);
  const int donors[8] = {0, 1, 2, 3, 2, 2, 2, 3};
  for (int i = 0; i < 8; ++i) {
    SCOPED_TRACE(i);
    const LayerConfig& l = c.layers[i];
    const bool full = i % 4 == 3;
    EXPECT_EQ(l.type, full ? LayerType::Full : LayerType::Sliding);
    EXPECT_EQ(l.head_dim, full ? 64 : 32);
    EXPECT_EQ(l.n_kv_heads, 1);
    EXPECT_EQ(l.has_kv, i < 4);
    EXPECT_EQ(l.kv_source, donors[i]);
    EXPECT_EQ(l.ffn_dim, i < 4 ? 96 : 192);  // double-wide on the shared layers
    EXPECT_FALSE(l.k_eq_v);
    EXPECT_FLOAT_EQ(l.rope_theta, full ? 1e6f : 1e4f);
    EXPECT_EQ(l.rope_rotated_dims, full ? 16 : 32);  // 2*int(0.25*64/2)
  }
  // KV cache: own layers 0-2 sliding (capped at 8), 3 full; shared layers store nothing.
  EXPECT_EQ(c.kv_cache_bytes(100, 2.0), uint64_t(3 * 8 * 2 * 32 * 2 + 100 * 2 * 64 * 2));
  EXPECT_EQ(c.kv_cache_bytes(4, 4.0), uint64_t(3 * 4 * 2 * 32 * 4 + 4 * 2 * 64 * 4));
  EXPECT_EQ(c.kv_cache_bytes(0, 2.0), 0u);
}

TEST(ConfigGolden, A4bLike) {
  const ModelConfig c = config_from_hf_file((golden_text("a4b_like") / "config.json").string());
  EXPECT_EQ(pattern(c), "SSFSSF");
  EXPECT_TRUE(c.moe);
  EXPECT_EQ(c.n_experts, 8);
  EXPECT_EQ(c.n_experts_used, 2);
  EXPECT_EQ(c.expert_ffn_dim, 24);
  EXPECT_EQ(c.ffn_dim, 64);
  EXPECT_TRUE(c.k_eq_v);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_shared_layers, 0);
  EXPECT_EQ(c.ple_dim, 0);
  for (int i = 0; i < 6; ++i) {
    SCOPED_TRACE(i);
    const LayerConfig& l = c.layers[i];
    const bool full = i % 3 == 2;
    EXPECT_EQ(l.head_dim, full ? 32 : 16);
    EXPECT_EQ(l.n_kv_heads, full ? 1 : 2);
    EXPECT_EQ(l.k_eq_v, full);
    EXPECT_TRUE(l.has_kv);
    EXPECT_EQ(l.kv_source, i);
    EXPECT_EQ(l.ffn_dim, 64);
    EXPECT_EQ(l.rope_rotated_dims, full ? 8 : 16);
  }
  const auto specs = text_tensor_specs(c);
  EXPECT_EQ(find_spec(specs, "blk.2.attn_v.weight"), nullptr);  // K = V
  ASSERT_NE(find_spec(specs, "blk.0.attn_v.weight"), nullptr);
  EXPECT_EQ(find_spec(specs, "blk.0.attn_v.weight")->ne, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(find_spec(specs, "blk.2.attn_k.weight")->ne, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(find_spec(specs, "blk.0.ffn_gate_up_exps.weight")->ne, (std::vector<int64_t>{64, 48, 8}));
  EXPECT_EQ(find_spec(specs, "blk.0.ffn_gate_up_exps.weight")->hf_name, "layers.0.experts.gate_up_proj");
  EXPECT_EQ(find_spec(specs, "blk.0.ffn_down_exps.weight")->ne, (std::vector<int64_t>{24, 64, 8}));
  EXPECT_EQ(find_spec(specs, "blk.0.ffn_gate_inp.weight")->ne, (std::vector<int64_t>{64, 8}));
  EXPECT_EQ(find_spec(specs, "blk.0.ffn_gate_inp.scale")->ne, (std::vector<int64_t>{64}));
  EXPECT_EQ(find_spec(specs, "blk.0.ffn_down_exps.scale")->ne, (std::vector<int64_t>{8}));
  EXPECT_EQ(find_spec(specs, "blk.0.ffn_down_exps.scale")->hf_name, "layers.0.router.per_expert_scale");
  EXPECT_EQ(find_spec(specs, "rope_freqs.weight")->ne, (std::vector<int64_t>{16}));
  EXPECT_EQ(find_spec(specs, "rope_freqs.weight")->role, TensorRole::RopeFreqs);
  EXPECT_FALSE(find_spec(specs, "rope_freqs.weight")->required);
}

TEST(ConfigGolden, DenseLike) {
  const ModelConfig c = config_from_hf_file((golden_text("dense_like") / "config.json").string());
  EXPECT_EQ(pattern(c), "SSFSSF");
  EXPECT_FALSE(c.moe);
  EXPECT_TRUE(c.k_eq_v);
  EXPECT_EQ(c.ffn_dim, 128);
  for (int i = 0; i < 6; ++i) {
    const bool full = i % 3 == 2;
    EXPECT_EQ(c.layers[i].head_dim, full ? 64 : 32);
    EXPECT_EQ(c.layers[i].n_kv_heads, full ? 1 : 2);
    EXPECT_EQ(c.layers[i].ffn_dim, 128);
    EXPECT_EQ(c.layers[i].k_eq_v, full);
  }
  // 4 sliding layers × min(ctx, 8) × 2 × 2 heads × 32 + 2 full × ctx × 2 × 1 × 64, f16.
  EXPECT_EQ(c.kv_cache_bytes(10, 2.0), uint64_t(4 * 8 * 2 * 2 * 32 * 2 + 2 * 10 * 2 * 64 * 2));
}

TEST(ConfigHf, NestedConditionalGeneration) {
  const json flat = read_json(golden_text("e2b_like") / "config.json");
  json nested = {{"architectures", {"Gemma4ForConditionalGeneration"}},
                 {"model_type", "gemma4"},
                 {"text_config", flat},
                 {"vision_config", {{"hidden_size", 32}}},
                 {"audio_config", nullptr},
                 {"eos_token_id", {1, 106}}};
  const ModelConfig n = config_from_hf_json(nested);
  const ModelConfig f = config_from_hf_json(flat);
  expect_same_config(n, f);
  EXPECT_EQ(n.architecture, "Gemma4ForConditionalGeneration");
  EXPECT_TRUE(n.has_vision);
  EXPECT_FALSE(n.has_audio);
  EXPECT_EQ(n.eos_id, 1);
  EXPECT_EQ(n.eos_ids, (std::vector<int>{1, 106}));
  nested["audio_config"] = {{"hidden_size", 8}};
  EXPECT_TRUE(config_from_hf_json(nested).has_audio);

  // The golden vision model's config (nested, softcap null = none).
  const ModelConfig v = config_from_hf_file((shared_dir() / "golden/vision/vision_like/config.json").string());
  EXPECT_TRUE(v.has_vision);
  EXPECT_FALSE(v.has_audio);
  EXPECT_EQ(v.n_layers, 2);
  EXPECT_EQ(v.final_softcap, 0.f);
}

// ---------------------------------------------------------------------------
// The released variants (spec table 1.1)

TEST(ConfigVariants, E2B) {
  const ModelConfig c = config_from_hf_json(variant_json(Variant::E2B));
  EXPECT_EQ(c.variant(), Variant::E2B);
  EXPECT_STREQ(variant_name(c.variant()), "E2B");
  EXPECT_TRUE(c.has_vision);
  EXPECT_TRUE(c.has_audio);
  EXPECT_EQ(c.first_kv_shared_layer(), 15);
  int sliding = 0;
  for (int i = 0; i < 35; ++i) {
    SCOPED_TRACE(i);
    const LayerConfig& l = c.layers[i];
    const bool full = (i + 1) % 5 == 0;
    sliding += !full;
    EXPECT_EQ(l.has_kv, i < 15);
    EXPECT_EQ(l.kv_source, i < 15 ? i : (full ? 14 : 13));
    EXPECT_EQ(l.ffn_dim, i < 15 ? 6144 : 12288);
    EXPECT_EQ(c.n_heads * l.head_dim, full ? 4096 : 2048);  // q_proj rows
    EXPECT_EQ(l.n_kv_heads * l.head_dim, full ? 512 : 256);  // k_proj rows
    EXPECT_EQ(l.rope_rotated_dims, full ? 128 : 256);
  }
  EXPECT_EQ(sliding, 28);
  // KV bytes/token, bf16: 12 own sliding × 1 KiB + 3 own full × 2 KiB.
  EXPECT_EQ(c.kv_cache_bytes(1, 2.0), uint64_t(12 * 1024 + 3 * 2048));
  EXPECT_EQ(c.kv_cache_bytes(100000, 2.0), uint64_t(12) * 512 * 1024 + uint64_t(3) * 100000 * 2048);
  // Parameters (spec: 4.63 B total, 2.28 B without the PLE table).
  EXPECT_NEAR(spec_params(c, true) / 1e9, 4.63, 0.006);
  EXPECT_NEAR(spec_params(c, false) / 1e9, 2.28, 0.006);
  const auto rf = rope_freqs_values(c);
  ASSERT_EQ(rf.size(), 256u);
  EXPECT_EQ(rf[63], 1.0f);
  EXPECT_EQ(rf[64], 1e30f);
  EXPECT_EQ(rf[255], 1e30f);
}

TEST(ConfigVariants, E4B) {
  const ModelConfig c = config_from_hf_json(variant_json(Variant::E4B));
  EXPECT_EQ(c.variant(), Variant::E4B);
  EXPECT_STREQ(variant_name(c.variant()), "E4B");
  EXPECT_EQ(c.first_kv_shared_layer(), 24);
  int full_own = 0;
  for (int i = 0; i < 42; ++i) {
    SCOPED_TRACE(i);
    const LayerConfig& l = c.layers[i];
    const bool full = (i + 1) % 6 == 0;
    full_own += full && i < 24;
    EXPECT_EQ(l.kv_source, i < 24 ? i : (full ? 23 : 22));
    EXPECT_EQ(l.ffn_dim, 10240);
    EXPECT_EQ(c.n_heads * l.head_dim, full ? 4096 : 2048);
    EXPECT_EQ(l.n_kv_heads * l.head_dim, full ? 1024 : 512);
  }
  EXPECT_EQ(full_own, 4);
  EXPECT_EQ(c.kv_cache_bytes(1, 2.0), uint64_t(20 * 2048 + 4 * 4096));
  EXPECT_NEAR(spec_params(c, true) / 1e9, 7.46, 0.006);
  EXPECT_NEAR(spec_params(c, false) / 1e9, 4.64, 0.006);
}

TEST(ConfigVariants, A26B) {
  const ModelConfig c = config_from_hf_json(variant_json(Variant::A26B));
  EXPECT_EQ(c.variant(), Variant::A26B);
  EXPECT_STREQ(variant_name(c.variant()), "26B-A4B");
  EXPECT_FALSE(c.has_audio);
  EXPECT_EQ(c.first_kv_shared_layer(), 30);
  for (int i = 0; i < 30; ++i) {
    SCOPED_TRACE(i);
    const LayerConfig& l = c.layers[i];
    const bool full = (i + 1) % 6 == 0;
    EXPECT_TRUE(l.has_kv);
    EXPECT_EQ(l.k_eq_v, full);
    EXPECT_EQ(l.ffn_dim, 2112);
    EXPECT_EQ(c.n_heads * l.head_dim, full ? 8192 : 4096);
    EXPECT_EQ(l.n_kv_heads * l.head_dim, full ? 1024 : 2048);
  }
  EXPECT_EQ(c.kv_cache_bytes(1, 2.0), uint64_t(25 * 8192 + 5 * 4096));
  const auto specs = text_tensor_specs(c);
  EXPECT_EQ(find_spec(specs, "blk.5.attn_v.weight"), nullptr);
  EXPECT_EQ(find_spec(specs, "blk.0.ffn_gate_up_exps.weight")->ne, (std::vector<int64_t>{2816, 1408, 128}));
  EXPECT_EQ(find_spec(specs, "blk.0.ffn_down_exps.weight")->ne, (std::vector<int64_t>{704, 2816, 128}));
  // 25.23 B total, 3.82 B active (8 of 128 experts).
  const int64_t total = spec_params(c, true);
  EXPECT_NEAR(total / 1e9, 25.23, 0.006);
  const int64_t experts = int64_t(30) * 128 * 3 * 704 * 2816;
  EXPECT_NEAR((total - experts + experts / 16) / 1e9, 3.82, 0.006);
}

TEST(ConfigVariants, D31B) {
  const ModelConfig c = config_from_hf_json(variant_json(Variant::D31B));
  EXPECT_EQ(c.variant(), Variant::D31B);
  EXPECT_STREQ(variant_name(c.variant()), "31B");
  for (int i = 0; i < 60; ++i) {
    const bool full = (i + 1) % 6 == 0;
    EXPECT_EQ(c.n_heads * c.layers[i].head_dim, full ? 16384 : 8192);
    EXPECT_EQ(c.layers[i].n_kv_heads * c.layers[i].head_dim, full ? 2048 : 4096);
    EXPECT_EQ(c.layers[i].ffn_dim, 21504);
  }
  EXPECT_EQ(c.kv_cache_bytes(1, 2.0), uint64_t(50 * 16384 + 10 * 8192));
  EXPECT_NEAR(spec_params(c, true) / 1e9, 30.70, 0.006);
}

TEST(ConfigVariants, NearMissesAreCustom) {
  json j = variant_json(Variant::A26B);
  j["text_config"]["sliding_window"] = 512;
  EXPECT_EQ(config_from_hf_json(j).variant(), Variant::Custom);
  j = variant_json(Variant::E2B);
  j["text_config"]["use_double_wide_mlp"] = false;
  EXPECT_EQ(config_from_hf_json(j).variant(), Variant::Custom);
  j = variant_json(Variant::D31B);
  j["text_config"]["num_global_key_value_heads"] = 8;
  EXPECT_EQ(config_from_hf_json(j).variant(), Variant::Custom);
  EXPECT_STREQ(variant_name(Variant::Custom), "custom");
}

// ---------------------------------------------------------------------------
// Validation

TEST(ConfigValidation, InconsistentConfigsAreNamedErrors) {
  const json base = read_json(golden_text("dense_like") / "config.json");
  const json e2b = read_json(golden_text("e2b_like") / "config.json");
  auto with = [](json j, const std::string& k, json v) {
    j[k] = std::move(v);
    return j;
  };
  auto bad = [](const json& j, std::initializer_list<std::string> needles) {
    expect_error([&] { config_from_hf_json(j); }, needles);
  };
  json lt5 = base["layer_types"];
  lt5.erase(lt5.end() - 1);
  bad(with(base, "layer_types", lt5), {"layer_types", "5", "6"});
  bad(with(base, "num_attention_heads", 3), {"num_attention_heads", "num_key_value_heads"});
  bad(with(base, "hidden_size", 0), {"hidden_size", "positive"});
  bad(with(base, "intermediate_size", -5), {"intermediate_size", "positive"});
  bad(with(base, "hidden_size", 70000), {"hidden_size", "absurd"});
  {
    json j = base;
    j["num_hidden_layers"] = 2000;
    j["layer_types"] = json::array();
    for (int i = 0; i < 2000; ++i) j["layer_types"].push_back("sliding_attention");
    bad(j, {"num_hidden_layers", "absurd"});
  }
  bad(with(base, "vocab_size", 1 << 30), {"vocab_size", "absurd"});
  bad(with(base, "head_dim", 0), {"head_dim"});
  bad(with(base, "global_head_dim", 63), {"global_head_dim", "even"});
  bad(with(base, "sliding_window", 0), {"sliding_window"});
  bad(with(base, "model_type", "llama"), {"llama"});
  bad(with(base, "hidden_activation", "silu"), {"silu"});
  bad(with(base, "layer_types", json::array({"sliding_attention", "sliding_attention", "banana", "sliding_attention",
                                             "sliding_attention", "full_attention"})),
      {"banana"});
  bad(with(base, "hidden_size", "64"), {"hidden_size", "integer"});
  {
    json j = base;
    j.erase("hidden_size");
    bad(j, {"missing", "hidden_size"});
  }
  {
    json j = base;
    j["enable_moe_block"] = true;  // num_experts is null
    bad(j, {"num_experts"});
  }
  {
    json j = base;
    j["rope_parameters"]["full_attention"]["factor"] = 8.0;
    bad(j, {"factor"});
  }
  // Shared layers need an earlier non-shared layer of their own type.
  bad(with(e2b, "layer_types",
           json::array({"sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention",
                        "sliding_attention", "sliding_attention", "sliding_attention", "full_attention"})),
      {"layer 7", "full", "KV-shared"});
  bad(with(e2b, "num_kv_shared_layers", 8), {"num_kv_shared_layers"});
  expect_error([] { config_from_hf_file("/nonexistent/config.json"); }, {"/nonexistent/config.json"});
  TempDir dir("g4_cfg");
  {
    std::ofstream(dir / "config.json") << "{\"model_type\": ";
  }
  expect_error([&] { config_from_hf_file(dir / "config.json"); }, {"config.json", "JSON"});
  // derive() on a hand-built config.
  ModelConfig c = config_from_hf_json(base);
  c.n_kv_heads = 3;
  expect_error([&] { c.derive(); }, {"num_key_value_heads"});
}

// ---------------------------------------------------------------------------
// GGUF metadata

TEST(ConfigGguf, RoundTripGoldenConfigsWithTensors) {
  TempDir dir("g4_cfg");
  for (const char* fam : {"e2b_like", "a4b_like", "dense_like"}) {
    SCOPED_TRACE(fam);
    const ModelConfig hf = config_from_hf_file((golden_text(fam) / "config.json").string());
    const std::string p = dir / (std::string(fam) + ".gguf");
    write_config_gguf(hf, p, true);
    const GgufFile f = GgufFile::open(p);
    const ModelConfig g = config_from_gguf(f);
    EXPECT_EQ(g.source, "gguf");
    EXPECT_EQ(g.architecture, "gemma4");
    expect_same_config(hf, g);
  }
}

TEST(ConfigGguf, RoundTripReleasedVariants) {
  TempDir dir("g4_cfg");
  for (Variant v : {Variant::E2B, Variant::E4B, Variant::A26B, Variant::D31B}) {
    SCOPED_TRACE(variant_name(v));
    const ModelConfig hf = config_from_hf_json(variant_json(v));
    const std::string p = dir / "v.gguf";
    write_config_gguf(hf, p, false);
    const GgufFile f = GgufFile::open(p);
    // Per-layer arrays where the spec says so.
    EXPECT_EQ(f.find("gemma4.feed_forward_length")->is_array(), v == Variant::E2B);
    EXPECT_EQ(f.find("gemma4.attention.head_count_kv")->is_array(), v == Variant::A26B || v == Variant::D31B);
    const ModelConfig g = config_from_gguf(f);
    expect_same_config(hf, g);
    EXPECT_EQ(g.variant(), v);
  }
}

TEST(ConfigGguf, KeysWithoutTensors) {
  // No rope_freqs and rope.dimension_count == key_length: full rotation.
  TempDir dir("g4_cfg");
  const ModelConfig hf = config_from_hf_file((golden_text("dense_like") / "config.json").string());
  {
    GgufWriter w(dir / "a.gguf");
    write_gguf_config(hf, w);
    w.set("tokenizer.ggml.tokens", GgufValue::strings({"a", "b", "c"}));
    w.write_header();
    w.finish();
  }
  const ModelConfig g = config_from_gguf(GgufFile::open(dir / "a.gguf"));
  EXPECT_EQ(g.vocab_size, 3);
  EXPECT_FLOAT_EQ(g.partial_rotary_factor_full, 1.0f);
  EXPECT_EQ(g.layers[2].rope_rotated_dims, 64);
  EXPECT_TRUE(g.k_eq_v);  // no attn_v on the full layers: K = V by the presence rule
  EXPECT_TRUE(g.tie_embeddings);
}

TEST(ConfigGguf, Errors) {
  TempDir dir("g4_cfg");
  const ModelConfig hf = config_from_hf_file((golden_text("e2b_like") / "config.json").string());
  auto write = [&](const std::function<void(GgufWriter&)>& edit, bool vocab = true) {
    GgufWriter w(dir / "x.gguf");
    write_gguf_config(hf, w);
    if (vocab) w.set("tokenizer.ggml.tokens", GgufValue::strings({"a", "b"}));
    edit(w);
    const float one = 0.f;
    w.add_tensor_info("blk.3.attn_v.weight", GgmlType::F32, {1});  // not K=V
    w.write_header();
    w.write_tensor_data("blk.3.attn_v.weight", &one, 4);
    w.finish();
    return GgufFile::open(dir / "x.gguf");
  };
  auto bad = [&](const std::function<void(GgufWriter&)>& edit, std::initializer_list<std::string> needles,
                 bool vocab = true) {
    const GgufFile f = write(edit, vocab);
    expect_error([&] { config_from_gguf(f); }, needles);
  };
  bad([](GgufWriter& w) { w.set("general.architecture", GgufValue::str("llama")); }, {"llama"});
  bad([](GgufWriter& w) { w.set("general.architecture", GgufValue::str("gemma4-assistant")); }, {"drafter"});
  bad([](GgufWriter& w) { w.set("gemma4.attention.sliding_window_pattern", GgufValue::bools({true, false})); },
      {"sliding_window_pattern", "2 entries"});
  bad([](GgufWriter& w) { w.set("gemma4.feed_forward_length", GgufValue::u32s({96, 96, 96, 96, 96, 96, 96, 300})); },
      {"feed_forward_length"});
  bad([](GgufWriter& w) { w.set("gemma4.feed_forward_length", GgufValue::u32s({96, 96})); },
      {"feed_forward_length", "2 entries"});
  bad([](GgufWriter& w) { w.set("gemma4.attention.head_count_kv", GgufValue::u32s({1, 1, 1, 2, 1, 1, 1, 2})); },
      {"KV heads", "attn_v"});
  bad([](GgufWriter& w) { w.set("gemma4.block_count", GgufValue::u32(5000)); }, {"block_count", "absurd"});
  bad([](GgufWriter& w) { w.set("gemma4.embedding_length", GgufValue::str("wide")); }, {"embedding_length"});
  bad([](GgufWriter&) {}, {"vocabulary size"}, /*vocab=*/false);
  bad([](GgufWriter& w) { w.set("gemma4.rope.dimension_count", GgufValue::u32(16)); }, {"dimension_count"});
  {
    // No block_count at all.
    GgufWriter w(dir / "y.gguf");
    w.set("general.architecture", GgufValue::str("gemma4"));
    w.write_header();
    w.finish();
    const GgufFile f = GgufFile::open(dir / "y.gguf");
    expect_error([&] { config_from_gguf(f); }, {"gemma4.block_count"});
  }
}

// ---------------------------------------------------------------------------
// Tensor names

TEST(TensorSpecs, HfToGgufNames) {
  EXPECT_EQ(hf_to_gguf_name("model.embed_tokens.weight"), "token_embd.weight");
  EXPECT_EQ(hf_to_gguf_name("model.language_model.embed_tokens.weight"), "token_embd.weight");
  EXPECT_EQ(hf_to_gguf_name("model.language_model.norm.weight"), "output_norm.weight");
  EXPECT_EQ(hf_to_gguf_name("model.embed_tokens_per_layer.weight"), "per_layer_token_embd.weight");
  EXPECT_EQ(hf_to_gguf_name("model.per_layer_model_projection.weight"), "per_layer_model_proj.weight");
  EXPECT_EQ(hf_to_gguf_name("model.per_layer_projection_norm.weight"), "per_layer_proj_norm.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.3.self_attn.q_proj.weight"), "blk.3.attn_q.weight");
  EXPECT_EQ(hf_to_gguf_name("model.language_model.layers.12.self_attn.o_proj.weight"), "blk.12.attn_output.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.0.layer_scalar"), "blk.0.layer_output_scale.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.0.router.scale"), "blk.0.ffn_gate_inp.scale");
  EXPECT_EQ(hf_to_gguf_name("model.layers.0.router.per_expert_scale"), "blk.0.ffn_down_exps.scale");
  EXPECT_EQ(hf_to_gguf_name("model.layers.0.experts.gate_up_proj"), "blk.0.ffn_gate_up_exps.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.0.experts.down_proj"), "blk.0.ffn_down_exps.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.0.pre_feedforward_layernorm.weight"), "blk.0.ffn_norm.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.0.pre_feedforward_layernorm_2.weight"), "blk.0.pre_ffw_norm_2.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.0.post_feedforward_layernorm_1.weight"), "blk.0.post_ffw_norm_1.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.1.per_layer_input_gate.weight"), "blk.1.inp_gate.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.1.per_layer_projection.weight"), "blk.1.proj.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.1.post_per_layer_input_norm.weight"), "blk.1.post_norm.weight");
  for (const char* skip : {"lm_head.weight", "model.vision_tower.encoder.layers.0.input_layernorm.weight",
                           "model.embed_vision.embedding_projection.weight", "model.audio_tower.x",
                           "model.embed_audio.y", "model.layers.0.unknown.weight", "model.layers.x.mlp.up_proj.weight",
                           "other.weight"})
    EXPECT_EQ(hf_to_gguf_name(skip), std::nullopt) << skip;
}

TEST(TensorSpecs, E2bLikeMatchesTheGoldenFileNames) {
  // Every HF name of the specs that the golden checkpoint must hold.
  const ModelConfig c = config_from_hf_file((golden_text("e2b_like") / "config.json").string());
  const auto specs = text_tensor_specs(c, /*include_dead=*/true);
  for (const auto& s : specs) {
    if (s.hf_name.empty()) continue;
    EXPECT_EQ(hf_to_gguf_name("model." + s.hf_name), s.gguf_name) << s.hf_name;
  }
  const TensorSpec* dead = find_spec(specs, "blk.5.attn_k.weight");
  ASSERT_NE(dead, nullptr);
  EXPECT_FALSE(dead->required);
  EXPECT_EQ(find_spec(text_tensor_specs(c, false), "blk.5.attn_k.weight"), nullptr);
  EXPECT_TRUE(find_spec(specs, "blk.3.attn_k.weight")->required);
  EXPECT_EQ(find_spec(specs, "blk.7.ffn_gate.weight")->ne, (std::vector<int64_t>{64, 192}));
  EXPECT_EQ(find_spec(specs, "blk.7.ffn_down.weight")->ne, (std::vector<int64_t>{192, 64}));
  EXPECT_EQ(find_spec(specs, "blk.3.attn_q.weight")->ne, (std::vector<int64_t>{64, 128}));
  EXPECT_EQ(find_spec(specs, "blk.3.attn_output.weight")->ne, (std::vector<int64_t>{128, 64}));
  EXPECT_EQ(find_spec(specs, "per_layer_token_embd.weight")->ne, (std::vector<int64_t>{128, 512}));
  EXPECT_EQ(find_spec(specs, "per_layer_model_proj.weight")->ne, (std::vector<int64_t>{64, 128}));
  EXPECT_EQ(find_spec(specs, "blk.0.inp_gate.weight")->ne, (std::vector<int64_t>{64, 16}));
  EXPECT_EQ(find_spec(specs, "blk.0.proj.weight")->ne, (std::vector<int64_t>{16, 64}));
  EXPECT_EQ(find_spec(specs, "blk.0.layer_output_scale.weight")->ne, (std::vector<int64_t>{1}));
  EXPECT_EQ(find_spec(specs, "blk.0.layer_output_scale.weight")->role, TensorRole::Scalar);
  EXPECT_EQ(find_spec(specs, "blk.0.attn_norm.weight")->role, TensorRole::Norm);
  EXPECT_EQ(find_spec(specs, "token_embd.weight")->role, TensorRole::Embedding);
  EXPECT_FALSE(find_spec(specs, "output.weight")->required);  // tied
}
