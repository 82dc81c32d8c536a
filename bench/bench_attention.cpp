// Attention over the KV cache: the fused kernels (kernels/attention.h) per KV
// element type, attention ISA and thread count, against the loop the forward
// pass used before them ("baseline": per (token, head) q·k with the kernel
// table's dot, a full softmax over the visible keys, then one axpy per key,
// over an fp32 cache; threaded over token × head).
//
//   bench_attention [--ctx 4096] [--threads 1,2] [--types f32,f16,bf16,q8_0]
//                   [--isa scalar,avx2,avx512] [--shapes e2b_full,...] [--reps N]
//                   [--layers L] [--prefill 64]
//
// Shapes (Gemma 4 layers; decode = one query at position ctx−1):
//   e2b_full   head dim 512,  8 q heads, 1 KV head, full causal (ctx keys)
//   31b_full   head dim 512, 32 q heads, 4 KV heads, full causal
//   e2b_slide  head dim 256,  8 q heads, 1 KV head, window 512 (ring)
//   31b_slide  head dim 256, 32 q heads, 16 KV heads, window 1024 (ring)
// Each measurement cycles over L independent caches (default 8 layers, like
// consecutive layers of a model) so K/V come from DRAM, not from a cache that
// stayed in L2/L3; it reports µs per layer per decode token (median of
// --reps tokens) and the K+V bytes read per second; with one thread also the
// calling thread's CPU time (immune to being descheduled on a shared machine,
// not to cache and memory contention). --prefill N also times one chunk of N
// queries at positions ctx−N … ctx−1 (µs per layer per chunk).
// The machine is shared and noisy: compare figures from the same run.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/attention.h"
#include "kernels/kernels.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace g4;

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t b = 0;
  while (b <= s.size()) {
    size_t e = s.find(',', b);
    if (e == std::string::npos) e = s.size();
    if (e > b) out.push_back(s.substr(b, e - b));
    b = e + 1;
  }
  return out;
}

struct Shape {
  const char* name;
  int head_dim, n_heads, n_kv_heads;
  int64_t window;  // 0: full
};
constexpr Shape kShapes[] = {
    {"e2b_full", 512, 8, 1, 0},
    {"31b_full", 512, 32, 4, 0},
    {"e2b_slide", 256, 8, 1, 512},
    {"31b_slide", 256, 32, 16, 1024},
};

// One layer's cache in the KvCache layout: slots of n_kv_heads × head_dim
// elements of `type`, slot = pos (full) or pos mod capacity (ring), tags.
struct Cache {
  GgmlType type;
  attn::KvView view;
  std::vector<uint8_t> k, v;
  std::vector<int64_t> tags;
  Cache(GgmlType t, const Shape& s, int64_t ctx, int64_t max_batch, std::mt19937& rng) : type(t) {
    const int64_t cap = s.window > 0 ? std::min<int64_t>(ctx, s.window + max_batch - 1) : ctx;
    const bool ring = s.window > 0 && cap < ctx;
    const size_t head_bytes = attn::kv_head_bytes(t, s.head_dim);
    const size_t row_bytes = head_bytes * static_cast<size_t>(s.n_kv_heads);
    k.resize(static_cast<size_t>(cap) * row_bytes);
    v.resize(k.size());
    tags.assign(static_cast<size_t>(cap), 0);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> row(static_cast<size_t>(s.n_kv_heads * s.head_dim));
    for (int64_t pos = 0; pos < ctx; ++pos) {
      const int64_t slot = ring ? pos % cap : pos;
      if (ring && pos < ctx - cap) continue;  // would be overwritten anyway
      for (auto& x : row) x = nd(rng);
      attn::store_row(t, row.data(), k.data() + static_cast<size_t>(slot) * row_bytes, static_cast<int64_t>(row.size()));
      for (auto& x : row) x = nd(rng);
      attn::store_row(t, row.data(), v.data() + static_cast<size_t>(slot) * row_bytes, static_cast<int64_t>(row.size()));
      tags[static_cast<size_t>(slot)] = pos + 1;
    }
    view.type = t;
    view.n_kv_heads = s.n_kv_heads;
    view.head_dim = s.head_dim;
    view.k = k.data();
    view.v = v.data();
    view.row_bytes = row_bytes;
    view.head_bytes = head_bytes;
    view.capacity = cap;
    view.ring = ring;
    view.tags = tags.data();
  }
};

// The attention loop of the forward pass before the fused kernels (fp32 cache).
void baseline(const attn::KvView& kv, const attn::Batch& b, std::vector<float>& scores, int64_t n_ctx, ThreadPool* pool,
              const kernels::KernelTable& k) {
  const int64_t D = kv.head_dim, nH = b.n_heads, group = nH / kv.n_kv_heads;
  const double work = static_cast<double>(b.n_tok * nH) * static_cast<double>(b.p0 + b.n_tok) * static_cast<double>(D) * 4.0;
  auto body = [&](int64_t tb, int64_t te, int tid) {
    float* sc = scores.data() + static_cast<size_t>(tid) * static_cast<size_t>(n_ctx);
    for (int64_t task = tb; task < te; ++task) {
      const int64_t t = task / nH, h = task % nH, kvh = h / group;
      const int64_t pos = b.p0 + t;
      const int64_t lo = attn::first_visible(b.window, pos);
      const float* qh = b.q + t * b.q_stride + h * D;
      for (int64_t j = lo; j <= pos; ++j) {
        if (!kv.holds(j)) fail("lost position ", j);
        sc[j - lo] = k.dot(qh, reinterpret_cast<const float*>(kv.k_head(j, static_cast<int>(kvh))), D);
      }
      k.softmax(sc, pos - lo + 1);
      float* out = b.out + t * b.out_stride + h * D;
      std::fill(out, out + D, 0.f);
      for (int64_t j = lo; j <= pos; ++j)
        k.axpy(sc[j - lo], reinterpret_cast<const float*>(kv.v_head(j, static_cast<int>(kvh))), out, D);
    }
  };
  if (work < 65536.0 || b.n_tok * nH < 2 || !pool) body(0, b.n_tok * nH, 0);
  else pool->parallel_for(b.n_tok * nH, body);
}

attn::Isa isa_by_name(const std::string& name) {
  for (int i = 0; i < attn::kIsaCount; ++i)
    if (name == attn::isa_name(static_cast<attn::Isa>(i))) return static_cast<attn::Isa>(i);
  fail("unknown attention ISA '", name, "' (scalar, avx2, avx512)");
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int64_t ctx = 4096, prefill = 0;
  int reps = 30, n_layers = 8;
  std::vector<std::string> threads = {"1", "2"}, types = {"f32", "f16", "bf16", "q8_0"}, isas, shapes;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--ctx") ctx = std::stoll(next());
    else if (a == "--threads") threads = split(next());
    else if (a == "--types") types = split(next());
    else if (a == "--isa") isas = split(next());
    else if (a == "--shapes") shapes = split(next());
    else if (a == "--reps") reps = std::stoi(next());
    else if (a == "--layers") n_layers = std::stoi(next());
    else if (a == "--prefill") prefill = std::stoll(next());
    else {
      std::fprintf(stderr, "usage: bench_attention [--ctx N] [--threads 1,2] [--types f32,f16,bf16,q8_0] "
                           "[--isa scalar,avx2,avx512] [--shapes e2b_full,...] [--reps N] [--layers L] [--prefill N]\n");
      return 2;
    }
  }
  if (isas.empty())
    for (int i = 1; i < attn::kIsaCount; ++i)
      if (attn::isa_available(static_cast<attn::Isa>(i))) isas.push_back(attn::isa_name(static_cast<attn::Isa>(i)));

  std::printf("attention at context %lld, %d layers cycled, median of %d decode tokens%s\n", static_cast<long long>(ctx),
              n_layers, reps, prefill ? (", prefill chunk of " + std::to_string(prefill)).c_str() : "");
  std::printf("%-10s %-9s %-6s %3s %12s %12s %10s %14s\n", "shape", "kernel", "kv", "thr", "us/layer/tok",
              "cpu us (1 t)", "GB/s K+V", prefill ? "us/layer/chunk" : "");
  std::mt19937 rng(1);
  for (const Shape& s : kShapes) {
    if (!shapes.empty() && std::find(shapes.begin(), shapes.end(), s.name) == shapes.end()) continue;
    const int64_t max_batch = std::max<int64_t>(1, prefill);
    const int64_t n_tok_max = max_batch;
    std::vector<float> q(static_cast<size_t>(n_tok_max * s.n_heads * s.head_dim)), out(q.size());
    {
      std::normal_distribution<float> nd(0.f, 1.f / std::sqrt(static_cast<float>(s.head_dim)));
      for (auto& x : q) x = nd(rng);
    }
    // (kernel name, kv type) runs; "baseline" only has f32.
    struct Run {
      std::string kernel, type;
    };
    std::vector<Run> runs;
    for (const std::string& t : types)
      if (t == "f32") runs.push_back({"baseline", t});
    for (const std::string& isa : isas)
      for (const std::string& t : types) runs.push_back({isa, t});

    for (const std::string& t : types) {
      const GgmlType type = attn::parse_kv_type(t);
      std::vector<Cache> caches;
      for (int l = 0; l < n_layers; ++l) caches.emplace_back(type, s, ctx, max_batch, rng);
      const int64_t visible = s.window > 0 ? std::min<int64_t>(s.window, ctx) : ctx;
      const double kv_bytes = 2.0 * static_cast<double>(visible) * static_cast<double>(caches[0].view.row_bytes);
      for (const Run& r : runs) {
        if (r.type != t) continue;
        for (const std::string& th : threads) {
          const int n_threads = std::stoi(th);
          ThreadPool pool(n_threads);
          attn::Workspace ws(n_threads, attn::max_task_rows(s.n_heads, s.n_kv_heads));
          std::vector<float> scores(static_cast<size_t>(n_threads) * static_cast<size_t>(ctx));
          const bool base = r.kernel == "baseline";
          const attn::Table* tab = base ? nullptr : &attn::table(isa_by_name(r.kernel));
          auto call = [&](const Cache& c, int64_t n_tok) {
            attn::Batch b;
            b.q = q.data();
            b.q_stride = int64_t(s.n_heads) * s.head_dim;
            b.out = out.data();
            b.out_stride = b.q_stride;
            b.n_heads = s.n_heads;
            b.n_tok = n_tok;
            b.p0 = ctx - n_tok;
            b.window = s.window;
            if (base) baseline(c.view, b, scores, ctx, &pool, kernels::active());
            else attn::attend(c.view, b, ws, &pool, *tab);
          };
          for (const Cache& c : caches) call(c, 1);  // warm-up (pages, pool)
          std::vector<double> per_token, cpu_per_token;
          for (int rep = 0; rep < reps; ++rep) {
            const auto t0 = Clock::now();
            const double c0 = thread_cpu_seconds();
            for (const Cache& c : caches) call(c, 1);
            cpu_per_token.push_back((thread_cpu_seconds() - c0) / n_layers);
            per_token.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / n_layers);
          }
          const double us = median(per_token) * 1e6;
          char cpu[32] = "";
          if (n_threads == 1) std::snprintf(cpu, sizeof cpu, "%.1f", median(cpu_per_token) * 1e6);
          std::string chunk;
          if (prefill > 0) {
            std::vector<double> per_chunk;
            for (int rep = 0; rep < std::max(3, reps / 10); ++rep) {
              const auto t0 = Clock::now();
              for (const Cache& c : caches) call(c, prefill);
              per_chunk.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / n_layers);
            }
            char buf[32];
            std::snprintf(buf, sizeof buf, "%.0f", median(per_chunk) * 1e6);
            chunk = buf;
          }
          std::printf("%-10s %-9s %-6s %3d %12.1f %12s %10.1f %14s\n", s.name, r.kernel.c_str(), t.c_str(), n_threads,
                      us, cpu, kv_bytes / (us * 1e-6) / 1e9, chunk.c_str());
          std::fflush(stdout);
        }
      }
    }
  }
  return 0;
}
