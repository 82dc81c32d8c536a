// Random-weight Gemma 4 checkpoints for tests and benchmarks
// (`gemma4 make-test-model`).
//
// A test model has the tensor names, shapes, dtypes and metadata of a real
// checkpoint (tensor list from text_tensor_specs(), so there is one source of
// truth), in either format:
//   * GGUF: llama.cpp conventions (gemma4.* keys, tokenizer.ggml.*, 1-D tensors,
//     rope_freqs and the MoE router in F32, the rest in the chosen type: F32,
//     F16, BF16, or a quantized type (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, MXFP4,
//     Q4_K, Q5_K, Q6_K, Q8_K) quantized from the same f32 values with the
//     kernels' reference quantizers, see test_tensor_type());
//   * HF:   a folder with config.json (Gemma4ForConditionalGeneration nesting),
//     model.safetensors (prefix model.language_model.), tokenizer.json,
//     tokenizer_config.json and generation_config.json; every tensor in the
//     chosen type.
//
// Weights are a pure function of (seed, HF tensor name, element index): element
// i of a tensor is drawn from a counter-based generator keyed by the tensor, in
// HF row-major order (= ggml order), so the GGUF and HF outputs of one seed hold
// identical values (tensors that GGUF keeps in F32 are rounded to the chosen
// float type first). Generation streams tensor by tensor and is multi-threaded.
//
// Scales: `tiny` keeps every mechanism of a family at small width (sliding and
// full layers with different head dims, the layer pattern, a window of 16/32
// tokens, PLE + KV sharing + double-wide MLP for E2B, K=V and per-layer KV
// heads for 26B-A4B/31B, MoE top-k next to the dense MLP for 26B-A4B); `full`
// reproduces the released shapes (spec gemma4-text.md §1.1).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/dtype.h"
#include "formats/gguf.h"
#include "model/config.h"
#include "model/tensor_specs.h"

namespace g4 {

enum class TestArch { E2B, E4B, A26B, D31B };
enum class TestScale { Tiny, Full };
enum class TestFormat { Gguf, Hf };

// "e2b", "e4b", "26b-a4b" (also "26b", "a4b"), "31b"; nullopt otherwise.
std::optional<TestArch> test_arch_from_name(std::string_view name);
const char* test_arch_name(TestArch a);  // "e2b", "e4b", "26b-a4b", "31b"
std::optional<TestScale> test_scale_from_name(std::string_view name);
const char* test_scale_name(TestScale s);
std::optional<TestFormat> test_format_from_name(std::string_view name);

// The config of a test model (derive() already called). `full` equals the
// released model; `tiny` is the small variant described above.
ModelConfig test_model_config(TestArch arch, TestScale scale, int vocab_size);

// ---- vocabulary -----------------------------------------------------------

// A tokenizer vocabulary in GGUF terms (tokenizer.ggml.*).
struct TestVocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> token_types;  // llama.cpp: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
  std::vector<std::string> merges;   // "left right", rank = index
  int32_t bos_id = 2, eos_id = 1, unk_id = 3, pad_id = 0, mask_id = 4;
  bool add_bos = true;
  bool add_space_prefix = false;
  std::string chat_template;         // empty: none
  bool real = false;                 // copied from a real vocab GGUF
  // tokenizer.* keys of the source GGUF, copied verbatim into generated GGUFs.
  std::vector<std::pair<std::string, GgufValue>> gguf_keys;

  int32_t size() const { return static_cast<int32_t>(tokens.size()); }
};

// A small self-consistent Gemma-4-style vocabulary: ids 0..493 follow the real
// layout (special/control/user-defined tokens, newline and ▁ runs, HTML tags,
// <0x00>..<0xFF> byte tokens at 238..493), then single characters and merged
// pieces with their merges, padded with <unusedN> to `size` (>= 1024; full-scale
// models use 262144 so every shape is the released one).
TestVocab synthetic_test_vocab(int size = 1024);
// tokenizer.* metadata of a GGUF (e.g. models/ggml-vocab-gemma-4.gguf).
TestVocab load_test_vocab(const std::string& vocab_gguf_path);

// ---- metadata writers (model keys: write_gguf_config in model/config.h) ----

// tokenizer.ggml.* (verbatim copy for a real vocab).
void set_gguf_tokenizer_metadata(GgufWriter& w, const TestVocab& v);
// config.json of Gemma4ForConditionalGeneration (text_config nested);
// `dtype` is "float32", "float16" or "bfloat16".
nlohmann::json hf_config_json(const ModelConfig& c, const TestVocab& v, const std::string& dtype);
// Writes tokenizer.json (streamed: the real vocab has 262144 tokens and
// 514906 merges), tokenizer_config.json and generation_config.json.
void write_hf_tokenizer_files(const std::string& dir, const TestVocab& v);

// ---- weights ---------------------------------------------------------------

// How a tensor's values are drawn: uniform in [lo, hi) unless `fixed` (values
// are computed, e.g. rope_freqs); elements [zero_begin, zero_end) are exactly 0.
//
// The ranges keep the random models well-conditioned like trained ones, so
// that two correct implementations with different rounding (llama.cpp rounds
// GELU inputs/outputs to fp16) stay close: layer_scalar near 1 (a strong
// residual stream; small scalars make each layer's output dominate and the
// model chaotic), soft attention (q·k logits of std ~1), matrices with
// variance 1/fan_in, norms around 1 and the attention/FFN post-norms around
// 2.5 (so the residual is mostly context and the tied head does not copy the
// input token; the narrow PLE branch stays at ~1, where it amplifies no noise).
// MoE models (26B-A4B) route on a subspace of the residual stream that only the
// token embedding writes: post_attention_norm / post_ffw_norm are 0 on the
// first H/8 channels and the router scale is 0 on the others, so the expert
// choice is a function of the token (computed exactly by any implementation)
// and never flips on a near-tie of router logits; the router weights, top-k,
// renormalisation, per-expert scale and experts are all still exercised.
struct TestInit {
  float lo = 0.f, hi = 0.f;
  bool fixed = false;
  uint64_t zero_begin = 0, zero_end = 0;
};
// Channels [0, n) of the residual stream that MoE test models route on (0 for dense models).
int64_t test_router_channels(const ModelConfig& c);
TestInit test_init_for(const TensorSpec& s, const ModelConfig& c);
// 64-bit key of a tensor: mixes `seed` with its HF name (GGUF name when the
// tensor has no HF counterpart).
uint64_t test_tensor_key(uint64_t seed, const TensorSpec& s);
// Elements [begin, begin+count) of a tensor as float32 (before dtype rounding).
void generate_test_values(uint64_t key, const TestInit& init, uint64_t begin, uint64_t count, float* out);

// Storage type of a tensor. HF: `type` for everything (F32, F16, BF16).
// GGUF, following llama.cpp's converter and llama-quantize:
//   * 1-D tensors (norms, scalars) and rope_freqs: F32;
//   * the MoE router ffn_gate_inp.weight: F32 (the converter forces it, and
//     llama-quantize never quantizes it);
//   * quantized files: per_layer_model_proj stays in the source type (F32;
//     llama-quantize skips it); token_embd and per_layer_token_embd (tied
//     embeddings are quantized like the output head) follow llama-quantize's
//     output rule: Q6_K for Q4_1/Q5_0/Q5_1/Q4_K/Q5_K/Q6_K files when the row is
//     a multiple of 256 (full scale), else Q8_0 (every tiny model; and Q8_0
//     files, MXFP4 (its MoE recipe), Q8_K). Q4_0 files keep Q8_0 there at
//     every scale: they predate the Q6_K kernels, and their benchmarks and
//     file sizes stay comparable;
//     every other 2-D/3-D weight: `type`, or llama-quantize's fallback when the
//     row is not a multiple of the block: Q4_K -> Q5_0, Q5_K -> Q5_1,
//     Q6_K -> Q8_0, then F16 if that does not fit either (32-element types:
//     F16 directly).
GgmlType test_tensor_type(const TensorSpec& s, TestFormat f, GgmlType type);

// ---- the generator ---------------------------------------------------------

struct TestModelOptions {
  TestArch arch = TestArch::E2B;
  TestScale scale = TestScale::Tiny;
  TestFormat format = TestFormat::Gguf;
  GgmlType type = GgmlType::F32;  // F32, F16, BF16; GGUF also the quantized types (see test_tensor_type)
  uint64_t seed = 0;
  std::string out;                // GGUF file path, or HF folder (created)
  std::string vocab_path;         // real vocab GGUF; empty = synthetic vocab
  int synthetic_vocab_size = 0;   // 0: 1024 for tiny, 262144 (real shapes) for full
  int threads = 0;                // 0 = hardware concurrency
  // GGUF only: store every tensor as F32 holding exactly the values the file
  // of `type` holds (block types quantized and expanded back, F16 rows
  // rounded): the same numbers, computed without the quantized kernels.
  bool dequantized = false;
};

struct TestModelResult {
  std::string path;
  std::vector<std::string> files;  // files written
  size_t n_tensors = 0;
  uint64_t tensor_bytes = 0;       // bytes of tensor data
  uint64_t file_bytes = 0;         // bytes on disk (all files)
  double seconds = 0;
  ModelConfig config;
};

TestModelResult write_test_model(const TestModelOptions& o);

}  // namespace g4
