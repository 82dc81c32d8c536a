// A read-only view of one stored tensor (GGUF or safetensors), usually pointing
// into a memory-mapped file.
//
// Shapes are in ggml order everywhere in the engine: ne[0] is the contiguous
// (innermost) dimension. A HF tensor of shape [rows, cols] is ne = {cols, rows}.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace g4 {

class MappedFile;

struct TensorView {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<int64_t> ne;             // ggml order, ne[0] contiguous
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  std::shared_ptr<const MappedFile> file;  // keeps the mapping alive

  int64_t nelements() const {
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    return n;
  }
  // Number of rows of ne[0] elements.
  int64_t nrows() const { return ne.empty() ? 1 : nelements() / ne[0]; }
  std::string shape_string() const;  // "{1536, 262144}"
};

}  // namespace g4
