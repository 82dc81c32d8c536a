// `gemma4 run` and `gemma4 chat` end to end: the real binary on a tiny
// random-weight model (synthetic vocabulary), stdin through a pipe (not a
// TTY), stdout and stderr captured separately.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tools/test_model.h"

namespace fs = std::filesystem;
using namespace g4;

namespace {

fs::path temp_dir() {
  static const fs::path p = [] {
    fs::path d = fs::temp_directory_path() / ("g4_cli_generation_" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  return p;
}

const std::string& model() {
  static const std::string path = [] {
    TestModelOptions o;
    o.arch = TestArch::E2B;
    o.type = GgmlType::F32;
    o.seed = 5;
    o.threads = 2;
    o.out = (temp_dir() / "e2b.gguf").string();
    write_test_model(o);
    return o.out;
  }();
  return path;
}

class Env : public ::testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(temp_dir(), ec);
  }
};
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new Env);

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

struct Result {
  int code = -1;
  std::string out, err;
};

// Runs `cat INPUT | gemma4 ARGS`.
Result run(const std::string& args, const std::string& input = "") {
  const fs::path in = temp_dir() / "stdin.txt", out = temp_dir() / "stdout.txt", err = temp_dir() / "stderr.txt";
  std::ofstream(in, std::ios::binary) << input;
  const std::string bin = std::string(GEMMA4_BINARY_DIR) + "/gemma4";
  const std::string cmd = "cat " + quote(in.string()) + " | " + quote(bin) + " " + args + " > " +
                          quote(out.string()) + " 2> " + quote(err.string());
  const int st = std::system(cmd.c_str());
  Result r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t i = s.find(what); i != std::string::npos; i = s.find(what, i + 1)) ++n;
  return n;
}

// The numbers after "prompt: " in -v output, in order.
std::vector<long> prompt_tokens(const std::string& err) {
  std::vector<long> v;
  for (size_t i = err.find("prompt: "); i != std::string::npos; i = err.find("prompt: ", i + 1))
    v.push_back(std::strtol(err.c_str() + i + 8, nullptr, 10));
  return v;
}

}  // namespace

TEST(CliRun, StreamsACompletionAndPrintsStats) {
  const Result r = run("run -m " + quote(model()) + " -p 'hello world' -n 12 --seed 1 -t 2 -v");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(r.out.empty());
  for (const char* s : {"context: 8192 tokens", "sampling: temp 1.00, top_k 64, top_p 0.95", "prompt: ",
                        "tok/s", "decode: 12 tokens", "time to first token", "KV cache:", "MiB", "stop: max tokens"})
    EXPECT_NE(r.err.find(s), std::string::npos) << "missing '" << s << "' in:\n" << r.err;
  // Same seed, same text; greedy too.
  EXPECT_EQ(run("run -m " + quote(model()) + " -p 'hello world' -n 12 --seed 1 -t 2").out, r.out);
  const Result g1 = run("run -m " + quote(model()) + " -p 'hello world' -n 12 --temp 0");
  const Result g2 = run("run -m " + quote(model()) + " -p 'hello world' -n 12 --temp 0 --seed 99");
  ASSERT_EQ(g1.code, 0) << g1.err;
  EXPECT_EQ(g1.out, g2.out);
}

TEST(CliRun, ContextErrorsAndTruncate) {
  std::string prompt;
  for (int i = 0; i < 40; ++i) prompt += "the cat ";
  const Result e = run("run -m " + quote(model()) + " -p " + quote(prompt) + " -n 4 --ctx 32");
  EXPECT_EQ(e.code, 1);
  EXPECT_NE(e.err.find("error: the prompt has"), std::string::npos) << e.err;
  EXPECT_NE(e.err.find("--truncate"), std::string::npos) << e.err;
  const Result t = run("run -m " + quote(model()) + " -p " + quote(prompt) + " -n 4 --ctx 32 --truncate -v");
  EXPECT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.err.find("prompt truncated"), std::string::npos) << t.err;
  const Result full = run("run -m " + quote(model()) + " -p 'hi' --ctx 16 --ignore-eos");
  EXPECT_EQ(full.code, 0) << full.err;
  EXPECT_NE(full.err.find("context full"), std::string::npos) << full.err;
  const Result bad = run("run -m " + quote(model()) + " -p hi --top-p -1");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("top_p"), std::string::npos) << bad.err;
}

TEST(CliChat, OneShotPrompt) {
  const Result r = run("chat -m " + quote(model()) + " -p 'Hi there' -n 8 --seed 1 -v");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(r.out.empty());
  EXPECT_EQ(count(r.err, "decode: "), 1) << r.err;
  EXPECT_NE(r.err.find("chat template: small"), std::string::npos) << r.err;
  // It answers without reading stdin.
  const Result t = run("chat -m " + quote(model()) + " -p 'Hi there' -n 8 --seed 1 --think", "/exit\n");
  EXPECT_EQ(t.code, 0) << t.err;
}

TEST(CliChat, PipedTurnsResetAndExit) {
  const Result r = run("chat -m " + quote(model()) + " -n 4 --temp 0 -v --system 'Be brief.'",
                       "hello\n\nhello again\n/reset\nhello\n/exit\nnever answered\n");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(count(r.err, "[conversation cleared]"), 1) << r.err;
  const std::vector<long> p = prompt_tokens(r.err);
  ASSERT_EQ(p.size(), 3u) << "three turns (the empty line is skipped, nothing after /exit):\n" << r.err;
  EXPECT_GT(p[1], p[0]) << "the second turn carries the first";
  EXPECT_EQ(p[2], p[0]) << "/reset: the third turn starts a new conversation";
  EXPECT_NE(r.err.find("reused from the cache"), std::string::npos);

  // EOF ends the session too.
  const Result eof = run("chat -m " + quote(model()) + " -n 4 --temp 0 -v", "one\ntwo");
  ASSERT_EQ(eof.code, 0) << eof.err;
  EXPECT_EQ(prompt_tokens(eof.err).size(), 2u) << eof.err;
  // /exit first: no turn at all.
  const Result ex = run("chat -m " + quote(model()) + " -n 4", "/exit\nhello\n");
  EXPECT_EQ(ex.code, 0) << ex.err;
  EXPECT_TRUE(ex.out.empty()) << ex.out;
}
