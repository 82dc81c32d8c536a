// Persistent worker pool for data-parallel loops.
//
// Threads are created once. parallel_for(n_tasks, fn) splits [0, n_tasks) into
// one contiguous range per thread (thread i gets [n·i/T, n·(i+1)/T)) and calls
// fn(task_begin, task_end, thread_id) for each non-empty range; the calling
// thread participates as thread 0. The split depends only on n_tasks and the
// pool size, so a computation whose per-task result does not depend on the
// range boundaries gives identical results for any thread count.
//
// No allocation per call: the callable is passed by reference through a
// function pointer trampoline. A parallel_for issued from inside a task (or
// while another thread holds the pool) runs serially on the caller. The first
// exception thrown by a task is rethrown to the caller after all ranges end.
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

  // Physical cores usable by this process (sched affinity ∩ distinct
  // (package, core) pairs from /sys topology); hardware_concurrency() when the
  // topology cannot be read; at least 1.
  static int default_thread_count();

  // A process-wide pool with default_thread_count() threads, created on first use.
  static ThreadPool& global();

 private:
  using Trampoline = void (*)(void* ctx, int64_t begin, int64_t end, int tid);
  void run(int64_t n_tasks, Trampoline fn, void* ctx);
  void worker_main(int tid);
  void run_range(int tid);

  int n_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex submit_mu_;  // one parallel_for at a time

  // Current job (written by the submitter before bumping generation_).
  Trampoline job_fn_ = nullptr;
  void* job_ctx_ = nullptr;
  int64_t job_n_ = 0;
  std::exception_ptr job_error_;
  std::mutex error_mu_;

  // Workers spin briefly on generation_, then sleep on wake_cv_; the last
  // worker to finish wakes the submitter through done_cv_ (all under mu_).
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable wake_cv_;
  std::condition_variable done_cv_;
  int sleepers_ = 0;      // workers waiting on wake_cv_ (guarded by mu_)
  bool caller_waiting_ = false;  // submitter waiting on done_cv_ (guarded by mu_)
};

}  // namespace g4
