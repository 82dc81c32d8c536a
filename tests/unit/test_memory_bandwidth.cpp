// measure_memory_bandwidth(): shape of the result and argument checks (the
// numbers themselves depend on the machine and its load, so only their
// consistency is asserted), and the median helper.
#include <gtest/gtest.h>

#include <cmath>

#include "core/thread_pool.h"
#include "core/memory_bandwidth.h"
#include "test_util.h"

namespace g4 {
namespace {

TEST(MemoryBandwidth, Median) {
  EXPECT_EQ(median({3.0}), 3.0);
  EXPECT_EQ(median({5.0, 1.0, 3.0}), 3.0);
  EXPECT_EQ(median({4.0, 1.0, 3.0, 2.0}), 2.5);
  testutil::expect_error([] { median({}); }, {"empty"});
}

TEST(MemoryBandwidth, RepetitionsAreFinitePositiveAndSummarised) {
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    // 8 MiB + 8 bytes: parts of unequal length, not a multiple of the unroll.
    const MemoryBandwidth r = measure_memory_bandwidth(pool, (uint64_t{8} << 20) + 8, 3);
    EXPECT_EQ(r.threads, threads);
    EXPECT_EQ(r.buffer_bytes, (uint64_t{8} << 20) + 8);
    ASSERT_EQ(r.gbps.size(), 3u);
    for (double g : r.gbps) EXPECT_TRUE(std::isfinite(g) && g > 0) << g;
    EXPECT_LE(r.min_gbps, r.median_gbps);
    EXPECT_LE(r.median_gbps, r.max_gbps);
    EXPECT_EQ(r.median_gbps, median(r.gbps));
  }
}

TEST(MemoryBandwidth, RejectsTinyBufferAndNoRepetitions) {
  ThreadPool pool(1);
  testutil::expect_error([&] { measure_memory_bandwidth(pool, 1000, 3); }, {"at least 1 MiB"});
  testutil::expect_error([&] { measure_memory_bandwidth(pool, uint64_t{1} << 20, 0); }, {"at least one repetition"});
}

}  // namespace
}  // namespace g4
