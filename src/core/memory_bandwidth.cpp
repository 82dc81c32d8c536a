#include "core/memory_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>

#include "core/error.h"
#include "core/thread_pool.h"

namespace g4 {
namespace {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// Sum of words [b, e): four independent accumulators so the adds never limit
// the loads (the compiler vectorises each chain).
uint64_t sum_words(const uint64_t* w, int64_t b, int64_t e) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = b;
  for (; i + 4 <= e; i += 4) {
    s0 += w[i];
    s1 += w[i + 1];
    s2 += w[i + 2];
    s3 += w[i + 3];
  }
  for (; i < e; ++i) s0 += w[i];
  return s0 + s1 + s2 + s3;
}

}  // namespace

double median(std::vector<double> v) {
  if (v.empty()) fail("median of an empty sample");
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

MemoryBandwidth measure_memory_bandwidth(ThreadPool& pool, uint64_t bytes, int reps) {
  if (bytes < (uint64_t{1} << 20)) fail("memory bandwidth buffer must be at least 1 MiB");
  if (reps < 1) fail("memory bandwidth needs at least one repetition");
  const int64_t n_words = static_cast<int64_t>(bytes / sizeof(uint64_t));
  const uint64_t n_bytes = static_cast<uint64_t>(n_words) * sizeof(uint64_t);
  // aligned_alloc needs a size that is a multiple of the alignment.
  const uint64_t alloc_bytes = (n_bytes + 63) / 64 * 64;
  std::unique_ptr<uint64_t[], FreeDeleter> buf(static_cast<uint64_t*>(std::aligned_alloc(64, alloc_bytes)));
  if (!buf) fail("cannot allocate ", n_bytes >> 20, " MiB for the memory bandwidth buffer");
  uint64_t* w = buf.get();
  const int T = pool.size();

  // One task per thread: thread t always gets the same part (ThreadPool splits
  // [0, T) into one task each), so it reads the pages it faulted in.
  pool.parallel_for(T, [&](int64_t tb, int64_t te, int) {
    for (int64_t t = tb; t < te; ++t)
      for (int64_t i = n_words * t / T; i < n_words * (t + 1) / T; ++i) w[i] = static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ull;
  });

  // Per-thread sums land in separate cache lines; their total is checked so the
  // reads cannot be optimised away.
  struct alignas(64) Slot {
    uint64_t sum = 0;
  };
  std::vector<Slot> sums(static_cast<size_t>(T));
  auto pass = [&] {
    pool.parallel_for(T, [&](int64_t tb, int64_t te, int) {
      for (int64_t t = tb; t < te; ++t) sums[static_cast<size_t>(t)].sum = sum_words(w, n_words * t / T, n_words * (t + 1) / T);
    });
    uint64_t total = 0;
    for (const Slot& s : sums) total += s.sum;
    return total;
  };

  const uint64_t expect = pass();  // warm-up (TLB, frequency), untimed
  MemoryBandwidth r;
  r.buffer_bytes = n_bytes;
  r.threads = T;
  for (int k = 0; k < reps; ++k) {
    const auto t0 = std::chrono::steady_clock::now();
    const uint64_t got = pass();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (got != expect) fail("memory bandwidth: the buffer changed between passes (checksum mismatch)");
    r.gbps.push_back(static_cast<double>(n_bytes) / s / 1e9);
  }
  r.median_gbps = median(r.gbps);
  r.min_gbps = *std::min_element(r.gbps.begin(), r.gbps.end());
  r.max_gbps = *std::max_element(r.gbps.begin(), r.gbps.end());
  return r;
}

}  // namespace g4
