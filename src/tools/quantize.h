// `gemma4 quantize IN.gguf OUT.gguf TYPE`: what llama-quantize does, for the
// file types in quant_recipe.h:
//   * every metadata key is copied (split keys dropped), general.file_type
//     and general.quantization_version = 2 set;
//   * tensors are written in llama-quantize's order (global tensors, then by
//     layer, then by name) with the types plan_quant_types() picks
//     (--pure, --tensor-type REGEX=TYPE as in llama-quantize);
//   * a tensor whose type does not change is copied byte for byte; the others
//     are expanded to fp32 and quantized with the kernels' reference
//     quantizers (kernels::quantize_rows), validated like llama-quantize
//     (non-finite values and F16 overflow are errors);
//   * changing the type of an already quantized tensor needs
//     allow_requantize (the values are dequantized first, losing precision
//     twice) — checked for every tensor before anything is written.
// Streaming and failure behaviour as in convert.h: memory stays at one chunk
// of rows, and an error leaves no output file.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"

namespace g4 {

struct QuantizeOptions {
  std::string input;
  std::string output;
  std::string type;  // q4_k_m, q8_0, f16, ...
  bool pure = false;
  bool allow_requantize = false;
  std::vector<std::string> tensor_types;  // --tensor-type NAME_REGEX=TYPE, in order
  int threads = 0;                        // 0: physical cores
  bool progress = true;
};

struct QuantizeResult {
  std::string file_type;  // "Q4_K_M"
  uint32_t ftype = 0;
  size_t n_tensors = 0;
  size_t n_converted = 0;  // tensors whose type changed
  size_t n_fallback = 0;   // tensors whose shape forced a fallback type
  uint64_t bytes_in = 0, bytes_out = 0, file_bytes = 0;
  std::vector<std::pair<std::string, GgmlType>> tensor_types;  // in file order
  double seconds = 0;
};

QuantizeResult quantize_gguf(const QuantizeOptions& o);

}  // namespace g4
