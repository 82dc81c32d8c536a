// Perplexity and KL divergence over a token stream, the way llama-perplexity
// computes them (llama.cpp tools/perplexity/perplexity.cpp, functions
// perplexity() and kl_divergence()):
//   * the tokens (the text with <bos> prepended) are cut into non-overlapping
//     chunks of `ctx` tokens; each chunk is evaluated from an empty cache with
//     its first token replaced by <bos>;
//   * only the second half is scored: the logits at positions ctx/2 ..
//     ctx-2 predict the tokens ctx/2+1 .. ctx-1 (so every scored token has at
//     least ctx/2 tokens of context); NLL = logsumexp(logits) - logit[next];
//   * PPL = exp(mean NLL), ± PPL · sqrt((E[NLL²] - E[NLL]²)/(n-1));
//   * with a base model, on the same tokens: KL(base ‖ model) =
//     Σ_v p_base(v)·(log p_base(v) − log p_model(v)) per scored position, its
//     mean ± standard error, percentiles (llama's linear interpolation) and
//     maximum, the share of positions where both models' argmax agree
//     ("same top p"), PPL(base) and the mean ln(PPL/PPL(base)).
// Differences from llama-perplexity, all in the direction of exactness: the
// base distribution is used in full double precision (llama.cpp stores it
// as 16-bit codes and skips p_base < e^-16), and statistics are printed for
// any number of scored tokens (llama.cpp wants at least 100).
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace g4 {

class Model;

struct PerplexityOptions {
  int64_t ctx = 512;    // chunk size (tokens)
  int64_t chunks = -1;  // at most this many chunks (-1: all that fit)
  int32_t bos_id = 2;   // replaces the first token of every chunk
  bool add_bos = true;  // Gemma 4 always starts a sequence with <bos>
};

// Running figures after each chunk (what llama-perplexity prints per chunk).
struct PerplexityChunk {
  int64_t index = 0;  // 1-based
  int64_t n_chunks = 0;
  double ppl = 0;  // running PPL over all chunks so far
  // With a base model:
  double ppl_base = 0;
  double ln_ppl_ratio = 0;  // mean ln(PPL(model)/PPL(base)) so far
  double kl_mean = 0;
  double same_top = 0;  // fraction
};

struct PerplexityResult {
  int64_t n_tokens = 0;  // tokens of the input
  int64_t n_chunks = 0;
  int64_t ctx = 0;
  int64_t n_scored = 0;  // scored positions
  double mean_nll = 0;
  double ppl = 0, ppl_err = 0;
  std::vector<double> chunk_ppl;  // running PPL after each chunk
  // KL mode (base model given).
  bool has_base = false;
  double ppl_base = 0, ppl_base_err = 0;
  double ln_ppl_ratio = 0, ln_ppl_ratio_err = 0;
  double kl_mean = 0, kl_err = 0;
  double kl_max = 0, kl_p999 = 0, kl_p99 = 0, kl_p95 = 0, kl_p90 = 0, kl_median = 0, kl_min = 0;
  double same_top = 0, same_top_err = 0;  // fraction of positions with the same argmax
  double rms_dp = 0;                      // RMS of p_model(next) − p_base(next)
};

// Evaluates `tokens` with `model` (and `base` when non-null: same tokens,
// same chunks). Both models need a context of at least opt.ctx tokens.
// Throws g4::Error when the text is shorter than two chunks (llama's rule),
// ctx is below 4, a token is outside a model's vocabulary, or the two
// models' vocabularies differ.
PerplexityResult run_perplexity(Model& model, Model* base, std::span<const int32_t> tokens,
                                const PerplexityOptions& opt,
                                const std::function<void(const PerplexityChunk&)>& on_chunk = {});

// llama-perplexity's percentile of sorted values (linear interpolation
// between the two nearest ranks).
double sorted_percentile(const std::vector<double>& sorted, double fraction);

}  // namespace g4
