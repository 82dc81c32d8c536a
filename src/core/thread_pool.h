// Persistent worker pool for data-parallel loops.
//
// Threads are created once. Two ways to split [0, n_tasks):
//
// parallel_for(n_tasks, fn): one contiguous range per thread (thread i gets
// [n·i/T, n·(i+1)/T)); fn(task_begin, task_end, thread_id) is called once for
// each non-empty range, the calling thread participating as thread 0. The
// split depends only on n_tasks and the pool size, so a computation whose
// per-task result does not depend on the range boundaries gives identical
// results for any thread count. The caller waits for every thread.
//
// parallel_for_dynamic(n_tasks, grain, fn): chunks of at most `grain` tasks
// claimed one by one by whichever thread is free (the caller included), so
// which thread runs which chunk varies from call to call: for work whose
// results do not depend on the split (the matmul kernels). The caller never
// waits for a worker that has not started: a sleeping or preempted worker (a
// busy machine, more threads than free cores) costs only its share of the
// work, not a wake-up latency or a time slice. Each chunk is claimed with one
// compare-and-swap on a word holding (job sequence, next chunk, chunk count),
// and a job's function pointers are only read after a successful claim, so a
// worker that arrives after the job ended can neither run nor disturb it.
//
// Waiting: workers spin (pause) for kSpinMicros after their last job before
// sleeping on a condition variable, so the back-to-back parallel loops of a
// decode step find them awake; the caller spins briefly for the last chunk,
// then sleeps until it is done.
//
// No allocation per call: the callable is passed by reference through a
// function pointer trampoline. A parallel_for issued from inside a task (or
// while another thread holds the pool) runs serially on the caller. The first
// exception thrown by a task is rethrown to the caller after all tasks end.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace g4 {

class ThreadPool {
 public:
  // n_threads <= 0: default_thread_count().
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  template <class F>
  void parallel_for(int64_t n_tasks, F&& fn) {
    using Fn = std::remove_reference_t<F>;
    run(n_tasks, [](void* ctx, int64_t b, int64_t e, int tid) { (*static_cast<Fn*>(ctx))(b, e, tid); },
        const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // grain <= 0: about 4 chunks per thread.
  template <class F>
  void parallel_for_dynamic(int64_t n_tasks, int64_t grain, F&& fn) {
    using Fn = std::remove_reference_t<F>;
    run_dynamic(n_tasks, grain, [](void* ctx, int64_t b, int64_t e, int tid) { (*static_cast<Fn*>(ctx))(b, e, tid); },
                const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // Physical cores usable by this process (sched affinity ∩ distinct
  // (package, core) pairs from /sys topology); hardware_concurrency() when the
  // topology cannot be read; at least 1.
  static int default_thread_count();

  // A process-wide pool with default_thread_count() threads, created on first use.
  static ThreadPool& global();

 private:
  using Trampoline = void (*)(void* ctx, int64_t begin, int64_t end, int tid);
  void run(int64_t n_tasks, Trampoline fn, void* ctx);
  void run_dynamic(int64_t n_tasks, int64_t grain, Trampoline fn, void* ctx);
  void post(uint64_t generation);  // publish a job to the workers (wakes sleepers)
  void wait_until(const std::atomic<int64_t>& counter, int64_t target);
  void worker_main(int tid);
  void run_range(int tid);
  void claim_chunks(uint64_t seq, int tid);
  void record_error();

  int n_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex submit_mu_;  // one job at a time
  uint64_t job_seq_ = 0;  // sequence number of the last job (submitter only)

  // generation_ = (job sequence << 1) | (1 for a dynamic job); workers run a
  // job when it changes.
  std::atomic<uint64_t> generation_{0};

  // Static job (parallel_for): written by the submitter before posting; the
  // submitter waits for all workers, so it stays valid while any reads it.
  Trampoline job_fn_ = nullptr;
  void* job_ctx_ = nullptr;
  int64_t job_n_ = 0;
  std::atomic<int64_t> pending_{0};  // workers still running the static job

  // Dynamic job (parallel_for_dynamic): claim_ = seq (24 bits) | next chunk
  // (20 bits) | chunk count (20 bits); the rest is read only after a claim.
  std::atomic<uint64_t> claim_{0};
  Trampoline dyn_fn_ = nullptr;
  void* dyn_ctx_ = nullptr;
  int64_t dyn_n_ = 0, dyn_grain_ = 1;
  std::atomic<int64_t> dyn_done_{0};  // chunks finished

  std::exception_ptr job_error_;
  std::mutex error_mu_;

  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable wake_cv_;
  std::condition_variable done_cv_;
  int sleepers_ = 0;             // workers waiting on wake_cv_ (guarded by mu_)
  bool caller_waiting_ = false;  // submitter waiting on done_cv_ (guarded by mu_)
};

}  // namespace g4
