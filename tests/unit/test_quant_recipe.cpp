// The quantization recipe table (tools/quant_recipe.h) against what
// llama-quantize (llama.cpp src/llama-quant.cpp, the node-llama-cpp 3.21.1
// bundle) picks. Every expectation below was worked out by hand from
// llama-quant.cpp for the test-model shapes, not taken from our code:
//
//   use_more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2
//   n = 10: {0, 3, 6, 8, 9}     n = 12: {0, 3, 6, 9, 10, 11}
//   n = 35: {0-3, 6, 9, 12, 15, 18, 21, 24, 27, 30-34}
//   n = 25: {0, 1, 2, 5, 8, 11, 14, 17, 20, 21-24}
//   n = 30: {0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26-29}
//
// Tiny shapes (make-test-model --scale tiny): E2B H=64, 10 layers
// (SSSSF x2), head dim 32/64 with 4 heads (attn_output ne0 128 / 256), FFN 96
// (192 on the 5 KV-shared layers), PLE 16; E4B H=96, 12 layers (SSSSSF x2),
// FFN 160; 26B-A4B H=64, 12 layers, K=V on the full layers 5 and 11 (no
// attn_v), 8 experts (llama.cpp's "n_expert == 8" rules apply!), FFN 64,
// expert FFN 32; 31B H=128, 12 layers, K=V on 5 and 11, FFN 256.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "model/tensor_specs.h"
#include "test_util.h"
#include "tools/quant_recipe.h"
#include "tools/test_model.h"

namespace g4 {
namespace {

using testutil::expect_error;

// The tensors of a make-test-model GGUF of `arch`, stored as `stored`
// (1-D tensors and the router F32, as the generator writes them).
std::vector<QuantTensorIn> model_tensors(TestArch arch, TestScale scale, GgmlType stored, QuantModelInfo* info) {
  const ModelConfig c = test_model_config(arch, scale, scale == TestScale::Tiny ? 1024 : 262144);
  std::vector<QuantTensorIn> out;
  for (const TensorSpec& s : text_tensor_specs(c, /*include_dead=*/true)) {
    if (!(s.required || s.role == TensorRole::RopeFreqs || s.layer >= 0)) continue;
    out.push_back({s.gguf_name, s.ne, test_tensor_type(s, TestFormat::Gguf, stored)});
  }
  *info = {c.n_layers, c.moe ? c.n_experts : 0};
  return out;
}

std::map<std::string, GgmlType> plan(TestArch arch, const std::string& type, TestScale scale = TestScale::Tiny,
                                     const QuantRecipeOptions& opt = {}, GgmlType stored = GgmlType::F32) {
  QuantModelInfo info;
  const std::vector<QuantTensorIn> t = model_tensors(arch, scale, stored, &info);
  const auto ft = quant_file_type_from_name(type);
  EXPECT_TRUE(ft.has_value()) << type;
  const std::vector<QuantDecision> d = plan_quant_types(t, *ft, info, opt);
  std::map<std::string, GgmlType> m;
  for (size_t i = 0; i < t.size(); ++i) m[t[i].name] = d[i].type;
  return m;
}

std::string blk(int l, const char* suffix) { return "blk." + std::to_string(l) + "." + suffix; }

#define EXPECT_TYPE(m, name, type)                                                        \
  do {                                                                                    \
    ASSERT_TRUE((m).count(name)) << "no tensor " << (name);                               \
    EXPECT_EQ(ggml_type_name((m).at(name)), ggml_type_name(type)) << "tensor " << (name); \
  } while (0)

// Tensors llama-quantize never touches, whatever the file type.
void expect_untouched(const std::map<std::string, GgmlType>& m, GgmlType proj_stored = GgmlType::F32) {
  for (const auto& [name, type] : m) {
    const bool one_d_or_norm = name.find("_norm.weight") != std::string::npos || name == "rope_freqs.weight" ||
                               name.find("layer_output_scale") != std::string::npos ||
                               name.find(".scale") != std::string::npos;
    if (one_d_or_norm || name.find("ffn_gate_inp.weight") != std::string::npos) {
      EXPECT_EQ(ggml_type_name(type), "F32") << name;
    }
  }
  if (m.count("per_layer_model_proj.weight")) EXPECT_TYPE(m, "per_layer_model_proj.weight", proj_stored);
}

TEST(QuantRecipe, FileTypesAndAliases) {
  const std::pair<const char*, uint32_t> ids[] = {
      {"f32", 0},     {"f16", 1},     {"q4_0", 2},    {"q4_1", 3},    {"q8_0", 7},  {"q5_0", 8},  {"q5_1", 9},
      {"q4_k_s", 14}, {"Q4_K_M", 15}, {"q5_k_s", 16}, {"q5_k_m", 17}, {"q6_k", 18}, {"bf16", 32}, {"mxfp4_moe", 38}};
  for (const auto& [name, id] : ids) {
    auto t = quant_file_type_from_name(name);
    ASSERT_TRUE(t) << name;
    EXPECT_EQ(t->ftype, id) << name;
  }
  EXPECT_EQ(quant_file_type_from_name("q4_k")->name, "Q4_K_M");  // llama-quantize's alias
  EXPECT_EQ(quant_file_type_from_name("Q5_K")->name, "Q5_K_M");
  EXPECT_EQ(quant_file_type_from_name("q4_k_m")->default_type, GgmlType::Q4_K);
  EXPECT_EQ(quant_file_type_from_name("mxfp4_moe")->default_type, GgmlType::MXFP4);
  EXPECT_FALSE(quant_file_type_from_name("q3_k_m"));
  EXPECT_FALSE(quant_file_type_from_name("iq2_xxs"));
  EXPECT_FALSE(quant_file_type_from_name(""));
}

TEST(QuantRecipe, UseMoreBitsSets) {
  auto set = [](int n) {
    std::set<int> s;
    for (int i = 0; i < n; ++i)
      if (use_more_bits(i, n)) s.insert(i);
    return s;
  };
  EXPECT_EQ(set(10), (std::set<int>{0, 3, 6, 8, 9}));
  EXPECT_EQ(set(12), (std::set<int>{0, 3, 6, 9, 10, 11}));
  EXPECT_EQ(set(35), (std::set<int>{0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 31, 32, 33, 34}));
  EXPECT_EQ(set(25), (std::set<int>{0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23, 24}));
}

TEST(QuantRecipe, LlamaQuantizeTensorOrder) {
  std::vector<std::string> names = {"blk.10.attn_q.weight", "blk.2.ffn_up.weight", "token_embd.weight",
                                    "blk.2.attn_k.weight",  "output_norm.weight",  "blk.9.attn_v.weight"};
  std::sort(names.begin(), names.end(), llama_tensor_order_less);
  EXPECT_EQ(names, (std::vector<std::string>{"output_norm.weight", "token_embd.weight", "blk.2.attn_k.weight",
                                             "blk.2.ffn_up.weight", "blk.9.attn_v.weight", "blk.10.attn_q.weight"}));
}

TEST(QuantRecipe, WhichTensorsMayChange) {
  EXPECT_TRUE(tensor_allows_quantization("blk.0.attn_q.weight", {64, 128}));
  EXPECT_TRUE(tensor_allows_quantization("blk.0.ffn_gate_up_exps.weight", {64, 64, 8}));
  EXPECT_TRUE(tensor_allows_quantization("token_embd.weight", {64, 1024}));
  EXPECT_TRUE(tensor_allows_quantization("per_layer_token_embd.weight", {160, 1024}));
  EXPECT_FALSE(tensor_allows_quantization("per_layer_model_proj.weight", {64, 160}));
  EXPECT_FALSE(tensor_allows_quantization("blk.0.ffn_gate_inp.weight", {64, 8}));
  EXPECT_FALSE(tensor_allows_quantization("blk.0.ffn_gate_inp.scale", {64}));
  EXPECT_FALSE(tensor_allows_quantization("blk.0.attn_norm.weight", {64}));
  EXPECT_FALSE(tensor_allows_quantization("rope_freqs.weight", {32}));
  EXPECT_FALSE(tensor_allows_quantization("blk.0.layer_output_scale.weight", {1}));
  // ggml_n_dims ignores trailing 1s: {64, 1} is one-dimensional.
  EXPECT_FALSE(tensor_allows_quantization("blk.0.attn_q.weight", {64, 1}));
}

// ---- tiny E2B -------------------------------------------------------------------

TEST(QuantRecipe, TinyE2B_Q8_0_and_Q4_0) {
  for (const char* ft : {"q8_0", "q4_0"}) {
    SCOPED_TRACE(ft);
    const GgmlType def = std::string(ft) == "q8_0" ? GgmlType::Q8_0 : GgmlType::Q4_0;
    const auto m = plan(TestArch::E2B, ft);
    expect_untouched(m);
    // Tied embeddings follow the output head: Q6_K (Q8_0 for a Q8_0 file),
    // and 64 / 160 are not multiples of 256, so Q6_K falls back to Q8_0.
    EXPECT_TYPE(m, "token_embd.weight", GgmlType::Q8_0);
    EXPECT_TYPE(m, "per_layer_token_embd.weight", GgmlType::Q8_0);
    for (int l = 0; l < 10; ++l) {
      for (const char* s : {"attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight", "ffn_gate.weight",
                            "ffn_up.weight", "ffn_down.weight", "inp_gate.weight"})
        EXPECT_TYPE(m, blk(l, s), def);
      EXPECT_TYPE(m, blk(l, "proj.weight"), GgmlType::F16);  // ne0 16: no 32-block type fits
    }
  }
}

TEST(QuantRecipe, TinyE2B_Q4_K_M) {
  const auto m = plan(TestArch::E2B, "q4_k_m");
  expect_untouched(m);
  EXPECT_TYPE(m, "token_embd.weight", GgmlType::Q8_0);  // 64 % 256 != 0
  EXPECT_TYPE(m, "per_layer_token_embd.weight", GgmlType::Q8_0);
  const std::set<int> more = {0, 3, 6, 8, 9};
  for (int l = 0; l < 10; ++l) {
    SCOPED_TRACE(l);
    const bool full = l == 4 || l == 9;
    // Q6_K on use_more_bits layers, Q4_K elsewhere; neither fits ne0 = 64
    // (attn_v) or 96/192 (ffn_down): Q6_K -> Q8_0, Q4_K -> Q5_0.
    EXPECT_TYPE(m, blk(l, "attn_v.weight"), more.count(l) ? GgmlType::Q8_0 : GgmlType::Q5_0);
    EXPECT_TYPE(m, blk(l, "ffn_down.weight"), more.count(l) ? GgmlType::Q8_0 : GgmlType::Q5_0);
    EXPECT_TYPE(m, blk(l, "attn_q.weight"), GgmlType::Q5_0);
    EXPECT_TYPE(m, blk(l, "attn_k.weight"), GgmlType::Q5_0);
    // attn_output rows: 4 heads x 32 = 128 (Q5_0) or 4 x 64 = 256 on full layers (Q4_K fits).
    EXPECT_TYPE(m, blk(l, "attn_output.weight"), full ? GgmlType::Q4_K : GgmlType::Q5_0);
    EXPECT_TYPE(m, blk(l, "ffn_gate.weight"), GgmlType::Q5_0);
    EXPECT_TYPE(m, blk(l, "inp_gate.weight"), GgmlType::Q5_0);
    EXPECT_TYPE(m, blk(l, "proj.weight"), GgmlType::F16);  // Q4_K -> Q5_0 -> F16 (16 columns)
  }
}

TEST(QuantRecipe, TinyE2B_Q4_K_S_Q5_K_M_Q5_K_S_Q6_K) {
  {
    const auto m = plan(TestArch::E2B, "q4_k_s");
    for (int l = 0; l < 10; ++l) {
      // Q5_K for the first 4 attn_v (-> Q5_1 at 64 columns), Q4_K (-> Q5_0) after.
      EXPECT_TYPE(m, blk(l, "attn_v.weight"), l < 4 ? GgmlType::Q5_1 : GgmlType::Q5_0);
      // ffn_down: Q5_K for layers < 10/8 = 1.
      EXPECT_TYPE(m, blk(l, "ffn_down.weight"), l < 1 ? GgmlType::Q5_1 : GgmlType::Q5_0);
    }
  }
  {
    const auto m = plan(TestArch::E2B, "q5_k_m");
    const std::set<int> more = {0, 3, 6, 8, 9};
    for (int l = 0; l < 10; ++l) {
      EXPECT_TYPE(m, blk(l, "attn_v.weight"), more.count(l) ? GgmlType::Q8_0 : GgmlType::Q5_1);
      EXPECT_TYPE(m, blk(l, "ffn_down.weight"), more.count(l) ? GgmlType::Q8_0 : GgmlType::Q5_1);
      EXPECT_TYPE(m, blk(l, "attn_output.weight"), l == 4 || l == 9 ? GgmlType::Q5_K : GgmlType::Q5_1);
    }
  }
  {
    const auto m = plan(TestArch::E2B, "q5_k_s");  // no recipe beyond the default type
    for (int l = 0; l < 10; ++l) {
      EXPECT_TYPE(m, blk(l, "attn_v.weight"), GgmlType::Q5_1);
      EXPECT_TYPE(m, blk(l, "ffn_down.weight"), GgmlType::Q5_1);
    }
    EXPECT_TYPE(m, "token_embd.weight", GgmlType::Q8_0);
  }
  {
    const auto m = plan(TestArch::E2B, "q6_k");
    for (int l = 0; l < 10; ++l) {
      EXPECT_TYPE(m, blk(l, "attn_q.weight"), GgmlType::Q8_0);
      EXPECT_TYPE(m, blk(l, "attn_output.weight"), l == 4 || l == 9 ? GgmlType::Q6_K : GgmlType::Q8_0);
      EXPECT_TYPE(m, blk(l, "proj.weight"), GgmlType::F16);
    }
  }
}

TEST(QuantRecipe, TinyE2B_FloatTypesAndMxfp4) {
  for (const auto& [ft, t] :
       {std::pair{"f16", GgmlType::F16}, std::pair{"bf16", GgmlType::BF16}, std::pair{"f32", GgmlType::F32}}) {
    const auto m = plan(TestArch::E2B, ft);
    expect_untouched(m);
    EXPECT_TYPE(m, "token_embd.weight", t);  // no recipe for float file types
    EXPECT_TYPE(m, blk(0, "proj.weight"), t);
    EXPECT_TYPE(m, blk(3, "attn_v.weight"), t);
  }
  const auto m = plan(TestArch::E2B, "mxfp4_moe");  // dense: everything Q8_0
  EXPECT_TYPE(m, "token_embd.weight", GgmlType::Q8_0);
  EXPECT_TYPE(m, blk(0, "attn_q.weight"), GgmlType::Q8_0);
  EXPECT_TYPE(m, blk(0, "ffn_down.weight"), GgmlType::Q8_0);
  EXPECT_TYPE(m, blk(0, "proj.weight"), GgmlType::F16);
}

// ---- tiny E4B, 26B-A4B, 31B ----------------------------------------------------

TEST(QuantRecipe, TinyE4B_Q4_K_M) {
  const auto m = plan(TestArch::E4B, "q4_k_m");
  expect_untouched(m);
  EXPECT_TYPE(m, "token_embd.weight", GgmlType::Q8_0);
  EXPECT_TYPE(m, "per_layer_token_embd.weight", GgmlType::Q8_0);  // 192 columns
  const std::set<int> more = {0, 3, 6, 9, 10, 11};
  for (int l = 0; l < 12; ++l) {
    EXPECT_TYPE(m, blk(l, "attn_v.weight"), more.count(l) ? GgmlType::Q8_0 : GgmlType::Q5_0);
    EXPECT_TYPE(m, blk(l, "ffn_down.weight"), more.count(l) ? GgmlType::Q8_0 : GgmlType::Q5_0);  // 160 columns
    EXPECT_TYPE(m, blk(l, "attn_output.weight"), l == 5 || l == 11 ? GgmlType::Q4_K : GgmlType::Q5_0);
  }
}

TEST(QuantRecipe, Tiny26B_EightExpertRules) {
  // llama.cpp special-cases models with exactly 8 experts (Mixtral): attn_k
  // and attn_v go to Q8_0 for every file type, attn_output to Q5_K for Q4_K_*.
  {
    const auto m = plan(TestArch::A26B, "q4_0");
    expect_untouched(m);
    for (int l = 0; l < 12; ++l) {
      const bool full = l == 5 || l == 11;
      EXPECT_TYPE(m, blk(l, "attn_k.weight"), GgmlType::Q8_0);
      if (!full) EXPECT_TYPE(m, blk(l, "attn_v.weight"), GgmlType::Q8_0);
      EXPECT_FALSE(m.count(blk(l, "attn_v.weight")) && full) << "K=V layer " << l << " has attn_v";
      EXPECT_TYPE(m, blk(l, "attn_q.weight"), GgmlType::Q4_0);
      EXPECT_TYPE(m, blk(l, "attn_output.weight"), GgmlType::Q4_0);
      EXPECT_TYPE(m, blk(l, "ffn_gate_up_exps.weight"), GgmlType::Q4_0);
      EXPECT_TYPE(m, blk(l, "ffn_down_exps.weight"), GgmlType::Q4_0);
      EXPECT_TYPE(m, blk(l, "ffn_gate_inp.weight"), GgmlType::F32);
    }
  }
  {
    const auto m = plan(TestArch::A26B, "q4_k_m");
    const std::set<int> more = {0, 3, 6, 9, 10, 11};  // ffn_down: the layer number from the name
    for (int l = 0; l < 12; ++l) {
      SCOPED_TRACE(l);
      const bool full = l == 5 || l == 11;
      EXPECT_TYPE(m, blk(l, "attn_k.weight"), GgmlType::Q8_0);
      if (!full) EXPECT_TYPE(m, blk(l, "attn_v.weight"), GgmlType::Q8_0);
      // Q5_K: fits the 256 columns of full layers, Q5_1 at 128.
      EXPECT_TYPE(m, blk(l, "attn_output.weight"), full ? GgmlType::Q5_K : GgmlType::Q5_1);
      EXPECT_TYPE(m, blk(l, "ffn_down.weight"), more.count(l) ? GgmlType::Q8_0 : GgmlType::Q5_0);
      EXPECT_TYPE(m, blk(l, "ffn_down_exps.weight"), more.count(l) ? GgmlType::Q8_0 : GgmlType::Q5_0);
      EXPECT_TYPE(m, blk(l, "ffn_gate_up_exps.weight"), GgmlType::Q5_0);
    }
  }
  {
    const auto m = plan(TestArch::A26B, "mxfp4_moe");
    EXPECT_TYPE(m, "token_embd.weight", GgmlType::Q8_0);
    for (int l = 0; l < 12; ++l) {
      EXPECT_TYPE(m, blk(l, "ffn_gate_up_exps.weight"), GgmlType::MXFP4);
      EXPECT_TYPE(m, blk(l, "ffn_down_exps.weight"), GgmlType::MXFP4);
      EXPECT_TYPE(m, blk(l, "ffn_down.weight"), GgmlType::Q8_0);
      EXPECT_TYPE(m, blk(l, "attn_q.weight"), GgmlType::Q8_0);
      EXPECT_TYPE(m, blk(l, "ffn_gate_inp.weight"), GgmlType::F32);
    }
  }
}

TEST(QuantRecipe, Tiny31B_AttnVCountedOverTheFile) {
  // No attn_v on the K=V layers 5 and 11: the counter runs over the 10
  // attn_v tensors, so use_more_bits(i, 10) = {0,3,6,8,9} lands on layers
  // {0, 3, 7, 9, 10}. ffn_down (256 columns, every layer) keeps Q6_K/Q4_K.
  const auto m = plan(TestArch::D31B, "q4_k_m");
  expect_untouched(m);
  EXPECT_TYPE(m, "token_embd.weight", GgmlType::Q8_0);  // 128 % 256 != 0
  const std::set<int> v_more = {0, 3, 7, 9, 10}, down_more = {0, 3, 6, 9, 10, 11};
  for (int l = 0; l < 12; ++l) {
    SCOPED_TRACE(l);
    const bool full = l == 5 || l == 11;
    if (full)
      EXPECT_FALSE(m.count(blk(l, "attn_v.weight")));
    else
      EXPECT_TYPE(m, blk(l, "attn_v.weight"), v_more.count(l) ? GgmlType::Q8_0 : GgmlType::Q5_0);
    EXPECT_TYPE(m, blk(l, "ffn_down.weight"), down_more.count(l) ? GgmlType::Q6_K : GgmlType::Q4_K);
    EXPECT_TYPE(m, blk(l, "ffn_gate.weight"), GgmlType::Q5_0);  // 128 columns
    EXPECT_TYPE(m, blk(l, "attn_output.weight"), full ? GgmlType::Q4_K : GgmlType::Q5_0);
  }
}

// ---- released shapes -------------------------------------------------------------

TEST(QuantRecipe, FullE2B_Q4_K_M_MatchesTheUsualFile) {
  const auto m = plan(TestArch::E2B, "q4_k_m", TestScale::Full);
  expect_untouched(m);
  // Every width is a multiple of 256 here: no fallbacks.
  EXPECT_TYPE(m, "token_embd.weight", GgmlType::Q6_K);
  EXPECT_TYPE(m, "per_layer_token_embd.weight", GgmlType::Q6_K);  // 35 x 256 = 8960
  const std::set<int> more = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 31, 32, 33, 34};
  for (int l = 0; l < 35; ++l) {
    SCOPED_TRACE(l);
    EXPECT_TYPE(m, blk(l, "attn_v.weight"), more.count(l) ? GgmlType::Q6_K : GgmlType::Q4_K);
    EXPECT_TYPE(m, blk(l, "ffn_down.weight"), more.count(l) ? GgmlType::Q6_K : GgmlType::Q4_K);
    EXPECT_TYPE(m, blk(l, "attn_q.weight"), GgmlType::Q4_K);
    EXPECT_TYPE(m, blk(l, "attn_output.weight"), GgmlType::Q4_K);
    EXPECT_TYPE(m, blk(l, "proj.weight"), GgmlType::Q4_K);
  }
}

TEST(QuantRecipe, Full26B_Q4_K_M) {
  // 128 experts: no 8-expert rules. attn_v only on the 25 sliding layers.
  const auto m = plan(TestArch::A26B, "q4_k_m", TestScale::Full);
  // use_more_bits(i, 25) = {0,1,2,5,8,11,14,17,20,21,22,23,24} over the
  // sliding layers 0,1,2,3,4,6,7,8,9,10,12,...
  const std::set<int> v_more = {0, 1, 2, 6, 9, 13, 16, 20, 24, 25, 26, 27, 28};
  const std::set<int> down_more = {0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29};
  for (int l = 0; l < 30; ++l) {
    SCOPED_TRACE(l);
    const bool full = l % 6 == 5;
    if (!full) EXPECT_TYPE(m, blk(l, "attn_v.weight"), v_more.count(l) ? GgmlType::Q6_K : GgmlType::Q4_K);
    EXPECT_TYPE(m, blk(l, "attn_k.weight"), GgmlType::Q4_K);
    // 704 and 2112 columns are not multiples of 256: Q6_K -> Q8_0, Q4_K -> Q5_0.
    EXPECT_TYPE(m, blk(l, "ffn_down_exps.weight"), down_more.count(l) ? GgmlType::Q8_0 : GgmlType::Q5_0);
    EXPECT_TYPE(m, blk(l, "ffn_down.weight"), down_more.count(l) ? GgmlType::Q8_0 : GgmlType::Q5_0);
    EXPECT_TYPE(m, blk(l, "ffn_gate_up_exps.weight"), GgmlType::Q4_K);  // 2816 = 11 x 256
    EXPECT_TYPE(m, blk(l, "attn_output.weight"), GgmlType::Q4_K);
  }
  EXPECT_TYPE(m, "token_embd.weight", GgmlType::Q6_K);
}

// ---- options ------------------------------------------------------------------------

TEST(QuantRecipe, PureSkipsTheRecipeButNotTheFallback) {
  QuantRecipeOptions o;
  o.pure = true;
  const auto m = plan(TestArch::E2B, "q4_k_m", TestScale::Tiny, o);
  EXPECT_TYPE(m, "token_embd.weight", GgmlType::Q5_0);  // Q4_K, 64 columns -> Q5_0
  for (int l = 0; l < 10; ++l) {
    EXPECT_TYPE(m, blk(l, "attn_v.weight"), GgmlType::Q5_0);
    EXPECT_TYPE(m, blk(l, "ffn_down.weight"), GgmlType::Q5_0);
  }
  EXPECT_TYPE(m, blk(4, "attn_output.weight"), GgmlType::Q4_K);
  expect_untouched(m);
}

TEST(QuantRecipe, TensorTypeOverrides) {
  QuantRecipeOptions o;
  o.overrides.push_back(parse_tensor_type_override("ATTN_V=q8_0"));  // lower-cased like llama-quantize
  o.overrides.push_back(parse_tensor_type_override("blk\\.1\\.ffn_down=Q6_K"));
  o.overrides.push_back(parse_tensor_type_override("ffn_down=q4_0"));  // later pattern: only if the first did not match
  const auto m = plan(TestArch::D31B, "q4_k_m", TestScale::Tiny, o);
  for (int l = 0; l < 12; ++l) {
    if (l != 5 && l != 11) EXPECT_TYPE(m, blk(l, "attn_v.weight"), GgmlType::Q8_0);
    EXPECT_TYPE(m, blk(l, "ffn_down.weight"), l == 1 ? GgmlType::Q6_K : GgmlType::Q4_0);
  }
  EXPECT_TYPE(m, blk(0, "attn_q.weight"), GgmlType::Q5_0);  // untouched by the patterns: recipe
  // Overrides never touch what llama-quantize keeps (norms, router).
  QuantRecipeOptions all;
  all.overrides.push_back(parse_tensor_type_override(".*=q8_0"));
  const auto a = plan(TestArch::A26B, "q4_0", TestScale::Tiny, all);
  expect_untouched(a);
  EXPECT_TYPE(a, "token_embd.weight", GgmlType::Q8_0);
  EXPECT_TYPE(a, blk(0, "ffn_down_exps.weight"), GgmlType::Q8_0);
  // An override still goes through the shape fallback.
  QuantRecipeOptions k;
  k.overrides.push_back(parse_tensor_type_override("proj=q6_k"));
  const auto p = plan(TestArch::E2B, "q8_0", TestScale::Tiny, k);
  EXPECT_TYPE(p, blk(0, "proj.weight"), GgmlType::F16);  // 16 columns: Q6_K -> Q8_0 -> F16
}

TEST(QuantRecipe, OverridesOnlyForQuantizedFileTypes) {
  // llama-quantize applies --tensor-type only when the file type is quantized.
  QuantRecipeOptions o;
  o.overrides.push_back(parse_tensor_type_override("attn_v=q8_0"));
  const auto m = plan(TestArch::E2B, "f16", TestScale::Tiny, o);
  EXPECT_TYPE(m, blk(0, "attn_v.weight"), GgmlType::F16);
}

TEST(QuantRecipe, KeptTensorsKeepTheirStoredType) {
  // From a BF16 file, what llama-quantize does not touch stays BF16 / F32.
  const auto m = plan(TestArch::E2B, "q4_0", TestScale::Tiny, {}, GgmlType::BF16);
  EXPECT_TYPE(m, "per_layer_model_proj.weight", GgmlType::BF16);
  EXPECT_TYPE(m, "output_norm.weight", GgmlType::F32);
}

TEST(QuantRecipe, BadOverrides) {
  expect_error([] { parse_tensor_type_override("attn_v"); }, {"NAME_REGEX=TYPE"});
  expect_error([] { parse_tensor_type_override("=q8_0"); }, {"missing tensor name"});
  expect_error([] { parse_tensor_type_override("attn_v="); }, {"missing type"});
  expect_error([] { parse_tensor_type_override("attn_v=q9_9"); }, {"unknown tensor type", "q9_9"});
  expect_error([] { parse_tensor_type_override("attn_(v=q8_0"); }, {"not a valid regular expression"});
}

}  // namespace
}  // namespace g4
