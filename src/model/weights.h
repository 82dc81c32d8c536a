// A Checkpoint's text-decoder tensors bound per layer for the forward pass.
//
// Matrices stay where the checkpoint mapped them (TensorView pointers plus a
// kernels::WeightMatrix view, any computable type, zero copy). Small vectors —
// norm weights, layer scalars, router scales, the rope_freqs factors — are
// converted to fp32 once at bind time. Binding checks that every tensor the
// forward pass reads has a type the kernels compute with, naming the tensor.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "kernels/kernels.h"
#include "model/checkpoint.h"
#include "model/config.h"

namespace g4 {

// A matrix operand: the checkpoint tensor and its kernel view.
struct BoundMatrix {
  const TensorView* t = nullptr;
  kernels::WeightMatrix w;
  explicit operator bool() const { return t != nullptr; }
};

struct LayerWeights {
  // Attention. k/v/k_norm are unset on KV-shared layers; v is unset on K=V layers.
  BoundMatrix attn_q, attn_k, attn_v, attn_output;
  std::vector<float> attn_norm, q_norm, k_norm, post_attention_norm;

  // Dense MLP (always present; the always-on branch on MoE layers).
  BoundMatrix ffn_gate, ffn_up, ffn_down;
  std::vector<float> ffn_norm, post_ffw_norm;

  // Per-layer embedding injection (ple_dim > 0).
  BoundMatrix inp_gate, proj;
  std::vector<float> post_norm;

  // MoE (config.moe). Experts are 3-D tensors {n_in, n_out, E}: either the
  // fused gate_up (gate rows first) or split gate + up; down is {Fe, H, E}.
  BoundMatrix router;                   // ffn_gate_inp.weight {H, E}
  std::vector<float> router_scale;      // ffn_gate_inp.scale [H]
  std::vector<float> expert_scale;      // ffn_down_exps.scale [E]
  const TensorView* gate_up_exps = nullptr;
  const TensorView* gate_exps = nullptr;
  const TensorView* up_exps = nullptr;
  const TensorView* down_exps = nullptr;
  std::vector<float> pre_ffw_norm_2, post_ffw_norm_1, post_ffw_norm_2;

  float layer_scalar = 1.0f;  // layer_output_scale (loaded, never defaulted)
};

struct ModelWeights {
  BoundMatrix token_embd;   // {H, V}; also the output head when tied
  BoundMatrix output;       // == token_embd when tied
  std::vector<float> output_norm;

  // Per-layer embeddings (ple_dim > 0).
  BoundMatrix per_layer_token_embd;  // {L·P, ple_vocab}
  BoundMatrix per_layer_model_proj;  // {H, L·P}
  std::vector<float> per_layer_proj_norm;

  // GGUF rope_freqs.weight (frequency divisors of full layers), empty if absent.
  std::vector<float> rope_freqs;

  std::vector<LayerWeights> layers;

  // Throws g4::Error naming the tensor for a missing tensor or an uncomputable type.
  static ModelWeights bind(const Checkpoint& ck);
  // Bytes of the fp32 copies made at bind time (norms, scalars, router scales,
  // rope_freqs); matrices are not copied.
  uint64_t copied_bytes() const;
};

// An fp32 copy of a small F32/F16/BF16 (or quantized) tensor.
std::vector<float> tensor_to_f32(const TensorView& t);

}  // namespace g4
