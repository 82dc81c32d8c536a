// Text generation on top of Model: prompt tokens -> chunked prefill -> decode
// loop with a Sampler, streaming detokenised text through a callback.
//
// * KV-cache reuse by prefix: the Generator remembers which tokens the model's
//   cache holds. When those are a proper prefix of the next prompt, only the
//   new suffix is prefilled; otherwise the cache is reset and the whole prompt
//   prefilled. (The cache cannot be rolled back: sliding-window layers keep a
//   ring that later tokens overwrite.)
// * Stops on an end-of-generation id (the tokenizer's EOG set -- <eos>,
//   <turn|>, <|tool_response>, spec gemma4-io.md §1.3 -- plus the config's
//   eos_token_id list and any extra ids given), on max_tokens, when the
//   context is full, or when the cancel flag is set (checked before every
//   prefill chunk and after every token: a flag raised while token i is being
//   produced stops the loop before token i+1).
// * The stop token is not part of the output and is not fed to the model: the
//   cache then holds prompt + output[0 .. n−1).
// * Context: a prompt longer than the context is an error, unless truncate is
//   set: then <bos> (when the prompt starts with it) + the prompt's last
//   tokens are kept, leaving room for min(max_tokens (n_ctx/4 when
//   unlimited), n_ctx/2) new tokens.
// * No heap allocation in the decode loop: the token buffers are reserved for
//   the whole context up front, the model and sampler never allocate per
//   token. (Tokenizer::Stream returns std::string: pieces up to 15 bytes stay
//   in the small-string buffer.)
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/checkpoint.h"
#include "model/forward.h"
#include "runtime/sampler.h"
#include "text/chat_format.h"
#include "text/tokenizer.h"

namespace g4 {

enum class StopReason { EndOfGeneration, MaxTokens, ContextFull, Cancelled };
const char* stop_reason_name(StopReason r);  // "end of generation", "max tokens", …

struct GenerateOptions {
  int64_t max_tokens = -1;           // < 0: until a stop token or the context is full
  bool truncate = false;             // prompt longer than the context: keep <bos> + its end
  bool ignore_eos = false;           // never stop on end-of-generation ids (benchmarks, tests)
  std::vector<int32_t> extra_stop_ids;
  bool penalize_prompt = true;       // the prompt's tokens enter the sampler's penalty window
};

struct GenerationStats {
  int64_t n_prompt = 0;      // prompt tokens (after truncation)
  int64_t n_truncated = 0;   // prompt tokens dropped by truncation
  int64_t n_reused = 0;      // prompt tokens whose K/V was already in the cache
  int64_t n_prefilled = 0;   // prompt tokens run through the model now
  int64_t n_sampled = 0;     // tokens drawn (output + the stop token, if any)
  int64_t n_decoded = 0;     // single-token forward passes
  double prefill_s = 0;      // prefill forward passes
  double ttft_s = 0;         // generate() call -> first token drawn
  double decode_s = 0;       // first token drawn -> last token drawn
  double total_s = 0;
  StopReason stop = StopReason::EndOfGeneration;

  double prefill_tps() const { return prefill_s > 0 ? static_cast<double>(n_prefilled) / prefill_s : 0; }
  double decode_tps() const { return decode_s > 0 ? static_cast<double>(n_decoded) / decode_s : 0; }
};

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated, without the stop token
  int32_t stop_token = -1;      // the end-of-generation id that ended it, or −1
  GenerationStats stats;
};

// Called once per generated token with the text it completes (possibly empty:
// a partial UTF-8 character is held back; control tokens print nothing), and
// once at the end with id −1 and whatever text was still held back.
using TokenSink = std::function<void(int32_t id, std::string_view text)>;

class Generator {
 public:
  // `tok` must outlive the generator; `model` too.
  Generator(Model& model, const Tokenizer& tok);

  // Generates after `prompt` (which must not be empty). Throws g4::Error for a
  // prompt that does not fit (unless opts.truncate) or is empty; after any
  // exception the cache is reset.
  GenerationResult generate(std::span<const int32_t> prompt, Sampler& sampler, const GenerateOptions& opts,
                            const TokenSink& sink = {}, const std::atomic<bool>* cancel = nullptr);

  // The prompt generate() would run for `prompt` (truncated when allowed and
  // needed); throws like generate().
  std::vector<int32_t> fit_prompt(std::span<const int32_t> prompt, const GenerateOptions& opts) const;

  void reset();  // empty the cache
  std::span<const int32_t> cached() const { return cached_; }
  bool is_stop(int32_t id, const GenerateOptions& opts) const;

  Model& model() { return model_; }
  const Tokenizer& tokenizer() const { return tok_; }

 private:
  Model& model_;
  const Tokenizer& tok_;
  std::vector<int32_t> cached_;   // tokens whose K/V the cache holds (capacity n_ctx)
  std::vector<int32_t> prompt_;   // the fitted prompt of the current call
  std::vector<int32_t> eos_ids_;  // from the model config
};

// The tokenizer of a checkpoint: its GGUF metadata, or tokenizer.json in the
// HF folder. Throws g4::Error naming the path when there is none.
Tokenizer tokenizer_for_checkpoint(const Checkpoint& ck);

// Default context: min(model max context, 8192) (8192 when the model does not say).
int64_t default_context_length(const ModelConfig& c);

// E2B/E4B use the small-model chat template (no empty thought block when
// thinking is off): decided by the variant, or for custom shapes by the
// E-model mechanisms (KV sharing or per-layer embeddings).
ChatVariant chat_variant_for(const ModelConfig& c);

}  // namespace g4
