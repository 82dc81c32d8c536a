// `gemma4 bench`: prefill and decode speed, time to first token and peak
// memory of a model; `--membw` measures this machine's memory read bandwidth
// and, with a model, the decode roofline (bandwidth ÷ weight bytes per token).
//
//   gemma4 bench -m MODEL [-p 512] [-n 128] [-t N] [-r 5] [--ctx N] [--batch N] [--kv-type T] [--json]
//   gemma4 bench --membw [-m MODEL ...] [-t N] [-r 5] [--membw-mib 1024] [--json]
//
// One run: <bos> + p−1 fixed token ids (bench_prompt_token) through
// Model::forward (chunks of --batch tokens), argmax of the last logits = the
// first token, then n single-token forward passes each fed the previous argmax.
// No sampler: argmax is what both engines do at temperature 0 and costs the
// same on both sides of bench/compare. One untimed warm-up run, then R timed
// runs, the cache reset before each.
//   prefill tok/s = p ÷ (prefill forward time)
//   ttft          = prefill forward + first argmax
//   decode tok/s  = n ÷ (time of the n single-token steps, argmax included)
// Peak RSS is VmHWM of this process after the runs (the model's file mapping
// counts as far as it was touched, as for llama.cpp's mmap). The model
// benchmark runs before the bandwidth buffer is allocated so that buffer never
// enters the peak.
//
// --json prints one object: prefill_tps, decode_tps, ttft_ms (medians),
// peak_rss_mb (MiB, 2^20 bytes), their *_min/*_max, threads, isa, p, n, runs,
// batch, ctx, kv_type, model, model_bytes; with --membw also membw_gbps (+ _min/_max),
// membw_mib and, with a model, decode_weight_bytes, decode_bound_tps and
// decode_bound_share.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "model/decode_traffic.h"
#include "model/forward.h"
#include "core/memory_bandwidth.h"

namespace g4::cli {
namespace {

struct BenchOptions {
  std::string model;
  int64_t p = 512;
  int64_t n = 128;
  int threads = 0;
  int runs = 5;
  int64_t ctx = 0;
  int64_t batch = 64;
  std::string kv_type = attn::kv_type_name(attn::kDefaultKvType);  // --kv-type
  bool json = false;
  bool membw = false;
  int64_t membw_mib = 1024;
};

// Token i of the benchmark prompt: <bos>, then ids spread over the vocabulary
// (any valid id costs the same). bench/compare.mjs builds the same prompt for
// llama.cpp; keep the two formulas in step.
int32_t bench_prompt_token(int64_t i, int64_t vocab, int32_t bos) {
  if (i == 0) return bos;
  return static_cast<int32_t>((i * 7919 + 13) % vocab);
}

int32_t argmax(std::span<const float> v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// VmHWM (peak resident set) of this process in MiB, from /proc/self/status.
double peak_rss_mib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // "VmHWM:  123 kB"
  fail("cannot read VmHWM from /proc/self/status");
}

struct Spread {
  double median = 0, min = 0, max = 0;
};
Spread spread(const std::vector<double>& v) {
  return {median(v), *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end())};
}

struct ModelBench {
  Spread prefill_tps, decode_tps, ttft_ms;
  double peak_rss_mb = 0;
  int threads = 0;
  std::string isa;
  std::string kv_type;
  int64_t ctx = 0, batch = 0;
  uint64_t model_bytes = 0;
  DecodeWeightBytes weight_bytes;
};

ModelBench bench_model(const BenchOptions& o) {
  using clock = std::chrono::steady_clock;
  auto secs = [](clock::time_point a, clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };

  ModelParams mp;
  mp.n_ctx = o.ctx > 0 ? o.ctx : o.p + o.n;
  mp.max_batch = o.batch;
  mp.n_threads = o.threads;
  mp.kv_type = attn::parse_kv_type(o.kv_type);
  auto model = Model::open(o.model, mp);
  if (model->n_ctx() < o.p + o.n)
    fail("-p ", o.p, " + -n ", o.n, " = ", o.p + o.n, " positions do not fit the context of ", model->n_ctx(),
         o.ctx > 0 ? " (--ctx)" : " (the model's maximum)");

  const int64_t V = model->vocab_size();
  std::vector<int32_t> prompt(static_cast<size_t>(o.p));
  for (int64_t i = 0; i < o.p; ++i) prompt[static_cast<size_t>(i)] = bench_prompt_token(i, V, model->config().bos_id);

  std::vector<double> prefill_tps, decode_tps, ttft_ms;
  for (int r = 0; r <= o.runs; ++r) {  // r == 0: warm-up
    model->reset();
    const auto t0 = clock::now();
    auto logits = model->forward(prompt, LogitsMode::Last);
    const auto t1 = clock::now();
    int32_t tok = argmax(logits);
    const auto t2 = clock::now();
    for (int64_t k = 0; k < o.n; ++k) tok = argmax(model->forward(std::span<const int32_t>(&tok, 1), LogitsMode::Last));
    const auto t3 = clock::now();
    if (r == 0) continue;
    prefill_tps.push_back(static_cast<double>(o.p) / secs(t0, t1));
    ttft_ms.push_back(secs(t0, t2) * 1e3);
    decode_tps.push_back(static_cast<double>(o.n) / secs(t2, t3));
  }

  ModelBench b;
  b.prefill_tps = spread(prefill_tps);
  b.decode_tps = spread(decode_tps);
  b.ttft_ms = spread(ttft_ms);
  b.peak_rss_mb = peak_rss_mib();
  b.threads = model->n_threads();
  b.isa = kernels::isa_name(kernels::active().isa);
  b.ctx = model->n_ctx();
  b.kv_type = attn::kv_type_name(model->cache().type());
  b.batch = model->max_batch();
  b.model_bytes = model->checkpoint().file_bytes();
  b.weight_bytes = decode_weight_bytes(model->checkpoint());
  return b;
}

void run_bench(const BenchOptions& o) {
  if (o.model.empty() && !o.membw) fail("bench: give -m MODEL (or --membw for the memory bandwidth alone)");
  if (o.p < 1) fail("-p must be at least 1 (the prompt starts with <bos>)");
  if (o.n < 1) fail("-n must be at least 1");
  if (o.runs < 1) fail("-r must be at least 1");
  if (o.threads < 0) fail("-t/--threads must not be negative");
  if (o.batch < 1) fail("--batch must be at least 1");
  if (o.ctx < 0) fail("--ctx must not be negative");
  if (o.membw_mib < 1) fail("--membw-mib must be at least 1");

  nlohmann::json j;
  std::optional<ModelBench> mb;
  if (!o.model.empty()) {
    mb = bench_model(o);
    j["model"] = o.model;
    j["model_bytes"] = mb->model_bytes;
    j["prefill_tps"] = mb->prefill_tps.median;
    j["decode_tps"] = mb->decode_tps.median;
    j["ttft_ms"] = mb->ttft_ms.median;
    j["peak_rss_mb"] = mb->peak_rss_mb;
    j["prefill_tps_min"] = mb->prefill_tps.min;
    j["prefill_tps_max"] = mb->prefill_tps.max;
    j["decode_tps_min"] = mb->decode_tps.min;
    j["decode_tps_max"] = mb->decode_tps.max;
    j["ttft_ms_min"] = mb->ttft_ms.min;
    j["ttft_ms_max"] = mb->ttft_ms.max;
    j["threads"] = mb->threads;
    j["isa"] = mb->isa;
    j["p"] = o.p;
    j["n"] = o.n;
    j["runs"] = o.runs;
    j["batch"] = mb->batch;
    j["ctx"] = mb->ctx;
    j["kv_type"] = mb->kv_type;
  }
  std::optional<MemoryBandwidth> bw;
  if (o.membw) {
    ThreadPool pool(mb ? mb->threads : o.threads);
    bw = measure_memory_bandwidth(pool, static_cast<uint64_t>(o.membw_mib) << 20, o.runs);
    j["membw_gbps"] = bw->median_gbps;
    j["membw_gbps_min"] = bw->min_gbps;
    j["membw_gbps_max"] = bw->max_gbps;
    j["membw_mib"] = o.membw_mib;
    j["threads"] = bw->threads;
    j["runs"] = o.runs;
    if (mb) {
      const double bytes = static_cast<double>(mb->weight_bytes.total());
      const double bound = bw->median_gbps * 1e9 / bytes;
      j["decode_weight_bytes"] = mb->weight_bytes.total();
      j["decode_bound_tps"] = bound;
      j["decode_bound_share"] = mb->decode_tps.median / bound;
    }
  }

  if (o.json) {
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  if (mb) {
    std::printf("model       %s (%.1f MiB)\n", o.model.c_str(), static_cast<double>(mb->model_bytes) / (1 << 20));
    std::printf("setup       p=%lld n=%lld runs=%d threads=%d isa=%s batch=%lld ctx=%lld kv=%s\n",
                static_cast<long long>(o.p), static_cast<long long>(o.n), o.runs, mb->threads, mb->isa.c_str(),
                static_cast<long long>(mb->batch), static_cast<long long>(mb->ctx), mb->kv_type.c_str());
    std::printf("prefill     %10.2f tok/s  (min %.2f, max %.2f)\n", mb->prefill_tps.median, mb->prefill_tps.min,
                mb->prefill_tps.max);
    std::printf("decode      %10.2f tok/s  (min %.2f, max %.2f)\n", mb->decode_tps.median, mb->decode_tps.min,
                mb->decode_tps.max);
    std::printf("ttft        %10.2f ms     (min %.2f, max %.2f)\n", mb->ttft_ms.median, mb->ttft_ms.min, mb->ttft_ms.max);
    std::printf("peak RSS    %10.1f MiB\n", mb->peak_rss_mb);
  }
  if (bw) {
    std::printf("memory read %10.2f GB/s   (min %.2f, max %.2f; %d threads, %lld MiB buffer)\n", bw->median_gbps,
                bw->min_gbps, bw->max_gbps, bw->threads, static_cast<long long>(o.membw_mib));
    if (mb) {
      const DecodeWeightBytes& w = mb->weight_bytes;
      const double bound = j["decode_bound_tps"].get<double>();
      std::printf("weights/tok %10.2f MB     (embedding rows %.2f, output head %.2f, experts %.2f, other %.2f)\n",
                  static_cast<double>(w.total()) / 1e6, static_cast<double>(w.embedding_rows) / 1e6,
                  static_cast<double>(w.output_head) / 1e6, static_cast<double>(w.experts) / 1e6,
                  static_cast<double>(w.other) / 1e6);
      std::printf("decode bound%10.2f tok/s  (bandwidth / weight bytes per token); measured %.1f %% of it\n", bound,
                  100.0 * mb->decode_tps.median / bound);
    }
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* c = app.add_subcommand("bench", "Prefill/decode speed, time to first token, peak RSS; memory bandwidth");
  c->add_option("-m,--model", o->model, "GGUF file or Hugging Face folder");
  c->add_option("-p,--prompt-tokens", o->p, "prompt length in tokens, <bos> included (default 512)");
  c->add_option("-n,--gen-tokens", o->n, "decode steps after the prompt (default 128)");
  c->add_option("-t,--threads", o->threads, "worker threads (default: physical cores)");
  c->add_option("-r,--runs", o->runs, "timed runs after one warm-up (default 5); also the bandwidth repetitions");
  c->add_option("--ctx", o->ctx, "context to allocate (default p + n)");
  c->add_option("--batch", o->batch, "prefill chunk size in tokens (default 64)");
  c->add_option("--kv-type", o->kv_type,
                std::string("KV cache element type: ") + attn::kv_type_choices() + " (default " +
                    attn::kv_type_name(attn::kDefaultKvType) + ")");
  c->add_flag("--json", o->json, "print one JSON object");
  c->add_flag("--membw", o->membw, "measure memory read bandwidth (with -m: the decode roofline too)");
  c->add_option("--membw-mib", o->membw_mib, "bandwidth buffer size in MiB (default 1024)");
  c->callback([o] { run_bench(*o); });
}

}  // namespace g4::cli
