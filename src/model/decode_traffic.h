// Bytes of weights one decode step reads: the numerator of the memory-bandwidth
// roofline for decode (tokens/s ≤ read bandwidth ÷ bytes per token), used by
// `gemma4 bench --membw -m MODEL`.
//
// Counting rule (per generated token, at an empty context; the KV cache is not
// weights and is left out):
//   * every tensor the forward pass reads is read once in full, as stored in
//     the checkpoint (quantized bytes for quantized tensors), except
//   * token_embd and per_layer_token_embd: one row each (a lookup, not a matmul);
//   * MoE expert matrices (blk.N.ffn_*_exps.weight): top_k / n_experts of their
//     bytes (only the routed experts are touched);
//   * a tied output head (no output.weight) reads the whole token_embd matrix,
//     on top of the one embedding row;
//   * the dead K/V tensors of KV-shared layers are never read.
// Norms, scalars and rope_freqs count in full: they are tiny and read every step.
#pragma once
#include <cstdint>

#include "model/checkpoint.h"

namespace g4 {

struct DecodeWeightBytes {
  uint64_t embedding_rows = 0;  // one row of token_embd (+ per_layer_token_embd)
  uint64_t output_head = 0;     // output.weight, or the full token_embd when tied
  uint64_t experts = 0;         // routed share of the MoE expert matrices
  uint64_t other = 0;           // everything else (attention, dense MLP, PLE projections, norms, router)
  uint64_t total() const { return embedding_rows + output_head + experts + other; }
};

DecodeWeightBytes decode_weight_bytes(const Checkpoint& ck);

}  // namespace g4
