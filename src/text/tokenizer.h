// Gemma 4 tokenizer: SentencePiece-style BPE over raw UTF-8 (spec gemma4-io.md §1).
//
// encode: spaces -> U+2581, split into runs of '\n' vs non-'\n', merge adjacent
// symbols by merge rank (lowest first, leftmost on ties), unknown pieces fall
// back to <0xHH> byte tokens. Control/user-defined tokens are matched atomically
// (longest match) only when parse_special is set. decode is the inverse:
// U+2581 -> ' ', byte tokens reassembled into UTF-8.
//
// Invalid UTF-8 in the input: every invalid byte becomes its <0xHH> byte
// token, so decode(encode(x)) == x for any bytes x that do not contain U+2581
// itself (a literal '▁' decodes as ' ', as in HF and llama.cpp). A loaded
// Tokenizer is immutable: encode/decode may run concurrently from threads.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace g4 {

class GgufFile;

enum class TokenKind : uint8_t { Normal, Control, UserDefined, Byte, Unknown, Unused };

class Tokenizer {
 public:
  // tokenizer.ggml.* metadata (tokens, merges, token_type, special ids).
  static Tokenizer from_gguf(const GgufFile& f);
  // HF tokenizer.json (model.vocab, model.merges, added_tokens).
  static Tokenizer from_hf_json_file(const std::string& tokenizer_json_path);
  // A GGUF file, a folder holding tokenizer.json, or a tokenizer.json path.
  static Tokenizer load(const std::string& path);

  Tokenizer();
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // add_bos prepends bos_id() unless the result already starts with it.
  std::vector<int32_t> encode(std::string_view text, bool parse_special = false,
                              bool add_bos = false) const;
  // render_special: also print control tokens (<bos>, <|turn>…). User-defined
  // tokens (<|channel>, <|tool_call>, <|"|> …) are always printed.
  std::string decode(std::span<const int32_t> ids, bool render_special = false) const;

  int32_t n_vocab() const;
  std::string_view piece(int32_t id) const;  // raw vocabulary piece
  TokenKind kind(int32_t id) const;
  std::optional<int32_t> find(std::string_view piece) const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t pad_id() const;
  bool is_end_of_generation(int32_t id) const;  // <eos>, <turn|>, <|tool_response>

  // Incremental detokenizer: returns only complete UTF-8 characters, keeping a
  // partial multi-byte sequence until its remaining bytes arrive. Output is
  // always valid UTF-8: the concatenation of all push() results and flush()
  // equals utf8::sanitize(decode(ids)) (text/utf8.h; ill-formed bytes become
  // U+FFFD per maximal subpart), i.e. decode(ids) whenever that is valid.
  class Stream {
   public:
    explicit Stream(const Tokenizer& t, bool render_special = false);
    std::string push(int32_t id);
    std::string flush();  // leftover bytes (invalid UTF-8 shown as U+FFFD)
   private:
    const Tokenizer* tok_;
    bool render_special_;
    std::string pending_;
  };

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace g4
