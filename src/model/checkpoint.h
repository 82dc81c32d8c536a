// A model checkpoint opened from disk: a GGUF file or a HF safetensors folder.
// Exposes one ModelConfig and the text tensors under their GGUF names, checked
// against text_tensor_specs() (missing required tensors and shape mismatches
// are errors naming the tensor).
//
// Validation rules: every required tensor present with the exact ggml shape;
// Norm/Scalar tensors F32, F16 or BF16 and rope_freqs F32; a decoder tensor
// the config does not call for (any "blk.*" name, a known global that does not
// belong, an HF "layers.*" name we cannot map) is an error; tensors outside
// the text decoder (vision/audio towers, mmproj parts, a tied lm_head) are
// left out of tensors() with a note. MoE experts may be stored fused
// (blk.N.ffn_gate_up_exps.weight, gate rows first) or split
// (blk.N.ffn_gate_exps.weight + blk.N.ffn_up_exps.weight, {H, F, E} each);
// the runtime checks which one tensor() returns. The dead K/V tensors of
// KV-shared layers are kept when present but never required nor computed.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
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
  // GGUF file (detected by magic), HF folder (config.json + safetensors), its
  // config.json, a model.safetensors.index.json or a .safetensors file.
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

  // Throws "tensor 'X' has type IQ2_XXS, which this engine cannot compute yet
  // (supported: F32, F16, ...)" for the first tensor the forward pass would
  // read whose type is not in `computable` (dead K/V tensors are skipped).
  void require_types(std::span<const GgmlType> computable) const;
  // Dead tensors (K/V/k_norm of KV-shared layers): present, never computed.
  bool is_dead(std::string_view gguf_name) const { return dead_.count(gguf_name) > 0; }

  // Things left out or adjusted while opening (ignored vision tensors, ...).
  const std::vector<std::string>& notes() const { return notes_; }

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
  std::set<std::string, std::less<>> dead_;
  std::vector<std::string> notes_;
};

}  // namespace g4
