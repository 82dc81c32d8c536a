#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "kernels/kernels.h"

namespace g4 {

namespace {

// Strict "a ranks before b": larger logit, then lower id.
inline bool better(const Sampler::Candidate& a, const Sampler::Candidate& b) {
  return a.logit != b.logit ? a.logit > b.logit : a.id < b.id;
}

}  // namespace

void SamplerParams::validate() const {
  auto finite = [](float v, const char* name) {
    if (!std::isfinite(v)) fail("sampling: ", name, " must be a finite number, got ", v);
  };
  finite(temperature, "temperature");
  finite(top_p, "top_p");
  finite(min_p, "min_p");
  finite(repeat_penalty, "repeat_penalty");
  finite(presence_penalty, "presence_penalty");
  finite(frequency_penalty, "frequency_penalty");
  if (top_p < 0.f) fail("sampling: top_p must be in [0, 1], got ", top_p);
  if (min_p < 0.f || min_p > 1.f) fail("sampling: min_p must be in [0, 1], got ", min_p);
  if (repeat_penalty <= 0.f) fail("sampling: repeat_penalty must be positive, got ", repeat_penalty);
  if (penalty_last_n < 0) fail("sampling: the penalty window must not be negative, got ", penalty_last_n);
}

std::string SamplerParams::describe() const {
  char buf[256];
  if (greedy()) {
    std::snprintf(buf, sizeof buf, "greedy");
  } else {
    std::snprintf(buf, sizeof buf, "temp %.2f, top_k %d, top_p %.2f, min_p %.2f, seed %llu", temperature, top_k,
                  top_p, min_p, static_cast<unsigned long long>(seed));
  }
  std::string s = buf;
  if (has_penalties()) {
    std::snprintf(buf, sizeof buf, ", repeat %.2f, presence %.2f, frequency %.2f over the last %d tokens",
                  repeat_penalty, presence_penalty, frequency_penalty, penalty_last_n);
    s += buf;
  }
  return s;
}

Sampler::Sampler(const SamplerParams& p, int32_t n_vocab) : p_(p), n_vocab_(n_vocab), rng_(p.seed) {
  p_.validate();
  if (n_vocab < 1) fail("sampler: vocabulary size must be positive, got ", n_vocab);
  const size_t V = static_cast<size_t>(n_vocab);
  cand_.resize(V);
  if (!p_.greedy() && !(p_.top_k > 0 && p_.top_k < n_vocab)) prob_.resize(V);
  if (p_.has_penalties()) {
    count_.assign(V, 0);
    seen_.assign(V, 0);
    const size_t w = static_cast<size_t>(p_.penalty_last_n);
    ring_.assign(w, 0);
    pen_ids_.reserve(w);
    pen_vals_.reserve(w);
  }
}

void Sampler::clear_window() {
  for (size_t i = 0; i < ring_size_; ++i) count_[static_cast<size_t>(ring_[(ring_head_ + i) % ring_.size()])] = 0;
  ring_head_ = ring_size_ = 0;
}

void Sampler::reset() {
  clear_window();
  rng_.seed(p_.seed);
}

void Sampler::reseed(uint64_t seed) {
  p_.seed = seed;
  rng_.seed(seed);
}

void Sampler::accept(int32_t token) {
  if (ring_.empty()) return;
  if (token < 0 || token >= n_vocab_) fail("sampler: token id ", token, " is outside the vocabulary");
  const size_t cap = ring_.size();
  if (ring_size_ == cap) {
    --count_[static_cast<size_t>(ring_[ring_head_])];
    ring_[ring_head_] = token;
    ring_head_ = (ring_head_ + 1) % cap;
  } else {
    ring_[(ring_head_ + ring_size_) % cap] = token;
    ++ring_size_;
  }
  ++count_[static_cast<size_t>(token)];
}

double Sampler::uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

// ---- penalties ---------------------------------------------------------------

void Sampler::prepare_penalties(const float* logits) {
  pen_ids_.resize(0);  // capacity kept
  pen_vals_.resize(0);
  const size_t cap = ring_.size();
  for (size_t i = 0; i < ring_size_; ++i) {
    const int32_t t = ring_[(ring_head_ + i) % cap];
    if (seen_[static_cast<size_t>(t)]) continue;
    seen_[static_cast<size_t>(t)] = 1;
    float l = logits[t];
    l = l > 0.f ? l / p_.repeat_penalty : l * p_.repeat_penalty;
    l -= static_cast<float>(count_[static_cast<size_t>(t)]) * p_.frequency_penalty + p_.presence_penalty;
    pen_ids_.push_back(t);
    pen_vals_.push_back(l);
  }
}

void Sampler::clear_penalty_flags() {
  for (int32_t t : pen_ids_) seen_[static_cast<size_t>(t)] = 0;
  pen_ids_.resize(0);
  pen_vals_.resize(0);
}

// ---- selection ---------------------------------------------------------------

// Argmax over the logits with the window's tokens at their penalised values;
// lowest id on ties; NaN never wins.
int32_t Sampler::argmax(const float* l) const {
  const bool pen = !pen_ids_.empty();
  int32_t best = -1;
  float bv = -INFINITY;
  if (pen) {
    for (int32_t i = 0; i < n_vocab_; ++i)
      if (__builtin_expect(l[i] > bv, 0) && !seen_[static_cast<size_t>(i)]) bv = l[i], best = i;
  } else {
    // Max in blocks of 16 (vectorisable, no loop-carried select), then the
    // first id holding it.
    int32_t i = 0;
    for (; i + 16 <= n_vocab_; i += 16) {
      float b = -INFINITY;
      for (int32_t j = 0; j < 16; ++j) b = l[i + j] > b ? l[i + j] : b;
      bv = b > bv ? b : bv;
    }
    for (; i < n_vocab_; ++i) bv = l[i] > bv ? l[i] : bv;
    if (bv > -INFINITY)
      for (i = 0; i < n_vocab_; ++i)
        if (l[i] == bv) {
          best = i;
          break;
        }
  }
  for (size_t j = 0; j < pen_ids_.size(); ++j) {
    const float v = pen_vals_[j];
    if (v > bv || (v == bv && (best < 0 || pen_ids_[j] < best))) bv = v, best = pen_ids_[j];
  }
  if (best < 0) {  // every logit −inf (or NaN): the first one that is not NaN
    for (int32_t i = 0; i < n_vocab_; ++i)
      if (l[i] == l[i]) return i;
  }
  return best;
}

// Bounded min-heap of the k best (the worst survivor on top), one pass over
// the vocabulary; most logits fail the single comparison with the heap top.
// Penalised tokens are skipped in the scan and offered afterwards with their
// penalised values.
void Sampler::select_top_k(const float* logits, int k) {
  const auto worse_on_top = [](const Candidate& a, const Candidate& b) { return better(a, b); };
  const bool pen = !pen_ids_.empty();
  const size_t K = static_cast<size_t>(k);
  const auto first = cand_.begin();
  size_t n = 0;
  int32_t i = 0;
  for (; i < n_vocab_ && n < K; ++i) {
    const float v = logits[i];
    if (v != v || (pen && seen_[static_cast<size_t>(i)])) continue;  // NaN never wins
    cand_[n++] = {i, v, 0.f};
  }
  std::make_heap(first, first + static_cast<std::ptrdiff_t>(n), worse_on_top);
  if (n == K) {
    const auto last = first + static_cast<std::ptrdiff_t>(K);
    for (; i < n_vocab_; ++i) {
      const float v = logits[i];
      // Scanning ids upwards: an equal logit has a higher id, so it loses.
      if (v > cand_[0].logit) {
        if (pen && seen_[static_cast<size_t>(i)]) continue;
        std::pop_heap(first, last, worse_on_top);
        cand_[K - 1] = {i, v, 0.f};
        std::push_heap(first, last, worse_on_top);
      }
    }
  }
  for (size_t j = 0; j < pen_ids_.size(); ++j) {
    const Candidate c{pen_ids_[j], pen_vals_[j], 0.f};
    if (c.logit != c.logit) continue;
    if (n < K) {
      cand_[n++] = c;
      std::push_heap(first, first + static_cast<std::ptrdiff_t>(n), worse_on_top);
    } else if (better(c, cand_[0])) {
      std::pop_heap(first, first + static_cast<std::ptrdiff_t>(n), worse_on_top);
      cand_[n - 1] = c;
      std::push_heap(first, first + static_cast<std::ptrdiff_t>(n), worse_on_top);
    }
  }
  std::sort_heap(first, first + static_cast<std::ptrdiff_t>(n), worse_on_top);
  // −inf marks an impossible token (sorted: they are last).
  while (n > 0 && cand_[n - 1].logit == -INFINITY) --n;
  n_cand_ = n;
}

// prob_ = softmax(logits / T) over the whole vocabulary (penalised values for
// the window's tokens; NaN counts as −inf).
void Sampler::dense_softmax(const float* l, float inv_t) {
  float* p = prob_.data();
  for (int32_t i = 0; i < n_vocab_; ++i) {
    const float v = l[i] * inv_t;
    p[i] = v == v ? v : -INFINITY;
  }
  for (size_t j = 0; j < pen_ids_.size(); ++j) {
    const float v = pen_vals_[j] * inv_t;
    p[pen_ids_[j]] = v == v ? v : -INFINITY;
  }
  float mx = -INFINITY;
  for (int32_t i = 0; i < n_vocab_; ++i) mx = std::max(mx, p[i]);
  if (mx == -INFINITY) fail("sampler: no token has a finite logit");
  if (mx == INFINITY) {  // +inf logits share all the probability
    float c = 0;
    for (int32_t i = 0; i < n_vocab_; ++i) c += p[i] == INFINITY ? 1.f : 0.f;
    for (int32_t i = 0; i < n_vocab_; ++i) p[i] = p[i] == INFINITY ? 1.f / c : 0.f;
    return;
  }
  kernels::active().softmax(p, n_vocab_);
}

// cand_[0, n) holds candidates with probabilities. Moves the shortest
// best-first prefix whose mass reaches top_p to cand_[0, r) (in no particular
// order) and returns r >= 1: a quickselect that partitions around a pivot
// and descends into the side that holds the cut, carrying the mass above it.
size_t Sampler::top_p_select(size_t n, double top_p) {
  Candidate* c = cand_.data();
  size_t lo = 0, hi = n;
  double need = top_p;  // mass still to collect from [lo, hi)
  for (;;) {
    if (hi - lo <= 32) {
      std::sort(c + lo, c + hi, better);
      for (size_t i = lo; i < hi; ++i) {
        need -= c[i].p;
        if (need <= 0) return i + 1;
      }
      return std::max<size_t>(hi, 1);  // rounding: everything
    }
    // Median of three as the pivot, moved to the end of the range.
    const size_t mid = lo + (hi - lo) / 2;
    size_t a = lo, b = mid, d = hi - 1;
    if (better(c[b], c[a])) std::swap(a, b);
    if (better(c[d], c[b])) std::swap(b, d);
    if (better(c[b], c[a])) std::swap(a, b);
    std::swap(c[b], c[hi - 1]);
    const Candidate pv = c[hi - 1];
    // Partition [lo, hi−1): better than the pivot first, summing their mass.
    size_t m = lo;
    double mass = 0;
    for (size_t i = lo; i < hi - 1; ++i) {
      if (better(c[i], pv)) {
        mass += c[i].p;
        std::swap(c[i], c[m++]);
      }
    }
    std::swap(c[m], c[hi - 1]);  // the pivot at m
    if (mass >= need) {
      hi = m;  // the cut lies among the better ones
      continue;
    }
    need -= mass + c[m].p;
    if (need <= 0) return m + 1;
    lo = m + 1;
  }
}

std::span<const Sampler::Candidate> Sampler::apply(std::span<const float> logits) {
  if (logits.size() != static_cast<size_t>(n_vocab_))
    fail("sampler: got ", logits.size(), " logits for a vocabulary of ", n_vocab_);
  const float* l = logits.data();
  if (ring_size_ > 0) prepare_penalties(l);
  struct Clear {
    Sampler* s;
    ~Clear() { s->clear_penalty_flags(); }
  } clear{this};

  // Greedy: argmax, lowest id on ties.
  if (p_.greedy()) {
    const int32_t best = argmax(l);
    if (best < 0) fail("sampler: every logit is NaN");
    float v = l[best];
    for (size_t j = 0; j < pen_ids_.size(); ++j)
      if (pen_ids_[j] == best) v = pen_vals_[j];
    cand_[0] = {best, v, 1.f};
    n_cand_ = 1;
    return candidates();
  }

  const float inv_t = 1.f / p_.temperature;
  const bool top_p = p_.top_p < 1.f;
  if (p_.top_k > 0 && p_.top_k < n_vocab_) {
    // Top-k, then softmax over the k (sorted best first).
    select_top_k(l, p_.top_k);
    if (n_cand_ == 0) fail("sampler: no token has a finite logit");
    for (size_t i = 0; i < n_cand_; ++i) cand_[i].logit *= inv_t;
    const float mx = cand_[0].logit;
    double sum = 0;
    for (size_t i = 0; i < n_cand_; ++i) sum += cand_[i].p = std::exp(cand_[i].logit - mx);
    for (size_t i = 0; i < n_cand_; ++i) cand_[i].p = static_cast<float>(cand_[i].p / sum);
    if (mx == INFINITY)
      for (size_t i = 0; i < n_cand_; ++i) cand_[i].p = cand_[i].logit == INFINITY ? 1.f : 0.f;
    if (top_p) {
      double cum = 0;
      size_t keep = 0;
      while (keep < n_cand_) {
        cum += cand_[keep++].p;
        if (cum >= p_.top_p) break;
      }
      n_cand_ = keep;
    }
  } else if (!top_p && p_.min_p > 0.f) {
    // Min-p alone: p ≥ min_p·p_max ⟺ logit/T ≥ max/T + ln(min_p), so only
    // tokens near the top need a softmax (the threshold below has a margin;
    // the exact test runs in probability space after).
    const int32_t best = argmax(l);
    if (best < 0) fail("sampler: every logit is NaN");
    float bv = l[best];
    for (size_t j = 0; j < pen_ids_.size(); ++j)
      if (pen_ids_[j] == best) bv = pen_vals_[j];
    const float mx = bv * inv_t;
    if (!std::isfinite(mx)) fail("sampler: the largest logit is not finite (", bv, ")");
    const float lo = mx + std::log(p_.min_p) - 1e-3f;
    const bool pen = !pen_ids_.empty();
    size_t n = 0;
    for (int32_t i = 0; i < n_vocab_; ++i) {
      const float v = l[i] * inv_t;
      if (v >= lo && !(pen && seen_[static_cast<size_t>(i)])) cand_[n++] = {i, v, 0.f};
    }
    for (size_t j = 0; j < pen_ids_.size(); ++j) {
      const float v = pen_vals_[j] * inv_t;
      if (v >= lo) cand_[n++] = {pen_ids_[j], v, 0.f};
    }
    double sum = 0;
    for (size_t i = 0; i < n; ++i) sum += cand_[i].p = std::exp(cand_[i].logit - mx);
    for (size_t i = 0; i < n; ++i) cand_[i].p = static_cast<float>(cand_[i].p / sum);
    n_cand_ = n;
  } else {
    // The whole vocabulary: vectorised softmax; top-p keeps nothing below
    // (1 − top_p)/V (halved for rounding), so those never become candidates.
    dense_softmax(l, inv_t);
    const float floor_p = top_p ? static_cast<float>(0.5 * (1.0 - p_.top_p) / n_vocab_) : 0.f;
    const float* p = prob_.data();
    size_t n = 0;
    // The softmax normalised with a float sum: measure the total again in
    // double (four partial sums: no serial add chain).
    double t4[4] = {0, 0, 0, 0};
    int32_t i = 0;
    for (; i + 4 <= n_vocab_; i += 4)
      for (int32_t j = 0; j < 4; ++j) {
        t4[j] += p[i + j];
        if (p[i + j] > floor_p) cand_[n++] = {i + j, l[i + j] * inv_t, p[i + j]};
      }
    for (; i < n_vocab_; ++i) {
      t4[0] += p[i];
      if (p[i] > floor_p) cand_[n++] = {i, l[i] * inv_t, p[i]};
    }
    const double total = (t4[0] + t4[1]) + (t4[2] + t4[3]);
    for (size_t i = 0; i < n && !pen_ids_.empty(); ++i)  // penalised logits for ordering
      if (seen_[static_cast<size_t>(cand_[i].id)])
        for (size_t j = 0; j < pen_ids_.size(); ++j)
          if (pen_ids_[j] == cand_[i].id) cand_[i].logit = pen_vals_[j] * inv_t;
    if (n == 0) fail("sampler: no token has a finite logit");
    n_cand_ = top_p ? top_p_select(n, p_.top_p * total) : n;
  }

  // Min-p: relative to the most likely token (always a survivor).
  if (p_.min_p > 0.f) {
    float pmax = 0.f;
    for (size_t i = 0; i < n_cand_; ++i) pmax = std::max(pmax, cand_[i].p);
    const float thr = p_.min_p * pmax;
    size_t n = 0;
    for (size_t i = 0; i < n_cand_; ++i)
      if (cand_[i].p >= thr) cand_[n++] = cand_[i];  // order kept
    n_cand_ = n;
  }

  // Renormalise the survivors.
  double s = 0;
  for (size_t i = 0; i < n_cand_; ++i) s += cand_[i].p;
  if (s > 0 && s != 1.0)
    for (size_t i = 0; i < n_cand_; ++i) cand_[i].p = static_cast<float>(cand_[i].p / s);
  return candidates();
}

int32_t Sampler::sample(std::span<const float> logits) {
  apply(logits);
  if (p_.greedy() || n_cand_ == 1) return cand_[0].id;
  const double u = uniform();
  double acc = 0;
  for (size_t i = 0; i < n_cand_; ++i) {
    acc += cand_[i].p;
    if (u < acc) return cand_[i].id;
  }
  // Rounding left the sum a hair below 1: the last token with p > 0.
  for (size_t i = n_cand_; i-- > 0;)
    if (cand_[i].p > 0.f) return cand_[i].id;
  return cand_[0].id;
}

}  // namespace g4
