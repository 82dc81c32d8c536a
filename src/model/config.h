// Gemma 4 text-decoder hyperparameters, from a HF config.json or GGUF metadata,
// plus the per-layer quantities derived from them (spec gemma4-text.md §1.1).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace g4 {

class GgufFile;
class GgufWriter;

enum class LayerType { Sliding, Full };
enum class Variant { E2B, E4B, A26B, D31B, Custom };
const char* variant_name(Variant v);  // "E2B", "E4B", "26B-A4B", "31B", "custom"

struct LayerConfig {
  LayerType type = LayerType::Sliding;
  int head_dim = 0;      // 256 sliding / 512 full in released models
  int n_kv_heads = 0;
  int ffn_dim = 0;       // dense MLP width of this layer (double-wide on shared E2B layers)
  bool k_eq_v = false;   // full layer whose V is the raw K projection
  bool has_kv = true;    // false: KV-shared layer, reads kv_source's cache
  int kv_source = 0;     // layer whose cache this layer attends over (itself when has_kv)
  float rope_theta = 10000.f;
  int rope_rotated_dims = 0;  // lanes that rotate: 2 * number of rotated pairs
};

struct ModelConfig {
  // Text decoder (HF text_config names in comments).
  int n_layers = 0;               // num_hidden_layers
  int hidden = 0;                 // hidden_size
  int n_heads = 0;                // num_attention_heads
  int n_kv_heads = 0;             // num_key_value_heads (sliding; full too unless k_eq_v)
  int n_global_kv_heads = 0;      // num_global_key_value_heads (0 = same as n_kv_heads)
  int head_dim = 0;               // head_dim (sliding)
  int global_head_dim = 0;        // global_head_dim (full)
  int ffn_dim = 0;                // intermediate_size
  bool double_wide_mlp = false;   // use_double_wide_mlp
  int n_kv_shared_layers = 0;     // num_kv_shared_layers
  int ple_dim = 0;                // hidden_size_per_layer_input
  int ple_vocab = 0;              // vocab_size_per_layer_input
  bool moe = false;               // enable_moe_block
  int n_experts = 0;              // num_experts
  int n_experts_used = 0;         // top_k_experts
  int expert_ffn_dim = 0;         // moe_intermediate_size
  bool k_eq_v = false;            // attention_k_eq_v
  int sliding_window = 0;         // sliding_window
  std::vector<LayerType> layer_types;  // layer_types
  float rope_theta_sliding = 10000.f;
  float rope_theta_full = 1000000.f;
  float partial_rotary_factor_full = 0.25f;
  float final_softcap = 30.f;     // final_logit_softcapping (0 = none)
  float rms_eps = 1e-6f;
  int vocab_size = 0;
  int max_context = 0;            // max_position_embeddings
  int bos_id = 2, eos_id = 1, pad_id = 0;
  std::vector<int> eos_ids;       // all end-of-generation ids known from the config
  bool tie_embeddings = true;

  // Multimodal towers present in the checkpoint (parsed in detail by their issues).
  bool has_vision = false;
  bool has_audio = false;

  std::string source;             // "gguf" or "hf"
  std::string architecture;       // HF architectures[0] or GGUF general.architecture

  std::vector<LayerConfig> layers;  // filled by derive()

  // Fills `layers` and checks consistency; throws g4::Error with the field at fault.
  void derive();
  Variant variant() const;          // matches the released shapes exactly, else Custom
  int first_kv_shared_layer() const { return n_layers - n_kv_shared_layers; }
  // Bytes of K+V cache for `n_ctx` tokens with `bytes_per_elem` (2 for f16),
  // sliding layers capped at their window, shared layers storing nothing.
  uint64_t kv_cache_bytes(int64_t n_ctx, double bytes_per_elem) const;
};

// config.json of Gemma4ForConditionalGeneration (nested text_config) or
// Gemma4ForCausalLM / gemma4_text (flat).
ModelConfig config_from_hf_json(const nlohmann::json& j);
ModelConfig config_from_hf_file(const std::string& config_json_path);
// GGUF metadata of general.architecture = "gemma4". Facts with no key are taken
// from the tensors: vocab size (tokenizer.ggml.tokens, else token_embd rows),
// attention_k_eq_v (no attn_v on the full layers that own KV), the partial
// rotary factor (rope_freqs.weight), tied embeddings (no output.weight).
ModelConfig config_from_gguf(const GgufFile& f);
// Writes the gemma4.* hyperparameter keys (spec §5.2) and general.architecture
// for `c` (derived). Tokenizer keys are not written; k_eq_v and the partial
// rotary factor are carried by the tensors (no attn_v on full layers, rope_freqs).
void write_gguf_config(const ModelConfig& c, GgufWriter& w);

}  // namespace g4
