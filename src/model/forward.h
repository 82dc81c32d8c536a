// The Gemma 4 text decoder forward pass on CPU (spec gemma4-text.md §2): one
// code path for every variant (E2B/E4B with per-layer embeddings and KV
// sharing, 26B-A4B MoE, 31B dense), fp32 activations, norms, softmax, router
// and residual stream; weights in any type the kernels compute with.
//
// A Model owns the checkpoint, the bound weights, the KV cache, a thread pool
// and scratch buffers sized once for max_batch tokens. forward() appends
// tokens at the next positions: prompts are processed in chunks of up to
// max_batch tokens (matrix × matrix), decode is a chunk of one.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/attention.h"
#include "model/checkpoint.h"
#include "model/kv_cache.h"
#include "model/weights.h"

namespace g4 {

struct ModelParams {
  int64_t n_ctx = 4096;     // positions the cache holds (clamped to max_position_embeddings when set)
  int64_t max_batch = 64;   // prefill chunk size (tokens per forward step)
  int n_threads = 0;        // 0: physical cores
  std::optional<kernels::Isa> isa;  // force a kernel ISA (tests, benchmarks); default: best available
  // Attention kernel ISA; default: the one matching `isa` when that is set
  // (attn::isa_for_kernel_isa), else the best available (capped by G4_ISA).
  std::optional<attn::Isa> attn_isa;
  // K/V cache element type: f16 (default), bf16, q8_0 or f32 (attn::kv_type_supported).
  GgmlType kv_type = attn::kDefaultKvType;
  // Q8_0/Q4_0 matmuls: Default quantizes activations to Q8_0 as ggml does;
  // F32 keeps fp32 activations against the dequantized weights (tests).
  kernels::ActMode matmul_act = kernels::ActMode::Default;
};

enum class LogitsMode {
  Last,  // logits of the last token only (vocab floats)
  All,   // every token's logits (n × vocab floats, row-major)
  None,  // no output head (prefill only)
};

class Model {
 public:
  // Opens a GGUF file or HF folder (see Checkpoint::open) and binds it.
  static std::unique_ptr<Model> open(const std::string& path, const ModelParams& params = {});
  Model(std::shared_ptr<const Checkpoint> ck, const ModelParams& params);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Runs `tokens` at positions n_past() … n_past()+n−1 and appends their K/V.
  // Final soft-capped logits; the span stays valid until the next call.
  // Throws g4::Error (before touching the cache) for an id outside the
  // vocabulary or when the context would overflow.
  std::span<const float> forward(std::span<const int32_t> tokens, LogitsMode mode = LogitsMode::Last);

  void reset();  // empty cache, next position 0
  int64_t n_past() const { return cache_.n_past(); }
  int64_t n_ctx() const { return cache_.n_ctx(); }
  int64_t max_batch() const { return max_batch_; }
  int64_t vocab_size() const { return config().vocab_size; }
  int n_threads() const { return pool_->size(); }

  const ModelConfig& config() const { return ck_->config(); }
  const Checkpoint& checkpoint() const { return *ck_; }
  const ModelWeights& weights() const { return w_; }
  const KvCache& cache() const { return cache_; }
  const attn::Table& attention_table() const { return *at_; }
  // Bytes of the scratch buffers sized at construction for max_batch tokens
  // (activations, RoPE tables, attention workspace, logits): with the
  // KV cache and weights().copied_bytes() the model's anonymous memory; the
  // weights themselves stay in the checkpoint's file mapping.
  uint64_t scratch_bytes() const;
  float embed_scale() const { return embed_scale_; }
  // RoPE frequency table of layer `l` (head_dim/2 entries; 0 = lane pair does not rotate).
  const std::vector<float>& rope_freqs(int l) const { return freqs_[static_cast<size_t>(l)]; }

 private:
  void forward_chunk(const int32_t* tokens, int64_t n, LogitsMode mode, float* logits);
  void per_layer_inputs(const int32_t* tokens, int64_t n);
  void attention_block(int l, int64_t n, int64_t p0);
  void ffn_block(int l, int64_t n);
  void moe_block(int l, int64_t n, float* out);
  void ple_block(int l, int64_t n);
  void rope_tables(int64_t n, int64_t p0);
  // parallel_for over the pool, or inline when `work` (≈ flops) is too small
  // to pay for waking the workers.
  template <class F>
  void par(int64_t n_tasks, double work, F&& fn) {
    if (work < 65536.0 || n_tasks < 2) fn(int64_t{0}, n_tasks, 0);
    else pool_->parallel_for(n_tasks, fn);
  }

  std::shared_ptr<const Checkpoint> ck_;
  ModelWeights w_;
  kernels::ActMode act_ = kernels::ActMode::Default;
  KvCache cache_;
  std::unique_ptr<ThreadPool> pool_;
  const kernels::KernelTable* k_ = nullptr;
  const attn::Table* at_ = nullptr;
  int64_t max_batch_ = 0;
  float embed_scale_ = 1.f;
  float ple_embed_scale_ = 1.f;

  // Per-layer RoPE frequencies, and the per-chunk cos/sin tables per layer
  // (layers with identical frequency tables share one: rope_group_).
  std::vector<std::vector<float>> freqs_;
  std::vector<int> rope_group_;
  std::vector<std::vector<float>> cos_, sin_;  // per group: max_batch × half

  // Scratch, sized once for max_batch tokens.
  std::vector<float> x_, xn_, q_, kraw_, vraw_, att_, o_, gate_, up_, ffn_out_;
  std::vector<float> ple_, ple_tok_, pg_;
  std::vector<float> kv_row_;      // one token's normed K row, then its V row (fp32, 2 × kv_dim)
  attn::Workspace attn_ws_;        // per-thread attention scratch
  // MoE.
  std::vector<float> r_, router_logits_, moe_w_, xe_, moe_out_, ex_in_, ex_h_, ex_out_, ex_w_;
  std::vector<int32_t> moe_idx_, ex_count_, ex_offset_, ex_tok_;
  std::vector<float> logits_;
  std::vector<int32_t> ple_ids_;
};

// MoE routing of one token (spec §2.4.3): softmax over all router logits,
// top-k experts by probability (ties: lower index first), weights renormalised
// over the k, times per_expert_scale. idx/w receive k entries, best first.
void moe_route(const float* router_logits, int n_experts, int top_k, const float* per_expert_scale, int32_t* idx,
               float* w);

// RoPE frequencies of one layer: f_i = θ^(−2i/head_dim) for the rotated pairs
// i < rope_rotated_dims/2, 0 for the others (proportional RoPE). With GGUF
// rope_freqs (full layers), f_i is divided by rope_freqs[i] (≥ 1e20: frozen).
std::vector<float> layer_rope_freqs(const LayerConfig& l, const std::vector<float>& gguf_rope_freqs);

// √dim rounded to the embedding's storage type the way HF does it
// (`embed_scale.to(weight.dtype)`): BF16/F16 tables round the factor, F32 and
// quantized tables use the exact fp32 value (as llama.cpp does).
float embedding_scale(GgmlType table_type, int dim);

}  // namespace g4
