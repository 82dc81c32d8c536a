// A chat conversation on top of Generator (spec gemma4-io.md §2, §3).
//
// The session keeps the conversation as messages and renders the whole of it
// with render_chat() for every turn (thinking on/off; thoughts of earlier
// answers are stripped from the history by the template itself; the small
// E2B/E4B template or the large one). The rendered prompt is tokenised with
// control tokens parsed, and the Generator prefills only what its cache does
// not already hold: when the previous prompt + answer is a token prefix of
// the new prompt (the usual case with thinking off on E2B/E4B), a turn costs
// just the new user message. With thinking on, the stripped thoughts make the
// new prompt diverge from the cache, which is then rebuilt.
//
// The model's output is split into thinking (between `<|channel>` + the
// channel label `thought` and `<channel|>`) and answer, streamed to a callback
// as it arrives; the answer stored in the history is the raw text (the
// template removes the thought channel from it).
#pragma once
#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/generator.h"
#include "text/chat_format.h"

namespace g4 {

enum class ChatChannel { Thinking, Answer };
using ChatSink = std::function<void(ChatChannel channel, std::string_view text)>;

// Splits streamed model output into thinking and answer. Token-level: the
// `<|channel>` / `<channel|>` ids switch channels (their own text is dropped);
// the label `thought` and the whitespace after it, and the whitespace at the
// start of an answer that follows a thought block, are dropped. A stray
// `<|channel>` inside a thought is ignored.
class ThoughtSplitter {
 public:
  explicit ThoughtSplitter(const Tokenizer& tok);
  // One generated token and the text the detokenizer produced for it.
  void push(int32_t id, std::string_view text, const ChatSink& sink);
  void finish(const ChatSink& sink);  // flushes a held-back partial label
  void clear();

  const std::string& thinking() const { return thinking_; }
  const std::string& answer() const { return answer_; }

 private:
  enum class State { Answer, AnswerLead, Label, ThinkingLead, Thinking };
  void emit(ChatChannel ch, std::string_view text, const ChatSink& sink);
  void feed_text(std::string_view text, const ChatSink& sink);

  int32_t open_id_ = -1, close_id_ = -1;
  State state_ = State::Answer;
  std::string label_;  // text seen after <|channel> while it may still be the label
  std::string thinking_, answer_;
};

struct ChatSessionOptions {
  std::string system;                  // empty: no system message
  bool thinking = false;               // <|think|> in the system turn
  std::optional<ChatVariant> variant;  // default: chat_variant_for(model config)
  GenerateOptions gen;                 // max tokens, stop ids; truncate: drop the oldest turns
};

struct ChatTurn {
  std::string answer;     // what the user sees (thought channel removed, trimmed)
  std::string thinking;   // the thought text (label removed, trimmed)
  std::string raw;        // the decoded output as stored in the history
  std::vector<int32_t> tokens;
  GenerationStats stats;
  int dropped_messages = 0;  // oldest messages dropped to fit the context (truncate)
};

class ChatSession {
 public:
  ChatSession(Generator& gen, Sampler& sampler, ChatSessionOptions opts);

  // Adds the user message, generates the answer (streamed to `sink`) and adds
  // it to the history. A conversation longer than the context is an error
  // (the user message is not kept) unless opts.gen.truncate, which drops the
  // oldest messages after the system message. A cancelled answer is kept as
  // far as it got.
  ChatTurn send(std::string_view user_text, const ChatSink& sink = {}, const std::atomic<bool>* cancel = nullptr);

  // Forgets the conversation (the system message stays).
  void reset();
  // Replaces the history (e.g. to resume a conversation); a system/developer
  // first message replaces opts.system.
  void set_messages(std::vector<ChatMessage> messages);
  const std::vector<ChatMessage>& messages() const { return conv_.messages; }

  // The prompt for the current history (+ generation prompt).
  std::string render() const;
  ChatVariant variant() const { return chat_opts_.variant; }
  const ChatSessionOptions& options() const { return opts_; }

 private:
  Generator& gen_;
  Sampler& sampler_;
  ChatSessionOptions opts_;
  ChatOptions chat_opts_;
  Conversation conv_;
  ThoughtSplitter split_;
};

}  // namespace g4
