#include "core/thread_pool.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
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

constexpr int kSpinIterations = 2000;

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
    {
      std::lock_guard<std::mutex> lk(mu_);
      generation_.fetch_add(1, std::memory_order_acq_rel);
    }
    wake_cv_.notify_all();
    for (auto& w : workers_) w.join();
    throw;
  }
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lk(mu_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  wake_cv_.notify_all();
  for (auto& w : workers_) w.join();
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
    std::lock_guard<std::mutex> lk(error_mu_);
    if (!job_error_) job_error_ = std::current_exception();
  }
}

void ThreadPool::worker_main(int tid) {
  tl_in_pool = true;
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = generation_.load(std::memory_order_acquire);
    for (int i = 0; g == seen && i < kSpinIterations; ++i) {
      G4_CPU_RELAX();
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      std::unique_lock<std::mutex> lk(mu_);
      ++sleepers_;
      wake_cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      --sleepers_;
      g = generation_.load(std::memory_order_acquire);
    }
    seen = g;
    if (stop_.load(std::memory_order_acquire)) return;
    run_range(tid);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lk(mu_);
      if (caller_waiting_) done_cv_.notify_one();
    }
  }
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
  bool wake;
  {
    std::lock_guard<std::mutex> lk(mu_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
    wake = sleepers_ > 0;
  }
  if (wake) wake_cv_.notify_all();

  tl_in_pool = true;
  run_range(0);
  tl_in_pool = false;

  for (int i = 0; pending_.load(std::memory_order_acquire) != 0 && i < kSpinIterations * 4; ++i) G4_CPU_RELAX();
  if (pending_.load(std::memory_order_acquire) != 0) {
    std::unique_lock<std::mutex> lk(mu_);
    caller_waiting_ = true;
    done_cv_.wait(lk, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    caller_waiting_ = false;
  }
  if (job_error_) {
    std::exception_ptr e = std::exchange(job_error_, nullptr);
    std::rethrow_exception(e);
  }
}

}  // namespace g4
