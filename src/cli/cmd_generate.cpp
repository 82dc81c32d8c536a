// `gemma4 run` (raw completion) and `gemma4 chat` (conversation), both
// streaming to stdout.
//
//   gemma4 run  -m MODEL -p TEXT [-n N] [sampling flags] [--ctx N] [--truncate]
//               [--kv-type T] [-t N] [-v] [--no-bos] [--parse-special] [--ignore-eos]
//   gemma4 chat -m MODEL [-p TEXT] [--system TEXT] [--think] [-n N] [sampling flags]
//               [--ctx N] [--truncate] [--kv-type T] [-t N] [-v]
//
// run: the prompt is tokenised with <bos> in front (unless --no-bos) and the
// continuation is printed as it is generated.
// chat: one turn with -p, else reads user turns from stdin, one per line (a
// pipe works too: each line is a turn, EOF ends), `/reset` clears the
// history, `/exit` quits. Ctrl-C while an answer streams stops that answer;
// at the prompt it exits. --think turns thinking on and shows the thoughts
// dimmed (on a terminal) or between [thinking] and [/thinking] lines.
// -v prints the settings to stderr at the start, and after every answer the
// prompt tokens, prefill and decode speed, time to first token and the KV
// cache size. --kv-type picks the cache's element type (f16 by default).
//
// Sampling defaults are the model card's: temperature 1.0, top-k 64, top-p
// 0.95, min-p 0, no penalties; the seed is random unless --seed is given.
// Context: --ctx, default min(model maximum, 8192).
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "model/checkpoint.h"
#include "model/forward.h"
#include "runtime/chat_session.h"
#include "runtime/generator.h"
#include "runtime/sampler.h"
#include "text/tokenizer.h"

namespace g4::cli {
namespace {

std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void on_sigint(int) { g_interrupted.store(true); }

// SIGINT sets the flag; no SA_RESTART, so a blocking read at the prompt
// returns EINTR.
void install_sigint_handler() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  sigaction(SIGINT, &sa, nullptr);
}

struct GenFlags {
  std::string model;
  std::string prompt;
  int64_t n_predict = -1;
  float temperature = 1.0f;
  int top_k = 64;
  float top_p = 0.95f;
  float min_p = 0.0f;
  float repeat_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int repeat_last_n = 64;
  int64_t seed = -1;
  int64_t ctx = 0;
  std::string kv_type = attn::kv_type_name(attn::kDefaultKvType);
  int threads = 0;
  int batch = 64;
  bool truncate = false;
  bool verbose = false;
  bool ignore_eos = false;
  // run
  bool no_bos = false;
  bool parse_special = false;
  // chat
  std::string system;
  bool think = false;
};

void add_common_flags(CLI::App* c, GenFlags& o) {
  c->add_option("-m,--model", o.model, "GGUF file or Hugging Face folder")->required();
  c->add_option("-n,--n-predict", o.n_predict, "max tokens to generate (default -1: until end of generation)");
  c->add_option("--temp", o.temperature, "temperature (default 1.0; 0 = greedy)");
  c->add_option("--top-k", o.top_k, "top-k (default 64; 0 = off)");
  c->add_option("--top-p", o.top_p, "top-p (default 0.95; 1 = off)");
  c->add_option("--min-p", o.min_p, "min-p (default 0 = off)");
  c->add_option("--repeat-penalty", o.repeat_penalty, "repetition penalty (default 1.0 = off)");
  c->add_option("--presence-penalty", o.presence_penalty, "presence penalty (default 0 = off)");
  c->add_option("--frequency-penalty", o.frequency_penalty, "frequency penalty (default 0 = off)");
  c->add_option("--repeat-last-n", o.repeat_last_n, "tokens the penalties look back over (default 64)");
  c->add_option("--seed", o.seed, "RNG seed (default: random)");
  c->add_option("--ctx", o.ctx, "context length in tokens (default: min(model maximum, 8192))");
  c->add_flag("--truncate", o.truncate, "keep the end of a prompt that is longer than the context");
  c->add_option("--kv-type", o.kv_type,
                std::string("KV cache element type: ") + attn::kv_type_choices() + " (default " +
                    attn::kv_type_name(attn::kDefaultKvType) + ")");
  c->add_option("-t,--threads", o.threads, "worker threads (default: physical cores)");
  c->add_option("--batch", o.batch, "prefill chunk size in tokens (default 64)");
  c->add_flag("--ignore-eos", o.ignore_eos, "do not stop at end-of-generation tokens");
  c->add_flag("-v,--verbose", o.verbose, "print settings and speed to stderr");
}

SamplerParams sampler_params(const GenFlags& o) {
  SamplerParams p;
  p.temperature = o.temperature;
  p.top_k = o.top_k;
  p.top_p = o.top_p;
  p.min_p = o.min_p;
  p.repeat_penalty = o.repeat_penalty;
  p.presence_penalty = o.presence_penalty;
  p.frequency_penalty = o.frequency_penalty;
  p.penalty_last_n = o.repeat_last_n;
  p.seed = o.seed >= 0 ? static_cast<uint64_t>(o.seed)
                       : (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  p.validate();
  return p;
}

GenerateOptions generate_options(const GenFlags& o) {
  GenerateOptions g;
  g.max_tokens = o.n_predict;
  g.truncate = o.truncate;
  g.ignore_eos = o.ignore_eos;
  return g;
}

// The loaded model and everything around it.
struct Engine {
  std::unique_ptr<Model> model;
  Tokenizer tok;
  std::unique_ptr<Generator> gen;
  std::unique_ptr<Sampler> sampler;
};

Engine load_engine(const GenFlags& o) {
  if (o.threads < 0) fail("-t/--threads must not be negative");
  if (o.batch < 1) fail("--batch must be at least 1");
  if (o.ctx < 0) fail("--ctx must not be negative");
  const SamplerParams sp = sampler_params(o);
  auto ck = std::make_shared<Checkpoint>(Checkpoint::open(o.model));
  const ModelConfig& c = ck->config();
  Engine e;
  e.tok = tokenizer_for_checkpoint(*ck);
  ModelParams mp;
  mp.n_ctx = o.ctx > 0 ? o.ctx : default_context_length(c);
  mp.max_batch = o.batch;
  mp.n_threads = o.threads;
  mp.kv_type = attn::parse_kv_type(o.kv_type);
  if (o.verbose && o.ctx > 0 && c.max_context > 0 && o.ctx > c.max_context)
    std::fprintf(stderr, "note: --ctx %lld exceeds the model's maximum %d; using %d\n",
                 static_cast<long long>(o.ctx), c.max_context, c.max_context);
  e.model = std::make_unique<Model>(ck, mp);
  e.gen = std::make_unique<Generator>(*e.model, e.tok);
  e.sampler = std::make_unique<Sampler>(sp, static_cast<int32_t>(e.model->vocab_size()));
  if (o.verbose) {
    std::fprintf(stderr, "model: %s (%s, %d layers, vocab %d)\n", o.model.c_str(), variant_name(c.variant()),
                 c.n_layers, c.vocab_size);
    std::fprintf(stderr, "context: %lld tokens (%s; model maximum %d), prefill chunk %lld, threads %d\n",
                 static_cast<long long>(e.model->n_ctx()), o.ctx > 0 ? "--ctx" : "default min(model maximum, 8192)",
                 c.max_context, static_cast<long long>(e.model->max_batch()), e.model->n_threads());
    const KvCache& kv = e.model->cache();
    std::fprintf(stderr, "KV cache: %s, %.2f MiB reserved for the full context (attention kernels: %s)\n",
                 attn::kv_type_name(kv.type()).c_str(), static_cast<double>(kv.reserved_bytes()) / (1024.0 * 1024.0),
                 attn::isa_name(e.model->attention_table().isa));
    std::fprintf(stderr, "sampling: %s\n", sp.describe().c_str());
  }
  return e;
}

void write_out(std::string_view s) {
  if (s.empty()) return;
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

void print_stats(const Engine& e, const GenerationStats& s) {
  std::fprintf(stderr,
               "prompt: %lld tokens (%lld reused from the cache, %lld prefilled%s) in %.3f s = %.1f tok/s\n",
               static_cast<long long>(s.n_prompt), static_cast<long long>(s.n_reused),
               static_cast<long long>(s.n_prefilled), s.n_truncated > 0 ? ", truncated" : "", s.prefill_s,
               s.prefill_tps());
  std::fprintf(stderr, "decode: %lld tokens in %.3f s = %.1f tok/s; time to first token %.3f s; stop: %s\n",
               static_cast<long long>(s.n_sampled), s.decode_s, s.decode_tps(), s.ttft_s, stop_reason_name(s.stop));
  const KvCache& kv = e.model->cache();
  constexpr double kMiB = 1024.0 * 1024.0;
  std::fprintf(stderr,
               "KV cache: %.2f MiB resident for %lld of %lld positions (%s; %.2f MiB reserved for the full context)\n",
               static_cast<double>(kv.resident_bytes()) / kMiB, static_cast<long long>(e.model->n_past()),
               static_cast<long long>(e.model->n_ctx()), attn::kv_type_name(kv.type()).c_str(),
               static_cast<double>(kv.reserved_bytes()) / kMiB);
}

void report_stop(const GenerationStats& s, int64_t n_ctx) {
  if (s.stop == StopReason::ContextFull)
    std::fprintf(stderr, "\n[context full: all %lld positions are used]\n", static_cast<long long>(n_ctx));
  if (s.n_truncated > 0)
    std::fprintf(stderr, "[prompt truncated: the first %lld tokens after <bos> were dropped]\n",
                 static_cast<long long>(s.n_truncated));
}

// ---- run ---------------------------------------------------------------------

void run_completion(const GenFlags& o) {
  Engine e = load_engine(o);
  const std::vector<int32_t> ids = e.tok.encode(o.prompt, o.parse_special, /*add_bos=*/!o.no_bos);
  install_sigint_handler();
  const GenerateOptions g = generate_options(o);
  const GenerationResult r =
      e.gen->generate(ids, *e.sampler, g, [](int32_t, std::string_view text) { write_out(text); }, &g_interrupted);
  write_out("\n");
  report_stop(r.stats, e.model->n_ctx());
  if (r.stats.stop == StopReason::Cancelled) std::fprintf(stderr, "[interrupted]\n");
  if (o.verbose) print_stats(e, r.stats);
}

// ---- chat --------------------------------------------------------------------

class ChatPrinter {
 public:
  explicit ChatPrinter(bool show_thinking) : show_thinking_(show_thinking), tty_(isatty(STDOUT_FILENO) == 1) {}
  void operator()(ChatChannel ch, std::string_view text) {
    if (ch == ChatChannel::Thinking) {
      if (!show_thinking_) return;
      if (!in_thinking_) {
        write_out(tty_ ? "\x1b[2m" : "[thinking]\n");
        in_thinking_ = true;
      }
      write_out(text);
      return;
    }
    close_thinking();
    write_out(text);
  }
  void end_turn() {
    close_thinking();
    write_out("\n");
  }

 private:
  void close_thinking() {
    if (!in_thinking_) return;
    write_out(tty_ ? "\x1b[0m\n" : "\n[/thinking]\n");
    in_thinking_ = false;
  }
  bool show_thinking_;
  bool tty_;
  bool in_thinking_ = false;
};

// Returns false when the session should end.
bool chat_turn(Engine& e, ChatSession& s, const GenFlags& o, const std::string& text) {
  ChatPrinter printer(o.think);
  g_interrupted.store(false);
  ChatTurn t;
  try {
    t = s.send(text, [&](ChatChannel ch, std::string_view piece) { printer(ch, piece); }, &g_interrupted);
  } catch (const Error& err) {
    std::fprintf(stderr, "error: %s\n", err.what());
    return true;  // the message was not kept; the user may /reset or go on
  }
  printer.end_turn();
  if (t.dropped_messages > 0)
    std::fprintf(stderr, "[dropped the %d oldest messages to fit the context]\n", t.dropped_messages);
  report_stop(t.stats, e.model->n_ctx());
  if (t.stats.stop == StopReason::Cancelled) std::fprintf(stderr, "[answer interrupted]\n");
  if (o.verbose) print_stats(e, t.stats);
  g_interrupted.store(false);
  return true;
}

void run_chat(const GenFlags& o, bool one_shot) {
  Engine e = load_engine(o);
  ChatSessionOptions so;
  so.system = o.system;
  so.thinking = o.think;
  so.gen = generate_options(o);
  ChatSession session(*e.gen, *e.sampler, so);
  if (o.verbose)
    std::fprintf(stderr, "chat template: %s model%s\n",
                 session.variant() == ChatVariant::Small ? "small (E2B/E4B)" : "large (12B/26B-A4B/31B)",
                 o.think ? ", thinking on" : "");
  install_sigint_handler();

  if (one_shot) {
    ChatPrinter printer(o.think);
    const ChatTurn t = session.send(o.prompt, [&](ChatChannel ch, std::string_view piece) { printer(ch, piece); },
                                    &g_interrupted);
    printer.end_turn();
    report_stop(t.stats, e.model->n_ctx());
    if (t.stats.stop == StopReason::Cancelled) std::fprintf(stderr, "[answer interrupted]\n");
    if (o.verbose) print_stats(e, t.stats);
    return;
  }

  const bool interactive = isatty(STDIN_FILENO) == 1;
  if (interactive)
    std::fprintf(stderr, "Chat with the model: one message per line; /reset clears the history, /exit quits.\n");
  char* line = nullptr;
  size_t cap = 0;
  for (;;) {
    if (interactive) write_out("> ");
    errno = 0;
    const ssize_t n = ::getline(&line, &cap, stdin);
    if (n < 0 || g_interrupted.load()) {  // EOF, or Ctrl-C at the prompt
      if (interactive) write_out("\n");
      break;
    }
    std::string text(line, static_cast<size_t>(n));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    if (text.empty()) continue;
    if (text == "/exit" || text == "/quit") break;
    if (text == "/reset") {
      session.reset();
      std::fprintf(stderr, "[conversation cleared]\n");
      continue;
    }
    chat_turn(e, session, o, text);
  }
  std::free(line);
}

}  // namespace

void add_generation_commands(CLI::App& app) {
  {
    auto o = std::make_shared<GenFlags>();
    CLI::App* c = app.add_subcommand("run", "Complete a raw prompt (no chat template), streamed to stdout");
    add_common_flags(c, *o);
    c->add_option("-p,--prompt", o->prompt, "the prompt text")->required();
    c->add_flag("--no-bos", o->no_bos, "do not prepend <bos>");
    c->add_flag("--parse-special", o->parse_special, "match control tokens (<|turn> ...) in the prompt as single ids");
    c->callback([o] { run_completion(*o); });
  }
  {
    auto o = std::make_shared<GenFlags>();
    CLI::App* c = app.add_subcommand("chat", "Chat with the model: -p for one turn, else one turn per stdin line");
    add_common_flags(c, *o);
    auto* p = c->add_option("-p,--prompt", o->prompt, "one user message: answer it and exit");
    c->add_option("--system", o->system, "system prompt");
    c->add_flag("--think", o->think, "enable thinking and show the thoughts");
    c->callback([o, p] { run_chat(*o, p->count() > 0); });
  }
}

}  // namespace g4::cli
