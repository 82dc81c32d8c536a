// Generation loop (src/runtime/generator.h) and chat session
// (src/runtime/chat_session.h) on tiny random-weight models written by
// make-test-model (synthetic 1024-token vocabulary) into a temp folder:
//   * greedy generation through the KV cache (chunked prefill + decode, across
//     the sliding window) equals the argmax chain of full forward passes
//     without any cache reuse, for E2B (KV sharing, PLE), 26B-A4B (MoE) and 31B;
//   * prefix reuse (generator and chat session) gives the tokens of a fresh run;
//   * stop tokens, max tokens, context overflow (error / --truncate / full),
//     cancellation within one token;
//   * the decode loop does not allocate;
//   * thinking/answer splitting and chat template choices.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "model/forward.h"
#include "runtime/chat_session.h"
#include "runtime/generator.h"
#include "runtime/sampler.h"
#include "text/tokenizer.h"
#include "text/utf8.h"
#include "tools/test_model.h"

namespace fs = std::filesystem;
using namespace g4;

#include "alloc_counter.h"  // replaces operator new in this test binary
#include "test_util.h"

namespace {

fs::path temp_dir() { return testutil::process_temp_dir("g4_generation"); }

// One tiny model per architecture, written once per test program.
const std::string& model_path(TestArch arch) {
  static std::map<TestArch, std::string> paths;
  auto it = paths.find(arch);
  if (it != paths.end()) return it->second;
  TestModelOptions o;
  o.arch = arch;
  o.scale = TestScale::Tiny;
  o.format = TestFormat::Gguf;
  o.type = GgmlType::F32;
  o.seed = 7;
  o.threads = 2;
  o.out = (temp_dir() / (std::string(test_arch_name(arch)) + ".gguf")).string();
  write_test_model(o);
  return paths[arch] = o.out;
}

struct Loaded {
  std::unique_ptr<Model> model;
  Tokenizer tok;
  std::unique_ptr<Generator> gen;
};

Loaded load(TestArch arch, int64_t n_ctx, int64_t max_batch = 8) {
  Loaded l;
  ModelParams p;
  p.n_ctx = n_ctx;
  p.max_batch = max_batch;
  p.n_threads = 2;
  l.model = Model::open(model_path(arch), p);
  l.tok = tokenizer_for_checkpoint(l.model->checkpoint());
  l.gen = std::make_unique<Generator>(*l.model, l.tok);
  return l;
}

// Ordinary (non-control) ids of the synthetic vocabulary, after <bos>.
std::vector<int32_t> random_prompt(size_t n, uint64_t seed, bool bos = true) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> d(494, 1000);
  std::vector<int32_t> v;
  if (bos) v.push_back(2);
  while (v.size() < n) v.push_back(d(rng));
  return v;
}

SamplerParams greedy() {
  SamplerParams p;
  p.temperature = 0.f;
  return p;
}

GenerateOptions opts(int64_t max_tokens, bool ignore_eos = true) {
  GenerateOptions o;
  o.max_tokens = max_tokens;
  o.ignore_eos = ignore_eos;
  return o;
}

int32_t argmax(std::span<const float> l) {
  return static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
}

}  // namespace

// ---- cache correctness --------------------------------------------------------

class GreedyChain : public ::testing::TestWithParam<TestArch> {};

TEST_P(GreedyChain, EqualsArgmaxOfFullForwardPasses) {
  Loaded g = load(GetParam(), 160, 8);  // chunks of 8; windows of 16/32 get crossed
  Sampler s(greedy(), static_cast<int32_t>(g.model->vocab_size()));
  const std::vector<int32_t> prompt = random_prompt(21, 3);
  const GenerationResult r = g.gen->generate(prompt, s, opts(60));
  ASSERT_EQ(r.tokens.size(), 60u);
  EXPECT_EQ(r.stats.stop, StopReason::MaxTokens);
  EXPECT_EQ(r.stats.n_prefilled, 21);
  EXPECT_EQ(r.stats.n_decoded, 59);

  // Reference: a fresh full forward pass for every step (no cache reuse), one chunk.
  ModelParams p;
  p.n_ctx = 160;
  p.max_batch = 160;
  p.n_threads = 2;
  auto ref = Model::open(model_path(GetParam()), p);
  std::vector<int32_t> seq = prompt;
  int exact = 0;
  for (size_t i = 0; i < r.tokens.size(); ++i) {
    ref->reset();
    const auto l = ref->forward(seq, LogitsMode::Last);
    const int32_t want = argmax(l);
    if (want == r.tokens[i]) {
      ++exact;
    } else {
      // Only a near-tie may differ (batched vs single-token arithmetic).
      EXPECT_NEAR(l[static_cast<size_t>(r.tokens[i])], l[static_cast<size_t>(want)], 1e-4)
          << "step " << i << ": generated " << r.tokens[i] << ", argmax " << want;
    }
    seq.push_back(r.tokens[i]);
  }
  EXPECT_GE(exact, 59) << "of 60 tokens equal to the reference argmax";
  // The cache holds the prompt and every generated token but the last.
  ASSERT_EQ(g.gen->cached().size(), prompt.size() + r.tokens.size() - 1);
  EXPECT_TRUE(std::equal(prompt.begin(), prompt.end(), g.gen->cached().begin()));
}

INSTANTIATE_TEST_SUITE_P(Archs, GreedyChain, ::testing::Values(TestArch::E2B, TestArch::A26B, TestArch::D31B),
                         [](const auto& info) {
                           std::string n = test_arch_name(info.param);
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(Generator, PrefixReuseGivesTheTokensOfAFreshRun) {
  Loaded a = load(TestArch::E2B, 128);
  Loaded b = load(TestArch::E2B, 128);
  const int32_t V = static_cast<int32_t>(a.model->vocab_size());
  Sampler sa(greedy(), V), sb(greedy(), V);
  std::vector<int32_t> p1 = random_prompt(12, 5);
  const GenerationResult r1 = a.gen->generate(p1, sa, opts(10));
  // Next prompt = previous prompt + answer + more.
  std::vector<int32_t> p2 = p1;
  p2.insert(p2.end(), r1.tokens.begin(), r1.tokens.end());
  for (int32_t t : random_prompt(7, 6, false)) p2.push_back(t);
  const GenerationResult r2 = a.gen->generate(p2, sa, opts(12));
  EXPECT_EQ(r2.stats.n_reused, static_cast<int64_t>(p1.size() + r1.tokens.size() - 1));
  EXPECT_EQ(r2.stats.n_prefilled, static_cast<int64_t>(p2.size()) - r2.stats.n_reused);
  const GenerationResult fresh = b.gen->generate(p2, sb, opts(12));
  EXPECT_EQ(fresh.stats.n_reused, 0);
  EXPECT_EQ(r2.tokens, fresh.tokens);
  // A prompt that diverges from the cache: reset and full prefill.
  std::vector<int32_t> p3 = p2;
  p3[5] = p3[5] == 600 ? 601 : 600;
  const GenerationResult r3 = a.gen->generate(p3, sa, opts(5));
  EXPECT_EQ(r3.stats.n_reused, 0);
  EXPECT_EQ(r3.stats.n_prefilled, static_cast<int64_t>(p3.size()));
  // The same prompt again (nothing new to prefill): rebuilt, same answer.
  const GenerationResult r4 = a.gen->generate(p3, sa, opts(5));
  EXPECT_EQ(r4.tokens, r3.tokens);
}

// ---- stopping -----------------------------------------------------------------

TEST(Generator, StopTokensEndGeneration) {
  Loaded g = load(TestArch::E2B, 128);
  const int32_t V = static_cast<int32_t>(g.model->vocab_size());
  // The end-of-generation set: <eos> 1, <turn|> 106, <|tool_response> 50.
  GenerateOptions def;
  for (int32_t id : {1, 106, 50}) EXPECT_TRUE(g.gen->is_stop(id, def)) << id;
  for (int32_t id : {0, 2, 105, 107, 600}) EXPECT_FALSE(g.gen->is_stop(id, def)) << id;
  EXPECT_FALSE(g.gen->is_stop(106, opts(-1, /*ignore_eos=*/true)));

  Sampler s(greedy(), V);
  const std::vector<int32_t> prompt = random_prompt(10, 8);
  const GenerationResult full = g.gen->generate(prompt, s, opts(12));
  ASSERT_EQ(full.tokens.size(), 12u);
  // Make the 5th token a stop token (first occurrence).
  size_t k = 4;
  while (std::find(full.tokens.begin(), full.tokens.begin() + static_cast<std::ptrdiff_t>(k), full.tokens[k]) !=
         full.tokens.begin() + static_cast<std::ptrdiff_t>(k))
    ++k;
  GenerateOptions o = opts(12);
  o.extra_stop_ids = {full.tokens[k]};
  std::vector<int32_t> streamed;
  const GenerationResult r = g.gen->generate(prompt, s, o, [&](int32_t id, std::string_view) {
    if (id >= 0) streamed.push_back(id);
  });
  EXPECT_EQ(r.stats.stop, StopReason::EndOfGeneration);
  EXPECT_EQ(r.stop_token, full.tokens[k]);
  EXPECT_EQ(r.tokens, std::vector<int32_t>(full.tokens.begin(), full.tokens.begin() + static_cast<std::ptrdiff_t>(k)));
  EXPECT_EQ(streamed, r.tokens) << "the stop token is not streamed";
  EXPECT_EQ(r.stats.n_sampled, static_cast<int64_t>(k) + 1);

  // max_tokens: exactly that many; 0: none.
  EXPECT_EQ(g.gen->generate(prompt, s, opts(3)).tokens.size(), 3u);
  const GenerationResult none = g.gen->generate(prompt, s, opts(0));
  EXPECT_TRUE(none.tokens.empty());
  EXPECT_EQ(none.stats.stop, StopReason::MaxTokens);
}

TEST(Generator, ContextOverflowIsAClearError) {
  Loaded g = load(TestArch::E2B, 32);
  Sampler s(greedy(), static_cast<int32_t>(g.model->vocab_size()));
  const std::vector<int32_t> prompt = random_prompt(40, 9);
  try {
    g.gen->generate(prompt, s, opts(4));
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("40 tokens"), std::string::npos) << m;
    EXPECT_NE(m.find("context holds 32"), std::string::npos) << m;
    EXPECT_NE(m.find("--truncate"), std::string::npos) << m;
  }
  EXPECT_TRUE(g.gen->cached().empty());
  EXPECT_THROW(g.gen->generate(std::vector<int32_t>{}, s, opts(4)), Error);
}

TEST(Generator, TruncateKeepsBosAndTheTail) {
  Loaded g = load(TestArch::E2B, 32);
  Sampler s(greedy(), static_cast<int32_t>(g.model->vocab_size()));
  const std::vector<int32_t> prompt = random_prompt(40, 9);
  GenerateOptions o = opts(4);
  o.truncate = true;
  const GenerationResult r = g.gen->generate(prompt, s, o);
  // Room for min(4, 32/2) tokens: 28 kept = <bos> + the last 27.
  EXPECT_EQ(r.stats.n_prompt, 28);
  EXPECT_EQ(r.stats.n_truncated, 12);
  std::vector<int32_t> want = {2};
  want.insert(want.end(), prompt.end() - 27, prompt.end());
  ASSERT_GE(g.gen->cached().size(), want.size());
  EXPECT_TRUE(std::equal(want.begin(), want.end(), g.gen->cached().begin()));
  EXPECT_EQ(r.tokens.size(), 4u);
  // Same as generating from the truncated prompt directly.
  Loaded h = load(TestArch::E2B, 32);
  Sampler s2(greedy(), static_cast<int32_t>(h.model->vocab_size()));
  EXPECT_EQ(h.gen->generate(want, s2, opts(4)).tokens, r.tokens);
  // Without <bos> in front: just the tail.
  const std::vector<int32_t> nobos = random_prompt(40, 10, false);
  const std::vector<int32_t> fitted = g.gen->fit_prompt(nobos, o);
  EXPECT_EQ(fitted, std::vector<int32_t>(nobos.end() - 28, nobos.end()));
}

TEST(Generator, StopsWhenTheContextIsFull) {
  Loaded g = load(TestArch::E2B, 32);
  Sampler s(greedy(), static_cast<int32_t>(g.model->vocab_size()));
  const GenerationResult r = g.gen->generate(random_prompt(20, 11), s, opts(-1));
  EXPECT_EQ(r.stats.stop, StopReason::ContextFull);
  EXPECT_EQ(r.tokens.size(), 13u);  // 32 − 20 fed + the last one drawn
  EXPECT_EQ(g.model->n_past(), 32);
}

TEST(Generator, CancellationStopsWithinOneToken) {
  Loaded g = load(TestArch::E2B, 128);
  Sampler s(greedy(), static_cast<int32_t>(g.model->vocab_size()));
  std::atomic<bool> cancel{false};
  int seen = 0;
  const GenerationResult r = g.gen->generate(random_prompt(10, 12), s, opts(50), [&](int32_t id, std::string_view) {
    if (id >= 0 && ++seen == 3) cancel = true;  // raised while token 3 is delivered
  }, &cancel);
  EXPECT_EQ(r.stats.stop, StopReason::Cancelled);
  EXPECT_LE(r.tokens.size(), 4u);
  EXPECT_GE(r.tokens.size(), 3u);

  // Raised from another thread while token 5 is being delivered (the
  // callback waits for it, so the test does not depend on timing).
  cancel = false;
  std::atomic<int> n{0};
  std::thread t([&] {
    while (n.load() < 5) std::this_thread::yield();
    cancel = true;
  });
  const GenerationResult r2 = g.gen->generate(random_prompt(10, 13), s, opts(100), [&](int32_t id, std::string_view) {
    if (id < 0) return;
    if (++n == 5)
      while (!cancel.load()) std::this_thread::yield();
  }, &cancel);
  t.join();
  EXPECT_EQ(r2.stats.stop, StopReason::Cancelled);
  EXPECT_EQ(r2.tokens.size(), 5u);

  // Already raised: nothing is prefilled or generated.
  cancel = true;
  const GenerationResult r3 = g.gen->generate(random_prompt(10, 14), s, opts(50), {}, &cancel);
  EXPECT_EQ(r3.stats.stop, StopReason::Cancelled);
  EXPECT_TRUE(r3.tokens.empty());
}

TEST(Generator, DecodeLoopDoesNotAllocate) {
  if (!G4_COUNT_ALLOCS) GTEST_SKIP() << "allocation counting is off under AddressSanitizer";
  Loaded g = load(TestArch::E2B, 256);
  SamplerParams p;  // defaults: top-k 64, top-p 0.95
  p.seed = 3;
  p.repeat_penalty = 1.1f;
  Sampler s(p, static_cast<int32_t>(g.model->vocab_size()));
  // Allocations between two callbacks = one decode step (forward, sampling,
  // detokenisation of the new token). Tokenizer::Stream returns std::string,
  // which allocates for a piece longer than the small-string buffer (15
  // bytes, e.g. a run of 16+ newlines): those steps are exempt.
  long last = -1;
  int n = 0, checked = 0;
  std::vector<std::string> offenders;
  const GenerationResult r = g.gen->generate(random_prompt(30, 15), s, opts(80), [&](int32_t id, std::string_view t) {
    if (id < 0) return;
    const long now = g_allocs.load();
    if (++n >= 2 && t.size() <= 15) {
      ++checked;
      if (now != last) offenders.push_back("token " + std::to_string(n) + " (id " + std::to_string(id) + "): " +
                                           std::to_string(now - last) + " allocations");
    }
    last = g_allocs.load();
  });
  ASSERT_EQ(r.tokens.size(), 80u);
  EXPECT_GE(checked, 60);
  EXPECT_TRUE(offenders.empty()) << offenders.front();
}

TEST(Generator, StreamedTextEqualsDecode) {
  Loaded g = load(TestArch::E2B, 128);
  SamplerParams p;
  p.seed = 11;
  Sampler s(p, static_cast<int32_t>(g.model->vocab_size()));
  std::string text;
  int finals = 0;
  const GenerationResult r = g.gen->generate(random_prompt(8, 16), s, opts(40), [&](int32_t id, std::string_view t) {
    text += t;
    finals += id < 0;
  });
  EXPECT_EQ(finals, 1);
  EXPECT_EQ(text, utf8::sanitize(g.tok.decode(r.tokens)));
  EXPECT_GE(r.stats.ttft_s, 0.0);
  EXPECT_GT(r.stats.prefill_tps(), 0.0);
  EXPECT_GT(r.stats.decode_tps(), 0.0);
}

// ---- chat ---------------------------------------------------------------------

TEST(ThoughtSplitter, SplitsThinkingFromTheAnswer) {
  Loaded g = load(TestArch::E2B, 32);
  ThoughtSplitter sp(g.tok);
  const int32_t open = *g.tok.find("<|channel>"), close = *g.tok.find("<channel|>");
  std::string think, ans;
  const ChatSink sink = [&](ChatChannel ch, std::string_view t) { (ch == ChatChannel::Thinking ? think : ans) += t; };
  const int32_t x = 600;  // any ordinary id
  sp.push(open, "<|channel>", sink);
  sp.push(x, "tho", sink);
  sp.push(x, "ught", sink);
  sp.push(x, "\n", sink);
  sp.push(x, "Let me", sink);
  sp.push(x, " think.\n", sink);
  sp.push(close, "<channel|>", sink);
  sp.push(x, "\n", sink);
  sp.push(x, "Hi", sink);
  sp.push(x, " there", sink);
  sp.push(-1, "", sink);
  sp.finish(sink);
  EXPECT_EQ(think, "Let me think.\n");
  EXPECT_EQ(ans, "Hi there");
  EXPECT_EQ(sp.thinking(), think);
  EXPECT_EQ(sp.answer(), ans);

  // Empty thought (budget 0 style), a lone trailing <channel|>, no label.
  sp.clear();
  think.clear(), ans.clear();
  sp.push(open, "<|channel>", sink);
  sp.push(x, "thought", sink);
  sp.push(close, "<channel|>", sink);
  sp.push(x, "Answer", sink);
  sp.push(close, "<channel|>", sink);
  EXPECT_EQ(think, "");
  EXPECT_EQ(ans, "Answer");
  sp.clear();
  think.clear(), ans.clear();
  sp.push(open, "<|channel>", sink);
  sp.push(x, "Direct thoughts", sink);
  sp.push(open, "<|channel>", sink);  // stray: ignored
  sp.push(close, "<channel|>", sink);
  sp.push(x, "A", sink);
  EXPECT_EQ(think, "Direct thoughts");
  EXPECT_EQ(ans, "A");
}

TEST(ChatSession, TemplateVariantAndThinking) {
  Loaded e2b = load(TestArch::E2B, 64);
  Loaded d31 = load(TestArch::D31B, 64);
  EXPECT_EQ(chat_variant_for(e2b.model->config()), ChatVariant::Small);
  EXPECT_EQ(chat_variant_for(d31.model->config()), ChatVariant::Large);
  Sampler s(greedy(), static_cast<int32_t>(e2b.model->vocab_size()));
  ChatSessionOptions o;
  o.system = "Be brief.";
  ChatSession small(*e2b.gen, s, o);
  ChatSession large(*d31.gen, s, o);
  EXPECT_EQ(small.render(), "<bos><|turn>system\nBe brief.<turn|>\n<|turn>model\n");
  EXPECT_EQ(large.render(), "<bos><|turn>system\nBe brief.<turn|>\n<|turn>model\n<|channel>thought\n<channel|>");
  o.thinking = true;
  ChatSession think(*d31.gen, s, o);
  EXPECT_EQ(think.render(), "<bos><|turn>system\n<|think|>\nBe brief.<turn|>\n<|turn>model\n");
}

// Every turn of a long-lived session equals a fresh session given the same
// history. With one-token answers the cache (prompt, the answer token is not
// fed) is always a prefix of the next prompt, so every later turn prefills only
// its suffix; with longer answers the cache is reused whenever the answer
// re-tokenises to the same ids (random weights often emit byte tokens or
// pieces plain BPE never produces, so some turns rebuild).
TEST(ChatSession, PrefixReuseGivesTheTokensOfAFreshSession) {
  for (int64_t max_tokens : {1, 4}) {
    Loaded a = load(TestArch::E2B, 512);
    Sampler sa(greedy(), static_cast<int32_t>(a.model->vocab_size()));
    ChatSessionOptions o;
    o.system = "You are a test.";
    o.gen.max_tokens = max_tokens;
    ChatSession chat(*a.gen, sa, o);
    const char* const turns[] = {"hello", "the cat", "a house", "and then", "more text", "why"};
    int reused_turns = 0;
    for (const char* text : turns) {
      const std::vector<ChatMessage> before = chat.messages();
      const ChatTurn t = chat.send(text);
      if (t.stats.n_reused > 0) {
        ++reused_turns;
        EXPECT_EQ(t.stats.n_prefilled + t.stats.n_reused, t.stats.n_prompt);
      }
      Loaded b = load(TestArch::E2B, 512);
      Sampler sb(greedy(), static_cast<int32_t>(b.model->vocab_size()));
      ChatSession fresh(*b.gen, sb, o);
      fresh.set_messages(before);
      const ChatTurn f = fresh.send(text);
      EXPECT_EQ(f.stats.n_reused, 0);
      EXPECT_EQ(t.tokens, f.tokens) << "turn '" << text << "', max_tokens " << max_tokens;
      EXPECT_EQ(t.stats.n_prompt, f.stats.n_prompt);
      EXPECT_EQ(chat.messages().size(), before.size() + 2);
    }
    if (max_tokens == 1) {
      EXPECT_EQ(reused_turns, 5) << "every turn after the first reuses the cache";
    }
  }
}

TEST(ChatSession, ContextLimitsAndTruncation) {
  Loaded g = load(TestArch::E2B, 64);
  Sampler s(greedy(), static_cast<int32_t>(g.model->vocab_size()));
  ChatSessionOptions o;
  o.system = "sys";
  o.gen.max_tokens = 6;
  ChatSession chat(*g.gen, s, o);
  // Without truncate: an error once the conversation no longer fits; the
  // failed message is not kept.
  bool failed = false;
  for (int i = 0; i < 20 && !failed; ++i) {
    const size_t n = chat.messages().size();
    try {
      chat.send("the house and the cat and the dog");
    } catch (const Error& e) {
      failed = true;
      EXPECT_NE(std::string(e.what()).find("context"), std::string::npos) << e.what();
      EXPECT_EQ(chat.messages().size(), n);
    }
  }
  EXPECT_TRUE(failed);
  // With truncate: the oldest turns go, the system message stays.
  o.gen.truncate = true;
  ChatSession t(*g.gen, s, o);
  int dropped = 0;
  for (int i = 0; i < 12; ++i) dropped += t.send("the house and the cat and the dog").dropped_messages;
  EXPECT_GT(dropped, 0);
  ASSERT_FALSE(t.messages().empty());
  EXPECT_EQ(t.messages()[0].role, ChatRole::System);
  EXPECT_EQ(t.messages()[1].role, ChatRole::User);
  // One message that cannot fit at all is an error even with truncate.
  std::string huge;
  for (int i = 0; i < 100; ++i) huge += "the cat ";
  EXPECT_THROW(t.send(huge), Error);
}
