// Gemma 4 text config: HF config.json / GGUF metadata parsing, per-layer
// derivation and validation (spec gemma4-text.md §1.1, §2.4, §5.2).
#include "model/config.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/gguf.h"

namespace g4 {

using nlohmann::json;

const char* variant_name(Variant v) {
  switch (v) {
    case Variant::E2B: return "E2B";
    case Variant::E4B: return "E4B";
    case Variant::A26B: return "26B-A4B";
    case Variant::D31B: return "31B";
    case Variant::Custom: return "custom";
  }
  return "custom";
}

// ---------------------------------------------------------------------------
// derive / validate

namespace {

constexpr int kMaxLayers = 1024;
constexpr int kMaxHidden = 65536;
constexpr int kMaxHeads = 1024;
constexpr int kMaxHeadDim = 8192;
constexpr int kMaxFfn = 1 << 20;
constexpr int kMaxVocab = 1 << 24;
constexpr int kMaxExperts = 4096;
constexpr int kMaxContext = 1 << 26;

const char* type_name(LayerType t) { return t == LayerType::Full ? "full" : "sliding"; }

void check_range(const char* what, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    if (v < lo && lo == 1) fail("config: ", what, " must be positive, got ", v);
    if (v < lo) fail("config: ", what, " must be at least ", lo, ", got ", v);
    fail("config: ", what, " = ", v, " is absurd (at most ", hi, ")");
  }
}

void check_float(const char* what, double v, bool allow_zero) {
  if (!std::isfinite(v) || v < 0 || (!allow_zero && v == 0))
    fail("config: ", what, " must be ", allow_zero ? "non-negative" : "positive", " and finite, got ", v);
}

}  // namespace

void ModelConfig::derive() {
  check_range("num_hidden_layers", n_layers, 1, kMaxLayers);
  check_range("hidden_size", hidden, 1, kMaxHidden);
  check_range("num_attention_heads", n_heads, 1, kMaxHeads);
  check_range("num_key_value_heads", n_kv_heads, 1, kMaxHeads);
  check_range("num_global_key_value_heads", n_global_kv_heads, 0, kMaxHeads);
  check_range("intermediate_size", ffn_dim, 1, kMaxFfn);
  check_range("vocab_size", vocab_size, 1, kMaxVocab);
  check_range("hidden_size_per_layer_input", ple_dim, 0, kMaxHidden);
  check_range("num_kv_shared_layers", n_kv_shared_layers, 0, n_layers);
  check_range("max_position_embeddings", max_context, 0, kMaxContext);
  if (static_cast<int>(layer_types.size()) != n_layers)
    fail("config: layer_types has ", layer_types.size(), " entries but num_hidden_layers is ", n_layers);
  if (n_kv_shared_layers == n_layers)
    fail("config: num_kv_shared_layers (", n_kv_shared_layers, ") leaves no layer that computes K/V");
  if (n_heads % n_kv_heads != 0)
    fail("config: num_attention_heads (", n_heads, ") is not a multiple of num_key_value_heads (", n_kv_heads, ")");
  if (n_global_kv_heads > 0 && n_heads % n_global_kv_heads != 0)
    fail("config: num_attention_heads (", n_heads, ") is not a multiple of num_global_key_value_heads (",
         n_global_kv_heads, ")");
  if (ple_dim > 0) {
    check_range("vocab_size_per_layer_input", ple_vocab, 1, kMaxVocab);
    if (static_cast<int64_t>(ple_dim) * n_layers > (int64_t(1) << 24))
      fail("config: hidden_size_per_layer_input × num_hidden_layers = ", int64_t(ple_dim) * n_layers, " is absurd");
  }
  if (moe) {
    check_range("num_experts", n_experts, 1, kMaxExperts);
    check_range("top_k_experts", n_experts_used, 1, n_experts);
    check_range("moe_intermediate_size", expert_ffn_dim, 1, kMaxFfn);
  }
  check_float("rope_theta (sliding)", rope_theta_sliding, false);
  check_float("rope_theta (full)", rope_theta_full, false);
  check_float("final_logit_softcapping", final_softcap, true);
  check_float("rms_norm_eps", rms_eps, false);
  if (!(partial_rotary_factor_full > 0.f && partial_rotary_factor_full <= 1.f))
    fail("config: partial_rotary_factor of full attention must be in (0, 1], got ", partial_rotary_factor_full);

  const bool any_sliding = std::count(layer_types.begin(), layer_types.end(), LayerType::Sliding) > 0;
  const bool any_full = std::count(layer_types.begin(), layer_types.end(), LayerType::Full) > 0;
  if (any_sliding) {
    check_range("head_dim", head_dim, 1, kMaxHeadDim);
    if (head_dim % 2) fail("config: head_dim (", head_dim, ") must be even for RoPE");
    check_range("sliding_window", sliding_window, 1, kMaxContext);
  }
  if (any_full) {
    check_range("global_head_dim", global_head_dim, 1, kMaxHeadDim);
    if (global_head_dim % 2) fail("config: global_head_dim (", global_head_dim, ") must be even for RoPE");
  }
  if (eos_ids.empty()) eos_ids.push_back(eos_id);

  const int first_shared = first_kv_shared_layer();
  layers.assign(n_layers, LayerConfig{});
  for (int i = 0; i < n_layers; ++i) {
    LayerConfig& l = layers[i];
    l.type = layer_types[i];
    const bool full = l.type == LayerType::Full;
    l.head_dim = full ? global_head_dim : head_dim;
    l.k_eq_v = k_eq_v && full;
    l.n_kv_heads = (l.k_eq_v && n_global_kv_heads > 0) ? n_global_kv_heads : n_kv_heads;
    l.has_kv = i < first_shared;
    l.ffn_dim = (double_wide_mlp && !l.has_kv) ? 2 * ffn_dim : ffn_dim;
    if (l.ffn_dim > kMaxFfn) fail("config: MLP width ", l.ffn_dim, " of layer ", i, " is absurd");
    l.rope_theta = full ? rope_theta_full : rope_theta_sliding;
    l.rope_rotated_dims =
        full ? 2 * static_cast<int>(std::floor(static_cast<double>(partial_rotary_factor_full) * global_head_dim / 2.0))
             : head_dim;
    if (l.has_kv) {
      l.kv_source = i;
    } else {
      // HF rule: the last non-shared layer of the same type.
      l.kv_source = -1;
      for (int j = first_shared - 1; j >= 0; --j)
        if (layer_types[j] == l.type) {
          l.kv_source = j;
          break;
        }
      if (l.kv_source < 0)
        fail("config: layer ", i, " (", type_name(l.type), ") is KV-shared but no layer before ", first_shared,
             " (the first shared layer) is ", type_name(l.type), " to provide its K/V");
    }
  }
}

Variant ModelConfig::variant() const {
  struct Shape {
    Variant v;
    int layers, hidden, heads, kv, gkv, ffn;
    bool dw;
    int shared, ple;
    bool moe;
    int experts, used, effn;
    bool keqv;
    int window, period, ctx;
  };
  static const Shape kShapes[] = {
      {Variant::E2B, 35, 1536, 8, 1, 0, 6144, true, 20, 256, false, 0, 0, 0, false, 512, 5, 131072},
      {Variant::E4B, 42, 2560, 8, 2, 0, 10240, false, 18, 256, false, 0, 0, 0, false, 512, 6, 131072},
      {Variant::A26B, 30, 2816, 16, 8, 2, 2112, false, 0, 0, true, 128, 8, 704, true, 1024, 6, 262144},
      {Variant::D31B, 60, 5376, 32, 16, 4, 21504, false, 0, 0, false, 0, 0, 0, true, 1024, 6, 262144},
  };
  for (const Shape& s : kShapes) {
    if (n_layers != s.layers || hidden != s.hidden || n_heads != s.heads || n_kv_heads != s.kv) continue;
    if (head_dim != 256 || global_head_dim != 512 || ffn_dim != s.ffn) continue;
    if (n_kv_shared_layers != s.shared || ple_dim != s.ple || moe != s.moe || k_eq_v != s.keqv) continue;
    if (s.dw && !double_wide_mlp) continue;
    if (!s.dw && double_wide_mlp && n_kv_shared_layers > 0) continue;
    // Global KV heads only matter with K=V.
    if (s.keqv && (n_global_kv_heads == 0 ? n_kv_heads : n_global_kv_heads) != s.gkv) continue;
    if (s.moe && (n_experts != s.experts || n_experts_used != s.used || expert_ffn_dim != s.effn)) continue;
    if (sliding_window != s.window || vocab_size != 262144) continue;
    if (static_cast<int>(layer_types.size()) != s.layers) continue;
    bool pattern = true;
    for (int i = 0; i < s.layers; ++i)
      pattern = pattern && layer_types[i] == ((i + 1) % s.period == 0 ? LayerType::Full : LayerType::Sliding);
    if (!pattern) continue;
    return s.v;
  }
  return Variant::Custom;
}

uint64_t ModelConfig::kv_cache_bytes(int64_t n_ctx, double bytes_per_elem) const {
  if (n_ctx <= 0) return 0;
  std::vector<LayerConfig> tmp;
  const std::vector<LayerConfig>* ls = &layers;
  if (layers.empty()) {
    ModelConfig c = *this;
    c.derive();
    tmp = std::move(c.layers);
    ls = &tmp;
  }
  double total = 0;
  for (const LayerConfig& l : *ls) {
    if (!l.has_kv) continue;
    const int64_t tokens = l.type == LayerType::Sliding ? std::min<int64_t>(n_ctx, sliding_window) : n_ctx;
    // K and V are both stored, also on K=V layers (different norms / RoPE).
    total += 2.0 * static_cast<double>(tokens) * l.n_kv_heads * l.head_dim * bytes_per_elem;
  }
  return static_cast<uint64_t>(std::llround(total));
}

// ---------------------------------------------------------------------------
// HF config.json

namespace {

struct JsonReader {
  const json& j;
  std::string where;  // "config.json 'path' text_config"

  const json* get(const char* key) const {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return nullptr;
    return &*it;
  }
  int to_int(const char* key, const json& v) const {
    if (!v.is_number_integer()) fail(where, ": field '", key, "' must be an integer, got ", v.dump());
    if (v.is_number_unsigned()) {
      uint64_t x = v.get<uint64_t>();
      if (x > static_cast<uint64_t>(INT_MAX)) fail(where, ": field '", key, "' = ", x, " is out of range");
      return static_cast<int>(x);
    }
    int64_t x = v.get<int64_t>();
    if (x < INT_MIN || x > INT_MAX) fail(where, ": field '", key, "' = ", x, " is out of range");
    return static_cast<int>(x);
  }
  int req_int(const char* key) const {
    const json* v = get(key);
    if (!v) fail(where, ": missing field '", key, "'");
    return to_int(key, *v);
  }
  int opt_int(const char* key, int def) const {
    const json* v = get(key);
    return v ? to_int(key, *v) : def;
  }
  double opt_float(const char* key, double def) const {
    const json* v = get(key);
    if (!v) return def;
    if (!v->is_number()) fail(where, ": field '", key, "' must be a number, got ", v->dump());
    return v->get<double>();
  }
  bool opt_bool(const char* key, bool def) const {
    const json* v = get(key);
    if (!v) return def;
    if (!v->is_boolean()) fail(where, ": field '", key, "' must be true or false, got ", v->dump());
    return v->get<bool>();
  }
  std::optional<std::string> opt_string(const char* key) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) fail(where, ": field '", key, "' must be a string, got ", v->dump());
    return v->get<std::string>();
  }
};

// rope_parameters {"full_attention": {...}, "sliding_attention": {...}} (current
// format), or the older flat rope_theta / rope_local_base_freq fields.
void parse_rope(const JsonReader& r, ModelConfig& c) {
  auto reject_scaling = [&](const json& p, const char* which) {
    auto f = p.find("factor");
    if (f != p.end() && !f->is_null() && (!f->is_number() || f->get<double>() != 1.0))
      fail(r.where, ": rope_parameters.", which, " has a scaling factor ", f->dump(), ", which is not supported");
  };
  const json* rp = r.get("rope_parameters");
  if (!rp) rp = r.get("rope_scaling");
  if (rp && rp->is_object() && (rp->contains("full_attention") || rp->contains("sliding_attention"))) {
    if (auto it = rp->find("full_attention"); it != rp->end() && it->is_object()) {
      JsonReader f{*it, r.where + " rope_parameters.full_attention"};
      c.rope_theta_full = static_cast<float>(f.opt_float("rope_theta", 1e6));
      const std::string type = f.opt_string("rope_type").value_or("default");
      const double prf = f.opt_float("partial_rotary_factor", 1.0);
      if (type == "proportional") {
        c.partial_rotary_factor_full = static_cast<float>(prf);
      } else if (type == "default") {
        if (prf != 1.0)
          fail(f.where, ": rope_type 'default' with partial_rotary_factor ", prf, " is not supported");
        c.partial_rotary_factor_full = 1.f;
      } else {
        fail(f.where, ": rope_type '", type, "' is not supported (expected 'proportional' or 'default')");
      }
      reject_scaling(*it, "full_attention");
    }
    if (auto it = rp->find("sliding_attention"); it != rp->end() && it->is_object()) {
      JsonReader s{*it, r.where + " rope_parameters.sliding_attention"};
      c.rope_theta_sliding = static_cast<float>(s.opt_float("rope_theta", 1e4));
      const std::string type = s.opt_string("rope_type").value_or("default");
      if (type != "default") fail(s.where, ": rope_type '", type, "' is not supported (expected 'default')");
      if (s.opt_float("partial_rotary_factor", 1.0) != 1.0)
        fail(s.where, ": partial_rotary_factor is not supported on sliding layers");
      reject_scaling(*it, "sliding_attention");
    }
    return;
  }
  c.rope_theta_full = static_cast<float>(r.opt_float("rope_theta", c.rope_theta_full));
  c.rope_theta_sliding = static_cast<float>(r.opt_float("rope_local_base_freq", c.rope_theta_sliding));
  c.partial_rotary_factor_full = static_cast<float>(r.opt_float("partial_rotary_factor", c.partial_rotary_factor_full));
}

// bos/pad/eos ids; eos_token_id may be one id or a list. Ids from every level
// are collected (the top level of a ConditionalGeneration config may list the
// end-of-turn id next to text_config's eos).
void parse_token_ids(const JsonReader& r, ModelConfig& c, bool& have_eos) {
  c.bos_id = r.opt_int("bos_token_id", c.bos_id);
  c.pad_id = r.opt_int("pad_token_id", c.pad_id);
  if (const json* e = r.get("eos_token_id")) {
    std::vector<int> ids;
    if (e->is_array()) {
      for (const json& x : *e) ids.push_back(r.to_int("eos_token_id", x));
    } else {
      ids.push_back(r.to_int("eos_token_id", *e));
    }
    if (!ids.empty()) {
      c.eos_id = ids.front();
      for (int id : ids)
        if (std::find(c.eos_ids.begin(), c.eos_ids.end(), id) == c.eos_ids.end()) c.eos_ids.push_back(id);
      have_eos = true;
    }
  }
}

ModelConfig parse_hf(const json& root, const std::string& where) {
  if (!root.is_object()) fail(where, ": not a JSON object");
  ModelConfig c;
  c.source = "hf";
  JsonReader top{root, where};
  const std::string model_type = top.opt_string("model_type").value_or("");
  if (model_type == "gemma4_assistant")
    fail(where, ": model_type 'gemma4_assistant' is a Gemma 4 MTP drafter, not a text model");
  const json* tc = top.get("text_config");
  if (model_type != "gemma4" && model_type != "gemma4_text" && !(model_type.empty() && tc))
    fail(where, ": model_type '", model_type, "' is not a Gemma 4 model (expected 'gemma4' or 'gemma4_text')");
  if (model_type == "gemma4" && !tc && !root.contains("num_hidden_layers"))
    fail(where, ": model_type 'gemma4' without a text_config");

  const json& tj = tc ? *tc : root;
  if (tc && !tc->is_object()) fail(where, ": text_config is not a JSON object");
  JsonReader r{tj, tc ? where + " text_config" : where};
  if (tc) {
    const std::string tt = r.opt_string("model_type").value_or("gemma4_text");
    if (tt != "gemma4_text") fail(r.where, ": model_type '", tt, "' is not 'gemma4_text'");
    c.has_vision = top.get("vision_config") != nullptr;
    c.has_audio = top.get("audio_config") != nullptr;
  }
  if (const json* a = top.get("architectures"); a && a->is_array() && !a->empty() && (*a)[0].is_string())
    c.architecture = (*a)[0].get<std::string>();
  else
    c.architecture = tc ? "Gemma4ForConditionalGeneration" : "Gemma4ForCausalLM";

  if (auto act = r.opt_string("hidden_activation"); act && *act != "gelu_pytorch_tanh")
    fail(r.where, ": hidden_activation '", *act, "' is not supported (Gemma 4 uses gelu_pytorch_tanh)");
  if (r.opt_bool("attention_bias", false)) fail(r.where, ": attention_bias = true is not supported");

  c.n_layers = r.req_int("num_hidden_layers");
  c.hidden = r.req_int("hidden_size");
  c.n_heads = r.req_int("num_attention_heads");
  c.n_kv_heads = r.req_int("num_key_value_heads");
  c.n_global_kv_heads = r.opt_int("num_global_key_value_heads", 0);
  c.head_dim = r.req_int("head_dim");
  c.global_head_dim = r.opt_int("global_head_dim", c.head_dim);
  c.ffn_dim = r.req_int("intermediate_size");
  c.double_wide_mlp = r.opt_bool("use_double_wide_mlp", false);
  c.n_kv_shared_layers = r.opt_int("num_kv_shared_layers", 0);
  c.vocab_size = r.req_int("vocab_size");
  c.ple_dim = r.opt_int("hidden_size_per_layer_input", 0);
  c.ple_vocab = r.opt_int("vocab_size_per_layer_input", c.vocab_size);
  c.moe = r.opt_bool("enable_moe_block", false);
  if (c.moe) {
    c.n_experts = r.req_int("num_experts");
    c.n_experts_used = r.req_int("top_k_experts");
    c.expert_ffn_dim = r.req_int("moe_intermediate_size");
  }
  c.k_eq_v = r.opt_bool("attention_k_eq_v", false);
  // num_global_key_value_heads only applies to K=V full layers (HF): normalise.
  if (!c.k_eq_v) c.n_global_kv_heads = 0;
  else if (c.n_global_kv_heads == 0) c.n_global_kv_heads = c.n_kv_heads;
  c.sliding_window = r.opt_int("sliding_window", 0);
  c.final_softcap = static_cast<float>(r.opt_float("final_logit_softcapping", 0.0));
  c.rms_eps = static_cast<float>(r.opt_float("rms_norm_eps", 1e-6));
  c.max_context = r.opt_int("max_position_embeddings", 0);
  parse_rope(r, c);

  const json* lt = r.get("layer_types");
  if (!lt || !lt->is_array()) fail(r.where, ": missing 'layer_types' array");
  if (lt->size() > (size_t(1) << 16)) fail(r.where, ": layer_types has an absurd ", lt->size(), " entries");
  for (const json& t : *lt) {
    const std::string s = t.is_string() ? t.get<std::string>() : t.dump();
    if (s == "sliding_attention") c.layer_types.push_back(LayerType::Sliding);
    else if (s == "full_attention") c.layer_types.push_back(LayerType::Full);
    else fail(r.where, ": layer_types entry '", s, "' is neither 'sliding_attention' nor 'full_attention'");
  }

  bool have_eos = false;
  parse_token_ids(top, c, have_eos);
  if (tc) parse_token_ids(r, c, have_eos);  // text_config wins for bos/pad/eos_id
  c.tie_embeddings = top.opt_bool("tie_word_embeddings", true);
  if (tc) c.tie_embeddings = r.opt_bool("tie_word_embeddings", c.tie_embeddings);

  c.derive();
  return c;
}

}  // namespace

ModelConfig config_from_hf_json(const nlohmann::json& j) { return parse_hf(j, "config.json"); }

ModelConfig config_from_hf_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '", path, "': ", std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  json j;
  try {
    j = json::parse(ss.str());
  } catch (const json::exception& e) {
    fail("'", path, "' is not valid JSON: ", e.what());
  }
  return parse_hf(j, "'" + path + "'");
}

// ---------------------------------------------------------------------------
// GGUF

namespace {

struct GgufReader {
  const GgufFile& f;
  std::string where;

  std::string key(std::string_view s) const { return "gemma4." + std::string(s); }

  int to_int(std::string_view k, const GgufValue& v) const {
    const int64_t x = v.as_i64(k);
    if (x < 0 || x > INT_MAX) fail(where, ": key '", k, "' = ", x, " is out of range");
    return static_cast<int>(x);
  }
  const GgufValue* find(std::string_view s) const { return f.find(key(s)); }
  int req_int(std::string_view s) const {
    const GgufValue* v = find(s);
    if (!v) fail(where, ": missing key '", key(s), "'");
    if (v->is_array()) fail(where, ": key '", key(s), "' is an array, expected one number");
    return to_int(key(s), *v);
  }
  int opt_int(std::string_view s, int def) const { return find(s) ? req_int(s) : def; }
  double opt_float(std::string_view s, double def) const {
    const GgufValue* v = find(s);
    return v ? v->as_f64(key(s)) : def;
  }
  // Scalar (same for every layer) or one entry per layer.
  std::vector<int> per_layer(std::string_view s, int n_layers, bool required, int def = 0) const {
    const GgufValue* v = find(s);
    if (!v) {
      if (required) fail(where, ": missing key '", key(s), "'");
      return std::vector<int>(n_layers, def);
    }
    if (!v->is_array()) return std::vector<int>(n_layers, to_int(key(s), *v));
    const auto& a = v->as_array(key(s));
    if (static_cast<int>(a.size()) != n_layers)
      fail(where, ": key '", key(s), "' has ", a.size(), " entries but block_count is ", n_layers);
    std::vector<int> out;
    for (const GgufValue& x : a) out.push_back(to_int(key(s), x));
    return out;
  }
};

int uniform(const GgufReader& r, std::string_view key, const std::vector<int>& vals, const std::vector<int>& idx) {
  if (idx.empty()) return 0;
  int v = vals[idx[0]];
  for (int i : idx)
    if (vals[i] != v)
      fail(r.where, ": key '", r.key(key), "' differs between layers ", idx[0], " (", v, ") and ", i, " (", vals[i],
           ") of the same kind; not a Gemma 4 layout");
  return v;
}

}  // namespace

ModelConfig config_from_gguf(const GgufFile& f) {
  GgufReader r{f, "GGUF '" + f.path() + "'"};
  const GgufValue* arch = f.find("general.architecture");
  if (!arch) fail(r.where, ": missing key 'general.architecture'");
  const std::string a = arch->as_string("general.architecture");
  if (a == "gemma4-assistant" || a == "gemma4_mtp")
    fail(r.where, ": architecture '", a, "' is a Gemma 4 MTP drafter, not a text model");
  if (a != "gemma4") fail(r.where, ": architecture '", a, "' is not 'gemma4'");

  ModelConfig c;
  c.source = "gguf";
  c.architecture = a;
  c.n_layers = r.req_int("block_count");
  check_range("block_count", c.n_layers, 1, kMaxLayers);
  const int L = c.n_layers;
  c.hidden = r.req_int("embedding_length");
  c.max_context = r.opt_int("context_length", 0);
  c.n_kv_shared_layers = r.opt_int("attention.shared_kv_layers", 0);
  check_range("attention.shared_kv_layers", c.n_kv_shared_layers, 0, L - 1);
  const int first_shared = L - c.n_kv_shared_layers;
  c.ple_dim = r.opt_int("embedding_length_per_layer_input", 0);
  c.sliding_window = r.opt_int("attention.sliding_window", 0);
  c.rms_eps = static_cast<float>(r.opt_float("attention.layer_norm_rms_epsilon", 1e-6));
  c.final_softcap = static_cast<float>(r.opt_float("final_logit_softcapping", 0.0));
  c.rope_theta_full = static_cast<float>(r.opt_float("rope.freq_base", 1e6));
  c.rope_theta_sliding = static_cast<float>(r.opt_float("rope.freq_base_swa", 1e4));

  // Layer types: bool array, true = sliding (or a Gemma-3-style period).
  const GgufValue* pat = r.find("attention.sliding_window_pattern");
  if (!pat) fail(r.where, ": missing key '", r.key("attention.sliding_window_pattern"), "'");
  if (pat->is_array()) {
    const auto& arr = pat->as_array(r.key("attention.sliding_window_pattern"));
    if (static_cast<int>(arr.size()) != L)
      fail(r.where, ": key '", r.key("attention.sliding_window_pattern"), "' has ", arr.size(),
           " entries but block_count is ", L);
    for (const GgufValue& v : arr)
      c.layer_types.push_back(v.as_bool("attention.sliding_window_pattern") ? LayerType::Sliding : LayerType::Full);
  } else {
    const int period = r.to_int(r.key("attention.sliding_window_pattern"), *pat);
    if (period < 1) fail(r.where, ": sliding_window_pattern period must be positive");
    for (int i = 0; i < L; ++i) c.layer_types.push_back((i + 1) % period ? LayerType::Sliding : LayerType::Full);
  }
  std::vector<int> sliding_idx, full_idx, own_idx, shared_idx;
  for (int i = 0; i < L; ++i) {
    (c.layer_types[i] == LayerType::Sliding ? sliding_idx : full_idx).push_back(i);
    (i < first_shared ? own_idx : shared_idx).push_back(i);
  }

  // Head counts and dims.
  const std::vector<int> heads = r.per_layer("attention.head_count", L, true);
  std::vector<int> all(L);
  for (int i = 0; i < L; ++i) all[i] = i;
  c.n_heads = uniform(r, "attention.head_count", heads, all);
  c.global_head_dim = r.req_int("attention.key_length");
  c.head_dim = r.opt_int("attention.key_length_swa", c.global_head_dim);
  if (r.find("attention.value_length") && r.req_int("attention.value_length") != c.global_head_dim)
    fail(r.where, ": value_length differs from key_length, which Gemma 4 does not do");
  if (r.find("attention.value_length_swa") && r.req_int("attention.value_length_swa") != c.head_dim)
    fail(r.where, ": value_length_swa differs from key_length_swa, which Gemma 4 does not do");
  if (r.find("rope.dimension_count_swa") && r.req_int("rope.dimension_count_swa") != c.head_dim)
    fail(r.where, ": rope.dimension_count_swa (", r.req_int("rope.dimension_count_swa"),
         ") differs from the sliding head dim ", c.head_dim, "; partial rotation on sliding layers is not supported");

  // K = V: no attn_v on the full layers that own K/V (there is no key for it).
  int full_own = 0, full_own_v = 0;
  for (int i : full_idx)
    if (i < first_shared) {
      ++full_own;
      if (f.tensor("blk." + std::to_string(i) + ".attn_v.weight")) ++full_own_v;
    }
  if (full_own_v != 0 && full_own_v != full_own)
    fail(r.where, ": ", full_own_v, " of ", full_own, " full-attention layers have attn_v.weight; expected all or none");
  c.k_eq_v = full_own > 0 && full_own_v == 0;

  const std::vector<int> kv = r.per_layer("attention.head_count_kv", L, true);
  const int kv_sliding = uniform(r, "attention.head_count_kv", kv, sliding_idx);
  const int kv_full = uniform(r, "attention.head_count_kv", kv, full_idx);
  c.n_kv_heads = sliding_idx.empty() ? kv_full : kv_sliding;
  if (!full_idx.empty() && kv_full != c.n_kv_heads) {
    if (!c.k_eq_v)
      fail(r.where, ": full layers have ", kv_full, " KV heads and sliding layers ", c.n_kv_heads,
           ", but the full layers carry attn_v (not K=V); Gemma 4 only uses separate global KV heads with K=V");
    c.n_global_kv_heads = kv_full;
  } else if (c.k_eq_v) {
    c.n_global_kv_heads = kv_full;
  }

  // MLP width: one value, or per layer with the KV-shared layers double-wide.
  const std::vector<int> ffn = r.per_layer("feed_forward_length", L, true);
  c.ffn_dim = uniform(r, "feed_forward_length", ffn, own_idx);
  if (!shared_idx.empty()) {
    const int fs = uniform(r, "feed_forward_length", ffn, shared_idx);
    if (fs == 2 * c.ffn_dim) c.double_wide_mlp = true;
    else if (fs != c.ffn_dim)
      fail(r.where, ": feed_forward_length is ", fs, " on KV-shared layers and ", c.ffn_dim,
           " elsewhere; expected equal or double-wide");
  }

  // MoE.
  c.n_experts = r.opt_int("expert_count", 0);
  c.moe = c.n_experts > 0;
  if (c.moe) {
    c.n_experts_used = r.req_int("expert_used_count");
    c.expert_ffn_dim = r.req_int("expert_feed_forward_length");
  }

  // Vocabulary sizes.
  if (const GgufValue* toks = f.find("tokenizer.ggml.tokens")) {
    c.vocab_size = static_cast<int>(std::min<size_t>(toks->as_array("tokenizer.ggml.tokens").size(), INT_MAX));
  } else if (const TensorView* te = f.tensor("token_embd.weight"); te && te->ne.size() >= 2) {
    c.vocab_size = static_cast<int>(std::min<int64_t>(te->ne[1], INT_MAX));
  } else {
    fail(r.where, ": cannot tell the vocabulary size (no tokenizer.ggml.tokens and no token_embd.weight)");
  }
  c.ple_vocab = c.vocab_size;
  if (const TensorView* pe = f.tensor("per_layer_token_embd.weight"); pe && pe->ne.size() >= 2 && c.ple_dim > 0)
    c.ple_vocab = static_cast<int>(std::min<int64_t>(pe->ne[1], INT_MAX));

  // Partial rotation of full layers: in rope_freqs.weight (1.0 = rotate, 1e30 = frozen).
  const int rope_dims = r.opt_int("rope.dimension_count", c.global_head_dim);
  if (const TensorView* rf = f.tensor("rope_freqs.weight")) {
    const int64_t n = c.global_head_dim / 2;
    if (rf->type != GgmlType::F32)
      fail(r.where, ": rope_freqs.weight is ", ggml_type_name(rf->type), ", expected F32 (1e30 is not representable in F16)");
    if (rf->nelements() != n || rf->nbytes < static_cast<size_t>(n) * 4)
      fail(r.where, ": rope_freqs.weight has shape ", rf->shape_string(), ", expected {", n, "}");
    if (rope_dims != c.global_head_dim)
      fail(r.where, ": rope.dimension_count (", rope_dims, ") differs from key_length (", c.global_head_dim,
           ") together with rope_freqs; not a Gemma 4 layout");
    int64_t ones = 0;
    bool frozen = false;
    for (int64_t i = 0; i < n; ++i) {
      float x;
      std::memcpy(&x, rf->data + 4 * i, 4);
      if (x == 1.0f && !frozen) ++ones;
      else if (x >= 1e20f) frozen = true;
      else
        fail(r.where, ": rope_freqs.weight[", i, "] = ", x,
             "; only 1.0 (rotate) followed by >= 1e20 (frozen) is supported (proportional RoPE)");
    }
    if (ones == 0) fail(r.where, ": rope_freqs.weight freezes every lane of the full layers");
    c.partial_rotary_factor_full = static_cast<float>(2.0 * ones / c.global_head_dim);
  } else {
    if (!full_idx.empty() && rope_dims != c.global_head_dim)
      fail(r.where, ": rope.dimension_count (", rope_dims, ") < key_length (", c.global_head_dim,
           ") without rope_freqs.weight: prefix rotation is not Gemma 4's proportional RoPE");
    c.partial_rotary_factor_full = 1.f;
  }

  // Token ids.
  auto tok_id = [&](const char* k, int def) {
    const GgufValue* v = f.find(k);
    if (!v) return def;
    const int64_t x = v->as_i64(k);
    if (x < 0 || x > INT_MAX) fail(r.where, ": ", k, " = ", x, " is out of range");
    return static_cast<int>(x);
  };
  c.bos_id = tok_id("tokenizer.ggml.bos_token_id", c.bos_id);
  c.eos_id = tok_id("tokenizer.ggml.eos_token_id", c.eos_id);
  c.pad_id = tok_id("tokenizer.ggml.padding_token_id", c.pad_id);
  c.eos_ids = {c.eos_id};
  if (f.find("tokenizer.ggml.eot_token_id")) c.eos_ids.push_back(tok_id("tokenizer.ggml.eot_token_id", c.eos_id));
  if (const GgufValue* ids = f.find("tokenizer.ggml.eos_token_ids"); ids && ids->is_array())
    for (const GgufValue& x : ids->as_array()) {
      const int64_t id = x.as_i64("tokenizer.ggml.eos_token_ids");
      if (id >= 0 && id <= INT_MAX) c.eos_ids.push_back(static_cast<int>(id));
    }
  std::vector<int> uniq;
  for (int id : c.eos_ids)
    if (std::find(uniq.begin(), uniq.end(), id) == uniq.end()) uniq.push_back(id);
  c.eos_ids = uniq;

  c.tie_embeddings = f.tensor("output.weight") == nullptr;
  for (const TensorView& t : f.tensors()) {
    if (t.name.rfind("v.", 0) == 0 || t.name.rfind("mm.", 0) == 0) c.has_vision = true;
    if (t.name.rfind("a.", 0) == 0) c.has_audio = true;
  }

  c.derive();
  return c;
}

void write_gguf_config(const ModelConfig& cin, GgufWriter& w) {
  ModelConfig c = cin;
  if (c.layers.empty()) c.derive();
  const std::string p = "gemma4.";
  auto u32 = [](int x) { return GgufValue::u32(static_cast<uint32_t>(x)); };
  w.set("general.architecture", GgufValue::str("gemma4"));
  w.set(p + "context_length", u32(c.max_context));
  w.set(p + "embedding_length", u32(c.hidden));
  w.set(p + "block_count", u32(c.n_layers));

  bool ffn_varies = false, kv_varies = false;
  std::vector<uint32_t> ffn, kv;
  std::vector<bool> pattern;
  for (const LayerConfig& l : c.layers) {
    ffn.push_back(static_cast<uint32_t>(l.ffn_dim));
    kv.push_back(static_cast<uint32_t>(l.n_kv_heads));
    pattern.push_back(l.type == LayerType::Sliding);
    ffn_varies = ffn_varies || l.ffn_dim != c.layers[0].ffn_dim;
    kv_varies = kv_varies || l.n_kv_heads != c.layers[0].n_kv_heads;
  }
  w.set(p + "feed_forward_length", ffn_varies ? GgufValue::u32s(ffn) : u32(c.ffn_dim));
  w.set(p + "attention.head_count", u32(c.n_heads));
  w.set(p + "attention.head_count_kv", kv_varies ? GgufValue::u32s(kv) : u32(c.layers[0].n_kv_heads));
  w.set(p + "attention.key_length", u32(c.global_head_dim));
  w.set(p + "attention.value_length", u32(c.global_head_dim));
  w.set(p + "attention.key_length_swa", u32(c.head_dim));
  w.set(p + "attention.value_length_swa", u32(c.head_dim));
  w.set(p + "attention.layer_norm_rms_epsilon", GgufValue::f32(c.rms_eps));
  w.set(p + "attention.sliding_window", u32(c.sliding_window));
  w.set(p + "attention.sliding_window_pattern", GgufValue::bools(pattern));
  w.set(p + "attention.shared_kv_layers", u32(c.n_kv_shared_layers));
  w.set(p + "embedding_length_per_layer_input", u32(c.ple_dim));
  w.set(p + "rope.freq_base", GgufValue::f32(c.rope_theta_full));
  w.set(p + "rope.freq_base_swa", GgufValue::f32(c.rope_theta_sliding));
  w.set(p + "rope.dimension_count", u32(c.global_head_dim));
  w.set(p + "rope.dimension_count_swa", u32(c.head_dim));
  w.set(p + "final_logit_softcapping", GgufValue::f32(c.final_softcap));
  if (c.moe) {
    w.set(p + "expert_count", u32(c.n_experts));
    w.set(p + "expert_used_count", u32(c.n_experts_used));
    w.set(p + "expert_feed_forward_length", u32(c.expert_ffn_dim));
  }
  w.set("tokenizer.ggml.bos_token_id", u32(c.bos_id));
  w.set("tokenizer.ggml.eos_token_id", u32(c.eos_id));
  w.set("tokenizer.ggml.padding_token_id", u32(c.pad_id));
}

}  // namespace g4
