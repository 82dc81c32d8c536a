// safetensors reader/writer and Hugging Face checkpoint folders.
//
// File layout: u64 little-endian header length N, N bytes of JSON
// {"name": {"dtype": "BF16", "shape": [rows, cols], "data_offsets": [b, e]}, ...,
//  "__metadata__": {...}}, then the data section (offsets relative to it).
// TensorView shapes are reversed into ggml order (ne[0] = last HF dim).
// Supported dtypes: F32, F16, BF16. Every other dtype of the safetensors format
// (BOOL, U8, I8, I16, I32, I64, U16/U32/U64, F64, F8_*, F6_*, F4) is parsed and
// bounds-checked like the rest, but such tensors are kept out of tensors(): they
// are listed in unsupported(), and asking for one by name with tensor() throws a
// g4::Error naming the tensor and its dtype. So a checkpoint whose vision tower
// carries e.g. U8/I64 buffers still opens, while any use of them fails clearly.
// An unknown dtype string is an error at open (its size cannot be checked).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"

namespace g4 {

// A tensor of a dtype the engine cannot use (see above).
struct SafetensorsUnsupported {
  std::string name;
  std::string dtype;             // as written in the header: "I64", "F8_E4M3", ...
  std::vector<int64_t> hf_shape;  // HF order
  size_t nbytes = 0;
};

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);
  static SafetensorsFile parse(std::shared_ptr<MappedFile> file);  // fuzzing, tests

  const std::string& path() const { return file_->path(); }
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // nullptr if absent; throws if the tensor exists with an unsupported dtype.
  const TensorView* tensor(std::string_view name) const;
  const std::vector<SafetensorsUnsupported>& unsupported() const { return unsupported_; }
  const SafetensorsUnsupported* find_unsupported(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  size_t file_size() const { return file_->size(); }

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::vector<SafetensorsUnsupported> unsupported_;
  std::map<std::string, std::string> metadata_;
};

// A HF checkpoint: `model.safetensors`, or shards listed in
// `model.safetensors.index.json` ("weight_map": name -> shard file).
class SafetensorsCheckpoint {
 public:
  // `path` is a folder, a .safetensors file, or an index .json file.
  // Every shard listed in an index must exist, and every tensor listed must be
  // in the shard the index names; a tensor name found in two files is an error.
  static SafetensorsCheckpoint open(const std::string& path);
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // nullptr if absent; throws if the tensor exists with an unsupported dtype.
  const TensorView* tensor(std::string_view name) const;
  const std::vector<SafetensorsUnsupported>& unsupported() const { return unsupported_; }
  const SafetensorsUnsupported* find_unsupported(std::string_view name) const;
  size_t total_bytes() const;  // sum of file sizes
  const std::vector<std::string>& files() const { return files_; }

 private:
  std::vector<SafetensorsFile> shards_;
  std::vector<std::string> files_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::vector<SafetensorsUnsupported> unsupported_;
};

// Streaming writer (same protocol as GgufWriter). `shape` is in HF order.
// Writes F32, F16 and BF16 (also I8/I16/I32/I64/F64). The header is padded with
// spaces so the data section starts at a multiple of 8; "__metadata__" holds
// {"format": "pt"} plus set_metadata() entries. The file is written to
// `path + ".tmp"` and renamed on finish(); a writer destroyed before finish()
// removes the partial file.
class SafetensorsWriter {
 public:
  explicit SafetensorsWriter(std::string path);
  ~SafetensorsWriter();
  void set_metadata(std::string key, std::string value);
  void add_tensor_info(std::string name, GgmlType type, std::vector<int64_t> hf_shape);
  void write_header();
  void write_tensor_data(std::string_view name, const void* data, size_t nbytes);
  // One piece of the next tensor's bytes (same protocol as GgufWriter::write_tensor_chunk).
  void write_tensor_chunk(std::string_view name, const void* data, size_t nbytes);
  void finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace g4
