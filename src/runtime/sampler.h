// Token sampling over the model's final logits (spec gemma4-io.md §6).
//
// One step, in this order (the order of Hugging Face generate(), the reference
// implementation; at temperature 1 it equals llama.cpp's default chain):
//   1. penalties over the last `penalty_last_n` accepted tokens, as llama.cpp
//      defines them: for each distinct token t in the window with count c,
//        logit = logit > 0 ? logit / repeat_penalty : logit * repeat_penalty
//        logit -= c * frequency_penalty + presence_penalty
//   2. temperature <= 0: greedy (argmax, lowest id on ties) -- nothing below.
//   3. top_k (k in [1, vocab)): the k largest logits, ties broken by lower id
//      (exactly k survive; HF would keep every tie of the k-th value).
//   4. temperature: logits / T, softmax over the survivors.
//   5. top_p (< 1): the shortest prefix of the survivors sorted by probability
//      (descending, lower id first on ties) whose cumulative probability
//      reaches top_p (>= top_p · total). At least one token.
//   6. min_p (> 0): drop tokens with p < min_p · p_max.
//   7. draw one token from the renormalised survivors with u ∈ [0, 1) from a
//      std::mt19937_64 seeded explicitly (53 high bits → double; no
//      std::uniform_real_distribution, so the stream of tokens for a seed is the
//      same with every standard library).
//
// Cost per step is O(vocab) with no sort of the vocabulary:
//   * greedy and top-k: one scan of the logits (top-k through a bounded
//     min-heap of k; a logit is compared once with the heap's worst);
//   * without top-k: a vectorised softmax over the vocabulary (the kernels'
//     softmax), then top-p by a probability-weighted quickselect (expected
//     O(n), tokens below (1 − top_p)/vocab pruned first, as they can never be
//     kept) and min-p by a threshold;
//   * penalties touch only the window's tokens (a flag per id marks them; no
//     copy of the logits).
// All buffers are allocated in the constructor: sample()/accept() never
// allocate.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace g4 {

struct SamplerParams {
  float temperature = 1.0f;       // <= 0: greedy
  int top_k = 64;                 // <= 0 or >= vocab: off
  float top_p = 0.95f;            // >= 1: off
  float min_p = 0.0f;             // <= 0: off
  float repeat_penalty = 1.0f;    // 1: off
  float presence_penalty = 0.0f;  // 0: off
  float frequency_penalty = 0.0f; // 0: off
  int penalty_last_n = 64;        // window of accepted tokens the penalties look at (0: off)
  uint64_t seed = 0;

  bool greedy() const { return temperature <= 0.f; }
  bool has_penalties() const {
    return penalty_last_n > 0 && (repeat_penalty != 1.f || presence_penalty != 0.f || frequency_penalty != 0.f);
  }
  // Throws g4::Error naming the first bad field (negative top_p, NaN, …).
  void validate() const;
  // "temp 1.00, top_k 64, top_p 0.95, min_p 0.00, …" for -v output.
  std::string describe() const;
};

class Sampler {
 public:
  struct Candidate {
    int32_t id;
    float logit;  // after penalties and temperature
    float p;      // normalised over the survivors after sample()/apply()
  };

  Sampler(const SamplerParams& p, int32_t n_vocab);

  // Applies steps 1-6 and draws a token (step 7). Does not accept it: call
  // accept() for every token that becomes part of the context (the generator
  // accepts the prompt's tokens and every generated token).
  int32_t sample(std::span<const float> logits);
  // Steps 1-6 only: the surviving candidates with their probabilities (best
  // first when top-k ran; otherwise in no particular order). Greedy: the
  // argmax alone with p = 1.
  std::span<const Candidate> apply(std::span<const float> logits);
  std::span<const Candidate> candidates() const { return {cand_.data(), n_cand_}; }

  void accept(int32_t token);
  void clear_window();          // forget accepted tokens (the RNG continues)
  void reset();                 // clear_window() and restart the RNG from the seed
  void reseed(uint64_t seed);   // restart the RNG from `seed` (window kept)

  const SamplerParams& params() const { return p_; }
  int32_t n_vocab() const { return n_vocab_; }

 private:
  void prepare_penalties(const float* logits);  // fills pen_ids_/pen_vals_, flags them in seen_
  void clear_penalty_flags();
  int32_t argmax(const float* logits) const;
  void select_top_k(const float* logits, int k);
  void dense_softmax(const float* logits, float inv_t);
  size_t top_p_select(size_t n, double top_p);  // keeps the best prefix reaching top_p in cand_[0, r)
  double uniform();

  SamplerParams p_;
  int32_t n_vocab_;
  std::mt19937_64 rng_;
  std::vector<Candidate> cand_;    // n_vocab capacity
  size_t n_cand_ = 0;
  std::vector<float> prob_;        // n_vocab: dense softmax (no top-k)
  // Penalty window: ring of the last penalty_last_n tokens and their counts.
  std::vector<int32_t> ring_;
  size_t ring_head_ = 0, ring_size_ = 0;
  std::vector<int32_t> count_;     // n_vocab
  std::vector<uint8_t> seen_;      // n_vocab: 1 = penalised this step
  std::vector<int32_t> pen_ids_;   // distinct tokens of the window, this step
  std::vector<float> pen_vals_;    // their penalised logits
};

}  // namespace g4
