// The Gemma 4 text tensors (spec gemma4-text.md §5.3 and §6).
#include "model/tensor_specs.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace g4 {
namespace {

// HF suffix after "layers.N." -> GGUF suffix after "blk.N.".
struct NamePair {
  const char* hf;
  const char* gguf;
};
constexpr NamePair kLayerNames[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"},
    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"post_attention_layernorm.weight", "post_attention_norm.weight"},
    {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
    {"layer_scalar", "layer_output_scale.weight"},
    {"per_layer_input_gate.weight", "inp_gate.weight"},
    {"per_layer_projection.weight", "proj.weight"},
    {"post_per_layer_input_norm.weight", "post_norm.weight"},
    {"router.proj.weight", "ffn_gate_inp.weight"},
    {"router.scale", "ffn_gate_inp.scale"},
    {"router.per_expert_scale", "ffn_down_exps.scale"},
    {"experts.gate_up_proj", "ffn_gate_up_exps.weight"},
    {"experts.down_proj", "ffn_down_exps.weight"},
    {"pre_feedforward_layernorm_2.weight", "pre_ffw_norm_2.weight"},
    {"post_feedforward_layernorm_1.weight", "post_ffw_norm_1.weight"},
    {"post_feedforward_layernorm_2.weight", "post_ffw_norm_2.weight"},
};

constexpr NamePair kGlobalNames[] = {
    {"embed_tokens.weight", "token_embd.weight"},
    {"norm.weight", "output_norm.weight"},
    {"embed_tokens_per_layer.weight", "per_layer_token_embd.weight"},
    {"per_layer_model_projection.weight", "per_layer_model_proj.weight"},
    {"per_layer_projection_norm.weight", "per_layer_proj_norm.weight"},
};

const char* hf_layer_name(const char* gguf_suffix) {
  for (const auto& p : kLayerNames)
    if (std::strcmp(p.gguf, gguf_suffix) == 0) return p.hf;
  return "";
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

}  // namespace

std::vector<TensorSpec> text_tensor_specs(const ModelConfig& cin, bool include_dead) {
  const ModelConfig* cp = &cin;
  ModelConfig derived;
  if (cin.layers.empty()) {
    derived = cin;
    derived.derive();
    cp = &derived;
  }
  const ModelConfig& c = *cp;
  const int64_t H = c.hidden, V = c.vocab_size, L = c.n_layers, P = c.ple_dim;
  std::vector<TensorSpec> out;
  auto global = [&](const char* gguf, const char* hf, std::vector<int64_t> ne, TensorRole role, bool req = true) {
    out.push_back({gguf, hf, std::move(ne), role, req, -1});
  };
  global("token_embd.weight", "embed_tokens.weight", {H, V}, TensorRole::Embedding);
  global("output_norm.weight", "norm.weight", {H}, TensorRole::Norm);
  // Untied output head (never in released Gemma 4); optional when tied.
  global("output.weight", c.tie_embeddings ? "" : "lm_head.weight", {H, V}, TensorRole::Weight, !c.tie_embeddings);
  bool any_full = false;
  for (const auto& l : c.layers) any_full = any_full || l.type == LayerType::Full;
  if (any_full) global("rope_freqs.weight", "", {c.global_head_dim / 2}, TensorRole::RopeFreqs, false);
  if (P > 0) {
    global("per_layer_token_embd.weight", "embed_tokens_per_layer.weight", {L * P, c.ple_vocab}, TensorRole::Embedding);
    global("per_layer_model_proj.weight", "per_layer_model_projection.weight", {H, L * P}, TensorRole::Weight);
    global("per_layer_proj_norm.weight", "per_layer_projection_norm.weight", {P}, TensorRole::Norm);
  }

  for (int i = 0; i < c.n_layers; ++i) {
    const LayerConfig& l = c.layers[i];
    const std::string blk = "blk." + std::to_string(i) + ".";
    const std::string hfl = "layers." + std::to_string(i) + ".";
    const int64_t D = l.head_dim, Q = int64_t(c.n_heads) * D, KV = int64_t(l.n_kv_heads) * D, F = l.ffn_dim;
    auto add = [&](const char* suffix, std::vector<int64_t> ne, TensorRole role, bool req = true) {
      out.push_back({blk + suffix, hfl + hf_layer_name(suffix), std::move(ne), role, req, i});
    };
    // K/V projections: required on layers that own K/V; dead (optional) on
    // KV-shared layers, which released checkpoints still carry.
    const bool kv_wanted = l.has_kv || include_dead;
    add("attn_norm.weight", {H}, TensorRole::Norm);
    add("attn_q.weight", {H, Q}, TensorRole::Weight);
    if (kv_wanted) add("attn_k.weight", {H, KV}, TensorRole::Weight, l.has_kv);
    if (kv_wanted && !l.k_eq_v) add("attn_v.weight", {H, KV}, TensorRole::Weight, l.has_kv);
    add("attn_q_norm.weight", {D}, TensorRole::Norm);
    if (kv_wanted) add("attn_k_norm.weight", {D}, TensorRole::Norm, l.has_kv);
    add("attn_output.weight", {Q, H}, TensorRole::Weight);
    add("post_attention_norm.weight", {H}, TensorRole::Norm);
    add("ffn_norm.weight", {H}, TensorRole::Norm);
    add("ffn_gate.weight", {H, F}, TensorRole::Weight);
    add("ffn_up.weight", {H, F}, TensorRole::Weight);
    add("ffn_down.weight", {F, H}, TensorRole::Weight);
    add("post_ffw_norm.weight", {H}, TensorRole::Norm);
    add("layer_output_scale.weight", {1}, TensorRole::Scalar);
    if (P > 0) {
      add("inp_gate.weight", {H, P}, TensorRole::Weight);
      add("proj.weight", {P, H}, TensorRole::Weight);
      add("post_norm.weight", {H}, TensorRole::Norm);
    }
    if (c.moe) {
      const int64_t E = c.n_experts, Fe = c.expert_ffn_dim;
      add("ffn_gate_inp.weight", {H, E}, TensorRole::Weight);
      add("ffn_gate_inp.scale", {H}, TensorRole::Scalar);
      // Fused experts; gate rows first. Files may instead hold the split
      // ffn_gate_exps / ffn_up_exps {H, Fe, E} (Checkpoint accepts either).
      add("ffn_gate_up_exps.weight", {H, 2 * Fe, E}, TensorRole::Weight);
      add("ffn_down_exps.weight", {Fe, H, E}, TensorRole::Weight);
      add("ffn_down_exps.scale", {E}, TensorRole::Scalar);
      add("pre_ffw_norm_2.weight", {H}, TensorRole::Norm);
      add("post_ffw_norm_1.weight", {H}, TensorRole::Norm);
      add("post_ffw_norm_2.weight", {H}, TensorRole::Norm);
    }
  }
  return out;
}

std::optional<std::string> hf_to_gguf_name(std::string_view name) {
  std::string_view rest;
  if (starts_with(name, "model.language_model.")) rest = name.substr(21);
  else if (starts_with(name, "model.")) rest = name.substr(6);
  else return std::nullopt;  // lm_head.weight (tied) and anything outside the model
  for (const char* skip : {"vision_tower.", "embed_vision.", "audio_tower.", "embed_audio."})
    if (starts_with(rest, skip)) return std::nullopt;
  for (const auto& p : kGlobalNames)
    if (rest == p.hf) return std::string(p.gguf);
  if (!starts_with(rest, "layers.")) return std::nullopt;
  rest.remove_prefix(7);
  size_t k = 0;
  while (k < rest.size() && rest[k] >= '0' && rest[k] <= '9') ++k;
  if (k == 0 || k > 4 || k >= rest.size() || rest[k] != '.' || (k > 1 && rest[0] == '0')) return std::nullopt;
  const std::string_view idx = rest.substr(0, k), suffix = rest.substr(k + 1);
  for (const auto& p : kLayerNames)
    if (suffix == p.hf) return "blk." + std::string(idx) + "." + p.gguf;
  return std::nullopt;
}

std::vector<float> rope_freqs_values(const ModelConfig& c) {
  const int n = c.global_head_dim / 2;
  const int rotated_pairs =
      static_cast<int>(std::floor(static_cast<double>(c.partial_rotary_factor_full) * c.global_head_dim / 2.0));
  std::vector<float> v(static_cast<size_t>(std::max(n, 0)), 1e30f);
  for (int i = 0; i < rotated_pairs && i < n; ++i) v[i] = 1.0f;
  return v;
}

}  // namespace g4
