#include "core/thread_pool.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>
#include <string>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define G4_CPU_RELAX() _mm_pause()
#else
#define G4_CPU_RELAX() ((void)0)
#endif

namespace g4 {
namespace {

// True while this thread runs tasks of some pool (workers always; the
// submitting thread during its own range): nested parallel_for runs serially.
thread_local bool tl_in_pool = false;

// How long an idle worker spins before sleeping, and how long the submitter
// spins for the last task before sleeping. A decode step issues a few hundred
// parallel loops separated by microseconds of serial work, so the workers stay
// awake through it; a pool left alone goes to sleep within a millisecond.
// Past the first kPureSpinMicros, spinning yields the CPU between checks.
constexpr int64_t kSpinMicros = 500;
constexpr int64_t kCallerSpinMicros = 200;
constexpr int64_t kPureSpinMicros = 5;

// Spins while pred() is false, for at most `micros`; returns pred(). After
// the first kPureSpinMicros it yields between checks: on an oversubscribed
// machine the thread it waits for may be queued on this very CPU.
template <class Pred>
bool spin_until(Pred pred, int64_t micros) {
  const auto start = std::chrono::steady_clock::now();
  const auto pure = start + std::chrono::microseconds(std::min(micros, kPureSpinMicros));
  const auto deadline = start + std::chrono::microseconds(micros);
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (pred()) return true;
      G4_CPU_RELAX();
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return pred();
    if (now >= pure) sched_yield();
  }
}

bool read_int_file(const std::string& path, long& out) {
  std::ifstream f(path);
  if (!f) return false;
  f >> out;
  return static_cast<bool>(f);
}

}  // namespace

int ThreadPool::default_thread_count() {
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  const int fallback =
      online > 0 ? static_cast<int>(online) : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return fallback;
  std::set<std::pair<long, long>> cores;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    long pkg = 0, core = 0;
    if (!read_int_file(base + "physical_package_id", pkg) || !read_int_file(base + "core_id", core))
      return std::max(1, CPU_COUNT(&set));  // no topology: every usable logical CPU
    cores.insert({pkg, core});
  }
  if (cores.empty()) return fallback;
  return static_cast<int>(cores.size());
}

ThreadPool& ThreadPool::global() {
  static ThreadPool pool(0);
  return pool;
}

ThreadPool::ThreadPool(int n_threads) {
  n_threads_ = n_threads > 0 ? n_threads : default_thread_count();
  workers_.reserve(static_cast<size_t>(n_threads_ - 1));
  try {
    for (int t = 1; t < n_threads_; ++t) workers_.emplace_back([this, t] { worker_main(t); });
  } catch (...) {
    // Could not start every thread: stop the ones that did, then report.
    stop_.store(true, std::memory_order_release);
    post((++job_seq_) << 1);
    for (auto& w : workers_) w.join();
    throw;
  }
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  post((++job_seq_) << 1);
  for (auto& w : workers_) w.join();
}

void ThreadPool::post(uint64_t generation) {
  bool wake;
  {
    std::lock_guard<std::mutex> lk(mu_);
    generation_.store(generation, std::memory_order_release);
    wake = sleepers_ > 0;
  }
  if (wake) wake_cv_.notify_all();
}

void ThreadPool::record_error() {
  std::lock_guard<std::mutex> lk(error_mu_);
  if (!job_error_) job_error_ = std::current_exception();
}

void ThreadPool::run_range(int tid) {
  const int64_t n = job_n_;
  const int64_t T = n_threads_;
  const int64_t b = n * tid / T;
  const int64_t e = n * (tid + 1) / T;
  if (b >= e) return;
  try {
    job_fn_(job_ctx_, b, e, tid);
  } catch (...) {
    record_error();
  }
}

namespace {
constexpr int kChunkBits = 20;  // chunk index / count fields of the claim word
constexpr uint64_t kChunkMask = (uint64_t{1} << kChunkBits) - 1;
constexpr uint64_t kSeqMask = (uint64_t{1} << (64 - 2 * kChunkBits)) - 1;
}  // namespace

void ThreadPool::claim_chunks(uint64_t seq, int tid) {
  const uint64_t s = seq & kSeqMask;
  uint64_t c = claim_.load(std::memory_order_acquire);
  for (;;) {
    if ((c >> (2 * kChunkBits)) != s) return;  // another job: this one has ended
    const uint64_t next = (c >> kChunkBits) & kChunkMask, n = c & kChunkMask;
    if (next >= n) return;
    if (!claim_.compare_exchange_weak(c, c + (uint64_t{1} << kChunkBits), std::memory_order_acq_rel,
                                      std::memory_order_acquire))
      continue;
    // The job cannot end while this chunk is unfinished: its fields are valid.
    const int64_t b = static_cast<int64_t>(next) * dyn_grain_;
    const int64_t e = std::min(b + dyn_grain_, dyn_n_);
    try {
      dyn_fn_(dyn_ctx_, b, e, tid);
    } catch (...) {
      record_error();
    }
    if (dyn_done_.fetch_add(1, std::memory_order_acq_rel) + 1 == static_cast<int64_t>(n)) {
      std::lock_guard<std::mutex> lk(mu_);
      if (caller_waiting_) done_cv_.notify_one();
    }
    c = claim_.load(std::memory_order_acquire);
  }
}

void ThreadPool::worker_main(int tid) {
  tl_in_pool = true;
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = generation_.load(std::memory_order_acquire);
    if (g == seen) {
      spin_until([&] { return (g = generation_.load(std::memory_order_acquire)) != seen; }, kSpinMicros);
      if (g == seen) {
        std::unique_lock<std::mutex> lk(mu_);
        ++sleepers_;
        wake_cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        --sleepers_;
        g = generation_.load(std::memory_order_acquire);
      }
    }
    seen = g;
    if (stop_.load(std::memory_order_acquire)) return;
    if (g & 1) {
      claim_chunks(g >> 1, tid);
    } else {
      run_range(tid);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(mu_);
        if (caller_waiting_) done_cv_.notify_one();
      }
    }
  }
}

void ThreadPool::wait_until(const std::atomic<int64_t>& counter, int64_t target) {
  auto reached = [&] { return counter.load(std::memory_order_acquire) == target; };
  if (spin_until(reached, kCallerSpinMicros)) return;
  std::unique_lock<std::mutex> lk(mu_);
  caller_waiting_ = true;
  done_cv_.wait(lk, reached);
  caller_waiting_ = false;
}

void ThreadPool::run(int64_t n_tasks, Trampoline fn, void* ctx) {
  if (n_tasks <= 0) return;
  if (n_threads_ == 1 || n_tasks == 1 || tl_in_pool) {
    fn(ctx, 0, n_tasks, 0);
    return;
  }
  std::lock_guard<std::mutex> submit(submit_mu_);
  job_fn_ = fn;
  job_ctx_ = ctx;
  job_n_ = n_tasks;
  job_error_ = nullptr;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  post((++job_seq_) << 1);

  tl_in_pool = true;
  run_range(0);
  tl_in_pool = false;

  wait_until(pending_, 0);
  if (job_error_) {
    std::exception_ptr e = std::exchange(job_error_, nullptr);
    std::rethrow_exception(e);
  }
}

void ThreadPool::run_dynamic(int64_t n_tasks, int64_t grain, Trampoline fn, void* ctx) {
  if (n_tasks <= 0) return;
  if (grain <= 0) grain = std::max<int64_t>(1, n_tasks / (4 * static_cast<int64_t>(n_threads_)));
  int64_t n_chunks = (n_tasks + grain - 1) / grain;
  if (n_chunks > static_cast<int64_t>(kChunkMask)) {
    grain = (n_tasks + static_cast<int64_t>(kChunkMask) - 1) / static_cast<int64_t>(kChunkMask);
    n_chunks = (n_tasks + grain - 1) / grain;
  }
  if (n_threads_ == 1 || n_chunks == 1 || tl_in_pool) {
    for (int64_t b = 0; b < n_tasks; b += grain) fn(ctx, b, std::min(b + grain, n_tasks), 0);
    return;
  }
  std::lock_guard<std::mutex> submit(submit_mu_);
  dyn_fn_ = fn;
  dyn_ctx_ = ctx;
  dyn_n_ = n_tasks;
  dyn_grain_ = grain;
  dyn_done_.store(0, std::memory_order_relaxed);
  job_error_ = nullptr;
  const uint64_t seq = ++job_seq_;
  claim_.store(((seq & kSeqMask) << (2 * kChunkBits)) | static_cast<uint64_t>(n_chunks), std::memory_order_release);
  post((seq << 1) | 1);

  tl_in_pool = true;
  claim_chunks(seq, 0);
  tl_in_pool = false;

  wait_until(dyn_done_, n_chunks);
  if (job_error_) {
    std::exception_ptr e = std::exchange(job_error_, nullptr);
    std::rethrow_exception(e);
  }
}

}  // namespace g4
