// This machine's memory read bandwidth, the denominator of the decode roofline
// (`gemma4 bench --membw`).
//
// A buffer much larger than the last-level cache is split into one contiguous
// part per thread of a persistent ThreadPool; every thread first writes its
// part (so the pages are faulted in, on the thread's own NUMA node), then each
// repetition has every thread sum its part as 64-bit words with independent
// accumulators. A repetition's bandwidth is buffer bytes ÷ wall time of the
// parallel pass (the slowest thread); one untimed pass warms up first.
#pragma once
#include <cstdint>
#include <vector>

namespace g4 {

class ThreadPool;

struct MemoryBandwidth {
  std::vector<double> gbps;  // one per timed repetition, in run order (GB/s = 1e9 bytes/s)
  double median_gbps = 0;
  double min_gbps = 0;
  double max_gbps = 0;
  uint64_t buffer_bytes = 0;
  int threads = 0;
};

// Throws g4::Error when bytes < 1 MiB or reps < 1, and when the buffer cannot be allocated.
MemoryBandwidth measure_memory_bandwidth(ThreadPool& pool, uint64_t bytes, int reps);

// Median of a non-empty sample (mean of the two middle values for even sizes).
double median(std::vector<double> v);

}  // namespace g4
