// Row-streaming type conversion of one stored tensor, shared by `convert`
// (safetensors -> GGUF) and `quantize` (GGUF -> GGUF).
//
// A tensor is processed in chunks of whole rows (about 32 MB of fp32 each):
// every row is expanded to fp32 (exact for F32/F16/BF16 and for the block
// types the kernels dequantize), then stored as the target type through
// kernels::quantize_rows (the reference quantizers of llama-quantize), rows
// spread over a thread pool. Each chunk goes to a sink (the GGUF writer)
// before the next one is read, and the source pages of a finished chunk are
// dropped from this process's mapping (MADV_DONTNEED; they stay in the page
// cache), so memory stays at one chunk however large the model is.
// A tensor whose type does not change is passed through byte for byte.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

#include "core/dtype.h"
#include "core/tensor.h"

namespace g4 {

class ThreadPool;

// Receives consecutive pieces of the converted tensor; `src_bytes` is how
// many bytes of the source this piece covers (for progress bars).
using RowSink = std::function<void(const uint8_t* data, size_t nbytes, uint64_t src_bytes)>;

struct RowConvertOptions {
  // Rows to take (from the start; -1 = all). convert trims padded embedding rows this way.
  int64_t n_rows = -1;
  // llama-quantize validates what it converts: with this set, a non-finite
  // source value, or one outside the F16 range when the target is F16, is an
  // error naming the tensor and row (tensors kept in their type are copied).
  bool validate = false;
  // Round the fp32 values through F16 or BF16 before storing them (F32:
  // no rounding): `convert --type q4_k_m` of an F32 checkpoint quantizes the
  // values the converter's F16 file would hold, as llama.cpp's two steps do.
  GgmlType round_via = GgmlType::F32;
  ThreadPool* pool = nullptr;  // nullptr: single-threaded
  size_t chunk_f32_bytes = size_t{32} << 20;
};

// Streams `src` converted to `dst` into `sink`; returns the bytes produced.
// `src` must view a file opened with MappedFile::open (MAP_SHARED), where
// dropping finished pages only costs a re-read. Throws g4::Error naming the
// tensor when its type cannot be expanded or `dst` cannot be produced
// (e.g. "cannot quantize to Q4_K" while the kernels lack that quantizer).
uint64_t convert_tensor_rows(const TensorView& src, GgmlType dst, const RowSink& sink,
                             const RowConvertOptions& opt = {});

// Throws the kernels' error ("cannot quantize to X ...") when `t` cannot be
// produced, before any file is written; used to check a whole plan up front.
void check_quantizable(GgmlType t);

}  // namespace g4
