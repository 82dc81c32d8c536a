#include "tools/quant_recipe.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <numeric>

#include "core/error.h"

namespace g4 {
namespace {

// LLAMA_FTYPE_* values (llama.h).
constexpr uint32_t kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 7, kQ5_0 = 8, kQ5_1 = 9, kQ4_K_S = 14,
                   kQ4_K_M = 15, kQ5_K_S = 16, kQ5_K_M = 17, kQ6_K = 18, kBF16 = 32, kMXFP4_MOE = 38;

std::string lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

// llama-quant.cpp's tensor categories (broad, by name substring).
enum class Category {
  Output,
  TokenEmbd,
  AttnQkv,
  AttnKvB,
  AttnV,
  AttnK,
  AttnQ,
  AttnOutput,
  FfnUp,
  FfnGate,
  FfnDown,
  Other
};

bool is_token_embd(const std::string& n) { return n == "token_embd.weight" || n == "per_layer_token_embd.weight"; }

Category category_of(const std::string& n) {
  auto has = [&](const char* s) { return n.find(s) != std::string::npos; };
  if (n == "output.weight") return Category::Output;
  if (is_token_embd(n)) return Category::TokenEmbd;
  if (has("attn_qkv.weight")) return Category::AttnQkv;
  if (has("attn_kv_b.weight")) return Category::AttnKvB;
  if (has("attn_v.weight")) return Category::AttnV;
  if (has("attn_k.weight")) return Category::AttnK;
  if (has("attn_q.weight")) return Category::AttnQ;
  if (has("attn_output.weight")) return Category::AttnOutput;
  if (has("ffn_up")) return Category::FfnUp;
  if (has("ffn_gate")) return Category::FfnGate;
  if (has("ffn_down")) return Category::FfnDown;
  return Category::Other;
}

bool is_attn_v_like(Category c) { return c == Category::AttnV || c == Category::AttnQkv || c == Category::AttnKvB; }

int64_t block_size(GgmlType t) { return ggml_type_info(t).block_size; }

// ggml_n_dims: trailing dimensions of size 1 do not count.
int n_dims(const std::vector<int64_t>& ne) {
  for (int i = static_cast<int>(ne.size()) - 1; i >= 1; --i)
    if (ne[static_cast<size_t>(i)] > 1) return i + 1;
  return 1;
}

// quantize_state_impl: the counters llama-quantize carries across tensors.
struct State {
  QuantModelInfo model;
  uint32_t ftype = 0;
  bool tied_embeddings = true;
  int n_attention_wv = 0, i_attention_wv = 0;
  int n_ffn_down = 0, n_ffn_gate = 0, n_ffn_up = 0;
  int i_ffn_down = 0, i_ffn_gate = 0, i_ffn_up = 0;
};

// layer_info: with more than one expert the layer comes from the name (the
// expert tensors are not one per counter step); otherwise the counter.
std::pair<int, int> layer_info(const State& s, int counter, int n_layer, const std::string& name) {
  if (std::max(1, s.model.n_experts) > 1) {
    int i_layer = -1;
    if (std::sscanf(name.c_str(), "blk.%d.", &i_layer) != 1)
      fail("quantize: cannot determine the layer of tensor '", name, "'");
    if (i_layer < 0 || i_layer >= n_layer)
      fail("quantize: tensor '", name, "' has layer ", i_layer, ", outside [0, ", n_layer, ")");
    return {i_layer, n_layer};
  }
  return {counter, n_layer};
}

// llama_tensor_get_type_impl, restricted to the file types we offer (the
// IQ/Q2_K/Q3_K/TQ branches cannot trigger for them and are left out).
GgmlType recipe_type(State& s, GgmlType new_type, const QuantTensorIn& t, Category cat) {
  const uint32_t ftype = s.ftype;
  if (cat == Category::Output || (s.tied_embeddings && cat == Category::TokenEmbd)) {
    // Tied embeddings are quantized like the output head.
    const int64_t nx = t.ne[0];
    if (ftype == kMXFP4_MOE)
      new_type = GgmlType::Q8_0;
    else if (nx % block_size(new_type) != 0)
      new_type = GgmlType::Q8_0;
    else if (new_type != GgmlType::Q8_0)
      new_type = GgmlType::Q6_K;
  } else if (ftype == kMXFP4_MOE) {
    new_type = t.ne.size() > 2 && t.ne[2] > 1 ? GgmlType::MXFP4 : GgmlType::Q8_0;
  } else if (cat == Category::TokenEmbd) {
    // Untied token embedding: only the IQ/TQ/Q2_0 file types change it.
  } else if (is_attn_v_like(cat)) {
    if ((ftype == kQ4_K_M || ftype == kQ5_K_M) && use_more_bits(s.i_attention_wv, s.n_attention_wv))
      new_type = GgmlType::Q6_K;
    else if (ftype == kQ4_K_S && s.i_attention_wv < 4)
      new_type = GgmlType::Q5_K;
    if (s.model.n_experts == 8) new_type = GgmlType::Q8_0;  // "trades just ~128MB"
    ++s.i_attention_wv;
  } else if (cat == Category::AttnK) {
    if (s.model.n_experts == 8) new_type = GgmlType::Q8_0;
  } else if (cat == Category::AttnQ) {
    // Only IQ3 file types.
  } else if (cat == Category::FfnDown) {
    const auto [i_layer, n_layer] = layer_info(s, s.i_ffn_down, s.n_ffn_down, t.name);
    if (ftype == kQ4_K_M) {
      if (use_more_bits(i_layer, n_layer)) new_type = GgmlType::Q6_K;
    } else if (ftype == kQ5_K_M && use_more_bits(i_layer, n_layer)) {
      new_type = GgmlType::Q6_K;
    } else if (ftype == kQ4_K_S && i_layer < n_layer / 8) {
      new_type = GgmlType::Q5_K;
    }
    ++s.i_ffn_down;
  } else if (cat == Category::AttnOutput) {
    if (s.model.n_experts == 8 && (ftype == kQ4_K_S || ftype == kQ4_K_M)) new_type = GgmlType::Q5_K;
  } else if (cat == Category::AttnQkv) {
    if (ftype == kQ4_K_M)
      new_type = GgmlType::Q5_K;
    else if (ftype == kQ5_K_M)
      new_type = GgmlType::Q6_K;
  } else if (cat == Category::FfnGate) {
    (void)layer_info(s, s.i_ffn_gate, s.n_ffn_gate, t.name);  // validates the layer like llama.cpp
    ++s.i_ffn_gate;
  } else if (cat == Category::FfnUp) {
    (void)layer_info(s, s.i_ffn_up, s.n_ffn_up, t.name);
    ++s.i_ffn_up;
  }
  return new_type;
}

// tensor_type_fallback: a type whose block does not divide the row.
GgmlType shape_fallback(const QuantTensorIn& t, GgmlType target, bool& fell_back) {
  const int64_t ncols = t.ne[0];
  if (ncols % block_size(target) == 0) return target;
  fell_back = true;
  GgmlType r = target;
  switch (target) {
    case GgmlType::IQ1_S:
    case GgmlType::IQ1_M:
    case GgmlType::IQ2_XXS:
    case GgmlType::IQ2_XS:
    case GgmlType::IQ2_S:
    case GgmlType::IQ3_XXS:
    case GgmlType::IQ3_S:
    case GgmlType::IQ4_XS:
      r = GgmlType::IQ4_NL;
      break;
    case GgmlType::Q2_0:
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
    case GgmlType::TQ1_0:
    case GgmlType::TQ2_0:
      r = GgmlType::Q4_0;
      break;
    case GgmlType::Q4_K:
      r = GgmlType::Q5_0;
      break;
    case GgmlType::Q5_K:
      r = GgmlType::Q5_1;
      break;
    case GgmlType::Q6_K:
      r = GgmlType::Q8_0;
      break;
    default:
      // A 32-element block type has nothing smaller to fall back to: F16 below.
      if (block_size(target) > 32)
        fail("quantize: no fallback type for ", ggml_type_name(target), " (tensor '", t.name, "' has rows of ", ncols,
             " elements)");
      break;
  }
  if (ncols % block_size(r) != 0) r = GgmlType::F16;
  return r;
}

}  // namespace

const std::vector<QuantFileType>& quant_file_types() {
  static const std::vector<QuantFileType> types = {
      {"F32", kF32, GgmlType::F32},        {"F16", kF16, GgmlType::F16},
      {"BF16", kBF16, GgmlType::BF16},     {"Q8_0", kQ8_0, GgmlType::Q8_0},
      {"Q4_0", kQ4_0, GgmlType::Q4_0},     {"Q4_1", kQ4_1, GgmlType::Q4_1},
      {"Q5_0", kQ5_0, GgmlType::Q5_0},     {"Q5_1", kQ5_1, GgmlType::Q5_1},
      {"Q4_K_S", kQ4_K_S, GgmlType::Q4_K}, {"Q4_K_M", kQ4_K_M, GgmlType::Q4_K},
      {"Q5_K_S", kQ5_K_S, GgmlType::Q5_K}, {"Q5_K_M", kQ5_K_M, GgmlType::Q5_K},
      {"Q6_K", kQ6_K, GgmlType::Q6_K},     {"MXFP4_MOE", kMXFP4_MOE, GgmlType::MXFP4},
  };
  return types;
}

std::optional<QuantFileType> quant_file_type_from_name(std::string_view name) {
  std::string n = lower(name);
  // llama-quantize's aliases.
  if (n == "q4_k") n = "q4_k_m";
  if (n == "q5_k") n = "q5_k_m";
  for (const QuantFileType& t : quant_file_types())
    if (lower(t.name) == n) return t;
  return std::nullopt;
}

std::optional<QuantFileType> quant_file_type_from_id(uint32_t ftype) {
  for (const QuantFileType& t : quant_file_types())
    if (t.ftype == ftype) return t;
  return std::nullopt;
}

std::string quant_file_type_names() {
  std::string s;
  for (const QuantFileType& t : quant_file_types()) s += (s.empty() ? "" : ", ") + lower(t.name);
  return s;
}

TensorTypeOverride parse_tensor_type_override(std::string_view option) {
  const size_t eq = option.find('=');
  if (eq == std::string_view::npos) fail("--tensor-type '", option, "': expected NAME_REGEX=TYPE (e.g. attn_v=q8_0)");
  if (eq == 0) fail("--tensor-type '", option, "': missing tensor name before '='");
  const std::string_view type_name = option.substr(eq + 1);
  if (type_name.empty()) fail("--tensor-type '", option, "': missing type after '='");
  const std::optional<GgmlType> type = ggml_type_from_name(type_name);
  if (!type) fail("--tensor-type '", option, "': unknown tensor type '", type_name, "' (e.g. q8_0, q6_k, f16)");
  TensorTypeOverride o;
  o.pattern = lower(option.substr(0, eq));  // llama-quantize lower-cases the name
  try {
    o.re = std::regex(o.pattern);
  } catch (const std::regex_error& e) {
    fail("--tensor-type '", option, "': '", o.pattern, "' is not a valid regular expression (", e.what(), ")");
  }
  o.type = *type;
  return o;
}

bool llama_tensor_order_less(const std::string& a, const std::string& b) {
  int la = -1, lb = -1;
  std::sscanf(a.c_str(), "blk.%d.", &la);
  std::sscanf(b.c_str(), "blk.%d.", &lb);
  if (la != lb) return la < lb;
  return a < b;
}

bool is_quantized_type(GgmlType t) { return ggml_type_info(t).block_size > 1; }

bool use_more_bits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

bool tensor_allows_quantization(const std::string& name, const std::vector<int64_t>& ne) {
  if (n_dims(ne) < 2) return false;  // only 2-D and 3-D (expert) tensors
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  bool q = name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0;
  q = q && !has("_norm.weight");
  q = q && !has("ffn_gate_inp.weight");  // expert router
  q = q && !has("ffn_gate_tid2eid.weight");
  q = q && !has("altup") && !has("laurel");  // tiny Gemma 3n tensors
  q = q && !has("per_layer_model_proj");     // "not too big so keep them as it is"
  q = q && name != "position_embd.weight" && name != "token_types.weight";
  q = q && !has("ssm_conv1d") && !has("shortconv.conv.weight");
  q = q && !has("indexer.k_proj.weight") && !has("indexer.q_proj.weight");
  for (const char* rwkv : {"time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
                           "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
                           "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
                           "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight"})
    q = q && !has(rwkv);
  q = q && !has("attn_rel_b.weight");
  for (const char* mm : {".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd",
                         ".patch_merger", "a.rvq.codebook", "mm.a.code_embd"})
    q = q && !has(mm);
  return q;
}

std::vector<QuantDecision> plan_quant_types(const std::vector<QuantTensorIn>& tensors, const QuantFileType& ft,
                                            const QuantModelInfo& model, const QuantRecipeOptions& opt) {
  State s;
  s.model = model;
  s.ftype = ft.ftype;
  s.n_ffn_down = s.n_ffn_gate = s.n_ffn_up = model.n_layers;
  for (const QuantTensorIn& t : tensors) {
    if (t.ne.empty()) fail("quantize: tensor '", t.name, "' has no shape");
    const Category c = category_of(t.name);
    if (is_attn_v_like(c)) ++s.n_attention_wv;
    if (c == Category::Output) s.tied_embeddings = false;
  }
  // Visit in llama-quantize's order: the counters depend on it.
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return llama_tensor_order_less(tensors[a].name, tensors[b].name); });

  std::vector<QuantDecision> out(tensors.size());
  for (size_t i : order) {
    const QuantTensorIn& t = tensors[i];
    QuantDecision& d = out[i];
    d.quantizable = tensor_allows_quantization(t.name, t.ne);
    if (!d.quantizable) {
      d.type = t.type;
      continue;
    }
    GgmlType type = ft.default_type;
    if (is_quantized_type(type)) {
      bool manual = false;
      for (const TensorTypeOverride& o : opt.overrides) {
        if (std::regex_search(t.name, o.re)) {
          type = o.type;
          manual = true;
          break;
        }
      }
      if (!manual && !opt.pure) type = recipe_type(s, type, t, category_of(t.name));
      type = shape_fallback(t, type, d.fell_back);
    }
    d.type = type;
  }
  return out;
}

}  // namespace g4
