// Tensor element types. Ids are the on-disk ggml type ids (GGUF tensor infos);
// safetensors dtypes map onto the same enum (F32/F16/BF16, ...).
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace g4 {

enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21,
  IQ2_S = 22, IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28,
  IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39, NVFP4 = 40,
  Q1_0 = 41, Q2_0 = 42,
};

struct GgmlTypeInfo {
  GgmlType type;
  const char* name;     // llama.cpp's spelling: "Q4_K", "BF16", ...
  int64_t block_size;   // elements per block (1 for plain types)
  size_t block_bytes;   // bytes per block
};

// nullptr for ids that are not (or no longer) valid ggml types.
const GgmlTypeInfo* ggml_type_info(uint32_t id);
const GgmlTypeInfo& ggml_type_info(GgmlType t);
// "Q4_K", or "unknown type 31" for an invalid id.
std::string ggml_type_name(uint32_t id);
inline std::string ggml_type_name(GgmlType t) { return ggml_type_name(static_cast<uint32_t>(t)); }
// Case-insensitive: "q4_0", "BF16" ...
std::optional<GgmlType> ggml_type_from_name(std::string_view name);

// Bytes of one row of ne0 elements; throws g4::Error when ne0 is not a multiple
// of the block size.
size_t ggml_row_bytes(GgmlType t, int64_t ne0);

// Scalar conversions (IEEE binary16 and bfloat16), round-to-nearest-even.
float fp16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f);
inline float bf16_to_f32(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
uint16_t f32_to_bf16(float f);

}  // namespace g4
