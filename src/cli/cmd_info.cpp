// `gemma4 info MODEL [--ctx N] [--kv-type T] [--json]`: what a checkpoint is and what it needs.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/checksum.h"

#include "cli/commands.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "kernels/attention.h"
#include "model/checkpoint.h"
#include "model/kv_cache.h"

namespace g4::cli {
namespace {

struct InfoOptions {
  std::string model;
  int64_t ctx = 0;
  std::string kv_type = attn::kv_type_name(attn::kDefaultKvType);
  bool json = false;
  bool checksums = false;
};

std::string human_bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[64];
  if (u == 0) std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  else std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

std::string bytes_row(uint64_t b) {
  return human_bytes(b) + " (" + std::to_string(b) + " bytes)";
}

// "SSSSF x7"; the plain string when the layers do not repeat a unit.
std::string layer_pattern(const ModelConfig& c) {
  std::string s;
  for (LayerType t : c.layer_types) s += t == LayerType::Full ? 'F' : 'S';
  const size_t n = s.size();
  for (size_t p = 1; p < n; ++p) {
    if (n % p) continue;
    bool ok = true;
    for (size_t i = p; i < n && ok; ++i) ok = s[i] == s[i - p];
    if (ok) return s.substr(0, p) + " x" + std::to_string(n / p);
  }
  return s;
}

std::string ranges(const std::vector<int>& xs) {
  std::string out;
  for (size_t i = 0; i < xs.size();) {
    size_t j = i;
    while (j + 1 < xs.size() && xs[j + 1] == xs[j] + 1) ++j;
    if (!out.empty()) out += ", ";
    out += std::to_string(xs[i]);
    if (j > i) out += "-" + std::to_string(xs[j]);
    i = j + 1;
  }
  return out;
}

struct LayerKind {
  LayerConfig l;  // representative
  std::vector<int> layers;
};

std::vector<LayerKind> layer_kinds(const ModelConfig& c) {
  std::vector<LayerKind> kinds;
  for (int i = 0; i < c.n_layers; ++i) {
    const LayerConfig& l = c.layers[i];
    bool found = false;
    for (LayerKind& k : kinds) {
      const LayerConfig& r = k.l;
      if (r.type == l.type && r.head_dim == l.head_dim && r.n_kv_heads == l.n_kv_heads && r.ffn_dim == l.ffn_dim &&
          r.k_eq_v == l.k_eq_v && r.has_kv == l.has_kv && (l.has_kv || r.kv_source == l.kv_source) &&
          r.rope_theta == l.rope_theta && r.rope_rotated_dims == l.rope_rotated_dims) {
        k.layers.push_back(i);
        found = true;
        break;
      }
    }
    if (!found) kinds.push_back({l, {i}});
  }
  return kinds;
}

const char* type_word(LayerType t) { return t == LayerType::Full ? "full" : "sliding"; }

// A float as the double with the same shortest decimal form (1e-6f -> 1e-06, not 9.99999997e-07).
double clean(float f) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.7g", static_cast<double>(f));
  return std::strtod(buf, nullptr);
}

// Per-tensor value checksums (elements widened to f32, so BF16 and F32 copies of
// the same values agree) and one checksum over all of them in name order.
struct Checksums {
  std::map<std::string, std::string> per_tensor;
  std::string all;
};
Checksums compute_checksums(const Checkpoint& ck) {
  Checksums out;
  for (const TensorView& t : ck.tensors()) out.per_tensor[t.name] = checksum_hex(tensor_value_checksum(t));
  Xxh64 h;
  for (const auto& [name, sum] : out.per_tensor) {
    // rope_freqs is synthesised by GGUF converters from the config; HF folders
    // do not store it, so it stays out of the combined checksum.
    if (name == "rope_freqs.weight") continue;
    h.update(name.data(), name.size() + 1);
    h.update(sum.data(), sum.size());
  }
  out.all = checksum_hex(h.digest());
  return out;
}

void run_info(const InfoOptions& o) {
  const Checkpoint ck = Checkpoint::open(o.model);
  const ModelConfig& c = ck.config();
  if (o.ctx < 0) fail("--ctx must be positive");
  const int64_t ctx = o.ctx > 0 ? o.ctx : (c.max_context > 0 ? c.max_context : 4096);

  std::map<std::string, size_t> type_counts;
  uint64_t weights = 0, dead = 0;
  for (const TensorView& t : ck.tensors()) {
    ++type_counts[ggml_type_name(t.type)];
    if (ck.is_dead(t.name)) dead += t.nbytes;
    else weights += t.nbytes;
  }
  std::string types;
  for (const auto& [name, n] : type_counts) types += (types.empty() ? "" : ", ") + name + ": " + std::to_string(n);
  // The engine's cache stores K and V in --kv-type (q8_0: 34 bytes per 32
  // elements); sliding layers hold at most the window, KV-shared layers nothing.
  const GgmlType kv_type = attn::parse_kv_type(o.kv_type);
  const std::string kv_name = attn::kv_type_name(kv_type);
  const double kv_elem = attn::kv_elem_bytes(kv_type);
  const uint64_t kv = c.kv_cache_bytes(ctx, kv_elem), kv4k = c.kv_cache_bytes(4096, kv_elem);
  const bool gguf = ck.format() == CheckpointFormat::Gguf;
  const std::vector<LayerKind> kinds = layer_kinds(c);
  int n_sliding = 0;
  for (LayerType t : c.layer_types) n_sliding += t == LayerType::Sliding;

  if (o.json) {
    nlohmann::ordered_json j;
    j["format"] = gguf ? "gguf" : "safetensors";
    j["path"] = ck.path();
    if (gguf) j["gguf_version"] = ck.gguf()->version();
    j["file_bytes"] = ck.file_bytes();
    j["architecture"] = c.architecture;
    j["variant"] = variant_name(c.variant());
    j["n_layers"] = c.n_layers;
    j["hidden"] = c.hidden;
    j["n_heads"] = c.n_heads;
    j["n_kv_heads"] = c.n_kv_heads;
    j["n_global_kv_heads"] = c.n_global_kv_heads;
    j["head_dim"] = c.head_dim;
    j["global_head_dim"] = c.global_head_dim;
    j["ffn_dim"] = c.ffn_dim;
    j["double_wide_mlp"] = c.double_wide_mlp;
    j["n_kv_shared_layers"] = c.n_kv_shared_layers;
    j["ple_dim"] = c.ple_dim;
    j["ple_vocab"] = c.ple_vocab;
    j["moe"] = c.moe;
    j["n_experts"] = c.n_experts;
    j["n_experts_used"] = c.n_experts_used;
    j["expert_ffn_dim"] = c.expert_ffn_dim;
    j["k_eq_v"] = c.k_eq_v;
    j["sliding_window"] = c.sliding_window;
    j["layer_pattern"] = layer_pattern(c);
    auto lt = nlohmann::ordered_json::array();
    for (LayerType t : c.layer_types) lt.push_back(type_word(t));
    j["layer_types"] = lt;
    j["rope_theta_sliding"] = clean(c.rope_theta_sliding);
    j["rope_theta_full"] = clean(c.rope_theta_full);
    j["partial_rotary_factor_full"] = clean(c.partial_rotary_factor_full);
    j["final_softcap"] = clean(c.final_softcap);
    j["rms_eps"] = clean(c.rms_eps);
    j["vocab_size"] = c.vocab_size;
    j["max_context"] = c.max_context;
    j["bos_id"] = c.bos_id;
    j["eos_id"] = c.eos_id;
    j["pad_id"] = c.pad_id;
    j["eos_ids"] = c.eos_ids;
    j["tie_embeddings"] = c.tie_embeddings;
    j["has_vision"] = c.has_vision;
    j["has_audio"] = c.has_audio;
    auto lk = nlohmann::ordered_json::array();
    for (const LayerKind& k : kinds) {
      nlohmann::ordered_json e;
      e["layers"] = ranges(k.layers);
      e["count"] = k.layers.size();
      e["type"] = type_word(k.l.type);
      e["head_dim"] = k.l.head_dim;
      e["n_kv_heads"] = k.l.n_kv_heads;
      e["ffn_dim"] = k.l.ffn_dim;
      e["k_eq_v"] = k.l.k_eq_v;
      if (k.l.has_kv) e["kv_source"] = "own";
      else e["kv_source"] = k.l.kv_source;
      e["rope_theta"] = clean(k.l.rope_theta);
      e["rope_rotated_dims"] = k.l.rope_rotated_dims;
      lk.push_back(e);
    }
    j["layer_kinds"] = lk;
    j["tensor_count"] = ck.tensors().size();
    nlohmann::ordered_json tt = nlohmann::ordered_json::object();
    for (const auto& [name, n] : type_counts) tt[name] = n;
    j["tensor_types"] = tt;
    j["weights_bytes"] = weights;
    j["dead_weights_bytes"] = dead;
    j["ctx"] = ctx;
    j["kv_cache_dtype"] = kv_name;
    j["kv_cache_bytes"] = kv;
    j["kv_cache_bytes_4096"] = kv4k;
    j["total_bytes"] = weights + kv;
    j["total_bytes_4096"] = weights + kv4k;
    j["notes"] = ck.notes();
    if (o.checksums) {
      const Checksums cs = compute_checksums(ck);
      j["weights_checksum"] = cs.all;
      j["checksums"] = cs.per_tensor;
    }
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }

  std::ostringstream os;
  auto row = [&](const std::string& k, const std::string& v) {
    os << "  " << k << ":" << std::string(k.size() < 26 ? 26 - k.size() : 1, ' ') << v << "\n";
  };
  auto b = [](bool x) { return std::string(x ? "yes" : "no"); };
  auto num = [](double x) {
    std::ostringstream s;
    s << x;
    return s.str();
  };
  os << "model\n";
  row("format", gguf ? "GGUF v" + std::to_string(ck.gguf()->version()) : "Hugging Face safetensors");
  row("path", ck.path());
  row("file size", bytes_row(ck.file_bytes()));
  row("architecture", c.architecture);
  row("variant", variant_name(c.variant()));
  os << "hyperparameters\n";
  row("layers", std::to_string(c.n_layers) + " (" + std::to_string(n_sliding) + " sliding, " +
                    std::to_string(c.n_layers - n_sliding) + " full)");
  row("layer pattern", layer_pattern(c));
  row("hidden size", std::to_string(c.hidden));
  row("attention heads", std::to_string(c.n_heads));
  row("kv heads", std::to_string(c.n_kv_heads) +
                      (c.n_global_kv_heads ? " (full layers: " + std::to_string(c.n_global_kv_heads) + ")" : ""));
  row("head dim", std::to_string(c.head_dim) + " sliding, " + std::to_string(c.global_head_dim) + " full");
  row("mlp width", std::to_string(c.ffn_dim) + (c.double_wide_mlp ? " (double-wide on KV-shared layers)" : ""));
  row("kv-shared layers", std::to_string(c.n_kv_shared_layers) +
                              (c.n_kv_shared_layers ? " (from layer " + std::to_string(c.first_kv_shared_layer()) + ")" : ""));
  row("per-layer embeddings", c.ple_dim ? std::to_string(c.ple_dim) + " per layer, vocab " + std::to_string(c.ple_vocab)
                                        : std::string("none"));
  row("moe", c.moe ? std::to_string(c.n_experts) + " experts, top " + std::to_string(c.n_experts_used) + ", width " +
                         std::to_string(c.expert_ffn_dim)
                   : std::string("no"));
  row("k = v on full layers", b(c.k_eq_v));
  row("sliding window", std::to_string(c.sliding_window));
  row("rope theta", num(c.rope_theta_sliding) + " sliding, " + num(c.rope_theta_full) + " full");
  row("partial rotary (full)", num(c.partial_rotary_factor_full));
  row("final logit softcap", c.final_softcap > 0 ? num(c.final_softcap) : std::string("none"));
  row("rms norm eps", num(c.rms_eps));
  row("vocab size", std::to_string(c.vocab_size));
  row("max context", std::to_string(c.max_context));
  std::string eos;
  for (int id : c.eos_ids) eos += (eos.empty() ? "" : ", ") + std::to_string(id);
  row("bos / eos / pad", std::to_string(c.bos_id) + " / " + eos + " / " + std::to_string(c.pad_id));
  row("tied embeddings", b(c.tie_embeddings));
  row("vision / audio", b(c.has_vision) + " / " + b(c.has_audio));
  os << "layer kinds\n";
  for (const LayerKind& k : kinds) {
    std::ostringstream d;
    d << type_word(k.l.type) << ", head dim " << k.l.head_dim << ", kv heads " << k.l.n_kv_heads << ", ffn "
      << k.l.ffn_dim;
    if (k.l.k_eq_v) d << ", K=V";
    d << ", kv " << (k.l.has_kv ? std::string("own") : "from layer " + std::to_string(k.l.kv_source));
    d << ", rope " << num(k.l.rope_theta) << " over " << k.l.rope_rotated_dims << " lanes";
    row((k.layers.size() > 1 ? "layers " : "layer ") + ranges(k.layers), d.str());
  }
  os << "tensors\n";
  row("count", std::to_string(ck.tensors().size()));
  row("by type", types);
  row("weights", bytes_row(weights));
  if (dead) row("dead (unused) weights", bytes_row(dead));
  os << "memory (weights, mapped from the file, + " << kv_name << " KV cache)\n";
  row("ctx " + std::to_string(ctx), bytes_row(weights + kv) + ", KV " + human_bytes(kv));
  if (ctx != 4096) row("ctx 4096", bytes_row(weights + kv4k) + ", KV " + human_bytes(kv4k));
  {
    char mib[32];
    std::snprintf(mib, sizeof mib, "%.1f MiB", static_cast<double>(kv) / (1024.0 * 1024.0));
    os << "KV cache at ctx " << ctx << ": " << mib << " (" << kv_name
       << " K and V; sliding layers capped at the window, shared layers 0; reserved up front, resident as positions "
          "fill)\n";
  }
  for (const std::string& n : ck.notes()) os << "note: " << n << "\n";
  if (o.checksums) {
    const Checksums cs = compute_checksums(ck);
    os << "weights checksum (values as f32, all tensors but rope_freqs): " << cs.all << "\n";
    for (const auto& [name, sum] : cs.per_tensor) os << "  " << sum << "  " << name << "\n";
  }
  std::fputs(os.str().c_str(), stdout);
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto o = std::make_shared<InfoOptions>();
  CLI::App* cmd = app.add_subcommand("info", "Show a model's format, hyperparameters, tensors and memory needs");
  cmd->add_option("MODEL", o->model, "GGUF file or Hugging Face checkpoint folder")->required();
  cmd->add_option("--ctx", o->ctx, "context length for the KV cache estimate (default: the model's maximum)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 26));
  cmd->add_option("--kv-type", o->kv_type,
                  std::string("KV cache element type for the memory estimate: ") + attn::kv_type_choices() +
                      " (default " + attn::kv_type_name(attn::kDefaultKvType) + ", as run/chat/eval)");
  cmd->add_flag("--json", o->json, "print one JSON object");
  cmd->add_flag("--checksums", o->checksums,
                "also print a checksum of every tensor's values (as f32) and of all of them together, "
                "so a GGUF and a HF folder holding the same weights can be compared");
  cmd->callback([o] { run_info(*o); });
}

}  // namespace g4::cli
