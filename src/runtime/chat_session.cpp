#include "runtime/chat_session.h"

#include <algorithm>
#include <utility>

#include "core/error.h"

namespace g4 {

namespace {

constexpr std::string_view kLabel = "thought";

bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

std::string_view lstrip(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && is_ws(s[i])) ++i;
  return s.substr(i);
}

std::string trimmed(std::string_view s) {
  s = lstrip(s);
  size_t e = s.size();
  while (e > 0 && is_ws(s[e - 1])) --e;
  return std::string(s.substr(0, e));
}

// `text` without a trailing `marker` (the marker token's own text).
std::string_view before_marker(std::string_view text, std::string_view marker) {
  if (!marker.empty() && text.size() >= marker.size() && text.substr(text.size() - marker.size()) == marker)
    return text.substr(0, text.size() - marker.size());
  return text;
}

}  // namespace

// ---- ThoughtSplitter --------------------------------------------------------

ThoughtSplitter::ThoughtSplitter(const Tokenizer& tok) {
  if (auto id = tok.find("<|channel>")) open_id_ = *id;
  if (auto id = tok.find("<channel|>")) close_id_ = *id;
}

void ThoughtSplitter::clear() {
  state_ = State::Answer;
  label_.clear();
  thinking_.clear();
  answer_.clear();
}

void ThoughtSplitter::emit(ChatChannel ch, std::string_view text, const ChatSink& sink) {
  if (text.empty()) return;
  (ch == ChatChannel::Thinking ? thinking_ : answer_).append(text);
  if (sink) sink(ch, text);
}

void ThoughtSplitter::feed_text(std::string_view t, const ChatSink& sink) {
  switch (state_) {
    case State::Answer:
      emit(ChatChannel::Answer, t, sink);
      return;
    case State::AnswerLead: {
      const std::string_view rest = lstrip(t);
      if (rest.empty()) return;
      state_ = State::Answer;
      emit(ChatChannel::Answer, rest, sink);
      return;
    }
    case State::Label: {
      label_.append(t);
      if (label_.size() <= kLabel.size() && kLabel.substr(0, label_.size()) == label_) return;  // maybe more
      std::string rest = label_.rfind(kLabel, 0) == 0 ? label_.substr(kLabel.size()) : label_;
      label_.clear();
      state_ = State::ThinkingLead;
      feed_text(rest, sink);
      return;
    }
    case State::ThinkingLead: {
      const std::string_view rest = lstrip(t);
      if (rest.empty()) return;
      state_ = State::Thinking;
      emit(ChatChannel::Thinking, rest, sink);
      return;
    }
    case State::Thinking:
      emit(ChatChannel::Thinking, t, sink);
      return;
  }
}

void ThoughtSplitter::push(int32_t id, std::string_view text, const ChatSink& sink) {
  const bool in_thought = state_ == State::Label || state_ == State::ThinkingLead || state_ == State::Thinking;
  if (id >= 0 && id == open_id_) {
    feed_text(before_marker(text, "<|channel>"), sink);
    if (!in_thought) {
      state_ = State::Label;
      label_.clear();
    }
    return;
  }
  if (id >= 0 && id == close_id_) {
    if (state_ != State::Label) feed_text(before_marker(text, "<channel|>"), sink);
    if (in_thought) {
      label_.clear();  // a bare (possibly partial) label: nothing was thought
      state_ = State::AnswerLead;
    }
    return;
  }
  feed_text(text, sink);
}

void ThoughtSplitter::finish(const ChatSink& sink) {
  (void)sink;
  label_.clear();  // output ended inside the label: nothing was thought
}

// ---- ChatSession ------------------------------------------------------------

ChatSession::ChatSession(Generator& gen, Sampler& sampler, ChatSessionOptions opts)
    : gen_(gen), sampler_(sampler), opts_(std::move(opts)), split_(gen.tokenizer()) {
  chat_opts_.add_generation_prompt = true;
  chat_opts_.enable_thinking = opts_.thinking;
  chat_opts_.variant = opts_.variant.value_or(chat_variant_for(gen_.model().config()));
  const Tokenizer& tok = gen_.tokenizer();
  if (tok.bos_id() >= 0) chat_opts_.bos_token = std::string(tok.piece(tok.bos_id()));
  reset();
}

void ChatSession::reset() {
  conv_.messages.clear();
  if (!opts_.system.empty()) {
    ChatMessage m;
    m.role = ChatRole::System;
    m.content.kind = MessageContent::Kind::String;
    m.content.text = opts_.system;
    conv_.messages.push_back(std::move(m));
  }
}

void ChatSession::set_messages(std::vector<ChatMessage> messages) { conv_.messages = std::move(messages); }

std::string ChatSession::render() const { return render_chat(conv_, chat_opts_); }

ChatTurn ChatSession::send(std::string_view user_text, const ChatSink& sink, const std::atomic<bool>* cancel) {
  const Conversation saved = conv_;
  ChatTurn turn;
  try {
    ChatMessage u;
    u.role = ChatRole::User;
    u.content.kind = MessageContent::Kind::String;
    u.content.text = std::string(user_text);
    conv_.messages.push_back(std::move(u));

    // Render; with truncate, drop the oldest turns until the prompt leaves
    // room for an answer.
    const Tokenizer& tok = gen_.tokenizer();
    const int64_t n_ctx = gen_.model().n_ctx();
    const int64_t want = opts_.gen.max_tokens >= 0 ? opts_.gen.max_tokens : n_ctx / 4;
    const int64_t limit = opts_.gen.truncate ? std::max<int64_t>(1, n_ctx - std::min(want, n_ctx / 2)) : n_ctx;
    std::vector<int32_t> ids;
    for (;;) {
      ids = tok.encode(render(), /*parse_special=*/true, /*add_bos=*/false);
      if (static_cast<int64_t>(ids.size()) <= limit) break;
      const size_t first = (!conv_.messages.empty() && (conv_.messages[0].role == ChatRole::System ||
                                                         conv_.messages[0].role == ChatRole::Developer))
                               ? 1
                               : 0;
      // Drop from `first` up to the next user message (history starts with a user turn).
      size_t end = first + 1;
      while (end < conv_.messages.size() && conv_.messages[end].role != ChatRole::User) ++end;
      const bool only_current = end >= conv_.messages.size();
      if (!opts_.gen.truncate || only_current) {
        if (static_cast<int64_t>(ids.size()) <= n_ctx) break;  // fits, just less room than wished
        if (only_current && opts_.gen.truncate)
          fail("the message needs ", ids.size(), " tokens with the system prompt, more than the context of ", n_ctx,
               " (raise it with --ctx)");
        fail("the conversation has ", ids.size(), " tokens but the context holds ", n_ctx,
             " (/reset to start over, raise --ctx, or pass --truncate to drop the oldest turns)");
      }
      conv_.messages.erase(conv_.messages.begin() + static_cast<std::ptrdiff_t>(first),
                           conv_.messages.begin() + static_cast<std::ptrdiff_t>(end));
      turn.dropped_messages += static_cast<int>(end - first);
    }

    GenerateOptions g = opts_.gen;
    g.truncate = false;
    split_.clear();
    const TokenSink tsink = [&](int32_t id, std::string_view text) { split_.push(id, text, sink); };
    GenerationResult r = gen_.generate(ids, sampler_, g, tsink, cancel);
    split_.finish(sink);

    turn.tokens = std::move(r.tokens);
    turn.stats = r.stats;
    turn.raw = tok.decode(turn.tokens);
    turn.answer = trimmed(split_.answer());
    turn.thinking = trimmed(split_.thinking());

    ChatMessage a;
    a.role = ChatRole::Assistant;
    a.content.kind = MessageContent::Kind::String;
    a.content.text = turn.raw;
    conv_.messages.push_back(std::move(a));
  } catch (...) {
    conv_ = saved;
    throw;
  }
  return turn;
}

}  // namespace g4
