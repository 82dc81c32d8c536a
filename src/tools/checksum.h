// Tensor checksums: compare the weights of two checkpoints (GGUF vs HF, before
// vs after a conversion) without loading them side by side. Used by
// `gemma4 make-test-model` tests and `gemma4 info --checksums`.
//
// Two flavours:
//  * raw:   XXH64 of the stored bytes (dtype and layout must match);
//  * value: XXH64 of the elements widened to little-endian float32, so a BF16
//           tensor and an F32 tensor holding the same values hash equal
//           (F32/F16/BF16 only; other types fall back to the raw bytes).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace g4 {

// XXH64 (Yann Collet's xxHash, 64-bit variant), one shot.
uint64_t xxh64(const void* data, size_t len, uint64_t seed = 0);

// Streaming XXH64: update() any number of times, digest() at the end (digest
// does not reset; it may be called again after more updates).
class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);
  void update(const void* data, size_t len);
  uint64_t digest() const;

 private:
  uint64_t v_[4];
  uint64_t seed_;
  uint64_t total_ = 0;
  unsigned char buf_[32];
  size_t buf_len_ = 0;
};

uint64_t tensor_checksum(const TensorView& t);        // raw bytes
uint64_t tensor_value_checksum(const TensorView& t);  // values as f32
std::string checksum_hex(uint64_t h);                 // 16 lowercase hex digits

}  // namespace g4
