// `gemma4 perplexity -m MODEL -f TEXT_FILE [--ctx N] [--chunks K]
// [--kl-base BASE_MODEL] [--json]`: llama-perplexity's measurement
// (tools/perplexity.h). Output, like llama-perplexity:
//   [1]12.3456,[2]11.9876,...            running PPL after each chunk
//   Final estimate: PPL = 11.9876 +/- 0.12345
// With --kl-base the base model reads the same tokens and a per-chunk table
// (PPL, ln(PPL/PPL(base)), mean KL, same top-1) is followed by the KL
// statistics (mean ± error, maximum, 99.9/99/95/90 %, median, minimum) and
// "Same top p". --json prints one object with every figure instead.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "model/forward.h"
#include "text/tokenizer.h"
#include "tools/perplexity.h"
#include "tools/progress.h"

namespace g4::cli {
namespace {

struct PplOptions {
  std::string model, file, base;
  int64_t ctx = 512;
  int64_t chunks = -1;
  int threads = 0;
  int batch = 64;
  bool json = false;
};

std::string read_text(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail("perplexity: text file '", path, "' does not exist or is not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("perplexity: cannot open '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The tokenizer of a model path: GGUF metadata, or tokenizer.json beside a
// Hugging Face checkpoint.
Tokenizer model_tokenizer(const std::string& model) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(model, ec)) return Tokenizer::load(model);
  std::ifstream in(model, std::ios::binary);
  char magic[4] = {0, 0, 0, 0};
  in.read(magic, 4);
  if (in.gcount() == 4 && std::string(magic, 4) == "GGUF") return Tokenizer::from_gguf(GgufFile::open(model));
  const fs::path dir = fs::path(model).parent_path();
  return Tokenizer::load(dir.empty() ? "." : dir.string());
}

void run(const PplOptions& o) {
  if (o.ctx < 4) fail("perplexity: --ctx must be at least 4, got ", o.ctx);
  if (o.chunks == 0 || o.chunks < -1) fail("perplexity: --chunks must be positive");
  if (o.batch < 1) fail("perplexity: --batch must be at least 1");
  const std::string text = read_text(o.file);
  const Tokenizer tok = model_tokenizer(o.model);
  // llama-perplexity tokenizes with add_special: <bos> first, text as is.
  const std::vector<int32_t> ids = tok.encode(text, /*parse_special=*/false, /*add_bos=*/true);

  ModelParams p;
  p.n_ctx = o.ctx;
  p.max_batch = o.batch;
  p.n_threads = o.threads;
  auto model = Model::open(o.model, p);
  std::unique_ptr<Model> base;
  if (!o.base.empty()) base = Model::open(o.base, p);

  PerplexityOptions po;
  po.ctx = o.ctx;
  po.chunks = o.chunks;
  po.bos_id = tok.bos_id();
  const int64_t n_chunks = std::min<int64_t>(o.chunks < 0 ? INT64_MAX : o.chunks,
                                             static_cast<int64_t>(ids.size()) / std::max<int64_t>(o.ctx, 1));
  if (!o.json)
    std::printf("perplexity: %zu tokens, %lld chunk(s) of %lld, scoring the last %lld tokens of each%s\n", ids.size(),
                static_cast<long long>(n_chunks), static_cast<long long>(o.ctx),
                static_cast<long long>(o.ctx - o.ctx / 2 - 1), base ? ", KL vs the base model" : "");
  if (!o.json && base) std::printf("chunk        PPL   ln(PPL(Q)/PPL(base))   KL divergence   same top p\n");
  std::fflush(stdout);
  Progress bar("perplexity", static_cast<uint64_t>(std::max<int64_t>(n_chunks, 0)));
  const PerplexityResult r = run_perplexity(*model, base.get(), ids, po, [&](const PerplexityChunk& c) {
    bar.advance(1, "chunk " + std::to_string(c.index));
    if (o.json) return;
    if (base)
      std::printf("%5lld %10.4f %22.5f %15.6f %11.3f %%\n", static_cast<long long>(c.index), c.ppl, c.ln_ppl_ratio,
                  c.kl_mean, 100.0 * c.same_top);
    else
      std::printf("[%lld]%.4f,", static_cast<long long>(c.index), c.ppl);
    std::fflush(stdout);
  });
  char done[96];
  std::snprintf(done, sizeof done, "PPL %.4f over %lld tokens", r.ppl, static_cast<long long>(r.n_scored));
  bar.finish(done);

  if (o.json) {
    nlohmann::ordered_json j;
    j["n_tokens"] = r.n_tokens;
    j["ctx"] = r.ctx;
    j["n_chunks"] = r.n_chunks;
    j["n_scored"] = r.n_scored;
    j["mean_nll"] = r.mean_nll;
    j["ppl"] = r.ppl;
    j["ppl_error"] = r.ppl_err;
    j["chunk_ppl"] = r.chunk_ppl;
    if (r.has_base) {
      j["ppl_base"] = r.ppl_base;
      j["ppl_base_error"] = r.ppl_base_err;
      j["ln_ppl_ratio"] = r.ln_ppl_ratio;
      j["ln_ppl_ratio_error"] = r.ln_ppl_ratio_err;
      j["kl_mean"] = r.kl_mean;
      j["kl_error"] = r.kl_err;
      j["kl_max"] = r.kl_max;
      j["kl_p99_9"] = r.kl_p999;
      j["kl_p99"] = r.kl_p99;
      j["kl_p95"] = r.kl_p95;
      j["kl_p90"] = r.kl_p90;
      j["kl_median"] = r.kl_median;
      j["kl_min"] = r.kl_min;
      j["same_top"] = r.same_top;
      j["same_top_error"] = r.same_top_err;
      j["rms_dp"] = r.rms_dp;
    }
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  if (!base) std::printf("\n");
  std::printf("Final estimate: PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_err);
  if (base) {
    std::printf("\n====== Perplexity statistics ======\n");
    std::printf("Mean PPL(Q)                   : %10.6f ± %10.6f\n", r.ppl, r.ppl_err);
    std::printf("Mean PPL(base)                : %10.6f ± %10.6f\n", r.ppl_base, r.ppl_base_err);
    std::printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f\n", r.ln_ppl_ratio, r.ln_ppl_ratio_err);
    std::printf("\n====== KL divergence statistics ======\n");
    std::printf("Mean    KLD: %10.6f ± %10.6f\n", r.kl_mean, r.kl_err);
    std::printf("Maximum KLD: %10.6f\n", r.kl_max);
    std::printf("99.9%%   KLD: %10.6f\n", r.kl_p999);
    std::printf("99.0%%   KLD: %10.6f\n", r.kl_p99);
    std::printf("95.0%%   KLD: %10.6f\n", r.kl_p95);
    std::printf("90.0%%   KLD: %10.6f\n", r.kl_p90);
    std::printf("Median  KLD: %10.6f\n", r.kl_median);
    std::printf("Minimum KLD: %10.6f\n", r.kl_min);
    std::printf("\n====== Token probability statistics ======\n");
    std::printf("RMS Δp    : %6.3f %%\n", 100.0 * r.rms_dp);
    std::printf("Same top p: %6.3f ± %5.3f %%\n", 100.0 * r.same_top, 100.0 * r.same_top_err);
  }
}

}  // namespace

void add_perplexity_command(CLI::App& app) {
  auto o = std::make_shared<PplOptions>();
  CLI::App* cmd = app.add_subcommand(
      "perplexity",
      "Perplexity of a model over a text (llama-perplexity's method); --kl-base: KL divergence vs a base model");
  cmd->add_option("-m,--model", o->model, "GGUF file or Hugging Face folder")->required();
  cmd->add_option("-f,--file", o->file, "text file")->required();
  cmd->add_option("-c,--ctx", o->ctx, "chunk size in tokens; the second half of each chunk is scored")
      ->capture_default_str();
  cmd->add_option("--chunks", o->chunks, "evaluate at most this many chunks (default: all that fit)");
  cmd->add_option("--kl-base", o->base,
                  "base model (e.g. the F16/BF16 source of a quantized MODEL): run both on the same tokens and report "
                  "KL(base || model), its percentiles and the top-1 agreement");
  cmd->add_option("-t,--threads", o->threads, "threads (0 = physical cores)")->capture_default_str();
  cmd->add_option("--batch", o->batch, "tokens per forward step")->capture_default_str();
  cmd->add_flag("--json", o->json, "print one JSON object with every figure");
  cmd->callback([o] { run(*o); });
}

}  // namespace g4::cli
