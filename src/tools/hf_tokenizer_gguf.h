// The tokenizer.* GGUF metadata of a Hugging Face Gemma 4 folder, as
// llama.cpp's converter writes it (convert_hf_to_gguf.py: Gemma4Model.set_vocab
// with gguf-py's LlamaHfVocab and SpecialVocab, llama.cpp bundled with
// node-llama-cpp 3.21.1):
//   * tokenizer.ggml.model = "gemma4";
//   * tokens: model.vocab by id, then added tokens above it; every score
//     -1000; types: BYTE for <0xHH>, CONTROL for the tokenizer's special
//     tokens (tokenizer_config.json's named *_token entries,
//     additional_special_tokens and extra_special_tokens), NORMAL otherwise,
//     and USER_DEFINED for the seven markers the chat parser must see
//     (<|tool_call>, <tool_call|>, <|tool_response>, <tool_response|>, <|"|>,
//     <|channel>, <channel|>); added tokens above model.vocab are CONTROL
//     when special, else USER_DEFINED;
//   * merges from model.merges ("left right"; a space inside a part becomes
//     U+0120, as gguf-py encodes it);
//   * special ids (bos, eos, unk, sep, pad, mask; eot/eom when the
//     post-processor ends with another token): tokenizer_config.json's token
//     strings looked up among tokenizer.json's added_tokens, else
//     config.json's *_token_id (or its text_config's);
//   * add_bos/add_eos/add_sep from the TemplateProcessing post-processor and
//     tokenizer_config.json's add_*_token; then add_space_prefix = false and
//     add_bos_token = true (Gemma 4 always prepends <bos>);
//   * the chat template from tokenizer_config.json, else chat_template.jinja
//     (with additional_chat_templates/*.jinja as named templates) or
//     chat_template.json; normalizer lowercase/strip-accents flags.
// Keys come out in the converter's order.
//
// tokenizer.json (the real one has 262144 tokens and 514906 merges) is read
// with a filtering parser: vocab and merges go straight into vectors instead
// of a JSON tree, which would cost several hundred MB.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "formats/gguf.h"

namespace g4 {

struct HfTokenizerGguf {
  std::vector<std::pair<std::string, GgufValue>> keys;  // tokenizer.* in write order
  int64_t n_tokens = 0;
  // What the converter trims token_embd to (rows beyond it are padding):
  // len(model.vocab) + len(added_tokens), counted like convert_hf_to_gguf.py.
  int64_t n_vocab_rows = 0;
};

// `dir` is the HF checkpoint folder. Throws g4::Error naming the file for a
// missing tokenizer.json, a tokenizer that is not a byte-fallback BPE (not
// Gemma 4's kind), holes in the id space, or malformed JSON.
HfTokenizerGguf hf_tokenizer_gguf(const std::string& dir);

}  // namespace g4
