// The tensors a Gemma 4 checkpoint holds, derived from its config: the single
// source of truth for loading (validation), conversion and the test-model
// generator. Names are GGUF names (canonical inside the engine) with their HF
// counterparts; shapes are in ggml order (HF shape reversed).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/config.h"

namespace g4 {

enum class TensorRole {
  Weight,      // matrix; may be quantized
  Norm,        // 1-D norm weight (kept F32)
  Scalar,      // layer_output_scale, router scales (kept F32)
  Embedding,   // token_embd / per_layer_token_embd
  RopeFreqs,   // GGUF-only, synthesised (F32)
};

struct TensorSpec {
  std::string gguf_name;        // "blk.3.attn_q.weight"
  std::string hf_name;          // without prefix: "layers.3.self_attn.q_proj.weight"; empty if GGUF-only
  std::vector<int64_t> ne;      // ggml order
  TensorRole role = TensorRole::Weight;
  bool required = true;         // false: optional or dead (k/v of KV-shared layers)
  int layer = -1;               // -1 for global tensors
};

// Every tensor of the text decoder. `include_dead` adds the K/V/k_norm tensors
// that released checkpoints still carry on KV-shared layers (marked optional).
std::vector<TensorSpec> text_tensor_specs(const ModelConfig& c, bool include_dead = true);

// HF name (with "model.language_model." or "model." prefix) -> GGUF name, or
// nullopt for tensors a text engine ignores (vision/audio towers, lm_head).
std::optional<std::string> hf_to_gguf_name(std::string_view hf_name);

// 64 × 1.0 then 1e30 up to global_head_dim/2 (proportional RoPE as freq factors).
std::vector<float> rope_freqs_values(const ModelConfig& c);

}  // namespace g4
