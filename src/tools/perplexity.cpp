#include "tools/perplexity.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/forward.h"

namespace g4 {
namespace {

// log Σ exp(x) in double, and the index of the first maximum.
double log_sum_exp(const float* x, int64_t n, int64_t* argmax) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  const double mx = x[best];
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(static_cast<double>(x[i]) - mx);
  if (argmax) *argmax = best;
  return mx + std::log(s);
}

// Σ_v p_base(v)·(log p_base(v) − log p(v)) with log p = x − lse.
double kl_divergence(const float* base, double lse_base, const float* x, double lse, int64_t n) {
  double kl = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double lb = static_cast<double>(base[i]) - lse_base;
    const double p = std::exp(lb);
    if (p > 0) kl += p * (lb - (static_cast<double>(x[i]) - lse));
  }
  return kl;
}

// llama-perplexity's mean_and_uncertainty.
std::pair<double, double> mean_and_err(double sum, double sum2, int64_t count) {
  if (count < 1) return {0, 0};
  const double f = sum / static_cast<double>(count);
  double df = sum2 / static_cast<double>(count) - f * f;
  df = df > 0 && count > 1 ? std::sqrt(df / static_cast<double>(count - 1)) : 0.0;
  return {f, df};
}

}  // namespace

double sorted_percentile(const std::vector<double>& v, double fraction) {
  if (v.empty()) return 0;
  if (fraction <= 0) return v.front();
  if (fraction >= 1) return v.back();
  double p = fraction * static_cast<double>(v.size() - 1);
  const size_t ip = static_cast<size_t>(p);
  p -= static_cast<double>(ip);
  return (1 - p) * v[ip] + p * v[std::min(ip + 1, v.size() - 1)];
}

PerplexityResult run_perplexity(Model& model, Model* base, std::span<const int32_t> tokens,
                                const PerplexityOptions& opt,
                                const std::function<void(const PerplexityChunk&)>& on_chunk) {
  const int64_t n_ctx = opt.ctx;
  if (n_ctx < 4) fail("perplexity: --ctx must be at least 4 (half of each chunk is scored), got ", n_ctx);
  if (static_cast<int64_t>(tokens.size()) < 2 * n_ctx)
    fail("perplexity: you need at least ", 2 * n_ctx, " tokens to evaluate perplexity with a context of ", n_ctx,
         "; the text tokenizes to only ", tokens.size(), " tokens (use a longer text or a smaller --ctx)");
  for (Model* m : {&model, base}) {
    if (!m) continue;
    if (m->n_ctx() < n_ctx) fail("perplexity: a model's context holds ", m->n_ctx(), " tokens, --ctx is ", n_ctx);
  }
  const int64_t V = model.vocab_size();
  if (base && base->vocab_size() != V)
    fail("perplexity: the base model has ", base->vocab_size(), " tokens in its vocabulary, the model ", V,
         "; KL divergence needs the same vocabulary");
  for (int32_t t : tokens)
    if (t < 0 || t >= V) fail("perplexity: token id ", t, " is outside the vocabulary (", V, " tokens)");

  const int64_t n_chunk_max = static_cast<int64_t>(tokens.size()) / n_ctx;
  const int64_t n_chunk = opt.chunks < 0 ? n_chunk_max : std::min(opt.chunks, n_chunk_max);
  if (n_chunk < 1) fail("perplexity: --chunks must be at least 1");
  const int64_t first = n_ctx / 2;
  const int64_t B = std::max<int64_t>(1, std::min(model.max_batch(), base ? base->max_batch() : model.max_batch()));

  PerplexityResult r;
  r.n_tokens = static_cast<int64_t>(tokens.size());
  r.n_chunks = n_chunk;
  r.ctx = n_ctx;
  r.has_base = base != nullptr;
  double nll = 0, nll2 = 0, nll_b = 0, nll_b2 = 0, nll_nll_b = 0, kl = 0, kl2 = 0, dp2 = 0;
  int64_t count = 0, same_top = 0;
  std::vector<double> kl_values;
  std::vector<int32_t> chunk(static_cast<size_t>(n_ctx));

  for (int64_t c = 0; c < n_chunk; ++c) {
    std::copy(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx, chunk.begin());
    if (opt.add_bos) chunk[0] = opt.bos_id;
    for (Model* m : {&model, base}) {
      if (!m) continue;
      m->reset();
      m->forward(std::span<const int32_t>(chunk.data(), static_cast<size_t>(first)), LogitsMode::None);
    }
    // The scored half, a batch at a time (logits of one batch in memory).
    for (int64_t b = first; b < n_ctx; b += B) {
      const int64_t n = std::min(B, n_ctx - b);
      const std::span<const int32_t> part(chunk.data() + b, static_cast<size_t>(n));
      const std::span<const float> lm = model.forward(part, LogitsMode::All);
      const std::span<const float> lb = base ? base->forward(part, LogitsMode::All) : std::span<const float>();
      for (int64_t k = 0; k < n; ++k) {
        const int64_t pos = b + k;
        if (pos > n_ctx - 2) break;  // the last token predicts nothing in this chunk
        const int32_t next = chunk[static_cast<size_t>(pos + 1)];
        const float* x = lm.data() + k * V;
        int64_t top = 0;
        const double lse = log_sum_exp(x, V, &top);
        const double v = lse - static_cast<double>(x[next]);
        nll += v;
        nll2 += v * v;
        ++count;
        if (base) {
          const float* y = lb.data() + k * V;
          int64_t top_b = 0;
          const double lse_b = log_sum_exp(y, V, &top_b);
          const double vb = lse_b - static_cast<double>(y[next]);
          nll_b += vb;
          nll_b2 += vb * vb;
          nll_nll_b += v * vb;
          const double d = kl_divergence(y, lse_b, x, lse, V);
          kl += d;
          kl2 += d * d;
          kl_values.push_back(d);
          same_top += top == top_b;
          const double dp = std::exp(-v) - std::exp(-vb);
          dp2 += dp * dp;
        }
      }
    }
    PerplexityChunk ch;
    ch.index = c + 1;
    ch.n_chunks = n_chunk;
    ch.ppl = std::exp(nll / static_cast<double>(count));
    r.chunk_ppl.push_back(ch.ppl);
    if (base) {
      ch.ppl_base = std::exp(nll_b / static_cast<double>(count));
      ch.ln_ppl_ratio = (nll - nll_b) / static_cast<double>(count);
      ch.kl_mean = kl / static_cast<double>(count);
      ch.same_top = static_cast<double>(same_top) / static_cast<double>(count);
    }
    if (on_chunk) on_chunk(ch);
  }

  r.n_scored = count;
  const auto [m, merr] = mean_and_err(nll, nll2, count);
  r.mean_nll = m;
  r.ppl = std::exp(m);
  r.ppl_err = r.ppl * merr;
  if (base) {
    const auto [mb, mberr] = mean_and_err(nll_b, nll_b2, count);
    r.ppl_base = std::exp(mb);
    r.ppl_base_err = r.ppl_base * mberr;
    // Covariance of the two mean log-likelihoods (llama's "covariance").
    const double cnt = static_cast<double>(count);
    const double cov = count > 1 ? (nll_nll_b / cnt - (nll / cnt) * (nll_b / cnt)) / (cnt - 1) : 0.0;
    r.ln_ppl_ratio = m - mb;
    r.ln_ppl_ratio_err = std::sqrt(std::max(0.0, merr * merr + mberr * mberr - 2.0 * cov));
    const auto [km, kerr] = mean_and_err(kl, kl2, count);
    r.kl_mean = km;
    r.kl_err = kerr;
    std::sort(kl_values.begin(), kl_values.end());
    r.kl_max = kl_values.back();
    r.kl_min = kl_values.front();
    r.kl_p999 = sorted_percentile(kl_values, 0.999);
    r.kl_p99 = sorted_percentile(kl_values, 0.99);
    r.kl_p95 = sorted_percentile(kl_values, 0.95);
    r.kl_p90 = sorted_percentile(kl_values, 0.90);
    const size_t n = kl_values.size();
    r.kl_median = n % 2 == 0 ? 0.5 * (kl_values[n / 2] + kl_values[n / 2 - 1]) : kl_values[n / 2];
    r.same_top = static_cast<double>(same_top) / cnt;
    r.same_top_err = count > 1 ? std::sqrt(r.same_top * (1 - r.same_top) / (cnt - 1)) : 0.0;
    r.rms_dp = std::sqrt(dp2 / cnt);
  }
  return r;
}

}  // namespace g4
