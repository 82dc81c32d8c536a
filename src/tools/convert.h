// `gemma4 convert`: a Hugging Face Gemma 4 checkpoint (config.json,
// model.safetensors or sharded model.safetensors.index.json, tokenizer.json)
// to one GGUF file with llama.cpp's conventions, so llama.cpp loads it and
// computes the same logits (spec gemma4-text.md §5; llama.cpp's
// convert_hf_to_gguf.py, class Gemma4Model, is the reference):
//   * gemma4.* hyperparameters (write_gguf_config), general.* identity,
//     general.file_type and general.quantization_version = 2;
//   * tokenizer.* exactly as the converter derives them (hf_tokenizer_gguf.h);
//   * tensors renamed to GGUF names, ggml dimension order (no transposes, no
//     norm shift for Gemma 4), rope_freqs.weight synthesised (64 x 1.0 then
//     1e30, F32), vision/audio towers and a tied lm_head left out, the dead
//     K/V of KV-shared layers kept, token_embd trimmed to the tokenizer's
//     rows like the converter does;
//   * tensor types as convert_hf_to_gguf.py --outtype picks them: 1-D
//     tensors, *_norm.weight, tensors not named *.weight and the MoE router
//     ffn_gate_inp.weight in F32, every other tensor in the output type; Q8_0
//     rows that are not a multiple of 32 fall back to F16 (gguf-py's
//     QuantError fallback). "auto" is the converter's default: BF16 or F16
//     after the first 2-D tensor's dtype (F16 for an F32 checkpoint).
//   * any other type quantize offers (q4_0, q4_k_m, mxfp4_moe, ...) is the
//     converter at "auto" followed by llama-quantize's recipe (quant_recipe.h),
//     done in one pass: values are rounded through the auto type first, so
//     the result equals `convert --type auto` then `quantize TYPE` byte for byte.
// Streaming: one tensor at a time, in chunks of rows, through the GGUF
// writer; the output appears only when complete (written under a temporary
// name and renamed), so an error leaves no partial file.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace g4 {

struct ConvertOptions {
  std::string input;          // HF folder (or its config.json / index / .safetensors)
  std::string output;         // GGUF path
  std::string type = "auto";  // auto, f32, f16, bf16, q8_0, or a quantize file type
  int threads = 0;            // 0: physical cores
  bool progress = true;       // progress bar / final line on stderr
};

struct ConvertResult {
  std::string output;
  std::string file_type;  // "BF16", "Q4_K_M", ...
  uint32_t ftype = 0;     // general.file_type
  size_t n_tensors = 0;
  uint64_t bytes_in = 0;                                       // source tensor bytes read
  uint64_t bytes_out = 0;                                      // tensor bytes written
  uint64_t file_bytes = 0;                                     // size of the output file
  std::vector<std::pair<std::string, GgmlType>> tensor_types;  // in file order
  double seconds = 0;
};

// Throws g4::Error (naming the path, tensor or option at fault) for a
// missing or malformed input, an unknown type, a type the kernels cannot
// produce yet, or an unwritable output; no output file is left behind.
ConvertResult convert_hf_to_gguf(const ConvertOptions& o);

// The output types `--type` accepts, for help texts.
std::string convert_type_names();

}  // namespace g4
