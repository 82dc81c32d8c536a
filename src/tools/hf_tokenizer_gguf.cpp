#include "tools/hf_tokenizer_gguf.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "core/error.h"

namespace g4 {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// llama.cpp token types (gguf.TokenType).
constexpr int32_t kNormal = 1, kControl = 3, kUserDefined = 4, kByte = 6;

// Gemma4Model.set_vocab: always rendered, so the chat parser can read them.
const std::set<std::string> kVisibleTokens = {"<|channel>",       "<channel|>",       "<|tool_call>", "<tool_call|>",
                                              "<|tool_response>", "<tool_response|>", "<|\"|>"};

struct TokenizerJson {
  std::vector<std::pair<std::string, int64_t>> vocab;  // model.vocab entries
  std::vector<std::string> merges;                     // "left right"
  json rest;                                           // everything else
};

// "a b" with spaces inside the parts encoded as U+0120 (gguf-py's encoding
// for the [left, right] merge format).
std::string merge_string(const std::string& a, const std::string& b) {
  auto enc = [](const std::string& s) {
    std::string r;
    for (char c : s) {
      if (c == ' ')
        r += "\xC4\xA0";  // chr(ord(' ') + 256)
      else
        r += c;
    }
    return r;
  };
  return enc(a) + " " + enc(b);
}

TokenizerJson read_tokenizer_json(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '", path.string(), "'");
  TokenizerJson t;
  std::string keys[6];
  std::string error;
  // Keeps model.vocab and model.merges out of the tree (see the header).
  auto filter = [&](int depth, json::parse_event_t ev, json& parsed) -> bool {
    if (ev == json::parse_event_t::key) {
      if (depth < 6) keys[depth] = parsed.get<std::string>();
      return true;
    }
    if (depth < 3 || keys[1] != "model") return true;
    if (keys[2] == "vocab" && depth == 3 && ev == json::parse_event_t::value) {
      if (!parsed.is_number_integer()) {
        if (error.empty()) error = "model.vocab entry '" + keys[3] + "' is not an integer id";
      } else {
        t.vocab.emplace_back(keys[3], parsed.get<int64_t>());
      }
      return false;
    }
    if (keys[2] == "merges" && depth == 3) {
      if (ev == json::parse_event_t::value) {
        if (parsed.is_string())
          t.merges.push_back(parsed.get<std::string>());
        else if (error.empty())
          error = "a merge is neither \"left right\" nor [left, right]";
        return false;
      }
      if (ev == json::parse_event_t::array_end) {
        if (parsed.size() == 2 && parsed[0].is_string() && parsed[1].is_string())
          t.merges.push_back(merge_string(parsed[0].get<std::string>(), parsed[1].get<std::string>()));
        else if (error.empty())
          error = "a merge is neither \"left right\" nor [left, right]";
        return false;
      }
    }
    return true;
  };
  try {
    t.rest = json::parse(in, filter);
  } catch (const json::exception& e) {
    fail("'", path.string(), "' is not valid JSON: ", e.what());
  }
  if (!error.empty()) fail("'", path.string(), "': ", error);
  if (!t.rest.is_object() || !t.rest.contains("model") || !t.rest["model"].is_object())
    fail("'", path.string(), "' has no \"model\" object (not a tokenizer.json)");
  return t;
}

json read_json_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '", path.string(), "'");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    fail("'", path.string(), "' is not valid JSON: ", e.what());
  }
}

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '", path.string(), "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool is_byte_token(const std::string& s) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); };
  return s.size() == 6 && s.compare(0, 3, "<0x") == 0 && hex(s[3]) && hex(s[4]) && s[5] == '>';
}

// Python truthiness of a JSON value (None, "", {}, [], 0, false are false).
bool truthy(const json& v) {
  if (v.is_null()) return false;
  if (v.is_string()) return !v.get_ref<const std::string&>().empty();
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v.get<double>() != 0;
  if (v.is_object() || v.is_array()) return !v.empty();
  return true;
}

const json& jget(const json& obj, const char* key) {
  static const json null_value;
  if (!obj.is_object()) return null_value;
  auto it = obj.find(key);
  return it == obj.end() ? null_value : *it;
}

// `item.get('SpecialToken', {}).get('id')` / `item.get('Sequence', {}).get('id')`.
json template_id(const json& item, const char* kind) { return jget(jget(item, kind), "id"); }

bool in_pair(const json& v, const json& a, const json& b) { return v == a || v == b; }

// Ordered key/value list with Python-dict "overwrite in place" semantics.
class KeyList {
 public:
  void set(const std::string& k, GgufValue v) {
    for (auto& kv : items_)
      if (kv.first == k) {
        kv.second = std::move(v);
        return;
      }
    items_.emplace_back(k, std::move(v));
  }
  std::vector<std::pair<std::string, GgufValue>> take() { return std::move(items_); }

 private:
  std::vector<std::pair<std::string, GgufValue>> items_;
};

// transformers' all_special_tokens from tokenizer_config.json: the named
// *_token entries (bos_token, eos_token, ..., and named extras such as
// boi_token), additional_special_tokens and extra_special_tokens.
std::set<std::string> special_token_strings(const json& tc) {
  std::set<std::string> out;
  auto add = [&](const json& v) {
    if (v.is_string())
      out.insert(v.get<std::string>());
    else if (v.is_object() && jget(v, "content").is_string())
      out.insert(jget(v, "content").get<std::string>());
  };
  if (!tc.is_object()) return out;
  for (auto it = tc.begin(); it != tc.end(); ++it) {
    const std::string& k = it.key();
    if (k.size() > 6 && k.compare(k.size() - 6, 6, "_token") == 0 && k.rfind("add_", 0) != 0) add(it.value());
  }
  for (const char* list_key : {"additional_special_tokens", "extra_special_tokens"}) {
    const json& l = jget(tc, list_key);
    if (l.is_array()) {
      for (const json& v : l) add(v);
    } else if (l.is_object()) {
      for (const auto& [k, v] : l.items()) add(v);
    }
  }
  return out;
}

// gguf-py SpecialVocab (load_merges=True), minus the merges (done by the caller).
struct SpecialVocab {
  std::vector<std::string> types = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
  std::vector<std::pair<std::string, int64_t>> ids;  // insertion order
  std::vector<std::pair<std::string, bool>> add;     // insertion order
  std::optional<json> chat_template;                 // string or [{name, template}]
  std::optional<bool> lowercase, strip_accents;

  void set_add(const std::string& typ, bool v) {
    for (auto& [k, val] : add)
      if (k == typ) {
        val = v;
        return;
      }
    add.emplace_back(typ, v);
  }
  void set_id(const std::string& typ, const json& tid) {
    if (!tid.is_number_integer()) return;
    const int64_t id = tid.get<int64_t>();
    if (id < 0) fail("invalid value for special token type ", typ, ": ", id);
    for (const auto& [k, v] : ids)
      if (k == typ) return;  // the first source wins
    ids.emplace_back(typ, id);
  }
  void parse_normalizer(const json& n) {
    const json& type = jget(n, "type");
    if (type == "Lowercase") {
      lowercase = true;
    } else if (type == "StripAccents") {
      strip_accents = true;
    } else if (type == "BertNormalizer") {
      if (jget(n, "lowercase").is_boolean()) lowercase = jget(n, "lowercase").get<bool>();
      if (jget(n, "strip_accents").is_boolean()) strip_accents = jget(n, "strip_accents").get<bool>();
    } else if (type == "Sequence") {
      const json& ns = jget(n, "normalizers");
      if (ns.is_array())
        for (const json& x : ns) parse_normalizer(x);
    }
  }

  // _try_load_from_tokenizer_json
  void load_tokenizer(const fs::path& dir, const json& tok) {
    if (const json& norm = jget(tok, "normalizer"); truthy(norm)) parse_normalizer(norm);
    const json& added_tokens = jget(tok, "added_tokens");
    json tc;  // tokenizer_config.json, null when absent
    const fs::path tc_path = dir / "tokenizer_config.json";
    if (fs::is_regular_file(tc_path)) tc = read_json_file(tc_path);
    const bool tc_truthy = truthy(tc) && tc.is_object();
    json sb = jget(tc, "bos_token"), scls = jget(tc, "cls_token"), se = jget(tc, "eos_token"),
         ssep = jget(tc, "sep_token");
    if (!truthy(sb) && truthy(scls) && tc_truthy) tc["bos_token"] = sb = scls;
    if (!truthy(se) && truthy(ssep) && tc_truthy) tc["eos_token"] = se = ssep;
    if (const json& pp = jget(tok, "post_processor"); truthy(pp)) {
      const json& procs = jget(pp, "processors");
      const json list = procs.is_array() ? procs : json::array({pp});
      for (const json& p : list) {
        const json& ptype = jget(p, "type");
        if (ptype == "RobertaProcessing") {
          set_add("bos", true);
          set_add("eos", true);
          set_add("sep", true);
          if (!truthy(scls) && tc_truthy) {
            const json& c = jget(p, "cls");
            scls = c.is_array() && !c.empty() ? c[0] : sb;
            tc["cls_token"] = scls;
          }
          if (!truthy(ssep) && tc_truthy) {
            const json& s = jget(p, "sep");
            ssep = s.is_array() && !s.empty() ? s[0] : se;
            tc["sep_token"] = ssep;
          }
          continue;
        }
        if (ptype != "TemplateProcessing") continue;
        const json single = jget(p, "single").is_array() ? jget(p, "single") : json::array();
        json pair = jget(p, "pair").is_array() ? jget(p, "pair") : json::array();
        json first, last;
        if (single.size() > 1) {
          first = template_id(single.front(), "SpecialToken");
          if (truthy(first)) {
            if (!tc_truthy) {
              sb = first;
            } else if (!in_pair(first, sb, scls)) {
              if (!truthy(sb)) tc["bos_token"] = sb = first;
              if (!truthy(scls)) tc["cls_token"] = scls = first;
            }
            set_add("bos", in_pair(first, sb, scls));
          }
          last = template_id(single.back(), "SpecialToken");
          if (truthy(last)) {
            if (!tc_truthy) {
              se = last;
            } else if (last != se) {
              if (std::find(types.begin(), types.end(), "eot") == types.end()) {
                types.push_back("eot");
                tc["eot_token"] = se;
              } else if (std::find(types.begin(), types.end(), "eom") == types.end()) {
                types.push_back("eom");
                tc["eom_token"] = se;
              }
              tc["eos_token"] = se = last;
            }
            set_add("eos", last == se);
          }
        }
        if (!pair.empty()) {
          const size_t start = truthy(first) && template_id(pair.front(), "SpecialToken") == first ? 1 : 0;
          const size_t stop_trim = truthy(last) && template_id(pair.back(), "SpecialToken") == last ? 1 : 0;
          json mid = json::array();
          for (size_t i = start; i + stop_trim < pair.size(); ++i) mid.push_back(pair[i]);
          if (!mid.empty()) {
            const json a = template_id(mid.front(), "Sequence"), b = template_id(mid.back(), "Sequence");
            json inner = json::array();
            for (size_t i = 1; i + 1 < mid.size(); ++i) inner.push_back(mid[i]);
            if (a == "A" && b == "B" && !inner.empty()) {
              bool add_sep = false;
              const json e0 = template_id(inner[0], "SpecialToken");
              if (truthy(e0) && in_pair(e0, ssep, se) && !truthy(last)) add_sep = true;
              if (inner.size() == 2) {
                const json e1 = template_id(inner[1], "SpecialToken");
                if (truthy(e1) && in_pair(e1, ssep, se)) add_sep = true;
              }
              set_add("sep", add_sep);
              if (add_sep && !truthy(ssep) && tc_truthy) tc["sep_token"] = se;
            }
          }
        }
      }
    }
    if (!tc_truthy) return;
    // Chat template: tokenizer_config.json, else chat_template.jinja / .json.
    json alt;
    const fs::path jinja = dir / "chat_template.jinja", cjson = dir / "chat_template.json";
    if (fs::is_regular_file(jinja)) {
      alt = read_text_file(jinja);
      std::vector<fs::path> extra;
      std::error_code ec;
      if (fs::is_directory(dir / "additional_chat_templates", ec))
        for (const auto& e : fs::directory_iterator(dir / "additional_chat_templates"))
          if (e.path().extension() == ".jinja") extra.push_back(e.path());
      if (!extra.empty()) {
        std::sort(extra.begin(), extra.end());
        json list = json::array({{{"name", "default"}, {"template", alt}}});
        for (const fs::path& p : extra) list.push_back({{"name", p.stem().string()}, {"template", read_text_file(p)}});
        alt = list;
      }
    } else if (fs::is_regular_file(cjson)) {
      alt = jget(read_json_file(cjson), "chat_template");
    }
    const json ct = tc.contains("chat_template") ? tc["chat_template"] : alt;
    if (ct.is_string() || ct.is_array()) chat_template = ct;
    for (const std::string& typ : types) {
      const json& add_entry = jget(tc, ("add_" + typ + "_token").c_str());
      if (add_entry.is_boolean()) set_add(typ, add_entry.get<bool>());
      const json& entry = jget(tc, (typ + "_token").c_str());
      std::string content;
      if (entry.is_string())
        content = entry.get<std::string>();
      else if (entry.is_object() && jget(entry, "content").is_string())
        content = jget(entry, "content").get<std::string>();
      else
        continue;
      json id;  // the first added token with that content
      if (added_tokens.is_array())
        for (const json& a : added_tokens)
          if (jget(a, "content") == content) {
            id = jget(a, "id");
            break;
          }
      set_id(typ, id);
    }
  }

  // _try_load_from_config_json
  void load_config(const fs::path& dir) {
    const fs::path p = dir / "config.json";
    if (!fs::is_regular_file(p)) return;
    const json cfg = read_json_file(p);
    for (const std::string& typ : types) {
      json id = jget(cfg, (typ + "_token_id").c_str());
      if (id.is_null() && cfg.is_object() && cfg.contains("text_config"))
        id = jget(cfg["text_config"], (typ + "_token_id").c_str());
      set_id(typ, id);
    }
  }
};

// gguf-py's special-token id keys; types without a writer (cls) are skipped.
const char* id_key(const std::string& typ) {
  static const std::map<std::string, const char*> keys = {
      {"bos", "tokenizer.ggml.bos_token_id"},     {"eos", "tokenizer.ggml.eos_token_id"},
      {"unk", "tokenizer.ggml.unknown_token_id"}, {"sep", "tokenizer.ggml.seperator_token_id"},
      {"pad", "tokenizer.ggml.padding_token_id"}, {"mask", "tokenizer.ggml.mask_token_id"},
      {"eot", "tokenizer.ggml.eot_token_id"},     {"eom", "tokenizer.ggml.eom_token_id"}};
  auto it = keys.find(typ);
  return it == keys.end() ? nullptr : it->second;
}

const char* add_key(const std::string& typ) {
  if (typ == "bos") return "tokenizer.ggml.add_bos_token";
  if (typ == "eos") return "tokenizer.ggml.add_eos_token";
  if (typ == "sep") return "tokenizer.ggml.add_sep_token";
  return nullptr;
}

}  // namespace

HfTokenizerGguf hf_tokenizer_gguf(const std::string& dir_str) {
  const fs::path dir(dir_str);
  const fs::path tj = dir / "tokenizer.json";
  if (!fs::is_regular_file(tj))
    fail("'", dir_str, "' has no tokenizer.json: the GGUF needs the tokenizer (tokenizer.ggml.* metadata)");
  TokenizerJson t = read_tokenizer_json(tj);
  const json& model = t.rest["model"];
  // LlamaHfVocab accepts only byte-fallback BPE with a Sequence decoder.
  if (jget(model, "type") != "BPE" || !jget(model, "byte_fallback").is_boolean() ||
      !jget(model, "byte_fallback").get<bool>() || jget(jget(t.rest, "decoder"), "type") != "Sequence")
    fail("'", tj.string(), "' is not a byte-fallback BPE tokenizer with a Sequence decoder (Gemma 4's kind)");

  // Base vocabulary by id (tokenizer.vocab_size = len(model.vocab)).
  const int64_t n_base = static_cast<int64_t>(t.vocab.size());
  std::vector<std::string> pieces(static_cast<size_t>(n_base));
  std::vector<bool> seen(static_cast<size_t>(n_base), false);
  for (auto& [piece, id] : t.vocab) {
    if (id < 0 || id >= n_base)
      fail("'", tj.string(), "': piece '", piece, "' has id ", id, ", outside [0, ", n_base,
           ") (ids of model.vocab must be 0..N-1)");
    if (seen[static_cast<size_t>(id)]) fail("'", tj.string(), "': id ", id, " is used twice in model.vocab");
    seen[static_cast<size_t>(id)] = true;
    pieces[static_cast<size_t>(id)] = std::move(piece);
  }
  t.vocab.clear();
  t.vocab.shrink_to_fit();

  // Added tokens: those inside the base range override the piece (as
  // get_vocab() does), those above it are appended in id order.
  const json& added = jget(t.rest, "added_tokens");
  std::map<int64_t, std::pair<std::string, bool>> above;  // id -> (content, special)
  if (added.is_array()) {
    for (const json& a : added) {
      if (!jget(a, "id").is_number_integer() || !jget(a, "content").is_string())
        fail("'", tj.string(), "': an added_tokens entry lacks an integer \"id\" or a string \"content\"");
      const int64_t id = jget(a, "id").get<int64_t>();
      const std::string content = jget(a, "content").get<std::string>();
      if (id < 0) fail("'", tj.string(), "': added token '", content, "' has a negative id");
      if (id < n_base)
        pieces[static_cast<size_t>(id)] = content;
      else
        above[id] = {content, jget(a, "special").is_boolean() && jget(a, "special").get<bool>()};
    }
  }
  int64_t next = n_base;
  for (const auto& [id, v] : above) {
    if (id != next)
      fail("'", tj.string(), "': token ids have a hole at ", next, " (added token '", v.first, "' has id ", id, ")");
    ++next;
  }

  // Special tokens (transformers' all_special_ids).
  json tc;
  if (fs::is_regular_file(dir / "tokenizer_config.json")) tc = read_json_file(dir / "tokenizer_config.json");
  const std::set<std::string> specials = special_token_strings(tc);

  HfTokenizerGguf out;
  const size_t n = static_cast<size_t>(n_base) + above.size();
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  tokens.reserve(n);
  types.reserve(n);
  for (int64_t id = 0; id < n_base; ++id) {
    std::string& p = pieces[static_cast<size_t>(id)];
    int32_t type = is_byte_token(p) ? kByte : specials.count(p) ? kControl : kNormal;
    if (kVisibleTokens.count(p)) type = kUserDefined;
    types.push_back(type);
    tokens.push_back(std::move(p));
  }
  for (auto& [id, v] : above) {
    int32_t type = specials.count(v.first) ? kControl : kUserDefined;
    if (kVisibleTokens.count(v.first)) type = kUserDefined;
    types.push_back(type);
    tokens.push_back(v.first);
  }
  out.n_tokens = static_cast<int64_t>(tokens.size());
  out.n_vocab_rows = n_base + (added.is_array() ? static_cast<int64_t>(added.size()) : 0);

  SpecialVocab sv;
  sv.load_tokenizer(dir, t.rest);
  sv.load_config(dir);

  KeyList kv;
  kv.set("tokenizer.ggml.model", GgufValue::str("gemma4"));
  kv.set("tokenizer.ggml.tokens", GgufValue::strings(tokens));
  tokens.clear();
  tokens.shrink_to_fit();
  kv.set("tokenizer.ggml.scores", GgufValue::f32s(std::vector<float>(n, -1000.0f)));
  kv.set("tokenizer.ggml.token_type", GgufValue::i32s(types));
  if (!t.merges.empty()) kv.set("tokenizer.ggml.merges", GgufValue::strings(t.merges));
  t.merges.clear();
  t.merges.shrink_to_fit();
  for (const auto& [typ, id] : sv.ids)
    if (const char* k = id_key(typ)) kv.set(k, GgufValue::u32(static_cast<uint32_t>(id)));
  for (const auto& [typ, v] : sv.add)
    if (const char* k = add_key(typ)) kv.set(k, GgufValue::boolean(v));
  if (sv.chat_template) {
    const json& ct = *sv.chat_template;
    if (ct.is_string()) {
      kv.set("tokenizer.chat_template", GgufValue::str(ct.get<std::string>()));
    } else {
      // Named templates: tokenizer.chat_template.<name> + tokenizer.chat_templates.
      std::optional<std::string> def;
      std::vector<std::string> names;
      for (const json& c : ct) {
        // gguf-py keeps ASCII letters and digits, one '_' per other character.
        const std::string raw = jget(c, "name").is_string() ? jget(c, "name").get<std::string>() : "";
        std::string name;
        for (unsigned char ch : raw) {
          if ((ch & 0xC0) == 0x80) continue;  // UTF-8 continuation byte
          name += std::isalnum(ch) && ch < 0x80 ? static_cast<char>(ch) : '_';
        }
        const json& tmpl = jget(c, "template");
        if (name.empty() || !tmpl.is_string()) continue;
        if (name == "default") {
          def = tmpl.get<std::string>();
        } else {
          if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
          kv.set("tokenizer.chat_template." + name, GgufValue::str(tmpl.get<std::string>()));
        }
      }
      if (!names.empty()) kv.set("tokenizer.chat_templates", GgufValue::strings(names));
      if (def) kv.set("tokenizer.chat_template", GgufValue::str(*def));
    }
  }
  if (sv.lowercase) kv.set("tokenizer.ggml.normalizer.lowercase", GgufValue::boolean(*sv.lowercase));
  if (sv.strip_accents) kv.set("tokenizer.ggml.normalizer.strip_accents", GgufValue::boolean(*sv.strip_accents));
  kv.set("tokenizer.ggml.add_space_prefix", GgufValue::boolean(false));
  kv.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(true));
  out.keys = kv.take();
  return out;
}

}  // namespace g4
