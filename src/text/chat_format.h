// Gemma 4 chat format (spec gemma4-io.md §2-§4): conversation types, parsing
// from OpenAI chat-completions JSON, and a native renderer of the official
// chat template google-gemma-4-31B-it.jinja (the ~April 2026 revision shipped
// in llama.cpp models/templates/), byte-identical to that template rendered
// by @huggingface/jinja 0.5.11 (tests/oracle/chat_template_oracle.mjs).
//
// The prompt, in words (render_chat follows the template step by step):
//   <bos>
//   [<|turn>system\n [<|think|>\n] SYSTEM_TEXT {<|tool>declaration:…<tool|>} <turn|>\n]
//       written when thinking is on, tools are given, or messages[0] is
//       system/developer (only the first message is folded into it)
//   per non-tool message: <|turn>ROLE\n (assistant -> model; omitted when the
//       previous non-tool message was an assistant: same model turn), then
//       reasoning (only if the message has tool calls and comes after the last
//       user message), tool calls, tool results (Google `tool_responses`, or the
//       `role: tool` messages that follow), content (model content with
//       <|channel>…<channel|> removed; all content trimmed), then
//       `<|tool_response>` (calls without results: the model's stop token),
//       nothing (results rendered and no content), or `<turn|>\n`
//   generation prompt: <|turn>model\n (+ <|channel>thought\n<channel|> on the
//       large models with thinking off) unless the last message ended on a
//       tool call or tool result.
//
// Where the JavaScript engine renders, we match it byte for byte; that includes
// its choices where it differs from Python jinja2: numbers print like JS
// (3.0 -> "3", 1e21 -> "1e+21", 1e-7 -> "1e-7", integers beyond 2^53 rounded
// to a double), trim strips JS whitespace (U+FEFF yes, U+0085 no), dictsort
// compares keys case-insensitively (JS toLowerCase) in UTF-16 order, keeping
// input order among equal keys. Objects are held as nlohmann::ordered_json so
// that input order survives; a plain nlohmann::json input has its keys already
// sorted by bytes, which only matters for keys differing only in case.
//
// Known residual differences (inputs nobody sends): schema type names are
// upper-cased in ASCII only (JS upper-cases all of Unicode); key sorting does
// not apply the context-dependent final-sigma lower-casing of U+03A3.
//
// Normalisations applied while parsing (the server needs them; the raw
// template would render garbage):
//   - tool-call `arguments` given as a JSON string (the OpenAI wire form) are
//     parsed into an object ("" counts as {}); malformed JSON is an error.
//   - content parts `image_url`, `input_audio`, `video_url` become the image,
//     audio and video placeholders (the template only knows image/audio/video).
// Behaviour where @huggingface/jinja throws (documented extensions):
//   - a property schema without `type` renders `type:<|"|><|"|>` and a type
//     list renders as Python would (`type:<|"|>['STRING', 'NULL']<|"|>`);
//     inside `items`, a type list renders as a list of upper-cased strings;
//     a property schema that is not an object renders as an empty one. These
//     are the Python jinja2 results (HF transformers, vLLM).
//   - system/developer content given as parts: text parts trimmed and
//     concatenated (like user parts); null/absent content is "".
//   - a role:tool message whose content is a non-empty JSON object renders
//     like a Google-native tool response: response:NAME{k:v,…} (numbers and
//     booleans render as value:5 / value:true, {} as value:"" -- as the
//     template does).
// Errors (g4::Error, naming the field) where the template would print
// something meaningless or throw: unknown role, tool call without a name,
// arguments that are malformed JSON or not an object, content that is not a
// string/null/array of part objects, an unknown part type, tool calls on a
// non-assistant message, a tool result whose name cannot be resolved (no
// matching tool_call_id and no `name`), a tool without a name, schema fields of
// the wrong JSON type, JSON nested more than 256 levels.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace g4 {

using ojson = nlohmann::ordered_json;

enum class ChatRole : uint8_t { System, Developer, User, Assistant, Model, Tool };

std::string_view chat_role_name(ChatRole r);       // "system", "assistant", …
ChatRole parse_chat_role(std::string_view name);   // throws g4::Error

struct ContentPart {
  enum class Kind : uint8_t { Text, Image, Audio, Video };
  Kind kind = Kind::Text;
  std::string text;  // Text
  ojson source;      // media: the part as given (for the multimodal pipeline)
};

struct MessageContent {
  enum class Kind : uint8_t {
    None,    // absent or null
    String,  // "content": "…"
    Parts,   // "content": [{type: text|image|audio|video, …}, …]
    Value,   // role:tool only: an object/number/bool result (extension, see above)
  };
  Kind kind = Kind::None;
  std::string text;                // String
  std::vector<ContentPart> parts;  // Parts
  ojson value;                     // Value

  // Jinja truthiness of the `content` field: "" / [] / null are false.
  bool truthy() const;
};

struct ToolCall {
  std::optional<std::string> id;
  std::string name;
  ojson arguments = ojson::object();  // always an object
};

// Google-native result carried on an assistant message (`tool_responses`).
struct NativeToolResponse {
  std::optional<std::string> name;  // absent -> "unknown"
  ojson response;                   // any JSON value (null when absent)
};

struct ChatMessage {
  ChatRole role = ChatRole::User;
  MessageContent content;
  // `reasoning`, or `reasoning_content` when `reasoning` is empty/absent.
  std::string reasoning;
  std::vector<ToolCall> tool_calls;                // assistant/model
  std::vector<NativeToolResponse> tool_responses;  // assistant/model
  std::optional<std::string> name;                 // tool: function name
  std::optional<std::string> tool_call_id;         // tool: id of the call answered
};

// One OpenAI-style tool: {"type": "function", "function": {name, description,
// parameters (JSON Schema), response (Gemma extension)}}.
struct ToolFunction {
  std::string name;
  std::string description;
  ojson parameters;              // JSON Schema object, or null
  std::optional<ojson> response;  // written only when the key is present
};

struct Conversation {
  std::vector<ChatMessage> messages;
  std::vector<ToolFunction> tools;
};

// E2B/E4B templates stop the generation prompt at `<|turn>model\n`; the
// 12B/26B-A4B/31B template (the file we test against) also pre-fills an empty
// thought block `<|channel>thought\n<channel|>` when thinking is off (spec §2.1,
// §3: the large models emit an empty thought channel anyway).
enum class ChatVariant : uint8_t { Large, Small };

struct ChatOptions {
  bool add_generation_prompt = true;  // (the template's own default is false)
  bool enable_thinking = false;
  ChatVariant variant = ChatVariant::Large;
  std::string bos_token = "<bos>";
};

// {"messages": [...], "tools": [...]} (other keys ignored). Throws g4::Error.
Conversation parse_conversation(const ojson& request);
Conversation parse_conversation(const nlohmann::json& request);
// `where` prefixes error messages, e.g. "messages[3]".
ChatMessage parse_chat_message(const ojson& m, const std::string& where = "message");
ToolFunction parse_tool(const ojson& t, const std::string& where = "tool");

// Reads add_generation_prompt / enable_thinking from the request's top level
// and from chat_template_kwargs (vLLM / llama-server style) into `opts`.
void apply_chat_options(const ojson& request, ChatOptions& opts);

// The prompt text (control tokens as text; tokenize with parse_special).
std::string render_chat(const Conversation& conv, const ChatOptions& opts);

// Pieces of the format, shared with the tool-call parser:
// `<|tool_call>call:NAME{k:v,…}<tool_call|>` (keys sorted like the template).
std::string format_tool_call(const ToolCall& call);
// `declaration:NAME{…}` (without the <|tool>…<tool|> wrapper).
std::string format_tool_declaration(const ToolFunction& tool);
// A value in Gemma's dict syntax: strings in <|"|>, keys sorted; quote_keys
// wraps object keys in <|"|> too (the template does so inside declarations).
std::string format_gemma_value(const ojson& v, bool quote_keys = false);
// Number::toString of JavaScript (what the reference engine prints).
std::string js_number_to_string(double v);

}  // namespace g4
