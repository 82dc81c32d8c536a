// `gemma4 eval`: run the forward pass over a prompt and print the most likely
// next tokens with their log-probabilities (log-softmax of the final
// soft-capped logits).
//
//   gemma4 eval -m MODEL (--tokens 2,105,... | --text TEXT) [--top K] [--all]
//               [--greedy N] [--dump-logprobs PATH] [--kv-type T]
//               [--json] [-t N] [--batch N] [--parse-special] [--no-bos]
//
// For the last position (every position with --all) prints the top-K ids:
//   text:  "pos 5: 1234 (-0.1234) 99 (-2.5) ..."
//   JSON:  {"positions":[{"pos":5,"top":[{"id":1234,"logprob":-0.1234},...]}]}
// `pos` is the index of the last token read (0-based); `top` predicts the next.
//
// --greedy N appends N greedy tokens (argmax of the logits, ties: lowest id):
// token 0 is the argmax after the prompt, token k the argmax after the prompt
// and tokens 0..k-1. The N-1 decode steps are printed as further positions,
// and the tokens as "greedy: 12 34 ..." / JSON "greedy":[12,34,...].
// --dump-logprobs PATH writes the full next-token log-probabilities of every
// printed position, in print order: rows of vocab little-endian float32
// (log-softmax computed in double), no header; the JSON output adds
// "n_vocab" and "rows".
// --kv-type: the KV cache element type (f16 by default; the oracle tests pass
// f32 to compare with llama.cpp's f32 cache).
// --text needs a tokenizer: a GGUF's own metadata, or tokenizer.json beside
// a Hugging Face checkpoint. Token ids need none.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "model/forward.h"
#include "text/tokenizer.h"

namespace g4::cli {
namespace {

struct EvalOptions {
  std::string model;
  std::string tokens;
  std::string text;
  int top = 10;
  bool all = false;
  bool json = false;
  int threads = 0;
  int batch = 64;
  std::string kv_type = attn::kv_type_name(attn::kDefaultKvType);
  bool parse_special = false;
  bool no_bos = false;
  int greedy = 0;
  std::string dump_path;
};

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == ',' || s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
      ++i;
      continue;
    }
    size_t j = i;
    if (s[j] == '-' || s[j] == '+') ++j;
    const size_t digits = j;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
    const bool sep_ok = j == s.size() || std::strchr(", \t\r\n", s[j]) != nullptr;
    if (j == digits || !sep_ok) {
      size_t e = s.find_first_of(", \t\r\n", i);
      fail("--tokens: bad token id '", s.substr(i, e == std::string::npos ? std::string::npos : e - i),
           "' (expected integers separated by commas or spaces)");
    }
    const std::string tok = s.substr(i, j - i);
    long long v = 0;
    try {
      v = std::stoll(tok);
    } catch (...) {
      fail("--tokens: token id '", tok, "' is out of range");
    }
    if (v < INT32_MIN || v > INT32_MAX) fail("--tokens: token id ", tok, " is out of range");
    ids.push_back(static_cast<int32_t>(v));
    i = j;
  }
  return ids;
}

bool is_gguf_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {0, 0, 0, 0};
  in.read(magic, 4);
  return in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

// The tokenizer of a model path (GGUF metadata, or tokenizer.json next to a HF
// checkpoint), with a clear error when there is none.
Tokenizer load_model_tokenizer(const std::string& model) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(model, ec) && is_gguf_file(model)) return Tokenizer::from_gguf(GgufFile::open(model));
  const fs::path dir = fs::is_directory(model, ec) ? fs::path(model) : fs::path(model).parent_path();
  const fs::path tj = (dir.empty() ? fs::path(".") : dir) / "tokenizer.json";
  if (!fs::is_regular_file(tj, ec))
    fail("'", model, "' has no tokenizer.json: text input (--text) needs tokenizer.json beside the checkpoint; "
         "pass token ids with --tokens instead");
  return Tokenizer::from_hf_json_file(tj.string());
}

struct Top {
  int32_t id;
  double logprob;
};

// log(sum(exp(logits))) in double.
double log_sum_exp(const float* logits, int64_t V) {
  double mx = logits[0];
  for (int64_t i = 1; i < V; ++i) mx = std::max<double>(mx, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < V; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  return mx + std::log(sum);
}

// Index of the largest logit (ties: lowest id).
int32_t argmax(const float* logits, int64_t V) {
  int64_t best = 0;
  for (int64_t i = 1; i < V; ++i)
    if (logits[i] > logits[best]) best = i;
  return static_cast<int32_t>(best);
}

// Top-k of log_softmax(logits), best first (ties: lower id first).
std::vector<Top> top_logprobs(const float* logits, int64_t V, int k) {
  const double lse = log_sum_exp(logits, V);
  std::vector<int32_t> idx(static_cast<size_t>(V));
  for (int64_t i = 0; i < V; ++i) idx[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  const size_t kk = static_cast<size_t>(std::min<int64_t>(k, V));
  std::partial_sort(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(kk), idx.end(), [&](int32_t a, int32_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  });
  std::vector<Top> out;
  for (size_t i = 0; i < kk; ++i) out.push_back({idx[i], static_cast<double>(logits[idx[i]]) - lse});
  return out;
}

std::string format_double(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// Full log-probability rows (float32) written to --dump-logprobs.
class LogprobDump {
 public:
  explicit LogprobDump(const std::string& path) : path_(path) {
    if (path_.empty()) return;
    f_.open(path_, std::ios::binary | std::ios::trunc);
    if (!f_) fail("--dump-logprobs: cannot create '", path_, "'");
  }
  bool enabled() const { return !path_.empty(); }
  void row(const float* logits, int64_t V) {
    if (!enabled()) return;
    const double lse = log_sum_exp(logits, V);
    buf_.resize(static_cast<size_t>(V));
    for (int64_t i = 0; i < V; ++i) buf_[static_cast<size_t>(i)] = static_cast<float>(static_cast<double>(logits[i]) - lse);
    f_.write(reinterpret_cast<const char*>(buf_.data()), static_cast<std::streamsize>(V * sizeof(float)));
    ++rows_;
  }
  void finish() {
    if (!enabled()) return;
    f_.close();
    if (!f_) fail("--dump-logprobs: cannot write '", path_, "'");
  }
  int64_t rows() const { return rows_; }

 private:
  std::string path_;
  std::ofstream f_;
  std::vector<float> buf_;
  int64_t rows_ = 0;
};

class Printer {
 public:
  explicit Printer(bool json) : json_(json) {
    if (json_) out_ = "{\"positions\":[";
  }
  void position(int64_t pos, const std::vector<Top>& top) {
    if (json_) {
      out_ += first_ ? "" : ",";
      out_ += "{\"pos\":" + std::to_string(pos) + ",\"top\":[";
      for (size_t i = 0; i < top.size(); ++i) {
        if (i) out_ += ',';
        out_ += "{\"id\":" + std::to_string(top[i].id) + ",\"logprob\":" + format_double(top[i].logprob) + "}";
      }
      out_ += "]}";
    } else {
      out_ += "pos " + std::to_string(pos) + ":";
      for (const Top& t : top) out_ += " " + std::to_string(t.id) + " (" + format_double(t.logprob) + ")";
      out_ += "\n";
    }
    first_ = false;
  }
  // Ends "positions"; `greedy` (when non-empty) and the dump's shape follow.
  void finish(const std::vector<int32_t>& greedy, bool has_greedy, const LogprobDump& dump, int64_t V) {
    if (json_) {
      out_ += "]";
      if (has_greedy) {
        out_ += ",\"greedy\":[";
        for (size_t i = 0; i < greedy.size(); ++i) out_ += (i ? "," : "") + std::to_string(greedy[i]);
        out_ += "]";
      }
      if (dump.enabled()) out_ += ",\"n_vocab\":" + std::to_string(V) + ",\"rows\":" + std::to_string(dump.rows());
      out_ += "}\n";
    } else if (has_greedy) {
      out_ += "greedy:";
      for (int32_t g : greedy) out_ += " " + std::to_string(g);
      out_ += "\n";
    }
    if (!out_.empty() && std::fwrite(out_.data(), 1, out_.size(), stdout) != out_.size())
      fail("cannot write to stdout");
    std::fflush(stdout);
  }

 private:
  bool json_;
  bool first_ = true;
  std::string out_;
};

void run_eval(const EvalOptions& o) {
  if (o.top < 1) fail("--top must be at least 1");
  if (o.greedy < 0) fail("--greedy must not be negative");
  if (o.batch < 1) fail("--batch must be at least 1");
  if (o.threads < 0) fail("-t/--threads must not be negative");
  std::vector<int32_t> ids;
  if (!o.tokens.empty()) {
    ids = parse_ids(o.tokens);
  } else {
    Tokenizer tok = load_model_tokenizer(o.model);
    ids = tok.encode(o.text, o.parse_special, /*add_bos=*/!o.no_bos);
  }
  if (ids.empty()) fail("nothing to evaluate: the input has no tokens");

  ModelParams p;
  p.n_ctx = static_cast<int64_t>(ids.size()) + std::max(0, o.greedy - 1);
  p.max_batch = o.batch;
  p.n_threads = o.threads;
  p.kv_type = attn::parse_kv_type(o.kv_type);
  auto model = Model::open(o.model, p);
  if (model->n_ctx() < p.n_ctx)
    fail("the input has ", ids.size(), " tokens", o.greedy > 1 ? " (plus the greedy tokens)" : "",
         " but the model's context is ", model->n_ctx());
  const int64_t V = model->vocab_size();

  Printer out(o.json);
  LogprobDump dump(o.dump_path);
  std::vector<float> last;  // logits after the last token read
  if (o.all) {
    const int64_t B = model->max_batch();
    for (size_t b = 0; b < ids.size(); b += static_cast<size_t>(B)) {
      const size_t n = std::min(ids.size() - b, static_cast<size_t>(B));
      auto logits = model->forward(std::span<const int32_t>(ids.data() + b, n), LogitsMode::All);
      for (size_t t = 0; t < n; ++t) {
        const float* row = logits.data() + t * static_cast<size_t>(V);
        out.position(static_cast<int64_t>(b + t), top_logprobs(row, V, o.top));
        dump.row(row, V);
      }
      if (b + n == ids.size()) last.assign(logits.end() - V, logits.end());
    }
  } else {
    auto logits = model->forward(ids, LogitsMode::Last);
    out.position(static_cast<int64_t>(ids.size()) - 1, top_logprobs(logits.data(), V, o.top));
    dump.row(logits.data(), V);
    last.assign(logits.begin(), logits.end());
  }
  std::vector<int32_t> greedy;
  for (int k = 0; k < o.greedy; ++k) {
    greedy.push_back(argmax(last.data(), V));
    if (k + 1 == o.greedy) break;
    auto logits = model->forward(std::span<const int32_t>(&greedy.back(), 1), LogitsMode::Last);
    out.position(static_cast<int64_t>(ids.size()) + k, top_logprobs(logits.data(), V, o.top));
    dump.row(logits.data(), V);
    last.assign(logits.begin(), logits.end());
  }
  dump.finish();
  out.finish(greedy, o.greedy > 0, dump, V);
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  CLI::App* c = app.add_subcommand("eval", "Print the top next-token log-probabilities after a prompt");
  c->add_option("-m,--model", o->model, "GGUF file or Hugging Face folder")->required();
  auto* tokens = c->add_option("--tokens", o->tokens, "token ids, e.g. 2,105,2364");
  auto* text = c->add_option("--text", o->text, "text (needs the model's tokenizer)");
  tokens->excludes(text);
  text->excludes(tokens);
  c->add_option("--top", o->top, "how many ids to print per position (default 10)");
  c->add_flag("--all", o->all, "print every position, not just the last");
  c->add_flag("--json", o->json, "print {\"positions\":[{\"pos\":n,\"top\":[{\"id\":..,\"logprob\":..}]}]}");
  c->add_option("-t,--threads", o->threads, "worker threads (default: physical cores)");
  c->add_option("--batch", o->batch, "prefill chunk size in tokens (default 64)");
  c->add_option("--kv-type", o->kv_type,
                std::string("KV cache element type: ") + attn::kv_type_choices() + " (default " +
                    attn::kv_type_name(attn::kDefaultKvType) + ")");
  c->add_flag("--parse-special", o->parse_special, "--text: match control tokens (<|turn> ...) as single ids");
  c->add_flag("--no-bos", o->no_bos, "--text: do not prepend <bos>");
  c->add_option("--greedy", o->greedy, "append N greedy (argmax) tokens after the input and print them");
  c->add_option("--dump-logprobs", o->dump_path,
                "write the full log-probabilities of every printed position to PATH (rows of vocab float32)");
  c->callback([o, tokens, text] {
    if (tokens->count() == 0 && text->count() == 0) fail("eval: give --tokens IDS or --text TEXT");
    run_eval(*o);
  });
}

}  // namespace g4::cli
