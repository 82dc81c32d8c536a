// Fuzz target for the safetensors reader: any input must either parse or raise
// g4::Error. On success every byte of every tensor view and all metadata are
// touched, so AddressSanitizer sees any view that escapes the input.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/safetensors.h"

namespace {
volatile uint64_t g_sink;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    g4::SafetensorsFile f = g4::SafetensorsFile::parse(g4::MappedFile::borrow(data, size, "fuzz"));
    uint64_t h = 0;
    for (const auto& [k, v] : f.metadata()) h += k.size() + v.size();
    for (const auto& t : f.tensors()) {
      if (f.tensor(t.name) != &t) __builtin_trap();
      if (t.nbytes > 0 && (t.data < data || t.data + t.nbytes > data + size)) __builtin_trap();
      h += static_cast<uint64_t>(t.nelements()) + t.shape_string().size();
      for (size_t i = 0; i < t.nbytes; ++i) h += t.data[i];
    }
    g_sink = h;
  } catch (const g4::Error&) {
  }
  return 0;
}
