// `gemma4 tokenize` and `gemma4 detokenize`:
//
//   gemma4 tokenize -m MODEL_OR_TOKENIZER (--text TEXT | --file PATH|-)
//                   [--parse-special] [--bos] [--json] [--pieces]
//     prints the ids separated by spaces (one line); --json prints
//     {"ids":[...]} (with --pieces also "pieces":[...]); --pieces alone prints
//     one "id<TAB>piece" line per token, the piece JSON-quoted.
//   gemma4 detokenize -m MODEL_OR_TOKENIZER (--ids "2,105,..." |
//                     --json '{"ids":[...]}' | ids or JSON on stdin) [--render-special]
//     writes the decoded bytes exactly (no newline added), so
//     `tokenize --file F | detokenize -m M` reproduces F.
//
// MODEL_OR_TOKENIZER: a GGUF file, a Hugging Face folder holding
// tokenizer.json, or a tokenizer.json file.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "text/tokenizer.h"

namespace g4::cli {
namespace {

struct TokenizeOptions {
  std::string model;
  std::string text;
  std::string file;
  bool parse_special = false;
  bool bos = false;
  bool json = false;
  bool pieces = false;
};

struct DetokenizeOptions {
  std::string model;
  std::string ids;
  std::string json;
  bool render_special = false;
};

std::string read_all(std::istream& in) {
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string read_input_file(const std::string& path) {
  if (path == "-") {
    std::ios::sync_with_stdio(false);
    return read_all(std::cin);
  }
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("cannot open '", path, "'");
  std::string s;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  bool err = std::ferror(f);
  std::fclose(f);
  if (err) fail("cannot read '", path, "'");
  return s;
}

void write_out(std::string_view s) {
  if (!s.empty() && std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) fail("cannot write to stdout");
  std::fflush(stdout);
}

std::string json_string(std::string_view s) {
  // Pieces and decoded text may hold invalid UTF-8 (byte tokens): shown as U+FFFD.
  return nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void run_tokenize(const TokenizeOptions& o) {
  Tokenizer tok = Tokenizer::load(o.model);
  std::string input = o.file.empty() ? o.text : read_input_file(o.file);
  std::vector<int32_t> ids = tok.encode(input, o.parse_special, o.bos);
  std::string out;
  if (o.json) {
    nlohmann::json j;
    j["ids"] = ids;
    out = "{\"ids\":" + j["ids"].dump();
    if (o.pieces) {
      out += ",\"pieces\":[";
      for (size_t i = 0; i < ids.size(); ++i) {
        if (i) out += ',';
        out += json_string(tok.piece(ids[i]));
      }
      out += "]";
    }
    out += "}\n";
  } else if (o.pieces) {
    for (int32_t id : ids) out += std::to_string(id) + "\t" + json_string(tok.piece(id)) + "\n";
  } else {
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ' ';
      out += std::to_string(ids[i]);
    }
    out += "\n";
  }
  write_out(out);
}

std::vector<int32_t> parse_id_list(std::string_view s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      ++i;
      continue;
    }
    size_t j = i;
    if (s[j] == '-' || s[j] == '+') ++j;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
    std::string tok(s.substr(i, j - i));
    if (j == i || tok == "-" || tok == "+" ||
        (j < s.size() && s[j] != ',' && s[j] != ' ' && s[j] != '\t' && s[j] != '\n' && s[j] != '\r')) {
      size_t e = s.find_first_of(", \t\r\n", i);
      fail("bad token id '", s.substr(i, e == std::string_view::npos ? std::string_view::npos : e - i),
           "' (expected integers separated by commas or spaces)");
    }
    long long v = 0;
    try {
      v = std::stoll(tok);
    } catch (...) {
      fail("bad token id '", tok, "'");
    }
    if (v < INT32_MIN || v > INT32_MAX) fail("token id ", tok, " is out of range");
    ids.push_back(static_cast<int32_t>(v));
    i = j;
  }
  return ids;
}

std::vector<int32_t> parse_id_json(std::string_view s) {
  nlohmann::json j = nlohmann::json::parse(s, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail("--json: not valid JSON");
  const nlohmann::json* arr = &j;
  if (j.is_object()) {
    if (!j.contains("ids")) fail("--json: expected an object with \"ids\"");
    arr = &j["ids"];
  }
  if (!arr->is_array()) fail("--json: \"ids\" must be an array of integers");
  std::vector<int32_t> ids;
  for (const auto& v : *arr) {
    if (!v.is_number_integer()) fail("--json: \"ids\" must hold integers, found ", v.dump());
    int64_t x = v.get<int64_t>();
    if (x < INT32_MIN || x > INT32_MAX) fail("token id ", x, " is out of range");
    ids.push_back(static_cast<int32_t>(x));
  }
  return ids;
}

void run_detokenize(const DetokenizeOptions& o) {
  if (!o.ids.empty() && !o.json.empty()) fail("give either --ids or --json, not both");
  std::vector<int32_t> ids;
  if (!o.ids.empty()) {
    ids = parse_id_list(o.ids);
  } else if (!o.json.empty()) {
    ids = parse_id_json(o.json);
  } else {
    std::ios::sync_with_stdio(false);
    std::string in = read_all(std::cin);
    size_t k = in.find_first_not_of(" \t\r\n");
    if (k != std::string::npos && (in[k] == '{' || in[k] == '['))
      ids = parse_id_json(in);
    else
      ids = parse_id_list(in);
  }
  Tokenizer tok = Tokenizer::load(o.model);
  write_out(tok.decode(ids, o.render_special));
}

}  // namespace

void add_tokenize_commands(CLI::App& app) {
  auto t = std::make_shared<TokenizeOptions>();
  CLI::App* tc = app.add_subcommand("tokenize", "Print the token ids of a text");
  tc->add_option("-m,--model", t->model, "GGUF file, folder with tokenizer.json, or tokenizer.json")->required();
  auto* text = tc->add_option("--text", t->text, "text to tokenize");
  auto* file = tc->add_option("--file", t->file, "file to tokenize, byte for byte ('-' for stdin)");
  text->excludes(file);
  file->excludes(text);
  tc->add_flag("--parse-special", t->parse_special,
               "match control and user-defined tokens (<|turn>, <|\"|> ...) as single ids");
  tc->add_flag("--bos", t->bos, "prepend <bos> (never doubled)");
  tc->add_flag("--json", t->json, "print {\"ids\":[...]}");
  tc->add_flag("--pieces", t->pieces, "also show each token's vocabulary piece");
  tc->callback([t, text, file] {
    if (text->count() == 0 && file->count() == 0) fail("tokenize: give --text TEXT or --file PATH");
    run_tokenize(*t);
  });

  auto d = std::make_shared<DetokenizeOptions>();
  CLI::App* dc = app.add_subcommand("detokenize", "Print the text of token ids");
  dc->add_option("-m,--model", d->model, "GGUF file, folder with tokenizer.json, or tokenizer.json")->required();
  auto* ids = dc->add_option("--ids", d->ids, "ids separated by commas or spaces");
  auto* json = dc->add_option("--json", d->json, "{\"ids\":[...]} or [...]");
  ids->excludes(json);
  json->excludes(ids);
  dc->add_flag("--render-special", d->render_special, "also print control tokens (<bos>, <|turn> ...)");
  dc->callback([d] { run_detokenize(*d); });
}

}  // namespace g4::cli
