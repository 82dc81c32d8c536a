// Memory behaviour of the engine:
//  * KvCache: storage is reserved, not committed — resident memory grows with
//    the positions written (full layers), stays capped by the window (sliding
//    rings), is zero for KV-shared layers, and its byte accounting agrees with
//    ModelConfig::kv_cache_bytes for every element type (f32, f16, bf16, q8_0).
//  * MemoryFull.* (ctest label "full", ~1–2 min, several GB of disk in the
//    build folder, deleted at the end): a full-shape E2B GGUF is generated,
//    opened and run for a few tokens; the process's anonymous memory may grow
//    by at most KV cache + scratch + 5% of the file (weights are mapped, not
//    copied), and the per-layer-embedding table is only touched by row gathers
//    (pages present in this process's page table, via /proc/self/pagemap).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/reserved_memory.h"
#include "kernels/attention.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/kv_cache.h"
#include "tools/test_model.h"

namespace fs = std::filesystem;
using namespace g4;

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define G4_MEM_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define G4_MEM_SANITIZED 1
#endif

namespace {

constexpr uint64_t kMiB = 1024 * 1024;

size_t page_size() { return static_cast<size_t>(::sysconf(_SC_PAGESIZE)); }

// A field of /proc/self/smaps_rollup in bytes ("Anonymous", "Rss", ...).
uint64_t smaps_rollup(const std::string& field) {
  std::ifstream f("/proc/self/smaps_rollup");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field + ":", 0) != 0) continue;
    std::istringstream is(line.substr(field.size() + 1));
    uint64_t kb = 0;
    is >> kb;
    return kb * 1024;
  }
  return 0;
}
uint64_t anon_bytes() { return smaps_rollup("Anonymous"); }

// Which pages of [p, p+n) are mapped in this process's page table
// (/proc/self/pagemap bit 63), one flag per page from the page holding p.
// Unlike mincore, which reports the page cache, this shows what this process
// faulted in — plus what the kernel maps around a fault: fault-around (64 KiB
// by default) or, for a large page-cache folio, a whole 2 MiB PMD.
std::vector<uint8_t> pages_present_map(const void* p, size_t n) {
  const size_t ps = page_size();
  const uint64_t first = reinterpret_cast<uintptr_t>(p) / ps;
  const uint64_t last = (reinterpret_cast<uintptr_t>(p) + n + ps - 1) / ps;
  const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open /proc/self/pagemap");
  std::vector<uint64_t> e(1 << 16);
  std::vector<uint8_t> out(static_cast<size_t>(last - first), 0);
  for (uint64_t v = first; v < last;) {
    const size_t k = static_cast<size_t>(std::min<uint64_t>(e.size(), last - v));
    const ssize_t got = ::pread(fd, e.data(), k * 8, static_cast<off_t>(v * 8));
    if (got != static_cast<ssize_t>(k * 8)) {
      ::close(fd);
      throw std::runtime_error("short read from /proc/self/pagemap");
    }
    for (size_t i = 0; i < k; ++i) out[static_cast<size_t>(v - first + i)] = (e[i] >> 63) & 1;
    v += k;
  }
  ::close(fd);
  return out;
}
uint64_t pages_present(const void* p, size_t n) {
  uint64_t c = 0;
  for (uint8_t f : pages_present_map(p, n)) c += f;
  return c;
}

// Granularity of anonymous memory: 2 MiB where transparent huge pages are
// always on (a first write may commit a whole huge page), else one page.
uint64_t anon_granule() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string s;
  std::getline(f, s);
  return s.find("[always]") != std::string::npos ? 2 * kMiB : page_size();
}

ModelConfig full_e2b() { return test_model_config(TestArch::E2B, TestScale::Full, 262144); }

constexpr GgmlType kKvTypes[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0};

// The value stored (in every lane) at position `pos`, and what reading it
// back from a `type` cache gives.
float stored_value(int64_t pos) { return static_cast<float>(pos % 64) + 0.5f; }
float read_back(GgmlType type, float x) {
  std::vector<float> row(32, x), back(32);
  std::vector<uint8_t> bytes(attn::kv_head_bytes(type, 32));
  attn::store_row(type, row.data(), bytes.data(), 32);
  attn::load_row(type, bytes.data(), back.data(), 32);
  return back[0];
}

// Fills position `pos` of a layer the way the forward pass does.
void store(KvCache::Layer& l, int64_t pos) {
  thread_local std::vector<float> row;
  row.assign(static_cast<size_t>(l.row()), stored_value(pos));
  l.store(pos, row.data(), row.data());
}

}  // namespace

// ---------------------------------------------------------------------------
// KV cache accounting and lazy commit (fast)

TEST(KvCacheMemory, AccountingMatchesConfigForEveryVariant) {
  for (GgmlType type : kKvTypes) {
    for (TestArch a : {TestArch::E2B, TestArch::E4B, TestArch::A26B, TestArch::D31B}) {
      for (TestScale s : {TestScale::Tiny, TestScale::Full}) {
        const ModelConfig c = test_model_config(a, s, s == TestScale::Full ? 262144 : 1024);
        const int64_t max_ctx = c.max_context;
        for (int64_t n_ctx : {int64_t{1}, int64_t{100}, int64_t{c.sliding_window}, int64_t{4096}, max_ctx}) {
          SCOPED_TRACE(attn::kv_type_name(type) + " " + test_arch_name(a) + " " + test_scale_name(s) + " ctx " +
                       std::to_string(n_ctx));
          // Decode-only cache (max_batch 1): exactly the config's estimate for the element size.
          const KvCache one(c, n_ctx, 1, type);
          EXPECT_EQ(one.type(), type);
          EXPECT_EQ(one.elem_bytes(), attn::kv_elem_bytes(type));
          EXPECT_EQ(one.kv_bytes(), c.kv_cache_bytes(n_ctx, one.elem_bytes()));
          uint64_t tag_bytes = 0, shared_bytes = 0;
          for (int l = 0; l < one.n_layers(); ++l) {
            const KvCache::Layer& L = one.layer(l);
            if (!L.present) {
              shared_bytes += L.mem.size();
              continue;
            }
            tag_bytes += KvCache::Layer::tag_region_bytes(L.capacity);
            EXPECT_GE(KvCache::Layer::tag_region_bytes(L.capacity), uint64_t(L.capacity) * KvCache::kTagBytes);
            EXPECT_LT(KvCache::Layer::tag_region_bytes(L.capacity), uint64_t(L.capacity) * KvCache::kTagBytes + 64);
            // One slot: n_kv_heads rows of head_dim elements of the type (q8_0: 34 bytes per 32).
            const double row = static_cast<double>(L.n_kv_heads) * L.head_dim * attn::kv_elem_bytes(type);
            EXPECT_EQ(static_cast<double>(L.row_bytes), row);
            EXPECT_EQ(reinterpret_cast<uintptr_t>(L.tags) % alignof(int64_t), 0u) << "tags aligned";
            EXPECT_EQ(reinterpret_cast<uintptr_t>(L.k) % 64, 0u) << "K starts on a cache line";
          }
          EXPECT_EQ(shared_bytes, 0u) << "KV-shared layers store nothing";
          EXPECT_EQ(one.reserved_bytes(), one.kv_bytes() + tag_bytes);
          EXPECT_EQ(one.bytes_for_tokens(n_ctx), one.reserved_bytes());
          // Chunked prefill: each sliding ring holds max_batch − 1 extra slots.
          const int64_t B = 64;
          const KvCache chunked(c, n_ctx, B, type);
          uint64_t extra = 0;
          for (const LayerConfig& lc : c.layers)
            if (lc.has_kv && lc.type == LayerType::Sliding) {
              const int64_t cap = std::min<int64_t>(n_ctx, c.sliding_window + B - 1);
              extra += 2ull * static_cast<uint64_t>(cap - std::min<int64_t>(n_ctx, c.sliding_window)) *
                       attn::kv_head_bytes(type, lc.head_dim) * static_cast<uint64_t>(lc.n_kv_heads);
            }
          EXPECT_EQ(chunked.kv_bytes(), c.kv_cache_bytes(n_ctx, chunked.elem_bytes()) + extra);
        }
      }
    }
  }
  // Spot values (spec §1.1): E2B keeps KV for 15 of 35 layers (12 sliding ×
  // 512 positions × 256 lanes, 3 full × 512 lanes), K and V.
  const ModelConfig c = full_e2b();
  const uint64_t elems = 2ull * (12ull * 512 * 256 + 3ull * 131072 * 512);
  EXPECT_EQ(c.kv_cache_bytes(131072, 4), elems * 4);
  EXPECT_EQ(KvCache(c, 131072, 1, GgmlType::F32).kv_bytes(), elems * 4);
  EXPECT_EQ(KvCache(c, 131072, 1).kv_bytes(), elems * 2) << "f16 is the default";
  EXPECT_EQ(KvCache(c, 131072, 1, GgmlType::BF16).kv_bytes(), elems * 2);
  EXPECT_EQ(KvCache(c, 131072, 1, GgmlType::Q8_0).kv_bytes(), elems / 32 * 34);
  // q8_0 blocks run along head_dim: a head dim that is not a multiple of 32 is refused.
  ModelConfig odd = test_model_config(TestArch::E2B, TestScale::Tiny, 1024);
  odd.head_dim = 24;
  odd.derive();
  EXPECT_THROW(KvCache(odd, 64, 1, GgmlType::Q8_0), Error);
  EXPECT_NO_THROW(KvCache(odd, 64, 1, GgmlType::F16));
  EXPECT_THROW(KvCache(c, 64, 1, GgmlType::Q4_0), Error);
}

TEST(KvCacheMemory, ReservedAtMaxContextButCommittedOnlyWhenWritten) {
  const ModelConfig c = full_e2b();
  const uint64_t granule = anon_granule();
  for (GgmlType type : kKvTypes) {
    SCOPED_TRACE(attn::kv_type_name(type));
    const uint64_t a0 = anon_bytes();
    KvCache cache(c, c.max_context, 1, type);  // 131072 positions
    const uint64_t a1 = anon_bytes();
    std::printf("  E2B %s KV cache at ctx %d: reserved %.1f MiB (K+V %.1f MiB), anonymous growth at open %.2f MiB\n",
                attn::kv_type_name(type).c_str(), c.max_context, cache.reserved_bytes() / double(kMiB),
                cache.kv_bytes() / double(kMiB), (a1 > a0 ? a1 - a0 : 0) / double(kMiB));
    EXPECT_GT(cache.reserved_bytes(), 400 * kMiB);  // q8_0: 414 MiB
    EXPECT_EQ(cache.resident_bytes(), 0u);
    EXPECT_LT(a1 > a0 ? a1 - a0 : 0, 4 * kMiB) << "reserving the cache must not commit memory";

    // Full layers grow with the positions written; sliding rings and shared layers don't.
    const int64_t n = 3000;
    for (int64_t pos = 0; pos < n; ++pos)
      for (int l = 0; l < cache.n_layers(); ++l)
        if (cache.layer(l).present) store(cache.layer(l), pos);
    cache.set_n_past(n);
    const uint64_t need = cache.bytes_for_tokens(n);
    int present = 0;
    for (int l = 0; l < cache.n_layers(); ++l) present += cache.layer(l).present;
    const uint64_t resident = cache.resident_bytes();
    std::printf("  after %lld positions: resident %.2f MiB, bytes_for_tokens %.2f MiB\n", static_cast<long long>(n),
                resident / double(kMiB), need / double(kMiB));
    EXPECT_GE(resident, need);
    EXPECT_LE(resident, need + static_cast<uint64_t>(present) * 3 * granule);
    std::vector<float> k, v;
    for (int l = 0; l < cache.n_layers(); ++l) {
      const KvCache::Layer& L = cache.layer(l);
      if (!L.present) {
        EXPECT_EQ(L.mem.size(), 0u);
        continue;
      }
      const int64_t slots = std::min<int64_t>(n, L.capacity);
      EXPECT_LE(L.mem.resident_bytes(), L.kv_bytes(slots) + KvCache::Layer::tag_region_bytes(slots) + 3 * granule)
          << l;
      if (L.ring) {
        EXPECT_EQ(L.capacity, c.sliding_window) << l;
      }
    }
    // The ring holds exactly the last window positions; full layers everything.
    for (int l = 0; l < cache.n_layers(); ++l) {
      const KvCache::Layer& L = cache.layer(l);
      if (!L.present) continue;
      EXPECT_EQ(L.holds(n - 1), true);
      EXPECT_EQ(L.holds(0), !L.ring);
      EXPECT_EQ(L.holds(n - c.sliding_window), true);
      EXPECT_EQ(L.holds(n - c.sliding_window - 1), !L.ring);
      EXPECT_EQ(L.holds(n), false);
      k.resize(static_cast<size_t>(L.row()));
      v.resize(static_cast<size_t>(L.row()));
      L.load(n - 1, k.data(), v.data());
      EXPECT_EQ(k[0], read_back(type, stored_value(n - 1)));
      EXPECT_EQ(v.back(), read_back(type, stored_value(n - 1)));
      EXPECT_NE(k[0], read_back(type, stored_value(n - 2)));
    }
    // clear() gives the pages back and empties every slot.
    cache.clear();
    EXPECT_EQ(cache.resident_bytes(), 0u);
    for (int l = 0; l < cache.n_layers(); ++l)
      if (cache.layer(l).present) {
        EXPECT_FALSE(cache.layer(l).holds(n - 1));
      }
  }
}

TEST(KvCacheMemory, ReservedMemoryBasics) {
  ReservedMemory empty;
  EXPECT_EQ(empty.data(), nullptr);
  EXPECT_EQ(empty.resident_bytes(), 0u);
  empty.discard();
  ReservedMemory m(size_t{1} << 30);  // 1 GiB of address space
  ASSERT_NE(m.data(), nullptr);
  EXPECT_EQ(m.resident_bytes(), 0u);
  auto* p = static_cast<uint8_t*>(m.data());
  p[0] = 1;
  p[size_t{512} << 20] = 2;
  EXPECT_GE(m.resident_bytes(), 2 * page_size());
  EXPECT_LE(m.resident_bytes(), 2 * anon_granule());
  EXPECT_EQ(p[size_t{256} << 20], 0);  // untouched memory reads as zero (mincore then counts the shared zero page)
  ReservedMemory moved = std::move(m);
  EXPECT_EQ(m.data(), nullptr);
  EXPECT_EQ(moved.data(), p);  // the address survives a move
  EXPECT_EQ(p[size_t{512} << 20], 2);
  moved.discard();
  EXPECT_EQ(moved.resident_bytes(), 0u);
  EXPECT_EQ(p[0], 0);
}

// ---------------------------------------------------------------------------
// Full-shape E2B: weights mapped, PLE read by row gathers only (label "full")

namespace {

// Generates the model in a child process, so none of the generator's buffers
// (or the heap they leave behind) lands in this process's measurements.
void generate_in_child(const TestModelOptions& o) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << "fork failed";
  if (pid == 0) {
    int rc = 0;
    try {
      write_test_model(o);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "make-test-model failed: %s\n", e.what());
      rc = 1;
    }
    std::fflush(stderr);
    ::_exit(rc);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "generator child failed (status " << status << ")";
}

// The quantized type this test wants (Q4_0, what a released small GGUF
// uses), when the generator can write it; otherwise F16.
GgmlType full_test_type() {
  TestModelOptions probe;
  probe.arch = TestArch::E2B;
  probe.scale = TestScale::Tiny;
  probe.type = GgmlType::Q4_0;
  probe.out = (fs::path(GEMMA4_BINARY_DIR) / ("memory_probe_" + std::to_string(::getpid()) + ".gguf")).string();
  try {
    write_test_model(probe);
    fs::remove(probe.out);
    return GgmlType::Q4_0;
  } catch (const Error&) {
    std::error_code ec;
    fs::remove(probe.out, ec);
    return GgmlType::F16;
  }
}

// Runs fn() in a forked child; true when it returned true. The child starts
// from this process's heap state and its allocations never come back here.
template <class F>
bool run_in_child(F&& fn) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) return false;
  if (pid == 0) {
    int rc = 1;
    try {
      rc = fn() ? 0 : 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child failed: %s\n", e.what());
    }
    std::fflush(stdout);
    std::fflush(stderr);
    ::_exit(rc);
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

struct RemoveOnExit {
  std::string path;
  ~RemoveOnExit() {
    std::error_code ec;
    fs::remove(path, ec);
  }
};

}  // namespace

TEST(MemoryFull, E2bWeightsMappedAndPleGatheredByRows) {
#if defined(G4_MEM_SANITIZED)
  GTEST_SKIP() << "memory accounting is meaningless under sanitizers (shadow memory)";
#endif
  const GgmlType type = full_test_type();
  const uint64_t need_disk = type == GgmlType::Q4_0 ? 3ull << 30 : 10ull << 30;
  struct statvfs sv {};
  if (::statvfs(GEMMA4_BINARY_DIR, &sv) == 0 && uint64_t(sv.f_bavail) * sv.f_frsize < need_disk + (1ull << 30))
    GTEST_SKIP() << "needs " << (need_disk >> 30) << " GiB free in " << GEMMA4_BINARY_DIR;

  TestModelOptions o;
  o.arch = TestArch::E2B;
  o.scale = TestScale::Full;
  o.type = type;
  o.out = (fs::path(GEMMA4_BINARY_DIR) / ("memory_full_e2b_" + std::to_string(::getpid()) + ".gguf")).string();
  RemoveOnExit cleanup{o.out};
  const auto t0 = std::chrono::steady_clock::now();
  generate_in_child(o);
  if (HasFatalFailure()) return;
  const auto t1 = std::chrono::steady_clock::now();
  const uint64_t file = fs::file_size(o.out);
  std::printf("  generated %s E2B full: %.1f MiB in %.1f s\n", ggml_type_name(type).c_str(), file / double(kMiB),
              std::chrono::duration<double>(t1 - t0).count());

  const uint64_t granule = anon_granule();
  const uint64_t five_percent = file / 20;

  // (0) and (1) run in child processes, so that memory they free cannot be
  // reused (and hidden) by the measurement of (2) in this process.
  // (0) What parsing the file costs on its own (metadata, vocabulary arrays, tensor index).
  EXPECT_TRUE(run_in_child([&] {
    const uint64_t a0 = anon_bytes();
    const Checkpoint ck = Checkpoint::open(o.out);
    const uint64_t a1 = anon_bytes();
    std::printf("  Checkpoint::open alone (metadata incl. the 262144-token vocabulary, tensor index): anonymous "
                "growth %.1f MiB\n",
                (a1 > a0 ? a1 - a0 : 0) / double(kMiB));
    return true;
  }));
  // (1) At the model's maximum context (131072) opening commits no KV memory.
  EXPECT_TRUE(run_in_child([&] {
    const uint64_t a0 = anon_bytes();
    ModelParams p;
    p.n_ctx = 131072;
    auto m = Model::open(o.out, p);
    const uint64_t a1 = anon_bytes();
    const uint64_t growth = a1 > a0 ? a1 - a0 : 0;
    const uint64_t bound = m->scratch_bytes() + m->weights().copied_bytes() + five_percent;
    std::printf("  open at ctx %lld: KV reserved %.1f MiB, resident %.2f MiB; scratch %.1f MiB; anonymous growth "
                "%.1f MiB (bound: scratch + copies + 5%% file = %.1f MiB)\n",
                static_cast<long long>(m->n_ctx()), m->cache().reserved_bytes() / double(kMiB),
                m->cache().resident_bytes() / double(kMiB), m->scratch_bytes() / double(kMiB),
                growth / double(kMiB), bound / double(kMiB));
    const bool ok = m->n_ctx() == 131072 && m->cache().resident_bytes() == 0 && growth <= bound;
    if (!ok) std::printf("  FAILED: opening at the maximum context must not commit the KV cache\n");
    return ok;
  })) << "open at ctx 131072 (see the output above)";

  // (2) ctx 4096, a few tokens: anonymous growth ≤ KV + scratch + 5% of the file.
  const uint64_t a0 = anon_bytes();
  const auto t2 = std::chrono::steady_clock::now();
  ModelParams p;
  p.n_ctx = 4096;
  auto m = Model::open(o.out, p);
  const auto t3 = std::chrono::steady_clock::now();
  const uint64_t a_open = anon_bytes();

  const TensorView* ple = m->checkpoint().tensor("per_layer_token_embd.weight");
  ASSERT_NE(ple, nullptr);
  const uint64_t ple_pages = (ple->nbytes + page_size() - 1) / page_size();
  const std::vector<uint8_t> ple_map_open = pages_present_map(ple->data, ple->nbytes);
  uint64_t ple_present_open = 0;
  for (uint8_t f : ple_map_open) ple_present_open += f;

  const std::vector<int32_t> tokens = {2, 818, 50000, 123457, 262143, 818};  // 5 distinct rows
  const int32_t decode_token = 1000;
  std::set<int32_t> distinct(tokens.begin(), tokens.end());
  distinct.insert(decode_token);
  auto logits = m->forward(tokens);
  const auto t4 = std::chrono::steady_clock::now();
  ASSERT_EQ(logits.size(), 262144u);
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));
  auto one = m->forward(std::vector<int32_t>{decode_token});  // one decode step
  const auto t5 = std::chrono::steady_clock::now();
  ASSERT_EQ(one.size(), 262144u);
  const uint64_t a1 = anon_bytes();
  const uint64_t growth = a1 > a0 ? a1 - a0 : 0;
  const uint64_t kv_cfg = m->config().kv_cache_bytes(m->n_ctx(), m->cache().elem_bytes());
  const uint64_t kv_reserved = m->cache().reserved_bytes();
  const uint64_t scratch = m->scratch_bytes() + m->weights().copied_bytes();
  const uint64_t bound = kv_reserved + scratch + five_percent;

  // PLE: only the gathered rows may be mapped, up to the kernel's mapping
  // granularity around each (a 2 MiB PMD when the page cache holds large
  // folios, FilePmdMapped > 0; else the 64 KiB fault-around window), plus the
  // table's first and last such block (faults on the neighbouring tensors).
  const uint64_t pmd_mapped = smaps_rollup("FilePmdMapped");
  const uint64_t G = pmd_mapped > 0 ? 2 * kMiB : 65536;
  const uint64_t row_bytes = ple->nbytes / static_cast<uint64_t>(ple->ne[1]);
  const uintptr_t base = reinterpret_cast<uintptr_t>(ple->data);
  const uintptr_t first_page = base / page_size() * page_size();
  std::vector<uint8_t> allowed((ple->nbytes + (base - first_page) + page_size() - 1) / page_size(), 0);
  auto allow = [&](uintptr_t b, uintptr_t e) {  // virtual byte range, widened to G blocks
    b = std::max<uintptr_t>(b / G * G, first_page);
    e = (e + G - 1) / G * G;
    for (uintptr_t a = b; a < e; a += page_size())
      if ((a - first_page) / page_size() < allowed.size()) allowed[(a - first_page) / page_size()] = 1;
  };
  allow(base, base + 1);
  allow(base + ple->nbytes - 1, base + ple->nbytes);
  const std::vector<uint8_t> at_open = ple_map_open;
  for (int32_t id : distinct) allow(base + id * row_bytes, base + (id + 1) * row_bytes);
  allow(base, base + row_bytes);  // row 0: ids outside the PLE vocabulary (none here)
  const std::vector<uint8_t> now = pages_present_map(ple->data, ple->nbytes);
  uint64_t ple_present = 0, outside = 0, allowed_pages = 0, outside_open = 0;
  for (size_t i = 0; i < now.size(); ++i) {
    ple_present += now[i];
    allowed_pages += allowed[i];
    outside += now[i] && !allowed[i];
  }
  {
    std::vector<uint8_t> edges(allowed.size(), 0);
    std::swap(edges, allowed);
    allow(base, base + 1);
    allow(base + ple->nbytes - 1, base + ple->nbytes);
    for (size_t i = 0; i < at_open.size(); ++i) outside_open += at_open[i] && !allowed[i];
    std::swap(edges, allowed);
  }
  const uint64_t ple_bound = allowed_pages;
  const TensorView* embd = m->checkpoint().tensor("token_embd.weight");
  const uint64_t embd_present = pages_present(embd->data, embd->nbytes);
  const uint64_t embd_pages = (embd->nbytes + page_size() - 1) / page_size();

  std::printf("  file %.1f MiB (%s); 5%% = %.1f MiB\n", file / double(kMiB), ggml_type_name(type).c_str(),
              five_percent / double(kMiB));
  std::printf("  load %.2f s, %zu-token prefill %.2f s, 1-token decode %.2f s\n",
              std::chrono::duration<double>(t3 - t2).count(), tokens.size(),
              std::chrono::duration<double>(t4 - t3).count(), std::chrono::duration<double>(t5 - t4).count());
  std::printf("  anonymous growth: after open %.1f MiB, after %lld tokens %.1f MiB (bound %.1f MiB = KV reserved "
              "%.1f + scratch/copies %.1f + 5%% file %.1f)\n",
              (a_open > a0 ? a_open - a0 : 0) / double(kMiB), static_cast<long long>(m->n_past()),
              growth / double(kMiB), bound / double(kMiB), kv_reserved / double(kMiB), scratch / double(kMiB),
              five_percent / double(kMiB));
  std::printf("  KV cache at ctx %lld: config %.2f MiB (%s), reserved %.2f MiB, resident %.3f MiB for %lld tokens "
              "(bytes_for_tokens %.3f MiB)\n",
              static_cast<long long>(m->n_ctx()), kv_cfg / double(kMiB),
              attn::kv_type_name(m->cache().type()).c_str(), kv_reserved / double(kMiB),
              m->cache().resident_bytes() / double(kMiB), static_cast<long long>(m->n_past()),
              m->cache().bytes_for_tokens(m->n_past()) / double(kMiB));
  std::printf("  per_layer_token_embd (%s, %.1f MiB, rows of %llu bytes): pages present %llu at open, %llu after "
              "gathering %zu distinct rows, of %llu pages (bound %llu: %llu KiB blocks around the rows and the "
              "table's ends; FilePmdMapped %.1f MiB); present outside those blocks: %llu\n",
              ggml_type_name(ple->type).c_str(), ple->nbytes / double(kMiB),
              static_cast<unsigned long long>(row_bytes), static_cast<unsigned long long>(ple_present_open),
              static_cast<unsigned long long>(ple_present), distinct.size(), static_cast<unsigned long long>(ple_pages),
              static_cast<unsigned long long>(ple_bound), static_cast<unsigned long long>(G / 1024),
              pmd_mapped / double(kMiB), static_cast<unsigned long long>(outside));
  std::printf("  token_embd (tied head, %s): pages present %llu of %llu (read whole by the output head)\n",
              ggml_type_name(embd->type).c_str(), static_cast<unsigned long long>(embd_present),
              static_cast<unsigned long long>(embd_pages));

  EXPECT_LE(growth, bound) << "weights must stay mapped, not copied";
  EXPECT_LE(m->cache().resident_bytes(), m->cache().bytes_for_tokens(m->n_past()) + 45 * granule);
  EXPECT_EQ(outside_open, 0u) << "opening the model must not touch the PLE table (beyond its end blocks)";
  EXPECT_EQ(outside, 0u) << "the PLE table must be read by row gathers only";
  EXPECT_LE(ple_present, ple_bound);
  EXPECT_LT(ple_present * 50, ple_pages) << "far less than the table is mapped";
  EXPECT_GE(ple_present, distinct.size()) << "the gathered rows were read";
}

