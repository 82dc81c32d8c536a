// Matmul kernels on Gemma 4 E2B shapes: µs per call per ISA, thread count and
// token count, plus a whole-model sweep that projects the matmul share of
// decode and prefill tokens/s.
//
//   bench_matmul [--isa avx2,avx512] [--threads 1,2] [--types q4_0,q8_0,...]
//                [--shapes attn_q,ffn_down,...] [--reps N] [--no-shapes]
//                [--no-sweep] [--sweep-types q4_0] [--head] [--decode-only] [--pool]
//
// Shapes (n_out × n_in, from src/model/config.cpp's E2B row: hidden 1536,
// 8 heads of 256 (512 on full layers), 1 KV head, FFN 6144 (12288 on the 20
// KV-shared layers), PLE 256 per layer, vocab 262144):
//   attn_q 2048×1536, attn_kv 256×1536, attn_o 1536×2048, ffn_up 6144×1536,
//   ffn_up2 12288×1536, ffn_down 1536×6144, ffn_down2 1536×12288, ple_proj
//   1536×256.
// Each shape is timed at n_tok = 1 (decode) and 64 (one prefill chunk) on
// random weights that stay in cache: best of N calls after a warm-up. The
// n_tok = 1 figures are therefore compute-side (in-cache) costs; real decode
// streams every weight from DRAM once per token, which the sweep measures.
//
// Sweep: every matmul of one E2B token in forward-pass order, each layer with
// its own weight copy (1.06 GB of Q4_0 per token; plus the tied 262144×1536
// Q8_0 output head when --head), so decode reads DRAM as the real model does.
// Reports ms per token (n_tok = 1) and ms per 64-token chunk, and the implied
// tokens/s of the matmuls alone (attention, norms, embeddings not included),
// next to the memory read bandwidth measured just before (decode as a share
// of it) and, with one thread, the CPU time (robust to preemption).
//
// --pool: the round trip of parallel_for / parallel_for_dynamic with 1 µs
// tasks, back to back and after a gap.
//
// Timings on a shared machine are noisy: every figure is the best of N.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/memory_bandwidth.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"

namespace {

using Clock = std::chrono::steady_clock;
using g4::GgmlType;
using namespace g4::kernels;

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

// Random but well-formed weight bytes: quant blocks with random quants and
// fp16 scales of sane magnitude; float types from normal values.
std::vector<uint8_t> random_weights(GgmlType type, int64_t n_in, int64_t n_out, uint32_t seed) {
  const size_t rb = g4::ggml_row_bytes(type, n_in);
  std::vector<uint8_t> bytes(rb * static_cast<size_t>(n_out));
  std::mt19937 rng(seed);
  if (type == GgmlType::Q8_0 || type == GgmlType::Q4_0) {
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    const size_t bs = type == GgmlType::Q8_0 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0);
    std::uniform_real_distribution<float> d(0.001f, 0.02f);
    for (size_t off = 0; off + bs <= bytes.size(); off += bs) {
      const uint16_t h = g4::f32_to_fp16(d(rng));
      std::memcpy(bytes.data() + off, &h, 2);
    }
    return bytes;
  }
  std::normal_distribution<float> nd(0.f, 0.05f);
  std::vector<float> row(static_cast<size_t>(n_in));
  for (int64_t r = 0; r < n_out; ++r) {
    for (auto& v : row) v = nd(rng);
    quantize_rows(type, row.data(), bytes.data() + rb * static_cast<size_t>(r), 1, n_in);
  }
  return bytes;
}

struct Shape {
  const char* name;
  int64_t n_out, n_in;
};

const Shape kShapes[] = {
    {"attn_q", 2048, 1536},   {"attn_kv", 256, 1536},     {"attn_o", 1536, 2048},  {"ffn_up", 6144, 1536},
    {"ffn_up2", 12288, 1536}, {"ffn_down", 1536, 6144}, {"ffn_down2", 1536, 12288}, {"ple_proj", 1536, 256},
};

double time_call(const WeightMatrix& w, const float* x, int64_t n_tok, float* y, g4::ThreadPool* pool,
                 const KernelTable* k, int reps) {
  matmul(w, x, n_tok, w.n_in, y, w.n_out, pool, k);  // warm-up (scratch, caches)
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    matmul(w, x, n_tok, w.n_in, y, w.n_out, pool, k);
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

// One E2B token's matmuls, in forward order, each with its own weights.
struct SweepModel {
  std::vector<std::vector<uint8_t>> store;
  std::vector<WeightMatrix> mats;
  size_t bytes = 0;
  int64_t max_in = 0, max_out = 0;
  double macs = 0;

  void add(GgmlType type, int64_t n_out, int64_t n_in, uint32_t seed) {
    store.push_back(random_weights(type, n_in, n_out, seed));
    mats.push_back(WeightMatrix::raw(type, store.back().data(), n_in, n_out));
    bytes += store.back().size();
    max_in = std::max(max_in, n_in);
    max_out = std::max(max_out, n_out);
    macs += static_cast<double>(n_in) * static_cast<double>(n_out);
  }
};

SweepModel make_e2b(GgmlType type, bool head) {
  SweepModel m;
  const int64_t H = 1536, P = 256, L = 35;
  uint32_t seed = 1;
  m.add(type, L * P, H, seed++);  // per_layer_model_proj
  for (int64_t i = 0; i < L; ++i) {
    const bool full = (i + 1) % 5 == 0, has_kv = i < 15;
    const int64_t hd = full ? 512 : 256, F = has_kv ? 6144 : 12288;
    m.add(type, 8 * hd, H, seed++);  // q
    if (has_kv) {
      m.add(type, hd, H, seed++);  // k
      m.add(type, hd, H, seed++);  // v
    }
    m.add(type, H, 8 * hd, seed++);  // o
    m.add(type, F, H, seed++);       // gate
    m.add(type, F, H, seed++);       // up
    m.add(type, H, F, seed++);       // down
    m.add(type, P, H, seed++);       // inp_gate
    m.add(type, H, P, seed++);       // proj
  }
  if (head) m.add(GgmlType::Q8_0, 262144, H, seed++);
  return m;
}

double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Best wall time of one pass over the sweep; *cpu: the calling thread's CPU
// time of that pass (with one thread: the time it actually ran, which a
// loaded machine does not inflate by preemption).
double time_sweep(const SweepModel& m, int64_t n_tok, g4::ThreadPool* pool, const KernelTable* k, int reps,
                  std::vector<float>& x, std::vector<float>& y, double* cpu) {
  x.resize(static_cast<size_t>(m.max_in * n_tok));
  y.resize(static_cast<size_t>(m.max_out * n_tok));
  double best = 1e30;
  *cpu = 1e30;
  for (int r = 0; r <= reps; ++r) {  // r == 0: warm-up
    const auto t0 = Clock::now();
    const double c0 = thread_cpu_seconds();
    for (const WeightMatrix& w : m.mats) matmul(w, x.data(), n_tok, w.n_in, y.data(), w.n_out, pool, k);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (r > 0) {
      best = std::min(best, s);
      *cpu = std::min(*cpu, thread_cpu_seconds() - c0);
    }
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> isas, types = {"q4_0", "q8_0"}, sweep_types = {"q4_0"}, shape_names;
  std::vector<int> threads = {1, 2};
  int reps = 20;
  bool shapes = true, sweep = true, head = false, pool_bench = false, decode_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--isa") isas = split(next());
    else if (a == "--threads") {
      threads.clear();
      for (const auto& t : split(next())) threads.push_back(std::atoi(t.c_str()));
    } else if (a == "--types") types = split(next());
    else if (a == "--sweep-types") sweep_types = split(next());
    else if (a == "--shapes") shape_names = split(next());
    else if (a == "--reps") reps = std::max(1, std::atoi(next().c_str()));
    else if (a == "--no-shapes") shapes = false;
    else if (a == "--no-sweep") sweep = false;
    else if (a == "--head") head = true;
    else if (a == "--pool") pool_bench = true;
    else if (a == "--decode-only") decode_only = true;
    else {
      std::fprintf(stderr,
                   "usage: bench_matmul [--isa a,b] [--threads 1,2] [--types q4_0,q8_0,f16,bf16,f32] [--reps N]\n"
                   "                    [--shapes attn_q,ffn_down,...] [--no-shapes] [--no-sweep] [--sweep-types q4_0] [--head]\n");
      return 2;
    }
  }
  std::vector<const KernelTable*> tabs;
  for (int i = 0; i < kIsaCount; ++i) {
    const Isa isa = static_cast<Isa>(i);
    if (!isa_available(isa) || isa == Isa::Scalar) continue;
    if (!isas.empty() && std::find(isas.begin(), isas.end(), isa_name(isa)) == isas.end()) continue;
    tabs.push_back(&table(isa));
  }
  auto type_of = [](const std::string& s) {
    for (uint32_t id = 0; id < KernelTable::kTypeSlots; ++id) {
      if (!g4::ggml_type_info(id)) continue;
      std::string n = g4::ggml_type_name(id);
      for (auto& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (n == s) return static_cast<GgmlType>(id);
    }
    std::fprintf(stderr, "unknown type %s\n", s.c_str());
    std::exit(2);
  };

  std::vector<g4::ThreadPool*> pools;
  for (int t : threads) pools.push_back(new g4::ThreadPool(t));

  if (pool_bench) {
    // parallel_for round trip with 4 tasks of 1 µs per thread: ideally 4 µs;
    // the excess is the per-matmul overhead of waking the workers and waiting
    // for the last one. Back to back (the workers still spin) and with a
    // 200 µs gap (a decode step's other work).
    for (g4::ThreadPool* p : pools) {
      for (int gap_us : {0, 200})
      for (int dyn = 0; dyn < 2; ++dyn) {
        std::vector<double> ts;
        for (int r = 0; r < 2000; ++r) {
          if (gap_us) {
            const auto until = Clock::now() + std::chrono::microseconds(gap_us);
            while (Clock::now() < until) {
            }
          }
          // Each task spins ~1 µs so that every thread gets work (static) or could (dynamic).
          auto body = [](int64_t b, int64_t e, int) {
            const auto until = Clock::now() + std::chrono::nanoseconds(1000 * (e - b));
            while (Clock::now() < until) {
            }
          };
          const auto t0 = Clock::now();
          if (dyn) p->parallel_for_dynamic(p->size() * 4, 1, body);
          else p->parallel_for(p->size() * 4, body);
          ts.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
        }
        std::sort(ts.begin(), ts.end());
        std::printf("pool thr=%d gap=%3d µs %-20s (%d × 1 µs tasks): min %.2f µs, median %.2f µs, p90 %.2f µs\n",
                    p->size(), gap_us, dyn ? "parallel_for_dynamic" : "parallel_for", p->size() * 4,
                    ts.front() * 1e6, ts[ts.size() / 2] * 1e6, ts[ts.size() * 9 / 10] * 1e6);
      }
    }
  }

  if (shapes) {
    std::printf("%-6s %-10s %-12s %4s %3s %12s %10s\n", "type", "shape", "n_out×n_in", "tok", "thr", "", "GMAC/s");
    for (const std::string& ts : types) {
      const GgmlType type = type_of(ts);
      for (const Shape& s : kShapes) {
        if (!shape_names.empty() && std::find(shape_names.begin(), shape_names.end(), s.name) == shape_names.end())
          continue;
        const auto bytes = random_weights(type, s.n_in, s.n_out, 7);
        const WeightMatrix w = WeightMatrix::raw(type, bytes.data(), s.n_in, s.n_out);
        for (int64_t n_tok : {int64_t{1}, int64_t{64}}) {
          std::vector<float> x(static_cast<size_t>(s.n_in * n_tok)), y(static_cast<size_t>(s.n_out * n_tok));
          std::mt19937 rng(3);
          std::normal_distribution<float> nd(0.f, 1.f);
          for (auto& v : x) v = nd(rng);
          for (g4::ThreadPool* p : pools) {
            std::printf("%-6s %-10s %5lld×%-6lld %4lld %3d", ts.c_str(), s.name, static_cast<long long>(s.n_out),
                        static_cast<long long>(s.n_in), static_cast<long long>(n_tok), p->size());
            for (const KernelTable* k : tabs) {
              const int r = n_tok == 1 ? reps * 10 : reps;
              const double sec = time_call(w, x.data(), n_tok, y.data(), p, k, r);
              const double gmacs = static_cast<double>(s.n_out * s.n_in * n_tok) / sec / 1e9;
              std::printf("  %s %9.1f µs %6.1f", isa_name(k->isa), sec * 1e6, gmacs);
            }
            std::printf("\n");
          }
        }
      }
    }
  }

  if (sweep) {
    std::vector<float> x, y;
    for (const std::string& ts : sweep_types) {
      const GgmlType type = type_of(ts);
      SweepModel m = make_e2b(type, head);
      std::printf("\nE2B sweep %s%s: %zu matmuls, %.2f GB of weights, %.2f GMAC per token\n", ts.c_str(),
                  head ? " + Q8_0 head" : "", m.mats.size(), static_cast<double>(m.bytes) / 1e9, m.macs / 1e9);
      for (g4::ThreadPool* p : pools) {
        // Bandwidth right now (the machine is shared: it varies run to run).
        const g4::MemoryBandwidth bw = g4::measure_memory_bandwidth(*p, uint64_t{512} << 20, 3);
        std::printf("  thr=%d  memory read bandwidth now: %.1f GB/s (best of 3)\n", p->size(), bw.max_gbps);
        for (const KernelTable* k : tabs) {
          double dec_cpu = 0, pre_cpu = 0;
          const double dec = time_sweep(m, 1, p, k, std::max(3, reps / 4), x, y, &dec_cpu);
          const double pre = decode_only ? 1e30 : time_sweep(m, 64, p, k, std::max(2, reps / 8), x, y, &pre_cpu);
          const double gbs = static_cast<double>(m.bytes) / dec / 1e9;
          std::printf("  %-7s thr=%d  decode %7.2f ms/token (%5.1f tok/s, %5.1f GB/s = %3.0f%% of bw)", isa_name(k->isa),
                      p->size(), dec * 1e3, 1.0 / dec, gbs, 100.0 * gbs / bw.max_gbps);
          if (!decode_only)
            std::printf("   prefill %8.2f ms/64 tok (%6.1f tok/s, %6.1f GMAC/s)", pre * 1e3, 64.0 / pre,
                        m.macs * 64 / pre / 1e9);
          if (p->size() == 1)
            std::printf("   [cpu time: decode %.1f ms, prefill %.1f tok/s]", dec_cpu * 1e3,
                        decode_only ? 0.0 : 64.0 / pre_cpu);
          std::printf("\n");
        }
      }
    }
  }
  for (auto* p : pools) delete p;
  return 0;
}
