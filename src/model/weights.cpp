#include "model/weights.h"

#include <array>
#include <string>
#include <vector>

#include "core/error.h"

namespace g4 {

std::vector<float> tensor_to_f32(const TensorView& t) {
  if (!kernels::type_supported(t.type))
    fail("tensor '", t.name, "' has type ", ggml_type_name(t.type), ", which this engine cannot read (supported: ",
         kernels::supported_types(), ")");
  const int64_t n = t.nelements();
  if (ggml_row_bytes(t.type, n) > t.nbytes)
    fail("tensor '", t.name, "': data (", t.nbytes, " bytes) is smaller than its shape ", t.shape_string(), " needs");
  std::vector<float> out(static_cast<size_t>(n));
  kernels::active().dequant_for(t.type)(t.data, out.data(), n);
  return out;
}

namespace {

struct Binder {
  const Checkpoint& ck;

  const TensorView* find(const std::string& name) const { return ck.tensor(name); }
  const TensorView& need(const std::string& name) const {
    const TensorView* t = ck.tensor(name);
    if (!t) fail("model '", ck.path(), "' lacks tensor '", name, "', which the forward pass needs");
    return *t;
  }
  BoundMatrix matrix(const std::string& name) const {
    const TensorView& t = need(name);
    return BoundMatrix{&t, kernels::WeightMatrix::of(t)};
  }
  BoundMatrix matrix_opt(const std::string& name) const {
    const TensorView* t = find(name);
    return t ? BoundMatrix{t, kernels::WeightMatrix::of(*t)} : BoundMatrix{};
  }
  std::vector<float> vec(const std::string& name, int64_t expect) const {
    const TensorView& t = need(name);
    std::vector<float> v = tensor_to_f32(t);
    if (static_cast<int64_t>(v.size()) != expect)
      fail("tensor '", name, "' has ", v.size(), " elements, expected ", expect);
    return v;
  }
  const TensorView* experts(const std::string& name, int64_t n_in, int64_t n_out, int64_t n_exp) const {
    const TensorView* t = find(name);
    if (!t) return nullptr;
    if (t->ne != std::vector<int64_t>{n_in, n_out, n_exp})
      fail("tensor '", name, "' has shape ", t->shape_string(), ", expected {", n_in, ", ", n_out, ", ", n_exp, "}");
    (void)kernels::WeightMatrix::expert(*t, 0);  // type and size check
    return t;
  }
};

}  // namespace

uint64_t ModelWeights::copied_bytes() const {
  uint64_t n = output_norm.size() + per_layer_proj_norm.size() + rope_freqs.size();
  for (const LayerWeights& l : layers)
    for (const std::vector<float>* v : {&l.attn_norm, &l.q_norm, &l.k_norm, &l.post_attention_norm, &l.ffn_norm,
                                        &l.post_ffw_norm, &l.post_norm, &l.router_scale, &l.expert_scale,
                                        &l.pre_ffw_norm_2, &l.post_ffw_norm_1, &l.post_ffw_norm_2})
      n += v->size();
  return n * sizeof(float);
}

ModelWeights ModelWeights::bind(const Checkpoint& ck) {
  const ModelConfig& c = ck.config();
  if (c.layers.size() != static_cast<size_t>(c.n_layers)) fail("model config of '", ck.path(), "' was not derived");
  // Every type the kernels compute with (kernels::type_supported).
  static const std::vector<GgmlType> kComputable = [] {
    std::vector<GgmlType> v;
    for (uint32_t id = 0; id < kernels::KernelTable::kTypeSlots; ++id)
      if (ggml_type_info(id) && kernels::type_supported(static_cast<GgmlType>(id))) v.push_back(static_cast<GgmlType>(id));
    return v;
  }();
  ck.require_types(kComputable);

  Binder b{ck};
  const int64_t H = c.hidden;
  ModelWeights m;
  m.token_embd = b.matrix("token_embd.weight");
  if (m.token_embd.w.n_in != H || m.token_embd.w.n_out != c.vocab_size)
    fail("tensor 'token_embd.weight' has shape ", m.token_embd.t->shape_string(), ", expected {", H, ", ",
         c.vocab_size, "}");
  m.output = b.matrix_opt("output.weight");
  if (!m.output) m.output = m.token_embd;
  m.output_norm = b.vec("output_norm.weight", H);

  if (c.ple_dim > 0) {
    const int64_t LP = int64_t(c.n_layers) * c.ple_dim;
    m.per_layer_token_embd = b.matrix("per_layer_token_embd.weight");
    m.per_layer_model_proj = b.matrix("per_layer_model_proj.weight");
    m.per_layer_proj_norm = b.vec("per_layer_proj_norm.weight", c.ple_dim);
    if (m.per_layer_token_embd.w.n_in != LP || m.per_layer_model_proj.w.n_out != LP)
      fail("per-layer embedding tensors do not match ", c.n_layers, " layers × ", c.ple_dim);
  }
  if (const TensorView* rf = b.find("rope_freqs.weight")) {
    if (rf->type != GgmlType::F32) fail("tensor 'rope_freqs.weight' must be F32, got ", ggml_type_name(rf->type));
    m.rope_freqs = tensor_to_f32(*rf);
  }

  m.layers.resize(static_cast<size_t>(c.n_layers));
  for (int i = 0; i < c.n_layers; ++i) {
    const LayerConfig& lc = c.layers[static_cast<size_t>(i)];
    LayerWeights& l = m.layers[static_cast<size_t>(i)];
    const std::string p = "blk." + std::to_string(i) + ".";
    l.attn_norm = b.vec(p + "attn_norm.weight", H);
    l.attn_q = b.matrix(p + "attn_q.weight");
    l.q_norm = b.vec(p + "attn_q_norm.weight", lc.head_dim);
    if (lc.has_kv) {
      l.attn_k = b.matrix(p + "attn_k.weight");
      if (!lc.k_eq_v) l.attn_v = b.matrix(p + "attn_v.weight");
      l.k_norm = b.vec(p + "attn_k_norm.weight", lc.head_dim);
    }
    l.attn_output = b.matrix(p + "attn_output.weight");
    l.post_attention_norm = b.vec(p + "post_attention_norm.weight", H);
    l.ffn_norm = b.vec(p + "ffn_norm.weight", H);
    l.ffn_gate = b.matrix(p + "ffn_gate.weight");
    l.ffn_up = b.matrix(p + "ffn_up.weight");
    l.ffn_down = b.matrix(p + "ffn_down.weight");
    l.post_ffw_norm = b.vec(p + "post_ffw_norm.weight", H);
    const std::vector<float> ls = b.vec(p + "layer_output_scale.weight", 1);
    l.layer_scalar = ls[0];
    if (c.ple_dim > 0) {
      l.inp_gate = b.matrix(p + "inp_gate.weight");
      l.proj = b.matrix(p + "proj.weight");
      l.post_norm = b.vec(p + "post_norm.weight", H);
    }
    if (c.moe) {
      const int64_t E = c.n_experts, Fe = c.expert_ffn_dim;
      l.router = b.matrix(p + "ffn_gate_inp.weight");
      l.router_scale = b.vec(p + "ffn_gate_inp.scale", H);
      l.expert_scale = b.vec(p + "ffn_down_exps.scale", E);
      l.gate_up_exps = b.experts(p + "ffn_gate_up_exps.weight", H, 2 * Fe, E);
      if (!l.gate_up_exps) {
        l.gate_exps = b.experts(p + "ffn_gate_exps.weight", H, Fe, E);
        l.up_exps = b.experts(p + "ffn_up_exps.weight", H, Fe, E);
        if (!l.gate_exps || !l.up_exps)
          fail("model '", ck.path(), "' lacks the experts of layer ", i, ": neither '", p,
               "ffn_gate_up_exps.weight' nor both '", p, "ffn_gate_exps.weight' and '", p, "ffn_up_exps.weight'");
      }
      l.down_exps = b.experts(p + "ffn_down_exps.weight", Fe, H, E);
      if (!l.down_exps) b.need(p + "ffn_down_exps.weight");
      l.pre_ffw_norm_2 = b.vec(p + "pre_ffw_norm_2.weight", H);
      l.post_ffw_norm_1 = b.vec(p + "post_ffw_norm_1.weight", H);
      l.post_ffw_norm_2 = b.vec(p + "post_ffw_norm_2.weight", H);
    }
  }
  return m;
}

}  // namespace g4
