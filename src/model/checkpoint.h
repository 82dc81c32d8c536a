// A model checkpoint opened from disk: a GGUF file or a HF safetensors folder.
// Exposes one ModelConfig and the text tensors under their GGUF names, checked
// against text_tensor_specs() (missing required tensors and shape mismatches
// are errors naming the tensor).
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace g4 {

class GgufFile;
class SafetensorsCheckpoint;

enum class CheckpointFormat { Gguf, HfSafetensors };

class Checkpoint {
 public:
  // GGUF file, HF folder (config.json + safetensors), or a config.json path.
  static Checkpoint open(const std::string& path);
  ~Checkpoint();
  Checkpoint(Checkpoint&&) noexcept;
  Checkpoint& operator=(Checkpoint&&) noexcept;

  CheckpointFormat format() const { return format_; }
  const std::string& path() const { return path_; }
  const ModelConfig& config() const { return config_; }
  uint64_t file_bytes() const { return file_bytes_; }

  // Text tensors by GGUF name (HF tensors are renamed on load).
  const TensorView* tensor(std::string_view gguf_name) const;
  const TensorView& require(std::string_view gguf_name) const;  // throws if absent
  const std::vector<TensorView>& tensors() const { return tensors_; }

  // The GGUF itself (for tokenizer metadata), or nullptr for HF folders.
  const GgufFile* gguf() const { return gguf_.get(); }

 private:
  Checkpoint() = default;
  CheckpointFormat format_ = CheckpointFormat::Gguf;
  std::string path_;
  ModelConfig config_;
  uint64_t file_bytes_ = 0;
  std::unique_ptr<GgufFile> gguf_;
  std::unique_ptr<SafetensorsCheckpoint> st_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
};

}  // namespace g4
