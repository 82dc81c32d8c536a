#include "model/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace g4 {

// ---- free helpers -------------------------------------------------------------

float embedding_scale(GgmlType table_type, int dim) {
  const float s = static_cast<float>(std::sqrt(static_cast<double>(dim)));
  switch (table_type) {
    case GgmlType::BF16: return bf16_to_f32(f32_to_bf16(s));
    case GgmlType::F16: return fp16_to_f32(f32_to_fp16(s));
    default: return s;
  }
}

std::vector<float> layer_rope_freqs(const LayerConfig& l, const std::vector<float>& gguf_rope_freqs) {
  const int half = l.head_dim / 2;
  const int rotated_pairs = l.rope_rotated_dims / 2;
  const bool use_gguf = l.type == LayerType::Full && !gguf_rope_freqs.empty();
  if (use_gguf && static_cast<int>(gguf_rope_freqs.size()) < half)
    fail("rope_freqs.weight has ", gguf_rope_freqs.size(), " entries, full layers need ", half);
  std::vector<float> f(static_cast<size_t>(half), 0.f);
  for (int i = 0; i < half; ++i) {
    // As HF: inv_freq = 1 / θ^(float(2i) / head_dim), in fp32.
    const float e = static_cast<float>(2 * i) / static_cast<float>(l.head_dim);
    const float p = static_cast<float>(std::pow(static_cast<double>(l.rope_theta), static_cast<double>(e)));
    const float base = 1.0f / p;
    if (use_gguf) {
      const float div = gguf_rope_freqs[static_cast<size_t>(i)];
      f[static_cast<size_t>(i)] = (div >= 1e20f || !std::isfinite(div)) ? 0.f : base / div;
    } else {
      f[static_cast<size_t>(i)] = i < rotated_pairs ? base : 0.f;
    }
  }
  return f;
}

void moe_route(const float* logits, int n_experts, int top_k, const float* per_expert_scale, int32_t* idx, float* w) {
  // Softmax over all experts (fp32, max-subtracted).
  float mx = logits[0];
  for (int e = 1; e < n_experts; ++e) mx = std::max(mx, logits[e]);
  double sum = 0;
  thread_local std::vector<float> p;
  p.resize(static_cast<size_t>(n_experts));
  for (int e = 0; e < n_experts; ++e) {
    p[static_cast<size_t>(e)] = std::exp(logits[e] - mx);
    sum += p[static_cast<size_t>(e)];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int e = 0; e < n_experts; ++e) p[static_cast<size_t>(e)] *= inv;
  // Top-k by probability; ties keep the lower index.
  for (int k = 0; k < top_k; ++k) {
    int best = -1;
    for (int e = 0; e < n_experts; ++e) {
      bool taken = false;
      for (int j = 0; j < k; ++j) taken = taken || idx[j] == e;
      if (taken) continue;
      if (best < 0 || p[static_cast<size_t>(e)] > p[static_cast<size_t>(best)]) best = e;
    }
    idx[k] = best;
    w[k] = p[static_cast<size_t>(best)];
  }
  float s = 0;
  for (int k = 0; k < top_k; ++k) s += w[k];
  for (int k = 0; k < top_k; ++k) w[k] = (w[k] / s) * per_expert_scale[idx[k]];
}

// ---- Model ---------------------------------------------------------------------

std::unique_ptr<Model> Model::open(const std::string& path, const ModelParams& params) {
  auto ck = std::make_shared<Checkpoint>(Checkpoint::open(path));
  return std::make_unique<Model>(std::move(ck), params);
}

Model::~Model() = default;

Model::Model(std::shared_ptr<const Checkpoint> ck, const ModelParams& params) : ck_(std::move(ck)) {
  const ModelConfig& c = ck_->config();
  w_ = ModelWeights::bind(*ck_);
  k_ = params.isa ? &kernels::table(*params.isa) : &kernels::active();
  if (params.attn_isa) at_ = &attn::table(*params.attn_isa);
  else if (params.isa) at_ = &attn::table(attn::isa_for_kernel_isa(kernels::isa_name(*params.isa)));
  else at_ = &attn::active();
  act_ = params.matmul_act;

  int64_t n_ctx = params.n_ctx;
  if (c.max_context > 0 && n_ctx > c.max_context) n_ctx = c.max_context;
  max_batch_ = std::max<int64_t>(1, std::min(params.max_batch, n_ctx));
  cache_ = KvCache(c, n_ctx, max_batch_, params.kv_type);
  pool_ = std::make_unique<ThreadPool>(params.n_threads);

  embed_scale_ = embedding_scale(w_.token_embd.t->type, c.hidden);
  if (c.ple_dim > 0) ple_embed_scale_ = embedding_scale(w_.per_layer_token_embd.t->type, c.ple_dim);

  // RoPE tables: one group per distinct frequency vector.
  freqs_.resize(static_cast<size_t>(c.n_layers));
  rope_group_.resize(static_cast<size_t>(c.n_layers));
  std::vector<int> group_rep;  // a layer of each group
  for (int l = 0; l < c.n_layers; ++l) {
    freqs_[static_cast<size_t>(l)] = layer_rope_freqs(c.layers[static_cast<size_t>(l)], w_.rope_freqs);
    int g = -1;
    for (size_t j = 0; j < group_rep.size(); ++j)
      if (freqs_[static_cast<size_t>(group_rep[j])] == freqs_[static_cast<size_t>(l)]) g = static_cast<int>(j);
    if (g < 0) {
      g = static_cast<int>(group_rep.size());
      group_rep.push_back(l);
    }
    rope_group_[static_cast<size_t>(l)] = g;
  }
  cos_.resize(group_rep.size());
  sin_.resize(group_rep.size());
  for (size_t g = 0; g < group_rep.size(); ++g) {
    const size_t half = freqs_[static_cast<size_t>(group_rep[g])].size();
    cos_[g].assign(static_cast<size_t>(max_batch_) * half, 0.f);
    sin_[g].assign(static_cast<size_t>(max_batch_) * half, 0.f);
  }

  // Scratch sizes.
  const size_t B = static_cast<size_t>(max_batch_);
  const size_t H = static_cast<size_t>(c.hidden);
  size_t q_dim = 0, kv_dim = 0, ffn = 0;
  int attn_rows = 1;
  for (const LayerConfig& l : c.layers) {
    q_dim = std::max(q_dim, static_cast<size_t>(c.n_heads) * static_cast<size_t>(l.head_dim));
    kv_dim = std::max(kv_dim, static_cast<size_t>(l.n_kv_heads) * static_cast<size_t>(l.head_dim));
    ffn = std::max(ffn, static_cast<size_t>(l.ffn_dim));
    attn_rows = std::max(attn_rows, attn::max_task_rows(c.n_heads, l.n_kv_heads));
  }
  x_.assign(B * H, 0.f);
  xn_.assign(B * H, 0.f);
  o_.assign(B * H, 0.f);
  ffn_out_.assign(B * H, 0.f);
  q_.assign(B * q_dim, 0.f);
  att_.assign(B * q_dim, 0.f);
  kraw_.assign(B * kv_dim, 0.f);
  vraw_.assign(B * kv_dim, 0.f);
  gate_.assign(B * ffn, 0.f);
  up_.assign(B * ffn, 0.f);
  if (c.ple_dim > 0) {
    const size_t LP = static_cast<size_t>(c.n_layers) * static_cast<size_t>(c.ple_dim);
    ple_.assign(B * LP, 0.f);
    ple_tok_.assign(B * LP, 0.f);
    pg_.assign(B * static_cast<size_t>(c.ple_dim), 0.f);
    ple_ids_.assign(B, 0);
  }
  kv_row_.assign(2 * kv_dim, 0.f);
  attn_ws_ = attn::Workspace(pool_->size(), attn_rows);
  if (c.moe) {
    const size_t E = static_cast<size_t>(c.n_experts), K = static_cast<size_t>(c.n_experts_used);
    const size_t Fe = static_cast<size_t>(c.expert_ffn_dim);
    r_.assign(B * H, 0.f);
    router_logits_.assign(B * E, 0.f);
    moe_idx_.assign(B * K, 0);
    moe_w_.assign(B * K, 0.f);
    xe_.assign(B * H, 0.f);
    moe_out_.assign(B * H, 0.f);
    ex_in_.assign(B * H, 0.f);
    ex_h_.assign(B * 2 * Fe, 0.f);
    ex_out_.assign(B * H, 0.f);
    ex_count_.assign(E, 0);
    ex_offset_.assign(E + 1, 0);
    ex_tok_.assign(B * K, 0);
    ex_w_.assign(B * K, 0.f);
  }
  logits_.assign(static_cast<size_t>(c.vocab_size), 0.f);
}

void Model::reset() { cache_.clear(); }

uint64_t Model::scratch_bytes() const {
  uint64_t b = 0;
  auto add = [&b](const auto& v) { b += v.capacity() * sizeof(v[0]); };
  for (const auto* v : {&x_, &xn_, &q_, &kraw_, &vraw_, &att_, &o_, &gate_, &up_, &ffn_out_, &ple_, &ple_tok_, &pg_,
                        &kv_row_, &r_, &router_logits_, &moe_w_, &xe_, &moe_out_, &ex_in_, &ex_h_, &ex_out_, &ex_w_,
                        &logits_})
    add(*v);
  for (const auto* v : {&moe_idx_, &ex_count_, &ex_offset_, &ex_tok_, &ple_ids_}) add(*v);
  for (const auto& v : cos_) add(v);
  for (const auto& v : sin_) add(v);
  return b + attn_ws_.bytes();
}

std::span<const float> Model::forward(std::span<const int32_t> tokens, LogitsMode mode) {
  const ModelConfig& c = config();
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return {};
  for (int64_t i = 0; i < n; ++i)
    if (tokens[static_cast<size_t>(i)] < 0 || tokens[static_cast<size_t>(i)] >= c.vocab_size)
      fail("token id ", tokens[static_cast<size_t>(i)], " (at index ", i, ") is outside the vocabulary [0, ",
           c.vocab_size, ")");
  if (cache_.n_past() + n > cache_.n_ctx())
    fail("context full: ", cache_.n_past(), " positions used + ", n, " new tokens > context length ", cache_.n_ctx());

  const size_t V = static_cast<size_t>(c.vocab_size);
  if (mode == LogitsMode::All && logits_.size() < static_cast<size_t>(n) * V) logits_.resize(static_cast<size_t>(n) * V);
  for (int64_t b = 0; b < n; b += max_batch_) {
    const int64_t m = std::min(max_batch_, n - b);
    const bool last_chunk = b + m == n;
    LogitsMode chunk_mode = mode;
    float* out = logits_.data();
    if (mode == LogitsMode::All) out = logits_.data() + static_cast<size_t>(b) * V;
    if (mode == LogitsMode::Last && !last_chunk) chunk_mode = LogitsMode::None;
    forward_chunk(tokens.data() + b, m, chunk_mode, out);
  }
  switch (mode) {
    case LogitsMode::Last: return {logits_.data(), V};
    case LogitsMode::All: return {logits_.data(), static_cast<size_t>(n) * V};
    case LogitsMode::None: return {};
  }
  return {};
}

void Model::rope_tables(int64_t n, int64_t p0) {
  for (size_t g = 0; g < cos_.size(); ++g) {
    int rep = 0;
    while (rope_group_[static_cast<size_t>(rep)] != static_cast<int>(g)) ++rep;
    const std::vector<float>& f = freqs_[static_cast<size_t>(rep)];
    const int64_t half = static_cast<int64_t>(f.size());
    for (int64_t t = 0; t < n; ++t)
      kernels::rope_cos_sin(p0 + t, f.data(), half, cos_[g].data() + t * half, sin_[g].data() + t * half);
  }
}

void Model::per_layer_inputs(const int32_t* tokens, int64_t n) {
  const ModelConfig& c = config();
  const int64_t H = c.hidden, P = c.ple_dim, L = c.n_layers, LP = L * P;
  // Token part: ids outside the PLE vocabulary use row 0 (pad).
  for (int64_t t = 0; t < n; ++t) ple_ids_[static_cast<size_t>(t)] = tokens[t] < c.ple_vocab ? tokens[t] : 0;
  kernels::get_rows(w_.per_layer_token_embd.w, ple_ids_.data(), n, ple_tok_.data(), LP, k_);
  for (int64_t i = 0; i < n * LP; ++i) ple_tok_[static_cast<size_t>(i)] *= ple_embed_scale_;
  // Context part: projection of the scaled embedding, × H^-1/2, per-layer norm.
  kernels::matmul(w_.per_layer_model_proj.w, x_.data(), n, H, ple_.data(), LP, pool_.get(), k_, act_);
  const float proj_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(H)));
  const float in_scale = static_cast<float>(1.0 / std::sqrt(2.0));
  for (int64_t t = 0; t < n; ++t) {
    float* pr = ple_.data() + t * LP;
    const float* tk = ple_tok_.data() + t * LP;
    for (int64_t i = 0; i < LP; ++i) pr[i] *= proj_scale;
    for (int64_t l = 0; l < L; ++l) k_->rmsnorm(pr + l * P, w_.per_layer_proj_norm.data(), pr + l * P, P, c.rms_eps);
    for (int64_t i = 0; i < LP; ++i) pr[i] = (pr[i] + tk[i]) * in_scale;
  }
}

void Model::forward_chunk(const int32_t* tokens, int64_t n, LogitsMode mode, float* logits) {
  const ModelConfig& c = config();
  const int64_t H = c.hidden;
  const int64_t p0 = cache_.n_past();

  // Embedding × √H (rounded like the reference for bf16/f16 tables).
  kernels::get_rows(w_.token_embd.w, tokens, n, x_.data(), H, k_);
  for (int64_t i = 0; i < n * H; ++i) x_[static_cast<size_t>(i)] *= embed_scale_;
  if (c.ple_dim > 0) per_layer_inputs(tokens, n);
  rope_tables(n, p0);

  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& lw = w_.layers[static_cast<size_t>(l)];
    attention_block(l, n, p0);
    ffn_block(l, n);
    if (c.ple_dim > 0) ple_block(l, n);
    for (int64_t i = 0; i < n * H; ++i) x_[static_cast<size_t>(i)] *= lw.layer_scalar;
  }
  cache_.set_n_past(p0 + n);

  if (mode == LogitsMode::None) return;
  const int64_t first = mode == LogitsMode::Last ? n - 1 : 0;
  const int64_t m = n - first;
  for (int64_t t = first; t < n; ++t)
    k_->rmsnorm(x_.data() + t * H, w_.output_norm.data(), xn_.data() + (t - first) * H, H, c.rms_eps);
  const int64_t V = c.vocab_size;
  kernels::matmul(w_.output.w, xn_.data(), m, H, logits, V, pool_.get(), k_, act_);
  if (c.final_softcap > 0.f) {
    par(m, static_cast<double>(m) * static_cast<double>(V) * 20.0, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t) k_->softcap(logits + t * V, V, c.final_softcap);
    });
  }
}

void Model::attention_block(int l, int64_t n, int64_t p0) {
  const ModelConfig& c = config();
  const LayerConfig& lc = c.layers[static_cast<size_t>(l)];
  const LayerWeights& lw = w_.layers[static_cast<size_t>(l)];
  const int64_t H = c.hidden, D = lc.head_dim, nH = c.n_heads, Hkv = lc.n_kv_heads;
  const int64_t QD = nH * D, KVD = Hkv * D;
  const int g = rope_group_[static_cast<size_t>(l)];
  const int64_t half = D / 2;
  const float eps = c.rms_eps;

  for (int64_t t = 0; t < n; ++t) k_->rmsnorm(x_.data() + t * H, lw.attn_norm.data(), xn_.data() + t * H, H, eps);

  // Q: projection, per-head q_norm, RoPE.
  kernels::matmul(lw.attn_q.w, xn_.data(), n, H, q_.data(), QD, pool_.get(), k_, act_);
  for (int64_t t = 0; t < n; ++t) {
    const float* cs = cos_[static_cast<size_t>(g)].data() + t * half;
    const float* sn = sin_[static_cast<size_t>(g)].data() + t * half;
    for (int64_t h = 0; h < nH; ++h) {
      float* qh = q_.data() + t * QD + h * D;
      k_->rmsnorm(qh, lw.q_norm.data(), qh, D, eps);
      k_->rope_neox(qh, D, cs, sn);
    }
  }

  // K/V of the layers that own them, written into the cache at p0 … p0+n−1
  // (normed and roped in fp32, then converted to the cache's element type).
  if (lc.has_kv) {
    KvCache::Layer& C = cache_.layer(l);
    kernels::matmul(lw.attn_k.w, xn_.data(), n, H, kraw_.data(), KVD, pool_.get(), k_, act_);
    const float* vsrc = kraw_.data();  // K=V: V is the raw K projection
    if (!lc.k_eq_v) {
      kernels::matmul(lw.attn_v.w, xn_.data(), n, H, vraw_.data(), KVD, pool_.get(), k_, act_);
      vsrc = vraw_.data();
    }
    float* krow = kv_row_.data();
    float* vrow = kv_row_.data() + KVD;
    for (int64_t t = 0; t < n; ++t) {
      const float* cs = cos_[static_cast<size_t>(g)].data() + t * half;
      const float* sn = sin_[static_cast<size_t>(g)].data() + t * half;
      for (int64_t h = 0; h < Hkv; ++h) {
        k_->rmsnorm(kraw_.data() + t * KVD + h * D, lw.k_norm.data(), krow + h * D, D, eps);
        k_->rope_neox(krow + h * D, D, cs, sn);
        k_->rmsnorm(vsrc + t * KVD + h * D, nullptr, vrow + h * D, D, eps);
      }
      C.store(p0 + t, krow, vrow);
    }
  }

  // Attention over the (own or donor's) cache: scale 1, causal (+ window), GQA,
  // fused online-softmax kernels (kernels/attention.h).
  const KvCache::Layer& S = cache_.source(l);
  if (S.n_kv_heads != Hkv || S.head_dim != D)
    fail("layer ", l, " (", Hkv, " KV heads × ", D, ") cannot read the cache of layer ", cache_.kv_source(l), " (",
         S.n_kv_heads, " × ", S.head_dim, ")");
  attn::Batch batch;
  batch.q = q_.data();
  batch.q_stride = QD;
  batch.out = att_.data();
  batch.out_stride = QD;
  batch.n_heads = static_cast<int>(nH);
  batch.n_tok = n;
  batch.p0 = p0;
  batch.window = lc.type == LayerType::Sliding ? c.sliding_window : 0;
  attn::attend(S.view(), batch, attn_ws_, pool_.get(), *at_);

  // Output projection, post-attention norm, residual.
  kernels::matmul(lw.attn_output.w, att_.data(), n, QD, o_.data(), H, pool_.get(), k_, act_);
  for (int64_t t = 0; t < n; ++t) {
    float* ot = o_.data() + t * H;
    k_->rmsnorm(ot, lw.post_attention_norm.data(), ot, H, eps);
    float* xt = x_.data() + t * H;
    for (int64_t i = 0; i < H; ++i) xt[i] += ot[i];
  }
}

void Model::ffn_block(int l, int64_t n) {
  const ModelConfig& c = config();
  const LayerConfig& lc = c.layers[static_cast<size_t>(l)];
  const LayerWeights& lw = w_.layers[static_cast<size_t>(l)];
  const int64_t H = c.hidden, F = lc.ffn_dim;
  const float eps = c.rms_eps;

  // Dense GeGLU MLP on the pre-feed-forward norm of the residual.
  for (int64_t t = 0; t < n; ++t) k_->rmsnorm(x_.data() + t * H, lw.ffn_norm.data(), xn_.data() + t * H, H, eps);
  kernels::matmul(lw.ffn_gate.w, xn_.data(), n, H, gate_.data(), F, pool_.get(), k_, act_);
  kernels::matmul(lw.ffn_up.w, xn_.data(), n, H, up_.data(), F, pool_.get(), k_, act_);
  par(n, static_cast<double>(n) * static_cast<double>(F) * 20.0, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) k_->geglu(gate_.data() + t * F, up_.data() + t * F, gate_.data() + t * F, F);
  });
  kernels::matmul(lw.ffn_down.w, gate_.data(), n, F, ffn_out_.data(), H, pool_.get(), k_, act_);

  if (c.moe) {
    // d = post_ffw_norm_1(dense); m = post_ffw_norm_2(MoE(h)); f = d + m.
    for (int64_t t = 0; t < n; ++t) {
      float* d = ffn_out_.data() + t * H;
      k_->rmsnorm(d, lw.post_ffw_norm_1.data(), d, H, eps);
    }
    moe_block(l, n, moe_out_.data());
    for (int64_t t = 0; t < n; ++t) {
      float* d = ffn_out_.data() + t * H;
      float* m = moe_out_.data() + t * H;
      k_->rmsnorm(m, lw.post_ffw_norm_2.data(), m, H, eps);
      for (int64_t i = 0; i < H; ++i) d[i] += m[i];
    }
  }
  for (int64_t t = 0; t < n; ++t) {
    float* f = ffn_out_.data() + t * H;
    k_->rmsnorm(f, lw.post_ffw_norm.data(), f, H, eps);
    float* xt = x_.data() + t * H;
    for (int64_t i = 0; i < H; ++i) xt[i] += f[i];
  }
}

void Model::moe_block(int l, int64_t n, float* out) {
  const ModelConfig& c = config();
  const LayerWeights& lw = w_.layers[static_cast<size_t>(l)];
  const int64_t H = c.hidden, E = c.n_experts, K = c.n_experts_used, Fe = c.expert_ffn_dim;
  const float eps = c.rms_eps;

  // Router on the post-attention residual: scale-free norm × scale × H^-1/2.
  const float root = static_cast<float>(1.0 / std::sqrt(static_cast<double>(H)));
  for (int64_t t = 0; t < n; ++t) {
    float* r = r_.data() + t * H;
    k_->rmsnorm(x_.data() + t * H, nullptr, r, H, eps);
    for (int64_t i = 0; i < H; ++i) r[i] = (r[i] * lw.router_scale[static_cast<size_t>(i)]) * root;
  }
  kernels::matmul(lw.router.w, r_.data(), n, H, router_logits_.data(), E, pool_.get(), k_, act_);
  for (int64_t t = 0; t < n; ++t)
    moe_route(router_logits_.data() + t * E, static_cast<int>(E), static_cast<int>(K), lw.expert_scale.data(),
              moe_idx_.data() + t * K, moe_w_.data() + t * K);

  // Expert input: pre_feedforward_layernorm_2 of the same residual.
  for (int64_t t = 0; t < n; ++t) k_->rmsnorm(x_.data() + t * H, lw.pre_ffw_norm_2.data(), xe_.data() + t * H, H, eps);

  // Group (token, weight) pairs by expert (counting sort keeps token order).
  std::fill(ex_count_.begin(), ex_count_.end(), 0);
  for (int64_t i = 0; i < n * K; ++i) ++ex_count_[static_cast<size_t>(moe_idx_[static_cast<size_t>(i)])];
  ex_offset_[0] = 0;
  for (int64_t e = 0; e < E; ++e) ex_offset_[static_cast<size_t>(e + 1)] = ex_offset_[static_cast<size_t>(e)] + ex_count_[static_cast<size_t>(e)];
  std::fill(ex_count_.begin(), ex_count_.end(), 0);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t k = 0; k < K; ++k) {
      const int32_t e = moe_idx_[static_cast<size_t>(t * K + k)];
      const int32_t slot = ex_offset_[static_cast<size_t>(e)] + ex_count_[static_cast<size_t>(e)]++;
      ex_tok_[static_cast<size_t>(slot)] = static_cast<int32_t>(t);
      ex_w_[static_cast<size_t>(slot)] = moe_w_[static_cast<size_t>(t * K + k)];
    }
  }

  // Each selected expert once over its tokens, in ascending expert order (the
  // reference's accumulation order): gate_up → GeGLU → down, × routing weight.
  std::fill(out, out + n * H, 0.f);
  const int64_t F2 = 2 * Fe;
  for (int64_t e = 0; e < E; ++e) {
    const int32_t begin = ex_offset_[static_cast<size_t>(e)];
    const int64_t m = ex_offset_[static_cast<size_t>(e + 1)] - begin;
    if (m == 0) continue;
    for (int64_t j = 0; j < m; ++j)
      std::memcpy(ex_in_.data() + j * H, xe_.data() + ex_tok_[static_cast<size_t>(begin + j)] * H,
                  static_cast<size_t>(H) * sizeof(float));
    if (lw.gate_up_exps) {
      kernels::matmul(kernels::WeightMatrix::expert(*lw.gate_up_exps, e), ex_in_.data(), m, H, ex_h_.data(), F2,
                      pool_.get(), k_, act_);
    } else {
      kernels::matmul(kernels::WeightMatrix::expert(*lw.gate_exps, e), ex_in_.data(), m, H, ex_h_.data(), F2,
                      pool_.get(), k_, act_);
      kernels::matmul(kernels::WeightMatrix::expert(*lw.up_exps, e), ex_in_.data(), m, H, ex_h_.data() + Fe, F2,
                      pool_.get(), k_, act_);
    }
    for (int64_t j = 0; j < m; ++j) {
      float* hrow = ex_h_.data() + j * F2;
      k_->geglu(hrow, hrow + Fe, hrow, Fe);
    }
    kernels::matmul(kernels::WeightMatrix::expert(*lw.down_exps, e), ex_h_.data(), m, F2, ex_out_.data(), H,
                    pool_.get(), k_, act_);
    for (int64_t j = 0; j < m; ++j) {
      const int64_t t = ex_tok_[static_cast<size_t>(begin + j)];
      const float wgt = ex_w_[static_cast<size_t>(begin + j)];
      float* o = out + t * H;
      const float* y = ex_out_.data() + j * H;
      for (int64_t i = 0; i < H; ++i) o[i] += y[i] * wgt;
    }
  }
}

void Model::ple_block(int l, int64_t n) {
  const ModelConfig& c = config();
  const LayerWeights& lw = w_.layers[static_cast<size_t>(l)];
  const int64_t H = c.hidden, P = c.ple_dim, LP = int64_t(c.n_layers) * P;
  // g = gelu(W_gate·h) ⊙ ple[l];  h += post_norm(W_proj·g)
  kernels::matmul(lw.inp_gate.w, x_.data(), n, H, pg_.data(), P, pool_.get(), k_, act_);
  for (int64_t t = 0; t < n; ++t) {
    float* g = pg_.data() + t * P;
    k_->geglu(g, ple_.data() + t * LP + int64_t(l) * P, g, P);
  }
  kernels::matmul(lw.proj.w, pg_.data(), n, P, o_.data(), H, pool_.get(), k_, act_);
  for (int64_t t = 0; t < n; ++t) {
    float* ot = o_.data() + t * H;
    k_->rmsnorm(ot, lw.post_norm.data(), ot, H, c.rms_eps);
    float* xt = x_.data() + t * H;
    for (int64_t i = 0; i < H; ++i) xt[i] += ot[i];
  }
}

}  // namespace g4
