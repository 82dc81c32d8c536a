#include "runtime/generator.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "core/error.h"
#include "formats/gguf.h"

namespace g4 {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

bool cancelled(const std::atomic<bool>* c) { return c && c->load(std::memory_order_relaxed); }

}  // namespace

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::EndOfGeneration: return "end of generation";
    case StopReason::MaxTokens: return "max tokens";
    case StopReason::ContextFull: return "context full";
    case StopReason::Cancelled: return "cancelled";
  }
  return "?";
}

Generator::Generator(Model& model, const Tokenizer& tok) : model_(model), tok_(tok) {
  const size_t n_ctx = static_cast<size_t>(model_.n_ctx());
  cached_.reserve(n_ctx);
  prompt_.reserve(n_ctx);
  for (int id : model_.config().eos_ids) eos_ids_.push_back(id);
  // The cache might already hold something we do not know about.
  model_.reset();
}

void Generator::reset() {
  model_.reset();
  cached_.clear();
}

bool Generator::is_stop(int32_t id, const GenerateOptions& opts) const {
  if (!opts.ignore_eos) {
    if (tok_.is_end_of_generation(id)) return true;
    for (int32_t e : eos_ids_)
      if (e == id) return true;
  }
  for (int32_t e : opts.extra_stop_ids)
    if (e == id) return true;
  return false;
}

std::vector<int32_t> Generator::fit_prompt(std::span<const int32_t> prompt, const GenerateOptions& opts) const {
  if (prompt.empty()) fail("the prompt is empty: nothing to generate from");
  const int64_t n_ctx = model_.n_ctx();
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (n <= n_ctx) return {prompt.begin(), prompt.end()};
  if (!opts.truncate)
    fail("the prompt has ", n, " tokens but the context holds ", n_ctx,
         " (raise it with --ctx, or pass --truncate to keep the prompt's end)");
  const int64_t want = opts.max_tokens >= 0 ? opts.max_tokens : n_ctx / 4;
  const int64_t reserve = std::min(want, n_ctx / 2);
  const int64_t keep = std::max<int64_t>(1, n_ctx - reserve);
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(keep));
  const bool bos = prompt[0] == tok_.bos_id();
  if (bos && keep > 1) out.push_back(prompt[0]);
  const int64_t tail = keep - static_cast<int64_t>(out.size());
  out.insert(out.end(), prompt.end() - tail, prompt.end());
  return out;
}

GenerationResult Generator::generate(std::span<const int32_t> prompt_in, Sampler& sampler,
                                     const GenerateOptions& opts, const TokenSink& sink,
                                     const std::atomic<bool>* cancel) {
  const Clock::time_point t0 = Clock::now();
  GenerationResult res;
  GenerationStats& st = res.stats;
  {
    std::vector<int32_t> fitted = fit_prompt(prompt_in, opts);
    prompt_.assign(fitted.begin(), fitted.end());
  }
  st.n_prompt = static_cast<int64_t>(prompt_.size());
  st.n_truncated = static_cast<int64_t>(prompt_in.size()) - st.n_prompt;
  const int64_t n_ctx = model_.n_ctx();
  // Room for the output: at most n_ctx − prompt + 1 tokens (the last one drawn
  // is never fed). Reserved here so the loop never reallocates.
  const int64_t room = n_ctx - st.n_prompt + 1;
  res.tokens.reserve(static_cast<size_t>(opts.max_tokens >= 0 ? std::min(opts.max_tokens, room) : room));

  try {
    // Reuse the cache when it holds a proper prefix of the prompt.
    const bool reuse = !cached_.empty() && cached_.size() < prompt_.size() &&
                       std::equal(cached_.begin(), cached_.end(), prompt_.begin()) &&
                       model_.n_past() == static_cast<int64_t>(cached_.size());
    if (!reuse) reset();
    st.n_reused = static_cast<int64_t>(cached_.size());

    sampler.clear_window();
    if (opts.penalize_prompt) {
      const size_t w = static_cast<size_t>(std::max(0, sampler.params().penalty_last_n));
      if (sampler.params().has_penalties())
        for (size_t i = prompt_.size() - std::min(w, prompt_.size()); i < prompt_.size(); ++i)
          sampler.accept(prompt_[i]);
    }

    // Prefill the new suffix in chunks of max_batch (cancellable between chunks).
    const Clock::time_point tp = Clock::now();
    const int64_t B = model_.max_batch();
    std::span<const float> logits;
    for (size_t b = cached_.size(); b < prompt_.size();) {
      if (cancelled(cancel)) {
        st.prefill_s = seconds_between(tp, Clock::now());
        st.stop = StopReason::Cancelled;
        st.total_s = seconds_between(t0, Clock::now());
        return res;
      }
      const size_t m = std::min(prompt_.size() - b, static_cast<size_t>(B));
      const bool last = b + m == prompt_.size();
      const std::span<const int32_t> chunk(prompt_.data() + b, m);
      logits = model_.forward(chunk, last ? LogitsMode::Last : LogitsMode::None);
      cached_.insert(cached_.end(), chunk.begin(), chunk.end());
      st.n_prefilled += static_cast<int64_t>(m);
      b += m;
    }
    const Clock::time_point t_prefilled = Clock::now();
    st.prefill_s = seconds_between(tp, t_prefilled);

    // Decode loop: no allocation below (buffers reserved above).
    Tokenizer::Stream stream(tok_);
    Clock::time_point t_first{}, t_last{};
    st.stop = StopReason::MaxTokens;
    if (opts.max_tokens != 0) {
      for (;;) {
        if (cancelled(cancel)) {
          st.stop = StopReason::Cancelled;
          break;
        }
        const int32_t id = sampler.sample(logits);
        t_last = Clock::now();
        if (st.n_sampled++ == 0) {
          t_first = t_last;
          st.ttft_s = seconds_between(t0, t_first);
        }
        if (is_stop(id, opts)) {
          res.stop_token = id;
          st.stop = StopReason::EndOfGeneration;
          break;
        }
        sampler.accept(id);
        res.tokens.push_back(id);
        if (sink) {
          const std::string text = stream.push(id);
          sink(id, text);
        }
        if (opts.max_tokens > 0 && static_cast<int64_t>(res.tokens.size()) >= opts.max_tokens) {
          st.stop = StopReason::MaxTokens;
          break;
        }
        if (cancelled(cancel)) {
          st.stop = StopReason::Cancelled;
          break;
        }
        if (model_.n_past() >= n_ctx) {
          st.stop = StopReason::ContextFull;
          break;
        }
        logits = model_.forward(std::span<const int32_t>(&id, 1), LogitsMode::Last);
        cached_.push_back(id);
        ++st.n_decoded;
      }
    }
    if (sink) {
      const std::string rest = stream.flush();
      sink(-1, rest);
    }
    if (st.n_sampled > 0) st.decode_s = seconds_between(t_first, t_last);
  } catch (...) {
    reset();
    throw;
  }
  st.total_s = seconds_between(t0, Clock::now());
  return res;
}

Tokenizer tokenizer_for_checkpoint(const Checkpoint& ck) {
  if (const GgufFile* g = ck.gguf()) return Tokenizer::from_gguf(*g);
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(ck.path());
  const fs::path dir = fs::is_directory(p, ec) ? p : p.parent_path();
  const fs::path tj = (dir.empty() ? fs::path(".") : dir) / "tokenizer.json";
  if (!fs::is_regular_file(tj, ec))
    fail("'", ck.path(), "' has no tokenizer: text generation needs tokenizer.json beside the checkpoint");
  return Tokenizer::from_hf_json_file(tj.string());
}

int64_t default_context_length(const ModelConfig& c) {
  constexpr int64_t kDefault = 8192;
  return c.max_context > 0 ? std::min<int64_t>(c.max_context, kDefault) : kDefault;
}

ChatVariant chat_variant_for(const ModelConfig& c) {
  switch (c.variant()) {
    case Variant::E2B:
    case Variant::E4B: return ChatVariant::Small;
    case Variant::A26B:
    case Variant::D31B: return ChatVariant::Large;
    case Variant::Custom: break;
  }
  return (c.n_kv_shared_layers > 0 || c.ple_dim > 0) ? ChatVariant::Small : ChatVariant::Large;
}

}  // namespace g4
