// Tokenizer encode throughput on one core (the tokenizer is single-threaded).
//
//   bench_tokenizer [TOKENIZER] [--mb N]
//
// TOKENIZER defaults to tests/oracle/llama.cpp-src/models/ggml-vocab-gemma-4.gguf.
// Inputs are built from tests/oracle/tokenizer_corpus.json (ordinary text
// entries: ~50 scripts, code, emoji, whitespace and digit runs):
//   mixed      the corpus repeated to ~N MB (default 10), newlines kept
//   line 1 MB / 4 MB   the same text with every '\n' replaced by ' ': one
//              newline-free line (time per MB must not grow with the size)
//   worst 1 MB / 4 MB  one character repeated ("a" / "的"): a single BPE
//              segment with no boundary at all, through the heap path
// Prints MB/s (1 MB = 2^20 bytes) and tokens/s; best of several runs.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "text/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) g4::fail("cannot open '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Result {
  double seconds;
  size_t tokens;
};

Result time_encode(const g4::Tokenizer& tok, const std::string& text, int reps) {
  Result best{1e30, 0};
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    auto ids = tok.encode(text);
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (s < best.seconds) best = {s, ids.size()};
  }
  return best;
}

void report(const char* name, const std::string& text, const Result& r) {
  const double mb = static_cast<double>(text.size()) / (1 << 20);
  std::printf("%-22s %8.2f MB  %8.1f ms  %8.2f MB/s  %6.1f ms/MB  %7.2f Mtok/s  (%zu tokens, %.2f bytes/token)\n", name,
              mb, r.seconds * 1e3, mb / r.seconds, r.seconds * 1e3 / mb, r.tokens / r.seconds / 1e6, r.tokens,
              static_cast<double>(text.size()) / static_cast<double>(r.tokens));
}

std::string repeat_to(const std::string& unit, size_t bytes) {
  std::string s;
  s.reserve(bytes + unit.size());
  while (s.size() < bytes) s += unit;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string src = GEMMA4_SOURCE_DIR;
    std::string model = src + "/tests/oracle/llama.cpp-src/models/ggml-vocab-gemma-4.gguf";
    double mixed_mb = 10;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--mb" && i + 1 < argc) mixed_mb = std::atof(argv[++i]);
      else model = a;
    }
    auto t0 = Clock::now();
    g4::Tokenizer tok = g4::Tokenizer::load(model);
    std::printf("tokenizer: %s (%d tokens), loaded in %.0f ms\n", model.c_str(), tok.n_vocab(),
                std::chrono::duration<double>(Clock::now() - t0).count() * 1e3);

    nlohmann::json corpus = nlohmann::json::parse(read_file(src + "/tests/oracle/tokenizer_corpus.json"));
    std::string unit;
    for (const auto& e : corpus["entries"]) {
      if (!e.contains("text") || e.value("special", false)) continue;
      unit += e["text"].get<std::string>();
      unit += "\n";
    }
    std::printf("corpus unit: %zu bytes\n\n", unit.size());

    std::string mixed = repeat_to(unit, static_cast<size_t>(mixed_mb * (1 << 20)));
    tok.encode(mixed);  // warm up (page in tables)
    report("mixed", mixed, time_encode(tok, mixed, 3));

    std::string flat = unit;
    for (char& c : flat)
      if (c == '\n') c = ' ';
    for (size_t mb : {1, 4}) {
      std::string line = repeat_to(flat, mb << 20);
      char name[64];
      std::snprintf(name, sizeof name, "line %zu MB (no \\n)", mb);
      report(name, line, time_encode(tok, line, 3));
    }
    for (size_t mb : {1, 4}) {
      std::string a = repeat_to("a", mb << 20);
      char name[64];
      std::snprintf(name, sizeof name, "worst 'a' x %zu MB", mb);
      report(name, a, time_encode(tok, a, 2));
    }
    for (size_t mb : {1, 4}) {
      std::string cjk = repeat_to("\xE7\x9A\x84", mb << 20);  // 的
      char name[64];
      std::snprintf(name, sizeof name, "worst '的' x %zu MB", mb);
      report(name, cjk, time_encode(tok, cjk, 2));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
