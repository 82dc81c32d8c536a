#include "tools/test_model.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/cpu_features.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/kernels.h"

namespace g4 {
namespace fs = std::filesystem;
using json = nlohmann::json;

// ============================================================================
// names
// ============================================================================

std::optional<TestArch> test_arch_from_name(std::string_view n) {
  if (n == "e2b" || n == "E2B") return TestArch::E2B;
  if (n == "e4b" || n == "E4B") return TestArch::E4B;
  if (n == "26b-a4b" || n == "26B-A4B" || n == "26b" || n == "a4b") return TestArch::A26B;
  if (n == "31b" || n == "31B") return TestArch::D31B;
  return std::nullopt;
}

const char* test_arch_name(TestArch a) {
  switch (a) {
    case TestArch::E2B: return "e2b";
    case TestArch::E4B: return "e4b";
    case TestArch::A26B: return "26b-a4b";
    case TestArch::D31B: return "31b";
  }
  return "?";
}

std::optional<TestScale> test_scale_from_name(std::string_view n) {
  if (n == "tiny") return TestScale::Tiny;
  if (n == "full") return TestScale::Full;
  return std::nullopt;
}

const char* test_scale_name(TestScale s) { return s == TestScale::Tiny ? "tiny" : "full"; }

std::optional<TestFormat> test_format_from_name(std::string_view n) {
  if (n == "gguf") return TestFormat::Gguf;
  if (n == "hf" || n == "safetensors") return TestFormat::Hf;
  return std::nullopt;
}

// ============================================================================
// configs
// ============================================================================

namespace {

// (n_sliding × sliding, 1 × full) repeated `repeats` times.
std::vector<LayerType> pattern(int n_sliding, int repeats) {
  std::vector<LayerType> t;
  for (int r = 0; r < repeats; ++r) {
    for (int i = 0; i < n_sliding; ++i) t.push_back(LayerType::Sliding);
    t.push_back(LayerType::Full);
  }
  return t;
}

}  // namespace

ModelConfig test_model_config(TestArch arch, TestScale scale, int vocab_size) {
  if (vocab_size <= 0) fail("test model: vocab size must be positive, got ", vocab_size);
  ModelConfig c;
  const bool full = scale == TestScale::Full;
  switch (arch) {
    case TestArch::E2B:
      // Tiny: (4S,1F)x2; the last 5 layers read the K/V of layers 3 (sliding)
      // and 4 (full) — the donors llama.cpp's fixed offsets also pick.
      c.layer_types = full ? pattern(4, 7) : pattern(4, 2);
      c.hidden = full ? 1536 : 64;
      c.n_heads = full ? 8 : 4;
      c.n_kv_heads = 1;
      c.ffn_dim = full ? 6144 : 96;
      c.double_wide_mlp = true;
      c.n_kv_shared_layers = full ? 20 : 5;
      c.ple_dim = full ? 256 : 16;
      c.sliding_window = full ? 512 : 16;
      c.max_context = full ? 131072 : 8192;
      break;
    case TestArch::E4B:
      c.layer_types = full ? pattern(5, 7) : pattern(5, 2);
      c.hidden = full ? 2560 : 96;
      c.n_heads = full ? 8 : 4;
      c.n_kv_heads = 2;
      c.ffn_dim = full ? 10240 : 160;
      c.n_kv_shared_layers = full ? 18 : 6;
      c.ple_dim = full ? 256 : 16;
      c.sliding_window = full ? 512 : 16;
      c.max_context = full ? 131072 : 8192;
      break;
    case TestArch::A26B:
      c.layer_types = full ? pattern(5, 5) : pattern(5, 2);
      c.hidden = full ? 2816 : 64;
      c.n_heads = full ? 16 : 4;
      c.n_kv_heads = full ? 8 : 2;
      c.n_global_kv_heads = full ? 2 : 1;
      c.ffn_dim = full ? 2112 : 64;
      c.moe = true;
      c.n_experts = full ? 128 : 8;
      c.n_experts_used = full ? 8 : 2;
      c.expert_ffn_dim = full ? 704 : 32;
      c.k_eq_v = true;
      c.sliding_window = full ? 1024 : 32;
      c.max_context = full ? 262144 : 8192;
      break;
    case TestArch::D31B:
      c.layer_types = full ? pattern(5, 10) : pattern(5, 2);
      c.hidden = full ? 5376 : 128;
      c.n_heads = full ? 32 : 4;
      c.n_kv_heads = full ? 16 : 2;
      c.n_global_kv_heads = full ? 4 : 1;
      c.ffn_dim = full ? 21504 : 256;
      c.k_eq_v = true;
      c.sliding_window = full ? 1024 : 32;
      c.max_context = full ? 262144 : 8192;
      break;
  }
  c.n_layers = static_cast<int>(c.layer_types.size());
  c.head_dim = full ? 256 : 32;
  c.global_head_dim = full ? 512 : 64;
  c.vocab_size = vocab_size;
  c.ple_vocab = vocab_size;
  c.rope_theta_sliding = 10000.f;
  c.rope_theta_full = 1000000.f;
  c.partial_rotary_factor_full = 0.25f;
  c.final_softcap = 30.f;
  c.rms_eps = 1e-6f;
  c.bos_id = 2;
  c.eos_id = 1;
  c.pad_id = 0;
  c.eos_ids = {1, 106};
  c.tie_embeddings = true;
  c.architecture = "Gemma4ForConditionalGeneration";
  c.derive();
  return c;
}

// ============================================================================
// vocabulary
// ============================================================================

namespace {

constexpr int32_t kTokNormal = 1, kTokControl = 3, kTokUserDefined = 4, kTokByte = 6;
const std::string kSpace = "\xE2\x96\x81";  // U+2581

const char* const kHtmlTags[] = {
    "<table>", "<caption>", "<thead>", "<tbody>", "<tfoot>", "<tr>", "<th>", "<td>",
    "</table>", "</caption>", "</thead>", "</tbody>", "</tfoot>", "</tr>", "</th>", "</td>",
    "<h1>", "<h2>", "<h3>", "<h4>", "<h5>", "<h6>", "<blockquote>", "</h1>", "</h2>", "</h3>",
    "</h4>", "</h5>", "</h6>", "</blockquote>", "<strong>", "<em>", "<b>", "<i>", "<u>", "<s>",
    "<sub>", "<sup>", "<code>", "</strong>", "</em>", "</b>", "</i>", "</u>", "</s>", "</sub>",
    "</sup>", "</code>", "<a>", "<html>", "<body>", "<img>", "<span>", "<bbox>", "<ul>", "<li>",
    "<div>", "<iframe>", "<footer>", "</a>", "</html>", "</body>", "</img>", "</span>", "</bbox>",
    "</ul>", "</li>", "</div>", "</iframe>", "</footer>"};

// Words whose pieces become merged tokens ('_' stands for U+2581).
const char* const kWords[] = {
    "_the", "_and", "_of", "_to", "_in", "_is", "_that", "_it", "_for", "_was", "_on", "_are",
    "_with", "_as", "_be", "_this", "_at", "_by", "_from", "_or", "_have", "_an", "_they",
    "_which", "_one", "_you", "_were", "_all", "_we", "_can", "_there", "_use", "_each",
    "_she", "_do", "_how", "_their", "_if", "_will", "_up", "_other", "_about", "_out", "_many",
    "_then", "_them", "_these", "_so", "_some", "_her", "_would", "_make", "_like", "_him",
    "_into", "_time", "_has", "_look", "_two", "_more", "_write", "_go", "_see", "_number",
    "_no", "_way", "_could", "_people", "_my", "_than", "_first", "_water", "_been", "_call",
    "_who", "_its", "_now", "_find", "_long", "_down", "_day", "_did", "_get", "_come",
    "_made", "_may", "_part", "_Hello", "_world", "_model", "_user", "_system", "_text",
    "_token", "_Gemma", "_test", "_What", "_The", "_A", "_I", "_It", "_In", "_This",
    "ing", "ed", "er", "es", "ly", "tion", "ment", "ness", "able", "al", "ic", "ous", "ive",
    "Hello", "world", "model", "user", "system", "thought", "the", "and", "to", "re",
    "in", "on", "at", "en", "an", "or", "is", "it", "ar", "le", "st", "nd", "ou", "ea",
    "_qu", "_quick", "_brown", "_fox", "_jumps", "_over", "_lazy", "_dog", "_sun", "_moon",
    "_star", "_tree", "_house", "_car", "_road", "_city", "_name", "_good", "_new", "_old",
    "_great", "_little", "_own", "_right", "_big", "_high", "_different", "_small", "_large",
    "_next", "_early", "_young", "_important", "_few", "_public", "_bad", "_same", "_able",
    "()", "{}", "[]", "==", "!=", "->", "::", "//", "/*", "*/", "_=", "_+", "_-", "_(", "_{",
    "_return", "_int", "_void", "_const", "_auto", "_class", "_struct", "_def", "_import",
    "_print", "_true", "_false", "_null", "_None", "_self", "_else", "_while", "_break",
};

std::string underscore_to_space(const char* w) {
  std::string s;
  for (const char* p = w; *p; ++p) {
    if (*p == '_' && p == w) s += kSpace;
    else s += *p;
  }
  return s;
}

// Splits a UTF-8 string into characters.
std::vector<std::string> utf8_chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

std::string repeat(const std::string& s, int n) {
  std::string r;
  for (int i = 0; i < n; ++i) r += s;
  return r;
}

}  // namespace

TestVocab synthetic_test_vocab(int size) {
  if (size < 1024) fail("synthetic vocab: size must be at least 1024, got ", size);
  TestVocab v;
  auto add = [&](std::string t, int32_t type) {
    v.tokens.push_back(std::move(t));
    v.token_types.push_back(type);
  };
  int unused = 0;
  auto add_unused_until = [&](int id) {
    while (v.size() < id) add("<unused" + std::to_string(unused++) + ">", kTokNormal);
  };
  // 0..106: the real special-token layout.
  for (const char* t : {"<pad>", "<eos>", "<bos>", "<unk>", "<mask>"}) add(t, kTokControl);
  add("[multimodal]", kTokNormal);
  add_unused_until(46);
  add("<|tool>", kTokControl);
  add("<tool|>", kTokControl);
  add("<|tool_call>", kTokUserDefined);
  add("<tool_call|>", kTokUserDefined);
  add("<|tool_response>", kTokUserDefined);
  add("<tool_response|>", kTokUserDefined);
  add("<|\"|>", kTokUserDefined);
  add_unused_until(98);
  add("<|think|>", kTokControl);
  add_unused_until(100);
  add("<|channel>", kTokUserDefined);
  add("<channel|>", kTokUserDefined);
  add_unused_until(105);
  add("<|turn>", kTokControl);
  add("<turn|>", kTokControl);
  // 107..137 newline runs, 138..167 ▁ runs, 168..237 HTML tags, 238..493 bytes.
  for (int n = 1; n <= 31; ++n) add(std::string(n, '\n'), kTokNormal);
  for (int n = 2; n <= 31; ++n) add(repeat(kSpace, n), kTokNormal);
  for (const char* t : kHtmlTags) add(t, kTokNormal);
  if (v.size() != 238) fail("synthetic vocab: internal layout error at byte tokens (", v.size(), ")");
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    add(buf, kTokByte);
  }
  // Single characters.
  add(kSpace, kTokNormal);
  for (int ch = 0x21; ch < 0x7f; ++ch) add(std::string(1, static_cast<char>(ch)), kTokNormal);

  // Merges: whitespace runs first (as in the real vocab), then word pieces.
  std::map<std::string, int32_t> index;
  for (int32_t i = 0; i < v.size(); ++i) index.emplace(v.tokens[i], i);
  std::set<std::string> merge_set;
  auto add_merge = [&](const std::string& a, const std::string& b) {
    std::string m = a + " " + b;
    if (merge_set.insert(m).second) v.merges.push_back(m);
  };
  for (const std::string& unit : {std::string("\n"), kSpace}) {
    for (int total = 2; total <= 31; ++total)
      for (int a = total - 1; a >= 1; --a) add_merge(repeat(unit, a), repeat(unit, total - a));
  }
  for (const char* w : kWords) {
    const std::vector<std::string> chars = utf8_chars(underscore_to_space(w));
    std::string prefix = chars[0];
    for (size_t k = 1; k < chars.size(); ++k) {
      std::string next = prefix + chars[k];
      if (!index.count(next)) {
        if (v.size() >= size) break;
        index.emplace(next, v.size());
        add(next, kTokNormal);
      }
      add_merge(prefix, chars[k]);
      prefix = next;
    }
  }
  add_unused_until(size);
  v.scores.assign(v.tokens.size(), -1000.f);
  v.bos_id = 2, v.eos_id = 1, v.unk_id = 3, v.pad_id = 0, v.mask_id = 4;
  v.add_bos = true;
  v.add_space_prefix = false;
  v.real = false;
  return v;
}

TestVocab load_test_vocab(const std::string& path) {
  GgufFile f = GgufFile::open(path);
  TestVocab v;
  v.real = true;
  for (const auto& [k, val] : f.metadata())
    if (k.rfind("tokenizer.", 0) == 0) v.gguf_keys.emplace_back(k, val);
  if (f.has("tokenizer.ggml.model") && f.get_string("tokenizer.ggml.model") != "gemma4")
    fail("vocab '", path, "': tokenizer.ggml.model is '", f.get_string("tokenizer.ggml.model"),
         "', expected 'gemma4'");
  v.tokens = f.get_strings("tokenizer.ggml.tokens");
  if (f.has("tokenizer.ggml.merges")) v.merges = f.get_strings("tokenizer.ggml.merges");
  if (f.has("tokenizer.ggml.scores")) {
    for (double s : f.get_f64s("tokenizer.ggml.scores")) v.scores.push_back(static_cast<float>(s));
  } else {
    v.scores.assign(v.tokens.size(), 0.f);
  }
  if (f.has("tokenizer.ggml.token_type")) {
    for (int64_t t : f.get_i64s("tokenizer.ggml.token_type")) v.token_types.push_back(static_cast<int32_t>(t));
  } else {
    v.token_types.assign(v.tokens.size(), kTokNormal);
  }
  if (v.tokens.empty()) fail("vocab '", path, "': no tokenizer.ggml.tokens");
  if (v.scores.size() != v.tokens.size() || v.token_types.size() != v.tokens.size())
    fail("vocab '", path, "': scores/token_type length differs from tokens");
  auto id = [&](const char* key, int32_t def) {
    return f.has(key) ? static_cast<int32_t>(f.get_i64(key)) : def;
  };
  v.bos_id = id("tokenizer.ggml.bos_token_id", 2);
  v.eos_id = id("tokenizer.ggml.eos_token_id", 1);
  v.unk_id = id("tokenizer.ggml.unknown_token_id", 3);
  v.pad_id = id("tokenizer.ggml.padding_token_id", 0);
  v.mask_id = id("tokenizer.ggml.mask_token_id", 4);
  if (f.has("tokenizer.ggml.add_bos_token")) v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token");
  if (f.has("tokenizer.ggml.add_space_prefix"))
    v.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix");
  if (f.has("tokenizer.chat_template")) v.chat_template = f.get_string("tokenizer.chat_template");
  return v;
}

// ============================================================================
// metadata
// ============================================================================

void set_gguf_tokenizer_metadata(GgufWriter& w, const TestVocab& v) {
  if (!v.gguf_keys.empty()) {
    for (const auto& [k, val] : v.gguf_keys) w.set(k, val);
    return;
  }
  w.set("tokenizer.ggml.model", GgufValue::str("gemma4"));
  w.set("tokenizer.ggml.tokens", GgufValue::strings(v.tokens));
  w.set("tokenizer.ggml.scores", GgufValue::f32s(v.scores));
  w.set("tokenizer.ggml.token_type", GgufValue::i32s(v.token_types));
  w.set("tokenizer.ggml.merges", GgufValue::strings(v.merges));
  w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(static_cast<uint32_t>(v.bos_id)));
  w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(static_cast<uint32_t>(v.eos_id)));
  w.set("tokenizer.ggml.unknown_token_id", GgufValue::u32(static_cast<uint32_t>(v.unk_id)));
  w.set("tokenizer.ggml.padding_token_id", GgufValue::u32(static_cast<uint32_t>(v.pad_id)));
  w.set("tokenizer.ggml.mask_token_id", GgufValue::u32(static_cast<uint32_t>(v.mask_id)));
  if (!v.chat_template.empty()) w.set("tokenizer.chat_template", GgufValue::str(v.chat_template));
  w.set("tokenizer.ggml.add_space_prefix", GgufValue::boolean(v.add_space_prefix));
  w.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(v.add_bos));
}

namespace {
// A float as the double with the same shortest decimal form (1e-6f -> 1e-06).
double fd(float x) {
  char b[32];
  auto res = std::to_chars(b, b + sizeof b, x);
  return std::strtod(std::string(b, res.ptr).c_str(), nullptr);
}
}  // namespace

json hf_config_json(const ModelConfig& c, const TestVocab& v, const std::string& dtype) {
  json layer_types = json::array();
  for (LayerType t : c.layer_types)
    layer_types.push_back(t == LayerType::Sliding ? "sliding_attention" : "full_attention");
  const bool e_model = c.ple_dim > 0;
  json tc = {
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"attention_k_eq_v", c.k_eq_v},
      {"bos_token_id", c.bos_id},
      {"dtype", dtype},
      {"enable_moe_block", c.moe},
      {"eos_token_id", c.eos_id},
      {"final_logit_softcapping", fd(c.final_softcap)},
      {"global_head_dim", c.global_head_dim},
      {"head_dim", c.head_dim},
      {"hidden_activation", "gelu_pytorch_tanh"},
      {"hidden_size", c.hidden},
      {"hidden_size_per_layer_input", c.ple_dim},
      {"initializer_range", 0.02},
      {"intermediate_size", c.ffn_dim},
      {"layer_types", layer_types},
      {"max_position_embeddings", c.max_context},
      {"model_type", "gemma4_text"},
      {"moe_intermediate_size", c.moe ? json(c.expert_ffn_dim) : json(nullptr)},
      {"num_attention_heads", c.n_heads},
      {"num_experts", c.moe ? json(c.n_experts) : json(nullptr)},
      {"num_global_key_value_heads", c.n_global_kv_heads > 0 ? json(c.n_global_kv_heads) : json(nullptr)},
      {"num_hidden_layers", c.n_layers},
      {"num_key_value_heads", c.n_kv_heads},
      {"num_kv_shared_layers", c.n_kv_shared_layers},
      {"pad_token_id", c.pad_id},
      {"rms_norm_eps", fd(c.rms_eps)},
      {"rope_parameters",
       {{"full_attention",
         {{"partial_rotary_factor", fd(c.partial_rotary_factor_full)},
          {"rope_theta", fd(c.rope_theta_full)},
          {"rope_type", "proportional"}}},
        {"sliding_attention", {{"rope_theta", fd(c.rope_theta_sliding)}, {"rope_type", "default"}}}}},
      {"sliding_window", c.sliding_window},
      {"tie_word_embeddings", c.tie_embeddings},
      {"top_k_experts", c.moe ? json(c.n_experts_used) : json(nullptr)},
      {"use_bidirectional_attention", e_model ? json(nullptr) : json("vision")},
      {"use_cache", true},
      {"use_double_wide_mlp", c.double_wide_mlp},
      {"vocab_size", c.vocab_size},
      {"vocab_size_per_layer_input", c.ple_vocab},
  };
  json j = {
      {"architectures", json::array({"Gemma4ForConditionalGeneration"})},
      {"audio_config", nullptr},
      {"dtype", dtype},
      {"eos_token_id", json::array({1, 106})},
      {"initializer_range", 0.02},
      {"model_type", "gemma4"},
      {"pad_token_id", c.pad_id},
      {"text_config", tc},
      {"tie_word_embeddings", c.tie_embeddings},
      {"transformers_version", "5.5.0"},
      {"vision_config", nullptr},
  };
  if (v.real && v.size() >= 262144) {
    j["boi_token_id"] = 255999;
    j["boa_token_id"] = 256000;
    j["image_token_id"] = 258880;
    j["audio_token_id"] = 258881;
    j["eoi_token_id"] = 258882;
    j["eoa_token_id"] = 258883;
    j["video_token_id"] = 258884;
  }
  return j;
}

namespace {

std::string jstr(const std::string& s) { return json(s).dump(); }

void write_text_file(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  if (!f) fail("cannot create '", p.string(), "'");
  f << text;
  f.close();
  if (!f) fail("error writing '", p.string(), "'");
}

}  // namespace

void write_hf_tokenizer_files(const std::string& dir, const TestVocab& v) {
  const fs::path d(dir);
  const std::string& bos = v.tokens.at(v.bos_id);
  // tokenizer.json, streamed (the real vocab has 262144 tokens, 514906 merges).
  {
    const fs::path p = d / "tokenizer.json";
    std::ofstream f(p, std::ios::binary);
    if (!f) fail("cannot create '", p.string(), "'");
    f << "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n";
    f << "  \"added_tokens\": [";
    bool first = true;
    for (int32_t i = 0; i < v.size(); ++i) {
      const int32_t t = v.token_types[i];
      if (t != kTokControl && t != kTokUserDefined) continue;
      json a = {{"id", i},           {"content", v.tokens[i]}, {"single_word", false},
                {"lstrip", false},   {"rstrip", false},        {"normalized", false},
                {"special", true}};
      f << (first ? "\n    " : ",\n    ") << a.dump();
      first = false;
    }
    f << "\n  ],\n";
    f << "  \"normalizer\": " << json({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpace}}).dump()
      << ",\n";
    f << "  \"pre_tokenizer\": "
      << json({{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "MergedWithPrevious"}, {"invert", false}})
             .dump()
      << ",\n";
    json post = {
        {"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"pair", json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                              {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
                              {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
        {"special_tokens", {{bos, {{"id", bos}, {"ids", json::array({v.bos_id})}, {"tokens", json::array({bos})}}}}},
    };
    f << "  \"post_processor\": " << post.dump() << ",\n";
    json dec = {{"type", "Sequence"},
                {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", kSpace}}}, {"content", " "}},
                                          {{"type", "ByteFallback"}},
                                          {{"type", "Fuse"}}})}};
    f << "  \"decoder\": " << dec.dump() << ",\n";
    f << "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": "
      << jstr(v.tokens.at(v.unk_id))
      << ",\n    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
         "    \"fuse_unk\": true,\n    \"byte_fallback\": true,\n    \"ignore_merges\": false,\n"
         "    \"vocab\": {";
    for (int32_t i = 0; i < v.size(); ++i) f << (i ? ",\n      " : "\n      ") << jstr(v.tokens[i]) << ": " << i;
    f << "\n    },\n    \"merges\": [";
    for (size_t i = 0; i < v.merges.size(); ++i) {
      const std::string& m = v.merges[i];
      const size_t sp = m.find(' ', 1);
      if (sp == std::string::npos) fail("vocab: merge ", i, " '", m, "' has no separator");
      f << (i ? ",\n      [" : "\n      [") << jstr(m.substr(0, sp)) << ", " << jstr(m.substr(sp + 1)) << "]";
    }
    f << "\n    ]\n  }\n}\n";
    f.close();
    if (!f) fail("error writing '", p.string(), "'");
  }
  // tokenizer_config.json
  {
    json added = json::object();
    for (int32_t i = 0; i < v.size(); ++i) {
      const int32_t t = v.token_types[i];
      if (t != kTokControl && t != kTokUserDefined) continue;
      added[std::to_string(i)] = {{"content", v.tokens[i]}, {"lstrip", false}, {"normalized", false},
                                  {"rstrip", false},        {"single_word", false}, {"special", true}};
    }
    json tc = {
        {"add_bos_token", v.add_bos},
        {"add_eos_token", false},
        {"added_tokens_decoder", added},
        {"backend", "tokenizers"},
        {"bos_token", bos},
        {"clean_up_tokenization_spaces", false},
        {"eos_token", v.tokens.at(v.eos_id)},
        {"mask_token", v.tokens.at(v.mask_id)},
        {"pad_token", v.tokens.at(v.pad_id)},
        {"padding_side", "left"},
        {"spaces_between_special_tokens", false},
        {"tokenizer_class", "GemmaTokenizer"},
        {"unk_token", v.tokens.at(v.unk_id)},
    };
    // Named special tokens of the Gemma 4 tokenizer config, where present.
    const std::pair<const char*, int32_t> named[] = {
        {"std_token", 46},   {"etd_token", 47},     {"stc_token", 48},    {"etc_token", 49},
        {"str_token", 50},   {"etr_token", 51},     {"escape_token", 52}, {"think_token", 98},
        {"soc_token", 100},  {"eoc_token", 101},    {"sot_token", 105},   {"eot_token", 106},
        {"boi_token", 255999}, {"boa_token", 256000}, {"image_token", 258880},
        {"audio_token", 258881}, {"eoi_token", 258882}, {"eoa_token", 258883}, {"video_token", 258884}};
    for (const auto& [key, id] : named) {
      if (id < v.size() && (v.token_types[id] == kTokControl || v.token_types[id] == kTokUserDefined))
        tc[key] = v.tokens[id];
    }
    if (!v.chat_template.empty()) tc["chat_template"] = v.chat_template;
    write_text_file(d / "tokenizer_config.json", tc.dump(2) + "\n");
  }
  // generation_config.json (IT checkpoints' stop set: <eos>, <turn|>, <|tool_response>).
  {
    json g = {{"bos_token_id", v.bos_id},
              {"eos_token_id", json::array({v.eos_id, 106, 50})},
              {"pad_token_id", v.pad_id},
              {"transformers_version", "5.5.0"}};
    write_text_file(d / "generation_config.json", g.dump(2) + "\n");
  }
}

// ============================================================================
// weights
// ============================================================================

namespace {

bool ends_with(std::string_view s, std::string_view suf) {
  return s.size() >= suf.size() && s.substr(s.size() - suf.size()) == suf;
}

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ULL;

}  // namespace

int64_t test_router_channels(const ModelConfig& c) { return c.moe ? std::max<int64_t>(1, c.hidden / 8) : 0; }

TestInit test_init_for(const TensorSpec& s, const ModelConfig& c) {
  const std::string& n = s.gguf_name;
  const uint64_t router_ch = static_cast<uint64_t>(test_router_channels(c));
  auto around = [](float center, float rel) { return TestInit{center * (1 - rel), center * (1 + rel), false}; };
  auto sym = [](double stddev) {
    const float a = static_cast<float>(stddev * std::sqrt(3.0));  // uniform with that std
    return TestInit{-a, a, false};
  };
  if (s.role == TensorRole::RopeFreqs || n == "rope_freqs.weight") return TestInit{0, 0, true};
  // Tied embedding: the head's logits have std ~3 (with a unit-RMS final state).
  if (n == "token_embd.weight") return sym(3.0 / std::sqrt(static_cast<double>(c.hidden)));
  // PLE table: tok_part = E_ple·sqrt(P) gets unit RMS.
  if (n == "per_layer_token_embd.weight") return sym(1.0 / std::sqrt(static_cast<double>(std::max(c.ple_dim, 1))));
  // Near 1 like the golden (transformers-initialised) models: a strong residual
  // stream keeps the model well-conditioned. (Released checkpoints carry
  // 0.04-0.6, with a residual stream that is far from unit scale.)
  if (ends_with(n, "layer_output_scale.weight")) return TestInit{0.95f, 1.0f, false};
  // q·k logits of std ~1 (attention scale is 1.0; the norm weights carry it):
  // soft attention keeps the model well-conditioned.
  if (ends_with(n, "attn_q_norm.weight") || ends_with(n, "attn_k_norm.weight")) {
    const double d = s.ne.empty() ? 1.0 : static_cast<double>(s.ne[0]);
    return around(static_cast<float>(std::sqrt(1.0 / std::sqrt(d))), 0.1f);
  }
  // Router: it reads only the first H/8 channels (see TestInit), which hold
  // 1-6% of the normalised residual's energy (more in early layers), so
  // weights of std 12 give expert logits of std ~1-3.
  if (ends_with(n, "ffn_gate_inp.weight")) return sym(12.0);
  if (ends_with(n, "ffn_gate_inp.scale")) {
    TestInit t = around(1.0f, 0.2f);
    t.zero_begin = router_ch;
    t.zero_end = static_cast<uint64_t>(c.hidden);
    return t;
  }
  if (ends_with(n, "ffn_down_exps.scale")) return around(1.0f, 0.2f);
  // Attention and FFN outputs of RMS ~2.5 next to the embedding's ~3 per
  // channel: after a few layers the residual is mostly context, so the tied
  // head does not just copy the current token (top-1 prob ~0.2, not ~1).
  // (The PLE branch keeps ~1: its output is a projection of only P gated
  // values, renormalised, so a strong PLE branch amplifies rounding noise.)
  // MoE: the attention and FFN branches do not write the router's channels.
  if (ends_with(n, "post_attention_norm.weight") || ends_with(n, "post_ffw_norm.weight")) {
    TestInit t = around(2.5f, 0.1f);
    if (router_ch > 0) {
      t.zero_begin = 0;
      t.zero_end = router_ch;
    }
    return t;
  }
  if (s.role == TensorRole::Norm || s.role == TensorRole::Scalar || s.ne.size() == 1) return around(1.0f, 0.1f);
  // Matrices: variance 1/fan_in (ne[0] is the input dimension in ggml order).
  const double fan_in = s.ne.empty() ? 1.0 : static_cast<double>(s.ne[0]);
  return sym(1.0 / std::sqrt(fan_in));
}

uint64_t test_tensor_key(uint64_t seed, const TensorSpec& s) {
  const std::string& name = s.hf_name.empty() ? s.gguf_name : s.hf_name;
  uint64_t h = 0xCBF29CE484222325ULL;  // FNV-1a
  for (unsigned char ch : name) {
    h ^= ch;
    h *= 0x100000001B3ULL;
  }
  return mix64(mix64(seed + kGamma) ^ h);
}

void generate_test_values(uint64_t key, const TestInit& init, uint64_t begin, uint64_t count, float* out) {
  const float lo = init.lo, span = init.hi - init.lo;
  constexpr float kInv24 = 1.0f / 16777216.0f;
  for (uint64_t k = 0; k < count; ++k) {
    const uint64_t r = mix64(key + (begin + k + 1) * kGamma);
    out[k] = lo + span * (static_cast<float>(r >> 40) * kInv24);
  }
  for (uint64_t i = std::max(begin, init.zero_begin); i < std::min(begin + count, init.zero_end); ++i)
    out[i - begin] = 0.f;
}

namespace {
bool is_block_type(GgmlType t) { return ggml_type_info(t).block_size > 1; }

// llama-quantize's fallback for rows that are not a multiple of the type's
// block (tensor_type_fallback): the K-quants drop to a 32-element type, and
// whatever still does not fit is F16. (Q8_K has no llama.cpp fallback: F16.)
GgmlType block_fallback(GgmlType type, int64_t ne0) {
  if (ne0 % ggml_type_info(type).block_size == 0) return type;
  GgmlType fb = GgmlType::F16;
  switch (type) {
    case GgmlType::Q4_K: fb = GgmlType::Q5_0; break;
    case GgmlType::Q5_K: fb = GgmlType::Q5_1; break;
    case GgmlType::Q6_K: fb = GgmlType::Q8_0; break;
    default: break;
  }
  return ne0 % ggml_type_info(fb).block_size == 0 ? fb : GgmlType::F16;
}
}  // namespace

GgmlType test_tensor_type(const TensorSpec& s, TestFormat f, GgmlType type) {
  if (s.role == TensorRole::RopeFreqs) return GgmlType::F32;
  if (f == TestFormat::Hf) return type;
  if (s.ne.size() <= 1) return GgmlType::F32;
  const std::string& n = s.gguf_name;
  if (ends_with(n, "ffn_gate_inp.weight")) return GgmlType::F32;
  if (!is_block_type(type)) return type;
  if (n == "per_layer_model_proj.weight") return GgmlType::F32;
  if (n == "token_embd.weight" || n == "per_layer_token_embd.weight") {
    const bool q6k_head = type == GgmlType::Q4_1 || type == GgmlType::Q5_0 || type == GgmlType::Q5_1 ||
                          type == GgmlType::Q4_K || type == GgmlType::Q5_K || type == GgmlType::Q6_K;
    return q6k_head && s.ne[0] % kernels::kQK_K == 0 ? GgmlType::Q6_K : GgmlType::Q8_0;
  }
  return block_fallback(type, s.ne[0]);
}

namespace {

// Rounds values to `type` in place (so a GGUF F32 copy equals the HF value);
// block types: quantized and dequantized back, whole rows of ne0.
void round_to(GgmlType type, float* x, size_t n, int64_t ne0) {
  if (type == GgmlType::F16) {
    for (size_t i = 0; i < n; ++i) x[i] = fp16_to_f32(f32_to_fp16(x[i]));
  } else if (type == GgmlType::BF16) {
    for (size_t i = 0; i < n; ++i) x[i] = bf16_to_f32(f32_to_bf16(x[i]));
  } else if (is_block_type(type)) {
    const int64_t rows = static_cast<int64_t>(n) / ne0;
    std::vector<uint8_t> q(ggml_row_bytes(type, ne0) * static_cast<size_t>(rows));
    kernels::quantize_rows(type, x, q.data(), rows, ne0);
    const kernels::WeightMatrix wm = kernels::WeightMatrix::raw(type, q.data(), ne0, rows);
    for (int64_t r = 0; r < rows; ++r) kernels::dequantize_row(wm, r, x + r * ne0);
  }
}

#if defined(__x86_64__)
// F16C conversion (IEEE round-to-nearest-even, like f32_to_fp16): the scalar
// path costs ~9 ns per element, too slow for 60 GB of full-scale 31B.
__attribute__((target("avx,f16c"))) size_t f32_to_fp16_f16c(const float* x, size_t n, uint8_t* dst) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i), h);
  }
  return i;
}
const bool kHasF16c = cpu_features().f16c;
#endif

// n values stored as `type` (block types: whole rows of ne0).
void store(GgmlType type, const float* x, size_t n, int64_t ne0, uint8_t* dst) {
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, x, n * 4);
      break;
    case GgmlType::F16: {
      size_t i = 0;
#if defined(__x86_64__)
      if (kHasF16c) i = f32_to_fp16_f16c(x, n, dst);
#endif
      for (; i < n; ++i) {
        const uint16_t h = f32_to_fp16(x[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      break;
    }
    case GgmlType::BF16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_bf16(x[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      break;
    default:
      if (!is_block_type(type) || !kernels::weight_quantizer(type))
        fail("test model: unsupported storage type ", ggml_type_name(type));
      kernels::quantize_rows(type, x, dst, static_cast<int64_t>(n) / ne0, ne0);
  }
}

// Bytes of `rows` rows of `ne0` elements of type t (block types included).
uint64_t rows_bytes(GgmlType t, uint64_t rows, uint64_t ne0) {
  return rows * ggml_row_bytes(t, static_cast<int64_t>(ne0));
}

uint64_t nelements(const std::vector<int64_t>& ne) {
  uint64_t n = 1;
  for (int64_t d : ne) n *= static_cast<uint64_t>(d);
  return n;
}

// Fills `dst` with elements [begin, begin + count) of a tensor, stored as
// `store_type`, rounded through `value_type` first; multi-threaded for large
// ranges. `begin` is a whole number of rows (fixed tensors: the whole tensor).
void fill_tensor(const TensorSpec& s, const ModelConfig& c, uint64_t seed, GgmlType value_type,
                 GgmlType store_type, uint64_t begin, uint64_t count, uint8_t* dst, int threads) {
  const uint64_t n = count;
  const TestInit init = test_init_for(s, c);
  if (init.fixed) {
    std::vector<float> vals = rope_freqs_values(c);
    if (begin != 0 || vals.size() != n) fail("test model: rope_freqs has ", vals.size(), " values, tensor has ", n);
    store(store_type, vals.data(), n, static_cast<int64_t>(n), dst);
    return;
  }
  const uint64_t key = test_tensor_key(seed, s);
  // Chunks of whole rows (the block types quantize row by row).
  const uint64_t ne0 = s.ne.empty() ? 1 : static_cast<uint64_t>(s.ne[0]);
  const uint64_t kChunk = std::max<uint64_t>(1, (uint64_t{1} << 16) / ne0) * ne0;
  const uint64_t n_chunks = (n + kChunk - 1) / kChunk;
  auto work = [&](std::atomic<uint64_t>& next) {
    std::vector<float> buf(kChunk);
    for (uint64_t ch; (ch = next.fetch_add(1)) < n_chunks;) {
      const uint64_t b = ch * kChunk, m = std::min(kChunk, n - b);
      generate_test_values(key, init, begin + b, m, buf.data());
      if (value_type != store_type) round_to(value_type, buf.data(), m, static_cast<int64_t>(ne0));
      store(store_type, buf.data(), m, static_cast<int64_t>(ne0), dst + rows_bytes(store_type, b / ne0, ne0));
    }
  };
  std::atomic<uint64_t> next{0};
  const int nt = static_cast<int>(std::min<uint64_t>(std::max(threads, 1), n_chunks));
  if (nt <= 1 || n < (1u << 20)) {
    work(next);
    return;
  }
  std::vector<std::thread> pool;
  for (int t = 0; t < nt; ++t) pool.emplace_back([&] { work(next); });
  for (auto& th : pool) th.join();
}

// Largest piece of a tensor generated at once: big tensors (the 262144-row
// embedding and PLE tables, 31B's matrices) are streamed to the writer in
// whole-row chunks of at most this size through one reused buffer, so the
// generator's memory stays ~64 MB whatever the model size.
constexpr uint64_t kStreamChunkBytes = uint64_t{64} << 20;

// Generates a tensor chunk by chunk into `buf` (resized to at most one chunk)
// and hands each chunk to `sink(data, nbytes)`; returns the tensor's bytes.
template <class Sink>
uint64_t stream_tensor(const TensorSpec& s, const ModelConfig& c, uint64_t seed, GgmlType value_type,
                       GgmlType store_type, int threads, std::vector<uint8_t>& buf, Sink&& sink) {
  const uint64_t n = nelements(s.ne);
  const uint64_t row = s.ne.empty() ? 1 : static_cast<uint64_t>(s.ne[0]);
  const uint64_t rows = n / row;
  const uint64_t row_bytes = rows_bytes(store_type, 1, row);
  const uint64_t rows_per_chunk =
      test_init_for(s, c).fixed ? rows : std::max<uint64_t>(1, kStreamChunkBytes / row_bytes);
  if (buf.size() < std::min(rows, rows_per_chunk) * row_bytes) buf.resize(std::min(rows, rows_per_chunk) * row_bytes);
  for (uint64_t r0 = 0; r0 < rows; r0 += rows_per_chunk) {
    const uint64_t m = std::min(rows_per_chunk, rows - r0);
    fill_tensor(s, c, seed, value_type, store_type, r0 * row, m * row, buf.data(), threads);
    sink(buf.data(), static_cast<size_t>(m * row_bytes));
  }
  return rows * row_bytes;
}

const char* hf_dtype_name(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return "float32";
    case GgmlType::F16: return "float16";
    case GgmlType::BF16: return "bfloat16";
    default: return "?";
  }
}

uint32_t gguf_file_type(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return 0;   // LLAMA_FTYPE_ALL_F32
    case GgmlType::F16: return 1;   // LLAMA_FTYPE_MOSTLY_F16
    case GgmlType::BF16: return 32; // LLAMA_FTYPE_MOSTLY_BF16
    case GgmlType::Q8_0: return 7;  // LLAMA_FTYPE_MOSTLY_Q8_0
    case GgmlType::Q4_0: return 2;  // LLAMA_FTYPE_MOSTLY_Q4_0
    case GgmlType::Q4_1: return 3;  // LLAMA_FTYPE_MOSTLY_Q4_1
    case GgmlType::Q5_0: return 8;  // LLAMA_FTYPE_MOSTLY_Q5_0
    case GgmlType::Q5_1: return 9;  // LLAMA_FTYPE_MOSTLY_Q5_1
    case GgmlType::Q4_K: return 15; // LLAMA_FTYPE_MOSTLY_Q4_K_M (the nearest named mix)
    case GgmlType::Q5_K: return 17; // LLAMA_FTYPE_MOSTLY_Q5_K_M
    case GgmlType::Q6_K: return 18; // LLAMA_FTYPE_MOSTLY_Q6_K
    case GgmlType::MXFP4: return 38; // LLAMA_FTYPE_MOSTLY_MXFP4_MOE
    case GgmlType::Q8_K: return 1024; // LLAMA_FTYPE_GUESSED: llama.cpp has no Q8_K file type
    default: return 0;
  }
}

}  // namespace

TestModelResult write_test_model(const TestModelOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  const bool block_type = is_block_type(o.type);
  if (o.type != GgmlType::F32 && o.type != GgmlType::F16 && o.type != GgmlType::BF16 &&
      !(block_type && kernels::weight_quantizer(o.type) && kernels::type_supported(o.type)))
    fail("make-test-model: --type must be f32, f16, bf16 or a quantized type (", kernels::quantizable_types(),
         "), got ", ggml_type_name(o.type));
  if (o.dequantized && o.format == TestFormat::Hf)
    fail("make-test-model: --dequantized needs --format gguf");
  if (block_type && o.format == TestFormat::Hf)
    fail("make-test-model: --type ", ggml_type_name(o.type),
         " needs --format gguf (Hugging Face safetensors checkpoints hold f32/f16/bf16 tensors only)");
  if (o.out.empty()) fail("make-test-model: no output path");
  const int threads = o.threads > 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency());

  const int synth_size = o.synthetic_vocab_size > 0 ? o.synthetic_vocab_size
                         : o.scale == TestScale::Full ? 262144
                                                      : 1024;
  const TestVocab vocab = o.vocab_path.empty() ? synthetic_test_vocab(synth_size) : load_test_vocab(o.vocab_path);
  TestModelResult r;
  r.config = test_model_config(o.arch, o.scale, vocab.size());
  const ModelConfig& c = r.config;
  // Every tensor a released checkpoint carries: required ones, rope_freqs
  // (GGUF) and the dead K/V of KV-shared layers; no untied output head.
  std::vector<TensorSpec> specs;
  for (TensorSpec& s : text_tensor_specs(c, /*include_dead=*/true))
    if (s.required || s.role == TensorRole::RopeFreqs || s.layer >= 0) specs.push_back(std::move(s));
  const std::string name = std::string("gemma4-test-") + test_arch_name(o.arch) + "-" + test_scale_name(o.scale);
  const std::string desc = "random-weight Gemma 4 test model (arch " + std::string(test_arch_name(o.arch)) +
                           ", scale " + test_scale_name(o.scale) + ", seed " + std::to_string(o.seed) + ", " +
                           (vocab.real ? "real" : "synthetic") + " vocab)";

  std::vector<uint8_t> buf;
  auto tensor_bytes = [&](const TensorSpec& s, GgmlType t) {
    const uint64_t ne0 = s.ne.empty() ? 1 : static_cast<uint64_t>(s.ne[0]);
    return rows_bytes(t, nelements(s.ne) / ne0, ne0);
  };

  if (o.format == TestFormat::Gguf) {
    const fs::path out(o.out);
    if (out.has_parent_path()) fs::create_directories(out.parent_path());
    GgufWriter w(o.out);
    write_gguf_config(c, w);
    // general.* after the architecture keys is fine for llama.cpp; keep the
    // converter's grouping: identity first.
    w.set("general.type", GgufValue::str("model"));
    w.set("general.name", GgufValue::str(name));
    w.set("general.description", GgufValue::str(desc));
    w.set("general.file_type", GgufValue::u32(gguf_file_type(o.dequantized ? GgmlType::F32 : o.type)));
    w.set("general.quantization_version", GgufValue::u32(2));
    set_gguf_tokenizer_metadata(w, vocab);
    // --dequantized: every tensor F32, holding the values of the `type` file.
    auto file_type = [&](const TensorSpec& s) {
      return o.dequantized ? GgmlType::F32 : test_tensor_type(s, o.format, o.type);
    };
    for (const TensorSpec& s : specs) w.add_tensor_info(s.gguf_name, file_type(s), s.ne);
    w.write_header();
    for (const TensorSpec& s : specs) {
      const GgmlType st = file_type(s);
      // Tensors stored as F32 carry values rounded to the chosen float type
      // (block types: those stay exact); the dequantized twin rounds every
      // tensor through its storage type in the `type` file.
      const GgmlType vt = s.role == TensorRole::RopeFreqs ? st
                          : o.dequantized                ? test_tensor_type(s, o.format, o.type)
                          : block_type                   ? GgmlType::F32
                                                         : o.type;
      const uint64_t nb = stream_tensor(s, c, o.seed, vt, st, threads, buf,
                                        [&](const uint8_t* p, size_t k) { w.write_tensor_chunk(s.gguf_name, p, k); });
      if (nb != tensor_bytes(s, st)) fail("test model: tensor '", s.gguf_name, "' streamed ", nb, " bytes");
      r.tensor_bytes += nb;
      ++r.n_tensors;
    }
    w.finish();
    r.files.push_back(o.out);
  } else {
    const fs::path dir(o.out);
    fs::create_directories(dir);
    const std::string st_path = (dir / "model.safetensors").string();
    {
      SafetensorsWriter w(st_path);
      w.set_metadata("format", "pt");
      const std::string prefix = "model.language_model.";
      for (const TensorSpec& s : specs) {
        if (s.hf_name.empty()) continue;
        std::vector<int64_t> shape(s.ne.rbegin(), s.ne.rend());
        w.add_tensor_info(prefix + s.hf_name, o.type, shape);
      }
      w.write_header();
      for (const TensorSpec& s : specs) {
        if (s.hf_name.empty()) continue;
        const std::string hf = prefix + s.hf_name;
        const uint64_t nb = stream_tensor(s, c, o.seed, o.type, o.type, threads, buf,
                                          [&](const uint8_t* p, size_t k) { w.write_tensor_chunk(hf, p, k); });
        if (nb != tensor_bytes(s, o.type)) fail("test model: tensor '", hf, "' streamed ", nb, " bytes");
        r.tensor_bytes += nb;
        ++r.n_tensors;
      }
      w.finish();
    }
    write_text_file(dir / "config.json", hf_config_json(c, vocab, hf_dtype_name(o.type)).dump(2) + "\n");
    write_hf_tokenizer_files(o.out, vocab);
    r.files = {(dir / "config.json").string(), st_path, (dir / "tokenizer.json").string(),
               (dir / "tokenizer_config.json").string(), (dir / "generation_config.json").string()};
  }
  r.path = o.out;
  for (const std::string& f : r.files) r.file_bytes += fs::is_regular_file(f) ? fs::file_size(f) : 0;  // /dev/null: 0
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace g4
