// tokenizer.* metadata from a Hugging Face folder (tools/hf_tokenizer_gguf.h)
// against what llama.cpp's converter writes: the expectations come from
// reading gguf-py (vocab.py: LlamaHfVocab, SpecialVocab) and
// conversion/gemma.py (Gemma4Model.set_vocab), and from the real
// ggml-vocab-gemma-4.gguf, which that converter produced.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "test_util.h"
#include "text/tokenizer.h"
#include "tokenizer_test_util.h"
#include "tools/hf_tokenizer_gguf.h"
#include "tools/test_model.h"

namespace g4 {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testutil::expect_error;
using testutil::TempDir;

bool same_value(const GgufValue& a, const GgufValue& b) {
  if (a.type != b.type) return false;
  if (a.is_array()) {
    const auto& x = a.as_array();
    const auto& y = b.as_array();
    if (a.elem_type != b.elem_type || x.size() != y.size()) return false;
    for (size_t i = 0; i < x.size(); ++i)
      if (!same_value(x[i], y[i])) return false;
    return true;
  }
  if (a.v.index() != b.v.index()) return false;
  switch (a.v.index()) {
    case 0:
      return std::get<0>(a.v) == std::get<0>(b.v);
    case 1:
      return std::get<1>(a.v) == std::get<1>(b.v);
    case 2:
      return std::get<2>(a.v) == std::get<2>(b.v);
    case 3:
      return std::get<3>(a.v) == std::get<3>(b.v);
    case 4:
      return std::get<4>(a.v) == std::get<4>(b.v);
    default:
      return false;
  }
}

std::map<std::string, const GgufValue*> by_key(const std::vector<std::pair<std::string, GgufValue>>& kv) {
  std::map<std::string, const GgufValue*> m;
  for (const auto& [k, v] : kv) m[k] = &v;
  return m;
}

std::vector<std::string> key_order(const std::vector<std::pair<std::string, GgufValue>>& kv) {
  std::vector<std::string> k;
  for (const auto& p : kv) k.push_back(p.first);
  return k;
}

void write(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f << s;
}

// A HF folder as make-test-model writes it, without weights.
void write_hf_tokenizer_folder(const fs::path& dir, const TestVocab& v) {
  fs::create_directories(dir);
  write_hf_tokenizer_files(dir.string(), v);
  const ModelConfig c = test_model_config(TestArch::D31B, TestScale::Tiny, v.size());
  write(dir / "config.json", hf_config_json(c, v, "float32").dump(2));
}

TEST(HfTokenizerGguf, SyntheticVocabInTheConvertersKeyOrder) {
  TempDir tmp;
  const TestVocab v = synthetic_test_vocab(1024);
  write_hf_tokenizer_folder(tmp.path(), v);
  const HfTokenizerGguf t = hf_tokenizer_gguf(tmp.path().string());
  // SpecialVocab: merges, then ids in (bos, eos, unk, sep, pad, cls, mask)
  // order, then add_* in insertion order: bos (TemplateProcessing's leading
  // <bos>), sep (its pair template has no separator: false), eos (from
  // tokenizer_config's add_eos_token); Gemma4Model.set_vocab then sets
  // add_space_prefix and overwrites add_bos_token in place.
  EXPECT_EQ(key_order(t.keys),
            (std::vector<std::string>{
                "tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
                "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.mask_token_id",
                "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_sep_token", "tokenizer.ggml.add_eos_token",
                "tokenizer.ggml.add_space_prefix"}));
  auto m = by_key(t.keys);
  EXPECT_EQ(m["tokenizer.ggml.model"]->as_string(), "gemma4");
  const auto& tokens = m["tokenizer.ggml.tokens"]->as_array();
  ASSERT_EQ(tokens.size(), 1024u);
  for (size_t i = 0; i < tokens.size(); ++i) ASSERT_EQ(tokens[i].as_string(), v.tokens[i]) << i;
  const auto& types = m["tokenizer.ggml.token_type"]->as_array();
  EXPECT_EQ(m["tokenizer.ggml.token_type"]->elem_type, GgufType::INT32);
  for (size_t i = 0; i < types.size(); ++i) ASSERT_EQ(types[i].as_i64(), v.token_types[i]) << v.tokens[i];
  EXPECT_EQ(m["tokenizer.ggml.scores"]->elem_type, GgufType::FLOAT32);
  for (const GgufValue& s : m["tokenizer.ggml.scores"]->as_array()) ASSERT_EQ(s.as_f64(), -1000.0);
  const auto& merges = m["tokenizer.ggml.merges"]->as_array();
  ASSERT_EQ(merges.size(), v.merges.size());
  for (size_t i = 0; i < merges.size(); ++i) ASSERT_EQ(merges[i].as_string(), v.merges[i]);
  EXPECT_EQ(m["tokenizer.ggml.bos_token_id"]->type, GgufType::UINT32);
  EXPECT_EQ(m["tokenizer.ggml.bos_token_id"]->as_i64(), 2);
  EXPECT_EQ(m["tokenizer.ggml.eos_token_id"]->as_i64(), 1);
  EXPECT_EQ(m["tokenizer.ggml.unknown_token_id"]->as_i64(), 3);
  EXPECT_EQ(m["tokenizer.ggml.padding_token_id"]->as_i64(), 0);
  EXPECT_EQ(m["tokenizer.ggml.mask_token_id"]->as_i64(), 4);
  EXPECT_TRUE(m["tokenizer.ggml.add_bos_token"]->as_bool());
  EXPECT_FALSE(m["tokenizer.ggml.add_eos_token"]->as_bool());
  EXPECT_FALSE(m["tokenizer.ggml.add_sep_token"]->as_bool());
  EXPECT_FALSE(m["tokenizer.ggml.add_space_prefix"]->as_bool());
  EXPECT_EQ(t.n_tokens, 1024);
  // len(model.vocab) + len(added_tokens): the converter counts added tokens twice.
  int n_added = 0;
  for (int32_t ty : v.token_types) n_added += ty == 3 || ty == 4;
  EXPECT_EQ(t.n_vocab_rows, 1024 + n_added);
}

TEST(HfTokenizerGguf, RealVocabReproducesTheLlamaCppFile) {
  const std::string real = testutil::gguf_vocab_path();
  if (!testutil::exists(real)) G4_MISSING_TEST_DATA("models/ggml-vocab-gemma-4.gguf");
  TempDir tmp;
  const TestVocab v = load_test_vocab(real);
  write_hf_tokenizer_folder(tmp.path(), v);
  const HfTokenizerGguf t = hf_tokenizer_gguf(tmp.path().string());
  const GgufFile ref = GgufFile::open(real);
  auto m = by_key(t.keys);
  // Every tokenizer key of the converter's own file, value for value.
  for (const auto& [k, val] : ref.metadata()) {
    if (k.rfind("tokenizer.", 0) != 0) continue;
    ASSERT_TRUE(m.count(k)) << "missing " << k;
    EXPECT_TRUE(same_value(*m[k], val)) << "differs: " << k;
  }
  // And the ids tokenize the 46 official vectors exactly.
  const fs::path out = tmp.path() / "tok.gguf";
  {
    GgufWriter w(out.string());
    w.set("general.architecture", GgufValue::str("gemma4"));
    for (const auto& [k, val] : t.keys) w.set(k, val);
    w.write_header();
    w.finish();
  }
  const Tokenizer tok = Tokenizer::from_gguf(GgufFile::open(out.string()));
  const auto vectors = testutil::load_vocab_vectors(testutil::models_dir() + "/ggml-vocab-gemma-4.gguf.inp",
                                                    testutil::models_dir() + "/ggml-vocab-gemma-4.gguf.out");
  ASSERT_EQ(vectors.size(), 46u);
  int exact = 0;
  for (const auto& vec : vectors) {
    const auto ids = tok.encode(vec.text);
    EXPECT_EQ(testutil::ids_str(ids), testutil::ids_str(vec.ids)) << vec.text;
    exact += ids == vec.ids;
  }
  EXPECT_EQ(exact, 46);
}

// ---- hand-made folders: gguf-py's rules one by one ------------------------------

struct Mini {
  json tok;  // tokenizer.json
  json tc;   // tokenizer_config.json (null: absent)
  json cfg = json::object();
};

// A 10-token byte-fallback BPE: <pad> <eos> <bos> <0x41> a b ab <s> </s> <eot>.
Mini mini() {
  Mini m;
  m.tok = {{"version", "1.0"},
           {"added_tokens", json::array({{{"id", 0}, {"content", "<pad>"}, {"special", true}},
                                         {{"id", 1}, {"content", "<eos>"}, {"special", true}},
                                         {{"id", 2}, {"content", "<bos>"}, {"special", true}},
                                         {{"id", 7}, {"content", "<s>"}, {"special", true}},
                                         {{"id", 8}, {"content", "</s>"}, {"special", true}},
                                         {{"id", 9}, {"content", "<eot>"}, {"special", true}}})},
           {"normalizer", nullptr},
           {"post_processor", nullptr},
           {"decoder", {{"type", "Sequence"}, {"decoders", json::array()}}},
           {"model",
            {{"type", "BPE"},
             {"byte_fallback", true},
             {"vocab",
              {{"<pad>", 0},
               {"<eos>", 1},
               {"<bos>", 2},
               {"<0x41>", 3},
               {"a", 4},
               {"b", 5},
               {"ab", 6},
               {"<s>", 7},
               {"</s>", 8},
               {"<eot>", 9}}},
             {"merges", json::array({json::array({"a", "b"})})}}}};
  m.tc = {{"bos_token", "<bos>"}, {"eos_token", "<eos>"}, {"pad_token", "<pad>"}};
  return m;
}

HfTokenizerGguf convert(const TempDir& tmp, const Mini& m) {
  write(tmp.path() / "tokenizer.json", m.tok.dump());
  if (!m.tc.is_null()) write(tmp.path() / "tokenizer_config.json", m.tc.dump());
  write(tmp.path() / "config.json", m.cfg.dump());
  return hf_tokenizer_gguf(tmp.path().string());
}

TEST(HfTokenizerGguf, TokenTypesAndScores) {
  TempDir tmp;
  Mini m = mini();
  m.tc["extra_special_tokens"] = {{"eot_token", "<eot>"}};
  const auto t = convert(tmp, m);
  auto k = by_key(t.keys);
  std::vector<int64_t> types;
  for (const auto& x : k["tokenizer.ggml.token_type"]->as_array()) types.push_back(x.as_i64());
  // CONTROL: the named special tokens (bos, eos, pad) and extra_special_tokens
  // (<eot>); <s> and </s> are special in tokenizer.json but named nowhere:
  // NORMAL, as in the real Gemma 4 file (its <unusedN> added tokens).
  EXPECT_EQ(types, (std::vector<int64_t>{3, 3, 3, 6, 1, 1, 1, 1, 1, 3}));
  EXPECT_EQ(k["tokenizer.ggml.merges"]->as_array().at(0).as_string(), "a b");
}

TEST(HfTokenizerGguf, MergesWithSpacesAndAddedTokensAboveTheVocab) {
  TempDir tmp;
  Mini m = mini();
  m.tok["model"]["merges"] = json::array({json::array({"a b", "c"}), "a b"});
  m.tok["added_tokens"].push_back({{"id", 10}, {"content", "<|channel>"}, {"special", true}});
  m.tok["added_tokens"].push_back({{"id", 11}, {"content", "<extra>"}, {"special", false}});
  m.tok["added_tokens"].push_back({{"id", 12}, {"content", "<named>"}, {"special", true}});
  m.tc["named_token"] = "<named>";
  const auto t = convert(tmp, m);
  auto k = by_key(t.keys);
  const auto& merges = k["tokenizer.ggml.merges"]->as_array();
  EXPECT_EQ(merges.at(0).as_string(),
            "a\xC4\xA0"
            "b c");  // gguf-py: ' ' -> chr(ord(' ') + 256)
  EXPECT_EQ(merges.at(1).as_string(), "a b");
  const auto& tokens = k["tokenizer.ggml.tokens"]->as_array();
  ASSERT_EQ(tokens.size(), 13u);
  EXPECT_EQ(tokens[11].as_string(), "<extra>");
  const auto& types = k["tokenizer.ggml.token_type"]->as_array();
  EXPECT_EQ(types[10].as_i64(), 4);  // visible marker: USER_DEFINED
  EXPECT_EQ(types[11].as_i64(), 4);  // added above the vocab, not special: USER_DEFINED
  EXPECT_EQ(types[12].as_i64(), 3);  // named special: CONTROL
  EXPECT_EQ(t.n_tokens, 13);
  EXPECT_EQ(t.n_vocab_rows, 10 + 9);
}

TEST(HfTokenizerGguf, TemplateEndingWithAnotherTokenMakesItEot) {
  // SpecialVocab: a TemplateProcessing that ends with a token other than
  // eos_token turns the old eos into eot and the trailing token into eos.
  TempDir tmp;
  Mini m = mini();
  m.tc["eos_token"] = "<eot>";
  m.tok["post_processor"] = {{"type", "TemplateProcessing"},
                             {"single", json::array({{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}},
                                                     {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                                     {{"SpecialToken", {{"id", "<eos>"}, {"type_id", 0}}}}})},
                             {"pair", json::array({{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}},
                                                   {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                                   {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}},
                                                   {{"Sequence", {{"id", "B"}, {"type_id", 1}}}},
                                                   {{"SpecialToken", {{"id", "<eos>"}, {"type_id", 1}}}}})}};
  const auto t = convert(tmp, m);
  auto k = by_key(t.keys);
  EXPECT_EQ(k["tokenizer.ggml.eos_token_id"]->as_i64(), 1);  // <eos>, the template's last token
  EXPECT_EQ(k["tokenizer.ggml.eot_token_id"]->as_i64(), 9);  // <eot>, the configured eos
  EXPECT_TRUE(k["tokenizer.ggml.add_eos_token"]->as_bool());
  // The pair's separator </s> is neither sep nor eos: add_sep false.
  EXPECT_FALSE(k["tokenizer.ggml.add_sep_token"]->as_bool());
}

TEST(HfTokenizerGguf, RobertaProcessingAndConfigFallbacks) {
  TempDir tmp;
  Mini m = mini();
  m.tok["post_processor"] = {
      {"type", "RobertaProcessing"}, {"sep", json::array({"</s>", 8})}, {"cls", json::array({"<s>", 7})}};
  m.tc.erase("pad_token");
  m.cfg = {{"text_config", {{"pad_token_id", 0}, {"unk_token_id", 4}}}};
  const auto t = convert(tmp, m);
  auto k = by_key(t.keys);
  EXPECT_TRUE(k["tokenizer.ggml.add_bos_token"]->as_bool());
  EXPECT_TRUE(k["tokenizer.ggml.add_eos_token"]->as_bool());
  EXPECT_TRUE(k["tokenizer.ggml.add_sep_token"]->as_bool());
  EXPECT_EQ(k["tokenizer.ggml.seperator_token_id"]->as_i64(), 8);  // gguf-py's spelling
  EXPECT_EQ(k["tokenizer.ggml.padding_token_id"]->as_i64(), 0);    // config.json text_config fallback
  EXPECT_EQ(k["tokenizer.ggml.unknown_token_id"]->as_i64(), 4);
  EXPECT_FALSE(k.count("tokenizer.ggml.cls_token_id"));  // gguf-py has no writer for cls
}

TEST(HfTokenizerGguf, ChatTemplates) {
  {
    TempDir tmp;
    Mini m = mini();
    m.tc["chat_template"] = "{{ messages }}";
    write(tmp.path() / "chat_template.jinja", "ignored: tokenizer_config.json wins");
    const auto res = convert(tmp, m);
    auto k = by_key(res.keys);
    EXPECT_EQ(k["tokenizer.chat_template"]->as_string(), "{{ messages }}");
  }
  {
    TempDir tmp;
    write(tmp.path() / "chat_template.jinja", "DEFAULT");
    write(tmp.path() / "additional_chat_templates" / "tool-use.jinja", "TOOLS");
    const auto res = convert(tmp, mini());
    auto k = by_key(res.keys);
    EXPECT_EQ(k["tokenizer.chat_template"]->as_string(), "DEFAULT");
    EXPECT_EQ(k["tokenizer.chat_template.tool_use"]->as_string(), "TOOLS");  // name sanitised like gguf-py
    ASSERT_TRUE(k.count("tokenizer.chat_templates"));
    EXPECT_EQ(k["tokenizer.chat_templates"]->as_array().at(0).as_string(), "tool_use");
  }
  {
    // Without tokenizer_config.json gguf-py stops before the chat template.
    TempDir tmp;
    Mini m = mini();
    m.tc = nullptr;
    write(tmp.path() / "chat_template.jinja", "DEFAULT");
    const auto res = convert(tmp, m);
    auto k = by_key(res.keys);
    EXPECT_FALSE(k.count("tokenizer.chat_template"));
  }
}

TEST(HfTokenizerGguf, NormalizerFlags) {
  TempDir tmp;
  Mini m = mini();
  m.tok["normalizer"] = {{"type", "Sequence"},
                         {"normalizers", json::array({{{"type", "Lowercase"}}, {{"type", "StripAccents"}}})}};
  const auto res = convert(tmp, m);
  auto k = by_key(res.keys);
  EXPECT_TRUE(k["tokenizer.ggml.normalizer.lowercase"]->as_bool());
  EXPECT_TRUE(k["tokenizer.ggml.normalizer.strip_accents"]->as_bool());
}

TEST(HfTokenizerGguf, Errors) {
  {
    TempDir tmp;
    expect_error([&] { hf_tokenizer_gguf(tmp.path().string()); }, {"no tokenizer.json"});
  }
  {
    TempDir tmp;
    Mini m = mini();
    m.tok["model"]["type"] = "Unigram";
    expect_error([&] { convert(tmp, m); }, {"not a byte-fallback BPE"});
  }
  {
    TempDir tmp;
    Mini m = mini();
    m.tok["model"]["vocab"].erase("b");  // id 5 missing
    m.tok["model"]["vocab"]["b"] = 10;
    expect_error([&] { convert(tmp, m); }, {"outside [0, 10)"});
  }
  {
    TempDir tmp;
    Mini m = mini();
    m.tok["added_tokens"].push_back({{"id", 12}, {"content", "<gap>"}, {"special", true}});
    expect_error([&] { convert(tmp, m); }, {"hole at 10"});
  }
  {
    TempDir tmp;
    write(tmp.path() / "tokenizer.json", "{\"model\": {\"vocab\": {\"a\": 0,");
    expect_error([&] { hf_tokenizer_gguf(tmp.path().string()); }, {"tokenizer.json", "not valid JSON"});
  }
}

}  // namespace
}  // namespace g4
