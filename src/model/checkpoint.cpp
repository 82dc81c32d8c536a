// Checkpoint: open a GGUF file or a HF safetensors checkpoint, rename HF
// tensors to GGUF names (no data copies) and validate against the specs.
#include "model/checkpoint.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/tensor_specs.h"

namespace g4 {
namespace {

namespace fs = std::filesystem;

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

// The part of a HF name after its model prefix, or nullopt outside the model.
std::optional<std::string_view> hf_text_rest(std::string_view name) {
  if (starts_with(name, "model.language_model.")) return name.substr(21);
  if (starts_with(name, "model.")) return name.substr(6);
  return std::nullopt;
}

bool is_text_global_gguf_name(std::string_view n) {
  for (const char* g : {"token_embd.weight", "output_norm.weight", "output.weight", "rope_freqs.weight",
                        "per_layer_token_embd.weight", "per_layer_model_proj.weight", "per_layer_proj_norm.weight"})
    if (n == g) return true;
  return false;
}

// "blk.12.ffn_gate_exps.weight" -> layer 12 and suffix; nullopt if not blk.N.
std::optional<std::pair<int, std::string_view>> split_blk(std::string_view n) {
  if (!starts_with(n, "blk.")) return std::nullopt;
  n.remove_prefix(4);
  size_t k = 0;
  int layer = 0;
  while (k < n.size() && k < 5 && n[k] >= '0' && n[k] <= '9') layer = layer * 10 + (n[k++] - '0');
  if (k == 0 || k >= n.size() || n[k] != '.') return std::nullopt;
  return std::make_pair(layer, n.substr(k + 1));
}

std::string type_list(std::span<const GgmlType> ts) {
  std::string s;
  for (size_t i = 0; i < ts.size(); ++i) s += (i ? ", " : "") + ggml_type_name(ts[i]);
  return s.empty() ? "none" : s;
}

std::vector<int> read_eos_ids(const std::string& path) {
  std::vector<int> ids;
  std::ifstream in(path, std::ios::binary);
  if (!in) return ids;
  std::ostringstream ss;
  ss << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("eos_token_id")) return ids;
  const auto& e = j["eos_token_id"];
  auto add = [&](const nlohmann::json& x) {
    if (x.is_number_integer() && x.get<int64_t>() >= 0 && x.get<int64_t>() < (int64_t(1) << 31))
      ids.push_back(static_cast<int>(x.get<int64_t>()));
  };
  if (e.is_array())
    for (const auto& x : e) add(x);
  else
    add(e);
  return ids;
}

}  // namespace

Checkpoint::~Checkpoint() = default;
Checkpoint::Checkpoint(Checkpoint&&) noexcept = default;
Checkpoint& Checkpoint::operator=(Checkpoint&&) noexcept = default;

const TensorView* Checkpoint::tensor(std::string_view gguf_name) const {
  auto it = index_.find(gguf_name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorView& Checkpoint::require(std::string_view gguf_name) const {
  const TensorView* t = tensor(gguf_name);
  if (!t) fail("checkpoint '", path_, "' has no tensor '", gguf_name, "'");
  return *t;
}

void Checkpoint::require_types(std::span<const GgmlType> computable) const {
  const TensorView* first = nullptr;
  size_t more = 0;
  for (const TensorView& t : tensors_) {
    if (is_dead(t.name)) continue;
    if (std::find(computable.begin(), computable.end(), t.type) != computable.end()) continue;
    if (!first) first = &t;
    else ++more;
  }
  if (!first) return;
  fail("tensor '", first->name, "' has type ", ggml_type_name(first->type),
       ", which this engine cannot compute yet (supported: ", type_list(computable), ")",
       more ? " (and " + std::to_string(more) + " more tensors of unsupported types)" : std::string());
}

Checkpoint Checkpoint::open(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) fail("model path '", path, "' does not exist");

  Checkpoint ck;
  ck.path_ = path;
  ck.format_ = CheckpointFormat::HfSafetensors;  // unless the GGUF magic says otherwise
  std::string config_path, st_path;
  if (fs::is_directory(st)) {
    config_path = (fs::path(path) / "config.json").string();
    st_path = path;
    if (!fs::exists(config_path, ec))
      fail("'", path, "' is a folder without config.json; expected a Hugging Face checkpoint folder");
  } else {
    char head[16] = {};
    {
      std::ifstream in(path, std::ios::binary);
      if (!in) fail("cannot open '", path, "': ", std::strerror(errno));
      in.read(head, sizeof head);
    }
    const fs::path parent = fs::path(path).parent_path();
    size_t ws = 0;
    while (ws < sizeof head && std::strchr(" \t\r\n", head[ws]) && head[ws]) ++ws;
    if (std::memcmp(head, "GGUF", 4) == 0) {
      ck.format_ = CheckpointFormat::Gguf;
    } else if (ws < sizeof head && head[ws] == '{') {
      // A JSON file: the config.json, or a model.safetensors.index.json.
      config_path = (parent / "config.json").string();
      st_path = ends_with(path, ".index.json") ? path : (parent.empty() ? std::string(".") : parent.string());
      if (!fs::exists(config_path, ec)) fail("'", path, "': no config.json beside it");
    } else if (head[8] == '{' && fs::file_size(path, ec) > 8) {
      // A single .safetensors file: the config comes from its folder.
      config_path = (parent / "config.json").string();
      st_path = path;
      if (!fs::exists(config_path, ec))
        fail("'", path, "' is a safetensors file but there is no config.json beside it");
    } else {
      fail("'", path, "' is neither a GGUF file (no 'GGUF' magic) nor a Hugging Face checkpoint "
           "(a folder with config.json and safetensors, its config.json, or a .safetensors file)");
    }
  }

  // Collected text tensors, and (HF) their original names for messages.
  std::map<std::string, std::string, std::less<>> hf_names;
  size_t ignored = 0;
  std::string ignored_example;
  auto add = [&](TensorView t, const std::string& origin) {
    if (ck.index_.count(t.name))
      fail("'", path, "' holds tensor '", t.name, "' twice", origin.empty() ? "" : " (second: '" + origin + "')");
    ck.index_[t.name] = ck.tensors_.size();
    ck.tensors_.push_back(std::move(t));
  };
  auto ignore = [&](const std::string& name) {
    if (!ignored++) ignored_example = name;
  };

  if (ck.format_ == CheckpointFormat::Gguf) {
    ck.gguf_ = std::make_unique<GgufFile>(GgufFile::open(path));
    ck.config_ = config_from_gguf(*ck.gguf_);
    ck.file_bytes_ = ck.gguf_->file_size();
    for (const TensorView& t : ck.gguf_->tensors()) {
      if (split_blk(t.name) || is_text_global_gguf_name(t.name)) add(t, "");
      else ignore(t.name);
    }
  } else {
    ck.config_ = config_from_hf_file(config_path);
    // generation_config.json may add end-of-turn ids.
    const std::string gen = (fs::path(config_path).parent_path() / "generation_config.json").string();
    for (int id : read_eos_ids(gen))
      if (std::find(ck.config_.eos_ids.begin(), ck.config_.eos_ids.end(), id) == ck.config_.eos_ids.end())
        ck.config_.eos_ids.push_back(id);
    ck.st_ = std::make_unique<SafetensorsCheckpoint>(SafetensorsCheckpoint::open(st_path));
    ck.file_bytes_ = ck.st_->total_bytes();
    for (const TensorView& t : ck.st_->tensors()) {
      std::optional<std::string> g = hf_to_gguf_name(t.name);
      if (!g && t.name == "lm_head.weight" && !ck.config_.tie_embeddings) g = "output.weight";
      if (!g) {
        auto rest = hf_text_rest(t.name);
        if (rest && starts_with(*rest, "layers."))
          fail("'", path, "': tensor '", t.name, "' is not part of the Gemma 4 text decoder (unknown layer tensor)");
        ignore(t.name);
        continue;
      }
      TensorView v = t;  // shares the mapping; no data copy
      v.name = *g;
      hf_names[*g] = t.name;
      add(std::move(v), t.name);
    }
    for (const SafetensorsUnsupported& u : ck.st_->unsupported()) {
      std::optional<std::string> g = hf_to_gguf_name(u.name);
      auto rest = hf_text_rest(u.name);
      if (g || (rest && starts_with(*rest, "layers.")))
        fail("'", path, "': tensor '", u.name, "' has dtype ", u.dtype,
             ", which this engine cannot use (supported: F32, F16, BF16)");
      ignore(u.name);
    }
  }
  if (ignored)
    ck.notes_.push_back("ignored " + std::to_string(ignored) + " tensor" + (ignored > 1 ? "s" : "") +
                        " outside the text decoder (e.g. '" + ignored_example + "')");

  // ---- validation against the specs ----
  const ModelConfig& c = ck.config_;
  const std::vector<TensorSpec> specs = text_tensor_specs(c, /*include_dead=*/true);
  std::map<std::string_view, const TensorSpec*, std::less<>> by_name;
  for (const TensorSpec& s : specs) by_name[s.gguf_name] = &s;
  const bool hf = ck.format_ == CheckpointFormat::HfSafetensors;
  const std::string hf_prefix = [&] {
    for (const auto& [g, h] : hf_names)
      if (starts_with(h, "model.language_model.")) return std::string("model.language_model.");
    return std::string("model.");
  }();
  auto describe = [&](const std::string& gguf_name, const std::string& spec_hf) {
    if (!hf) return std::string();
    auto it = hf_names.find(gguf_name);
    const std::string h = it != hf_names.end() ? it->second : spec_hf.empty() ? "" : hf_prefix + spec_hf;
    return h.empty() ? std::string() : " (HF '" + h + "')";
  };
  auto check_shape = [&](const TensorView& t, const std::vector<int64_t>& ne, const std::string& spec_hf) {
    const bool scalar_ok = ne == std::vector<int64_t>{1} && t.ne.empty();
    if (t.ne != ne && !scalar_ok) {
      TensorView want;
      want.ne = ne;
      fail("tensor '", t.name, "' has shape ", t.shape_string(), ", expected ", want.shape_string(),
           " from the config", describe(t.name, spec_hf));
    }
  };

  for (const TensorView& t : ck.tensors_) {
    if (by_name.count(t.name)) continue;
    auto blk = split_blk(t.name);
    const bool split_alt = blk && c.moe && blk->first < c.n_layers &&
                           (blk->second == "ffn_gate_exps.weight" || blk->second == "ffn_up_exps.weight");
    if (split_alt) continue;
    fail("tensor '", t.name, "'", describe(t.name, ""), " in '", path,
         "' is not part of a Gemma 4 text decoder with this config (", c.n_layers, " layers",
         c.ple_dim ? ", per-layer embeddings" : "", c.moe ? ", MoE" : "", c.k_eq_v ? ", K=V full layers" : "",
         c.tie_embeddings ? ", tied embeddings" : "", ")");
  }

  for (const TensorSpec& s : specs) {
    const TensorView* t = ck.tensor(s.gguf_name);
    if (s.layer >= 0 && !c.layers[s.layer].has_kv && t) {
      // Dead K/V of a KV-shared layer: tolerated, never computed.
      if (!s.required) ck.dead_.insert(s.gguf_name);
    }
    if (ends_with(s.gguf_name, ".ffn_gate_up_exps.weight")) {
      const std::string base = s.gguf_name.substr(0, s.gguf_name.size() - std::strlen("ffn_gate_up_exps.weight"));
      const TensorView* g = ck.tensor(base + "ffn_gate_exps.weight");
      const TensorView* u = ck.tensor(base + "ffn_up_exps.weight");
      if (t && (g || u))
        fail("'", path, "' holds both the fused '", s.gguf_name, "' and the split '", base,
             g ? "ffn_gate_exps.weight" : "ffn_up_exps.weight", "'; expected one form");
      if (!t && (g || u)) {
        if (!g || !u)
          fail("tensor '", base, g ? "ffn_up_exps.weight" : "ffn_gate_exps.weight", "' is missing from '", path,
               "' (split MoE experts need both gate and up)");
        const std::vector<int64_t> ne = {s.ne[0], s.ne[1] / 2, s.ne[2]};
        check_shape(*g, ne, "");
        check_shape(*u, ne, "");
        continue;
      }
    }
    if (!t) {
      if (s.required)
        fail("tensor '", s.gguf_name, "'", describe(s.gguf_name, s.hf_name), " is missing from '", path, "'");
      continue;
    }
    check_shape(*t, s.ne, s.hf_name);
    const bool float_type = t->type == GgmlType::F32 || t->type == GgmlType::F16 || t->type == GgmlType::BF16;
    if ((s.role == TensorRole::Norm || s.role == TensorRole::Scalar) && !float_type)
      fail("tensor '", t->name, "'", describe(t->name, s.hf_name), " has type ", ggml_type_name(t->type),
           "; norm and scale tensors must be F32, F16 or BF16");
    if (s.role == TensorRole::RopeFreqs && t->type != GgmlType::F32)
      fail("tensor '", t->name, "' has type ", ggml_type_name(t->type),
           "; rope_freqs must be F32 (1e30 is not representable in F16)");
  }
  return ck;
}

}  // namespace g4
