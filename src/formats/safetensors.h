// safetensors reader/writer and Hugging Face checkpoint folders.
//
// File layout: u64 little-endian header length N, N bytes of JSON
// {"name": {"dtype": "BF16", "shape": [rows, cols], "data_offsets": [b, e]}, ...,
//  "__metadata__": {...}}, then the data section (offsets relative to it).
// TensorView shapes are reversed into ggml order (ne[0] = last HF dim).
// Supported dtypes: F32, F16, BF16 (others are listed with a clear error when used).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"

namespace g4 {

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);
  static SafetensorsFile parse(std::shared_ptr<MappedFile> file);  // fuzzing, tests

  const std::string& path() const { return file_->path(); }
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* tensor(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

// A HF checkpoint: `model.safetensors`, or shards listed in
// `model.safetensors.index.json` ("weight_map": name -> shard file).
class SafetensorsCheckpoint {
 public:
  // `path` is a folder, a .safetensors file, or an index .json file.
  static SafetensorsCheckpoint open(const std::string& path);
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* tensor(std::string_view name) const;
  size_t total_bytes() const;  // sum of file sizes
  const std::vector<std::string>& files() const { return files_; }

 private:
  std::vector<SafetensorsFile> shards_;
  std::vector<std::string> files_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
};

// Streaming writer (same protocol as GgufWriter). `shape` is in HF order.
class SafetensorsWriter {
 public:
  explicit SafetensorsWriter(std::string path);
  ~SafetensorsWriter();
  void set_metadata(std::string key, std::string value);
  void add_tensor_info(std::string name, GgmlType type, std::vector<int64_t> hf_shape);
  void write_header();
  void write_tensor_data(std::string_view name, const void* data, size_t nbytes);
  void finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace g4
