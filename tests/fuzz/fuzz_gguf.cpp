// Fuzz target for the GGUF reader: any input must either parse or raise
// g4::Error. On success every metadata value and every byte of every tensor
// view is touched, so AddressSanitizer sees any view that escapes the input.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"

namespace {

volatile uint64_t g_sink;

uint64_t touch(const g4::GgufValue& v) {
  uint64_t h = static_cast<uint64_t>(v.type);
  try { h += v.as_u64(); } catch (const g4::Error&) {}
  try { h += static_cast<uint64_t>(v.as_i64()); } catch (const g4::Error&) {}
  try { h += static_cast<uint64_t>(v.as_f64() != 0); } catch (const g4::Error&) {}
  try { h += v.as_bool(); } catch (const g4::Error&) {}
  try { h += v.as_string().size(); } catch (const g4::Error&) {}
  if (v.is_array())
    for (const auto& e : v.as_array()) h = h * 31 + touch(e);
  return h;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    g4::GgufFile f = g4::GgufFile::parse(g4::MappedFile::borrow(data, size, "fuzz"));
    uint64_t h = f.version() + f.alignment() + f.data_offset();
    for (const auto& [key, value] : f.metadata()) {
      h += key.size() + touch(value) + value.to_display_string(4).size();
      if (f.find(key) == nullptr) __builtin_trap();
    }
    for (const char* key : {"general.architecture", "tokenizer.ggml.tokens", "general.alignment"}) {
      try { h += f.get_string(key).size(); } catch (const g4::Error&) {}
      try { h += f.get_strings(key).size(); } catch (const g4::Error&) {}
      try { h += f.get_i64s(key).size(); } catch (const g4::Error&) {}
      try { h += f.get_f64s(key).size(); } catch (const g4::Error&) {}
      try { h += f.get_u64(key); } catch (const g4::Error&) {}
    }
    for (const auto& t : f.tensors()) {
      if (f.tensor(t.name) != &t) __builtin_trap();
      if (t.nbytes > 0 && (t.data < data || t.data + t.nbytes > data + size)) __builtin_trap();
      h += static_cast<uint64_t>(t.nelements()) + static_cast<uint64_t>(t.nrows()) + t.shape_string().size();
      for (size_t i = 0; i < t.nbytes; ++i) h += t.data[i];
    }
    g_sink = h;
  } catch (const g4::Error&) {
  }
  return 0;
}
