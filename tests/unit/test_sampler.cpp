// Sampler (src/runtime/sampler.h) against a plain scalar reference: full sort,
// double-precision softmax, filters written the obvious way. Plus exact
// cut-offs on constructed distributions, exact penalties, greedy/top-k=1,
// seed reproducibility, an empirical chi-square check of the draws (fixed
// seeds: deterministic) and "no allocation per step".
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <map>
#include <new>
#include <numeric>
#include <random>
#include <vector>

#include "core/error.h"
#include "runtime/sampler.h"

using namespace g4;

#include "alloc_counter.h"  // replaces operator new in this test binary

namespace {

constexpr int kVocab = 262144;  // the real Gemma 4 vocabulary size

std::vector<float> random_logits(int n, uint64_t seed, float scale = 4.f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

// The reference: probabilities of the surviving ids (id -> p).
std::map<int32_t, double> reference(const std::vector<float>& logits_in, const SamplerParams& p,
                                    const std::vector<int32_t>& window = {}) {
  std::vector<float> l = logits_in;
  if (p.has_penalties()) {
    std::map<int32_t, int> count;
    const size_t w = static_cast<size_t>(p.penalty_last_n);
    for (size_t i = window.size() > w ? window.size() - w : 0; i < window.size(); ++i) ++count[window[i]];
    for (auto [t, c] : count) {
      float x = l[static_cast<size_t>(t)];
      x = x > 0.f ? x / p.repeat_penalty : x * p.repeat_penalty;
      x -= static_cast<float>(c) * p.frequency_penalty + p.presence_penalty;
      l[static_cast<size_t>(t)] = x;
    }
  }
  const int V = static_cast<int>(l.size());
  std::vector<int32_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] != l[b] ? l[a] > l[b] : a < b; });
  if (p.temperature <= 0.f) return {{order[0], 1.0}};
  if (p.top_k > 0 && p.top_k < V) order.resize(static_cast<size_t>(p.top_k));
  std::vector<double> pr(order.size());
  const double mx = static_cast<double>(l[order[0]]) / p.temperature;
  double sum = 0;
  for (size_t i = 0; i < order.size(); ++i) sum += pr[i] = std::exp(static_cast<double>(l[order[i]]) / p.temperature - mx);
  for (double& x : pr) x /= sum;
  size_t n = order.size();
  if (p.top_p < 1.f) {
    double cum = 0;
    for (size_t i = 0; i < n; ++i) {
      cum += pr[i];
      if (cum >= p.top_p) {
        n = i + 1;
        break;
      }
    }
  }
  std::map<int32_t, double> out;
  const double thr = p.min_p * pr[0];
  double s = 0;
  for (size_t i = 0; i < n; ++i)
    if (p.min_p <= 0.f || pr[i] >= thr) out[order[i]] = pr[i], s += pr[i];
  for (auto& [id, x] : out) x /= s;
  return out;
}

std::map<int32_t, double> as_map(std::span<const Sampler::Candidate> c) {
  std::map<int32_t, double> m;
  for (const auto& x : c) m[x.id] = x.p;
  return m;
}

void expect_same(const std::map<int32_t, double>& got, const std::map<int32_t, double>& want, double tol,
                 const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (const auto& [id, p] : want) {
    auto it = got.find(id);
    ASSERT_NE(it, got.end()) << what << ": id " << id << " missing";
    EXPECT_NEAR(it->second, p, tol) << what << ": id " << id;
  }
}

SamplerParams params(float temp, int k, float top_p, float min_p) {
  SamplerParams p;
  p.temperature = temp;
  p.top_k = k;
  p.top_p = top_p;
  p.min_p = min_p;
  return p;
}

}  // namespace

TEST(Sampler, DefaultsAreTheModelCards) {
  const SamplerParams p;
  EXPECT_EQ(p.temperature, 1.0f);
  EXPECT_EQ(p.top_k, 64);
  EXPECT_EQ(p.top_p, 0.95f);
  EXPECT_EQ(p.min_p, 0.0f);
  EXPECT_FALSE(p.has_penalties());
}

TEST(Sampler, MatchesReferenceOnFullVocab) {
  struct Case {
    float temp;
    int k;
    float top_p, min_p;
    float scale;
  };
  const Case cases[] = {
      {1.0f, 64, 0.95f, 0.0f, 4.f},     // model card defaults
      {0.7f, 40, 0.9f, 0.05f, 4.f},
      {1.3f, 0, 0.95f, 0.0f, 4.f},      // no top-k: top-p over the whole vocab (partial sorts grow)
      {1.0f, 0, 0.5f, 0.0f, 0.05f},     // nearly flat: top-p needs ~half the vocab
      {1.0f, 0, 1.0f, 0.1f, 3.f},       // min-p alone, no sorting
      {2.0f, 1000, 1.0f, 0.0f, 4.f},    // top-k alone
      {1.0f, 0, 1.0f, 0.0f, 1.f},       // everything
      {0.5f, kVocab, 0.8f, 0.02f, 2.f}, // k = vocab: off
  };
  int ci = 0;
  for (const Case& c : cases) {
    const SamplerParams p = params(c.temp, c.k, c.top_p, c.min_p);
    Sampler s(p, kVocab);
    for (uint64_t seed = 1; seed <= 2; ++seed) {
      const auto logits = random_logits(kVocab, seed * 100 + static_cast<uint64_t>(ci), c.scale);
      expect_same(as_map(s.apply(logits)), reference(logits, p), 2e-6,
                  "case " + std::to_string(ci) + " seed " + std::to_string(seed));
    }
    ++ci;
  }
}

TEST(Sampler, GreedyIsArgmaxWithLowestIdOnTies) {
  SamplerParams p = params(0.f, 64, 0.95f, 0.f);
  Sampler s(p, kVocab);
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    const auto l = random_logits(kVocab, seed);
    const int32_t want = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
    EXPECT_EQ(s.sample(l), want);
  }
  Sampler small(p, 1000);
  std::vector<float> l(1000, 0.f);
  l[700] = 5.f, l[300] = 5.f, l[900] = 5.f;
  EXPECT_EQ(small.sample(l), 300);
}

TEST(Sampler, TopKOneIsGreedy) {
  Sampler g(params(0.f, 0, 1.f, 0.f), kVocab);
  for (float temp : {0.5f, 1.0f, 3.0f}) {
    SamplerParams p = params(temp, 1, 0.95f, 0.f);
    p.seed = 7;
    Sampler s(p, kVocab);
    for (uint64_t seed = 10; seed < 15; ++seed) {
      const auto l = random_logits(kVocab, seed);
      EXPECT_EQ(s.sample(l), g.sample(l)) << "temp " << temp;
    }
  }
  // Ties: the lower id, like greedy.
  std::vector<float> l(kVocab, -1.f);
  l[5000] = 2.f, l[10] = 2.f;
  Sampler s(params(1.f, 1, 1.f, 0.f), kVocab);
  EXPECT_EQ(s.sample(l), 10);
  EXPECT_EQ(g.sample(l), 10);
}

TEST(Sampler, TopPAndMinPCutoffsAreExact) {
  // p = 0.4, 0.3, 0.2, 0.1 on ids 3, 1, 6, 0; every other id impossible.
  const int V = 16;
  std::vector<float> l(V, -INFINITY);
  l[3] = std::log(0.4f), l[1] = std::log(0.3f), l[6] = std::log(0.2f), l[0] = std::log(0.1f);
  auto kept = [&](float top_p, float min_p) {
    Sampler s(params(1.f, 0, top_p, min_p), V);
    std::vector<int32_t> ids;
    for (const auto& c : s.apply(l)) ids.push_back(c.id);
    std::sort(ids.begin(), ids.end());
    return ids;
  };
  using V32 = std::vector<int32_t>;
  EXPECT_EQ(kept(0.0f, 0.f), V32({3}));
  EXPECT_EQ(kept(0.3f, 0.f), V32({3}));
  EXPECT_EQ(kept(0.41f, 0.f), V32({1, 3}));
  EXPECT_EQ(kept(0.65f, 0.f), V32({1, 3}));
  EXPECT_EQ(kept(0.71f, 0.f), V32({1, 3, 6}));
  EXPECT_EQ(kept(0.89f, 0.f), V32({1, 3, 6}));
  EXPECT_EQ(kept(0.91f, 0.f), V32({0, 1, 3, 6}));
  EXPECT_EQ(kept(0.99f, 0.f), V32({0, 1, 3, 6}));
  EXPECT_EQ(kept(1.0f, 0.f), V32({0, 1, 3, 6}));  // off
  // min-p: threshold = min_p · 0.4.
  EXPECT_EQ(kept(1.f, 0.2f), V32({0, 1, 3, 6}));   // 0.08
  EXPECT_EQ(kept(1.f, 0.26f), V32({1, 3, 6}));     // 0.104
  EXPECT_EQ(kept(1.f, 0.6f), V32({1, 3}));         // 0.24
  EXPECT_EQ(kept(1.f, 0.76f), V32({3}));           // 0.304
  // Both: top-p first, then min-p over the survivors.
  EXPECT_EQ(kept(0.71f, 0.6f), V32({1, 3}));
  // Survivors are renormalised.
  Sampler s(params(1.f, 0, 0.71f, 0.f), V);
  const auto m = as_map(s.apply(l));
  EXPECT_NEAR(m.at(3), 0.4 / 0.9, 1e-6);
  EXPECT_NEAR(m.at(1), 0.3 / 0.9, 1e-6);
  EXPECT_NEAR(m.at(6), 0.2 / 0.9, 1e-6);
  // Top-k keeps exactly k, ties by lower id.
  std::vector<float> t(V, 0.f);
  t[9] = 1.f;
  Sampler k3(params(1.f, 3, 1.f, 0.f), V);
  V32 ids;
  for (const auto& c : k3.apply(t)) ids.push_back(c.id);
  EXPECT_EQ(ids, V32({9, 0, 1}));
}

TEST(Sampler, PenaltiesAreExact) {
  const int V = 32;
  std::vector<float> l(V);
  for (int i = 0; i < V; ++i) l[i] = 0.25f * static_cast<float>(i - 10);  // negative and positive
  SamplerParams p = params(1.f, 0, 1.f, 0.f);
  p.repeat_penalty = 1.3f;
  p.frequency_penalty = 0.4f;
  p.presence_penalty = 0.15f;
  p.penalty_last_n = 4;
  Sampler s(p, V);
  // Window of 4: token 2 falls out; 20 twice, 5 once, 12 once.
  for (int32_t t : {2, 20, 5, 20, 12}) s.accept(t);
  std::vector<float> want = l;
  auto pen = [&](int t, int c) {
    float x = l[t];
    x = x > 0.f ? x / p.repeat_penalty : x * p.repeat_penalty;
    x -= static_cast<float>(c) * p.frequency_penalty + p.presence_penalty;
    want[t] = x;
  };
  pen(20, 2), pen(5, 1), pen(12, 1);
  EXPECT_EQ(want[20], (2.5f / 1.3f) - (2.f * 0.4f + 0.15f));
  EXPECT_EQ(want[5], (-1.25f * 1.3f) - (1.f * 0.4f + 0.15f));
  const auto c = s.apply(l);
  ASSERT_EQ(c.size(), static_cast<size_t>(V));
  for (const auto& x : c) EXPECT_EQ(x.logit, want[x.id]) << "id " << x.id;  // temperature 1: logits as penalised
  // The input is not modified, and the reference agrees on probabilities.
  EXPECT_EQ(l[20], 2.5f);
  expect_same(as_map(c), reference(l, p, {2, 20, 5, 20, 12}), 1e-6, "penalties");
  // clear_window() forgets them.
  s.clear_window();
  for (const auto& x : s.apply(l)) EXPECT_EQ(x.logit, l[x.id]);
  // Repeat penalty 1 and zero presence/frequency: no penalties at all.
  EXPECT_FALSE(params(1.f, 0, 1.f, 0.f).has_penalties());
}

TEST(Sampler, SameSeedSameTokens) {
  SamplerParams p;  // model card defaults
  p.seed = 1234;
  Sampler a(p, kVocab), b(p, kVocab);
  p.seed = 1235;
  Sampler c(p, kVocab);
  std::vector<int32_t> ta, tb, tc;
  for (uint64_t i = 0; i < 40; ++i) {
    const auto l = random_logits(kVocab, 500 + i, 1.0f);  // flat enough that draws vary
    ta.push_back(a.sample(l));
    tb.push_back(b.sample(l));
    tc.push_back(c.sample(l));
  }
  EXPECT_EQ(ta, tb);
  EXPECT_NE(ta, tc);
  // reset() restarts the stream.
  a.reset();
  std::vector<int32_t> again;
  for (uint64_t i = 0; i < 40; ++i) again.push_back(a.sample(random_logits(kVocab, 500 + i, 1.0f)));
  EXPECT_EQ(again, ta);
}

// Draws from a fixed distribution must follow the filtered softmax:
// Pearson chi-square over the survivors below the 99.9% quantile, and no
// draw outside the survivors. Fixed seeds: the outcome is deterministic.
TEST(Sampler, EmpiricalDistributionMatchesFilteredSoftmax) {
  const int V = 200;
  struct Case {
    float temp;
    int k;
    float top_p, min_p;
  };
  for (const Case& cs : {Case{1.0f, 64, 0.95f, 0.0f}, Case{0.7f, 0, 0.9f, 0.0f}, Case{1.5f, 30, 1.0f, 0.05f}}) {
    SamplerParams p = params(cs.temp, cs.k, cs.top_p, cs.min_p);
    p.seed = 42;
    Sampler s(p, V);
    const auto l = random_logits(V, 99, 1.5f);
    const auto want = reference(l, p);
    const int N = 200000;
    std::map<int32_t, int> hits;
    for (int i = 0; i < N; ++i) ++hits[s.sample(l)];
    double chi2 = 0;
    for (const auto& [id, pr] : want) {
      const double e = pr * N;
      const double o = hits.count(id) ? hits[id] : 0;
      chi2 += (o - e) * (o - e) / e;
    }
    for (const auto& [id, n] : hits) EXPECT_TRUE(want.count(id)) << "drew id " << id << " outside the survivors";
    // Wilson–Hilferty 99.9% quantile of chi-square with df degrees of freedom.
    const double df = static_cast<double>(want.size()) - 1;
    const double z = 3.0902;
    const double q = df * std::pow(1 - 2 / (9 * df) + z * std::sqrt(2 / (9 * df)), 3);
    EXPECT_LT(chi2, q) << "temp " << cs.temp << " k " << cs.k << " top_p " << cs.top_p << " (" << want.size()
                       << " survivors)";
  }
}

TEST(Sampler, NoAllocationPerStep) {
  if (!G4_COUNT_ALLOCS) GTEST_SKIP() << "allocation counting is off under AddressSanitizer";
  SamplerParams p;
  p.repeat_penalty = 1.1f;
  p.presence_penalty = 0.2f;
  p.penalty_last_n = 64;
  const auto l1 = random_logits(kVocab, 1), l2 = random_logits(kVocab, 2, 0.05f);
  for (SamplerParams q : {p, params(1.f, 0, 0.95f, 0.f), params(0.f, 0, 1.f, 0.f), params(1.f, 0, 1.f, 0.05f)}) {
    q.penalty_last_n = p.penalty_last_n;
    q.repeat_penalty = p.repeat_penalty;
    Sampler s(q, kVocab);
    const long before = g_allocs.load();
    for (int i = 0; i < 20; ++i) {
      s.accept(s.sample(i % 2 ? l1 : l2));
    }
    EXPECT_EQ(g_allocs.load(), before);
  }
}

TEST(Sampler, RejectsBadParameters) {
  EXPECT_THROW(Sampler(params(NAN, 64, 0.95f, 0.f), 10), Error);
  EXPECT_THROW(Sampler(params(1.f, 64, -0.1f, 0.f), 10), Error);
  EXPECT_THROW(Sampler(params(1.f, 64, 0.9f, 1.5f), 10), Error);
  SamplerParams p;
  p.repeat_penalty = 0.f;
  EXPECT_THROW(Sampler(p, 10), Error);
  Sampler s(SamplerParams{}, 10);
  std::vector<float> wrong(11, 0.f);
  EXPECT_THROW(s.sample(wrong), Error);
}
