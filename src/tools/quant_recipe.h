// Which type each tensor of a GGUF gets when it is quantized: a port of
// llama-quantize's mixing rules (llama.cpp src/llama-quant.cpp, the version
// bundled with node-llama-cpp 3.21.1), so `gemma4 quantize` and
// `gemma4 convert --type q4_k_m` make the files llama-quantize would.
//
// The rules, in llama-quant.cpp's order:
//   * only 2-D/3-D tensors whose name ends in "weight" are touched; norms
//     (*_norm.weight), the MoE router (ffn_gate_inp.weight) and
//     per_layer_model_proj keep their type; so do 1-D tensors (rope_freqs,
//     layer_output_scale, router scales);
//   * float file types (F32/F16/BF16) convert every touched tensor;
//   * quantized file types: --tensor-type REGEX=TYPE overrides first (first
//     match wins); else, unless --pure, the recipe of the file type:
//       - the output head, and with tied embeddings token_embd and
//         per_layer_token_embd: Q6_K (Q8_0 when the file type is Q8_0, when
//         ne0 is not a multiple of the file type's block, and for MXFP4_MOE);
//       - MXFP4_MOE: 3-D expert tensors MXFP4, everything else Q8_0;
//       - attn_v: Q4_K_M/Q5_K_M give Q6_K to "use_more_bits" layers (the
//         first and last eighth and every third in between), Q4_K_S gives
//         Q5_K to the first 4; models with exactly 8 experts get Q8_0;
//       - attn_k: Q8_0 for models with exactly 8 experts;
//       - ffn_down (and ffn_down_exps): Q4_K_M/Q5_K_M give Q6_K to
//         use_more_bits layers, Q4_K_S gives Q5_K to the first eighth;
//       - attn_output: Q5_K for Q4_K_S/Q4_K_M with exactly 8 experts;
//     then the shape fallback: when ne0 is not a multiple of the chosen type's
//     block, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, and F16 if that still
//     does not fit (a 32-element block type goes straight to F16).
// Layer counters follow llama.cpp: tensors are visited in llama-quantize's
// order (global tensors first, then by layer number, then by name), attn_v
// tensors are counted over the whole file (dead K/V of KV-shared layers
// included), and the ffn_down layer is the tensor's own layer number.
#pragma once
#include <cstdint>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace g4 {

// A llama.cpp file type (LLAMA_FTYPE_*): what general.file_type records.
struct QuantFileType {
  std::string name;       // "Q4_K_M"
  uint32_t ftype = 0;     // LLAMA_FTYPE_MOSTLY_Q4_K_M = 15
  GgmlType default_type;  // Q4_K
};

// The file types quantize supports: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0,
// Q5_1, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, MXFP4_MOE.
const std::vector<QuantFileType>& quant_file_types();
// Case-insensitive; llama-quantize's aliases Q4_K (= Q4_K_M) and Q5_K (= Q5_K_M).
std::optional<QuantFileType> quant_file_type_from_name(std::string_view name);
std::string quant_file_type_names();  // "f32, f16, bf16, q8_0, ..."
// The file type a general.file_type value names, if it is one of ours.
std::optional<QuantFileType> quant_file_type_from_id(uint32_t ftype);

// --tensor-type NAME_REGEX=TYPE (llama-quantize lower-cases the regex and
// matches it anywhere in the name with std::regex_search).
struct TensorTypeOverride {
  std::string pattern;
  std::regex re;
  GgmlType type;
};
// Parses "attn_v=q8_0"; throws g4::Error for a malformed option, a bad regex
// or an unknown type name.
TensorTypeOverride parse_tensor_type_override(std::string_view option);

struct QuantRecipeOptions {
  bool pure = false;  // --pure: no recipe, only the shape fallback
  std::vector<TensorTypeOverride> overrides;
};

// What the recipe needs to know about the model (llama.cpp hparams).
struct QuantModelInfo {
  int n_layers = 0;   // block_count
  int n_experts = 0;  // expert_count (0 for dense models)
};

// One tensor as stored in the input file.
struct QuantTensorIn {
  std::string name;
  std::vector<int64_t> ne;  // ggml order
  GgmlType type;
};

struct QuantDecision {
  GgmlType type;             // the type the tensor gets
  bool quantizable = false;  // llama-quantize may change its type at all
  bool fell_back = false;    // the shape forced a fallback type
};

// The target type of every tensor (same order as `tensors`).
std::vector<QuantDecision> plan_quant_types(const std::vector<QuantTensorIn>& tensors, const QuantFileType& ft,
                                            const QuantModelInfo& model, const QuantRecipeOptions& opt = {});

// llama-quantize's tensor order (llama_model_loader's weight_name_comparer):
// by the N of a "blk.N." prefix (none = -1, first), then by name.
bool llama_tensor_order_less(const std::string& a, const std::string& b);

// The parts of the rules, exposed for tests.
bool tensor_allows_quantization(const std::string& name, const std::vector<int64_t>& ne);
bool is_quantized_type(GgmlType t);  // block types (ggml_is_quantized)
// i_layer in the first or last eighth of n, or every third layer in between.
bool use_more_bits(int i_layer, int n_layers);

}  // namespace g4
