// Native renderer of the Gemma 4 chat template; see chat_format.h for the
// format, the reference engine and the documented extensions. Each rendering
// function names the template macro or block it mirrors.
#include "text/chat_format.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace g4 {
namespace {

constexpr std::string_view kQ = "<|\"|>";  // Gemma's string delimiter token

// ---------------------------------------------------------------------------
// UTF-8 / JavaScript string helpers

// Decodes the code point at s[i] (advancing i). Invalid bytes decode as
// themselves (one byte, cp = 0xFFFFFFFF) so that nothing is lost.
uint32_t next_cp(std::string_view s, size_t& i) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t c = b(i);
  size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || i + len > s.size()) {
    ++i;
    return 0xFFFFFFFFu;
  }
  uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) {
      ++i;
      return 0xFFFFFFFFu;
    }
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  i += len;
  return cp;
}

// Start of the character that ends at s[end-1].
size_t prev_cp_start(std::string_view s, size_t end) {
  size_t i = end - 1;
  size_t steps = 0;
  while (i > 0 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80 && steps < 3) {
    --i;
    ++steps;
  }
  return i;
}

// String.prototype.trim's set: WhiteSpace (incl. U+FEFF and category Zs) and
// LineTerminator. Python's str.strip differs (it strips U+001C-U+001F and
// U+0085 but not U+FEFF); the reference engine is the JS one.
bool is_js_space(uint32_t cp) {
  switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0xA0:
    case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
    case 0xFEFF:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

std::string_view js_trim(std::string_view s) {
  size_t b = 0;
  while (b < s.size()) {
    size_t j = b;
    if (!is_js_space(next_cp(s, j))) break;
    b = j;
  }
  size_t e = s.size();
  while (e > b) {
    size_t st = prev_cp_start(s, e);
    size_t j = st;
    uint32_t cp = next_cp(s, j);
    if (j != e || !is_js_space(cp)) break;
    e = st;
  }
  return s.substr(b, e - b);
}

// Simple lower-case mappings of String.prototype.toLowerCase, as runs
// {first code point, count, delta, stride}: cp = first + k*stride (k < count)
// maps to cp + delta. Generated from Node 20 (Unicode 17) by enumerating every
// code point whose lower case is a single, different code point; the one
// multi-code-point mapping (U+0130 -> U+0069 U+0307) is handled in code. The
// context-dependent final sigma (U+03A3 -> U+03C2 at a word end) is not.
struct CaseRun {
  uint32_t first;
  uint16_t count;
  int32_t delta;
  uint8_t stride;
};
constexpr CaseRun kLowerRuns[] = {
    {0x41, 26, 32, 1}, {0xC0, 23, 32, 1}, {0xD8, 7, 32, 1}, {0x100, 24, 1, 2}, {0x132, 3, 1, 2},
    {0x139, 8, 1, 2}, {0x14A, 23, 1, 2}, {0x178, 1, -121, 1}, {0x179, 3, 1, 2},
    {0x181, 1, 210, 1}, {0x182, 2, 1, 2}, {0x186, 1, 206, 1}, {0x187, 1, 1, 1},
    {0x189, 2, 205, 1}, {0x18B, 1, 1, 1}, {0x18E, 1, 79, 1}, {0x18F, 1, 202, 1},
    {0x190, 1, 203, 1}, {0x191, 1, 1, 1}, {0x193, 1, 205, 1}, {0x194, 1, 207, 1},
    {0x196, 1, 211, 1}, {0x197, 1, 209, 1}, {0x198, 1, 1, 1}, {0x19C, 1, 211, 1},
    {0x19D, 1, 213, 1}, {0x19F, 1, 214, 1}, {0x1A0, 3, 1, 2}, {0x1A6, 1, 218, 1},
    {0x1A7, 1, 1, 1}, {0x1A9, 1, 218, 1}, {0x1AC, 1, 1, 1}, {0x1AE, 1, 218, 1},
    {0x1AF, 1, 1, 1}, {0x1B1, 2, 217, 1}, {0x1B3, 2, 1, 2}, {0x1B7, 1, 219, 1},
    {0x1B8, 1, 1, 1}, {0x1BC, 1, 1, 1}, {0x1C4, 1, 2, 1}, {0x1C5, 1, 1, 1}, {0x1C7, 1, 2, 1},
    {0x1C8, 1, 1, 1}, {0x1CA, 1, 2, 1}, {0x1CB, 9, 1, 2}, {0x1DE, 9, 1, 2}, {0x1F1, 1, 2, 1},
    {0x1F2, 2, 1, 2}, {0x1F6, 1, -97, 1}, {0x1F7, 1, -56, 1}, {0x1F8, 20, 1, 2},
    {0x220, 1, -130, 1}, {0x222, 9, 1, 2}, {0x23A, 1, 10795, 1}, {0x23B, 1, 1, 1},
    {0x23D, 1, -163, 1}, {0x23E, 1, 10792, 1}, {0x241, 1, 1, 1}, {0x243, 1, -195, 1},
    {0x244, 1, 69, 1}, {0x245, 1, 71, 1}, {0x246, 5, 1, 2}, {0x370, 2, 1, 2}, {0x376, 1, 1, 1},
    {0x37F, 1, 116, 1}, {0x386, 1, 38, 1}, {0x388, 3, 37, 1}, {0x38C, 1, 64, 1},
    {0x38E, 2, 63, 1}, {0x391, 17, 32, 1}, {0x3A3, 9, 32, 1}, {0x3CF, 1, 8, 1},
    {0x3D8, 12, 1, 2}, {0x3F4, 1, -60, 1}, {0x3F7, 1, 1, 1}, {0x3F9, 1, -7, 1},
    {0x3FA, 1, 1, 1}, {0x3FD, 3, -130, 1}, {0x400, 16, 80, 1}, {0x410, 32, 32, 1},
    {0x460, 17, 1, 2}, {0x48A, 27, 1, 2}, {0x4C0, 1, 15, 1}, {0x4C1, 7, 1, 2},
    {0x4D0, 48, 1, 2}, {0x531, 38, 48, 1}, {0x10A0, 38, 7264, 1}, {0x10C7, 1, 7264, 1},
    {0x10CD, 1, 7264, 1}, {0x13A0, 80, 38864, 1}, {0x13F0, 6, 8, 1}, {0x1C89, 1, 1, 1},
    {0x1C90, 43, -3008, 1}, {0x1CBD, 3, -3008, 1}, {0x1E00, 75, 1, 2}, {0x1E9E, 1, -7615, 1},
    {0x1EA0, 48, 1, 2}, {0x1F08, 8, -8, 1}, {0x1F18, 6, -8, 1}, {0x1F28, 8, -8, 1},
    {0x1F38, 8, -8, 1}, {0x1F48, 6, -8, 1}, {0x1F59, 4, -8, 2}, {0x1F68, 8, -8, 1},
    {0x1F88, 8, -8, 1}, {0x1F98, 8, -8, 1}, {0x1FA8, 8, -8, 1}, {0x1FB8, 2, -8, 1},
    {0x1FBA, 2, -74, 1}, {0x1FBC, 1, -9, 1}, {0x1FC8, 4, -86, 1}, {0x1FCC, 1, -9, 1},
    {0x1FD8, 2, -8, 1}, {0x1FDA, 2, -100, 1}, {0x1FE8, 2, -8, 1}, {0x1FEA, 2, -112, 1},
    {0x1FEC, 1, -7, 1}, {0x1FF8, 2, -128, 1}, {0x1FFA, 2, -126, 1}, {0x1FFC, 1, -9, 1},
    {0x2126, 1, -7517, 1}, {0x212A, 1, -8383, 1}, {0x212B, 1, -8262, 1}, {0x2132, 1, 28, 1},
    {0x2160, 16, 16, 1}, {0x2183, 1, 1, 1}, {0x24B6, 26, 26, 1}, {0x2C00, 48, 48, 1},
    {0x2C60, 1, 1, 1}, {0x2C62, 1, -10743, 1}, {0x2C63, 1, -3814, 1}, {0x2C64, 1, -10727, 1},
    {0x2C67, 3, 1, 2}, {0x2C6D, 1, -10780, 1}, {0x2C6E, 1, -10749, 1}, {0x2C6F, 1, -10783, 1},
    {0x2C70, 1, -10782, 1}, {0x2C72, 1, 1, 1}, {0x2C75, 1, 1, 1}, {0x2C7E, 2, -10815, 1},
    {0x2C80, 50, 1, 2}, {0x2CEB, 2, 1, 2}, {0x2CF2, 1, 1, 1}, {0xA640, 23, 1, 2},
    {0xA680, 14, 1, 2}, {0xA722, 7, 1, 2}, {0xA732, 31, 1, 2}, {0xA779, 2, 1, 2},
    {0xA77D, 1, -35332, 1}, {0xA77E, 5, 1, 2}, {0xA78B, 1, 1, 1}, {0xA78D, 1, -42280, 1},
    {0xA790, 2, 1, 2}, {0xA796, 10, 1, 2}, {0xA7AA, 1, -42308, 1}, {0xA7AB, 1, -42319, 1},
    {0xA7AC, 1, -42315, 1}, {0xA7AD, 1, -42305, 1}, {0xA7AE, 1, -42308, 1},
    {0xA7B0, 1, -42258, 1}, {0xA7B1, 1, -42282, 1}, {0xA7B2, 1, -42261, 1}, {0xA7B3, 1, 928, 1},
    {0xA7B4, 8, 1, 2}, {0xA7C4, 1, -48, 1}, {0xA7C5, 1, -42307, 1}, {0xA7C6, 1, -35384, 1},
    {0xA7C7, 2, 1, 2}, {0xA7CB, 1, -42343, 1}, {0xA7CC, 8, 1, 2}, {0xA7DC, 1, -42561, 1},
    {0xA7F5, 1, 1, 1}, {0xFF21, 26, 32, 1}, {0x10400, 40, 40, 1}, {0x104B0, 36, 40, 1},
    {0x10570, 11, 39, 1}, {0x1057C, 15, 39, 1}, {0x1058C, 7, 39, 1}, {0x10594, 2, 39, 1},
    {0x10C80, 51, 64, 1}, {0x10D50, 22, 32, 1}, {0x118A0, 32, 32, 1}, {0x16E40, 32, 32, 1},
    {0x16EA0, 25, 27, 1}, {0x1E900, 34, 34, 1},
};

void append_lower_utf16(uint32_t cp, std::u16string& out) {
  if (cp == 0x130) {
    out.push_back(u'i');
    out.push_back(u'\u0307');
    return;
  }
  if (cp != 0xFFFFFFFFu) {
    const auto* end = std::end(kLowerRuns);
    const auto* it = std::upper_bound(std::begin(kLowerRuns), end, cp,
                                      [](uint32_t c, const CaseRun& r) { return c < r.first; });
    if (it != std::begin(kLowerRuns)) {
      const CaseRun& r = *(it - 1);
      const uint32_t off = cp - r.first;
      if (off % r.stride == 0 && off / r.stride < r.count) cp = static_cast<uint32_t>(static_cast<int32_t>(cp) + r.delta);
    }
  } else {
    cp = 0xFFFD;
  }
  if (cp >= 0x10000) {
    cp -= 0x10000;
    out.push_back(static_cast<char16_t>(0xD800 + (cp >> 10)));
    out.push_back(static_cast<char16_t>(0xDC00 + (cp & 0x3FF)));
  } else {
    out.push_back(static_cast<char16_t>(cp));
  }
}

// dictsort's key: toLowerCase() compared with `<`, i.e. by UTF-16 code units.
std::u16string dictsort_key(std::string_view s) {
  std::u16string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) append_lower_utf16(next_cp(s, i), out);
  return out;
}

// `x | dictsort`: (key, value) pairs sorted case-insensitively, stable.
std::vector<std::pair<std::string_view, const ojson*>> dictsort(const ojson& obj) {
  struct Item {
    std::u16string key;
    std::string_view name;
    const ojson* value;
  };
  std::vector<Item> items;
  items.reserve(obj.size());
  for (auto it = obj.begin(); it != obj.end(); ++it)
    items.push_back({dictsort_key(it.key()), it.key(), &it.value()});
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.key < b.key; });
  std::vector<std::pair<std::string_view, const ojson*>> out;
  out.reserve(items.size());
  for (auto& i : items) out.emplace_back(i.name, i.value);
  return out;
}

std::string ascii_upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}

// ---------------------------------------------------------------------------
// Jinja value semantics

bool truthy(const ojson& v) {
  switch (v.type()) {
    case ojson::value_t::null:
    case ojson::value_t::discarded:
      return false;
    case ojson::value_t::boolean:
      return v.get<bool>();
    case ojson::value_t::number_integer:
      return v.get<int64_t>() != 0;
    case ojson::value_t::number_unsigned:
      return v.get<uint64_t>() != 0;
    case ojson::value_t::number_float:
      return v.get<double>() != 0.0;
    case ojson::value_t::string:
      return !v.get_ref<const std::string&>().empty();
    case ojson::value_t::array:
    case ojson::value_t::object:
    case ojson::value_t::binary:
      return !v.empty();
  }
  return false;
}

// obj[key] when obj is an object holding key; otherwise null (undefined).
const ojson& member(const ojson& obj, std::string_view key) {
  static const ojson kNull;
  if (!obj.is_object()) return kNull;
  auto it = obj.find(key);
  return it == obj.end() ? kNull : *it;
}

bool has_member(const ojson& obj, std::string_view key) {
  return obj.is_object() && obj.find(key) != obj.end();
}

double as_double(const ojson& v) {
  if (v.is_number_integer() && !v.is_number_unsigned()) return static_cast<double>(v.get<int64_t>());
  if (v.is_number_unsigned()) return static_cast<double>(v.get<uint64_t>());
  return v.get<double>();
}

// `{{ v }}` of a scalar: strings raw, JS numbers, true/false, null -> "".
// Containers print differently in every engine; we refuse them.
std::string scalar_text(const ojson& v, const std::string& what) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return {};
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number()) return js_number_to_string(as_double(v));
  fail(what, ": expected a string, got ", v.type_name());
}

// `x | upper` on a schema `type`. A missing type gives "" and a list gives
// Python's str(list).upper() -- the jinja2 results; @huggingface/jinja throws.
std::string upper_type(const ojson& t, const std::string& what) {
  if (t.is_null()) return {};
  if (t.is_string()) return ascii_upper(t.get_ref<const std::string&>());
  if (t.is_array()) {
    std::string out = "[";
    for (size_t i = 0; i < t.size(); ++i) {
      const ojson& e = t[i];
      if (!e.is_string()) fail(what, ": type list entries must be strings");
      const auto& s = e.get_ref<const std::string&>();
      for (char c : s)
        if (c == '\'' || c == '\\' || static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7F)
          fail(what, ": unsupported character in type name '", s, "'");
      if (i) out += ", ";
      out += "'" + s + "'";
    }
    out += "]";
    return ascii_upper(out);
  }
  fail(what, ": `type` must be a string or a list of strings, got ", t.type_name());
}

// `[<|"|>a<|"|>,<|"|>b<|"|>]` as the template's `required:[…]` loops write it.
std::string required_list(const ojson& req, const std::string& what) {
  if (!req.is_array()) fail(what, ": `required` must be an array");
  std::string out = "required:[";
  for (size_t i = 0; i < req.size(); ++i) {
    if (i) out += ",";
    out += kQ;
    out += scalar_text(req[i], what + ".required[" + std::to_string(i) + "]");
    out += kQ;
  }
  out += "]";
  return out;
}

// ---------------------------------------------------------------------------
// Template macros

// Bound on JSON nesting in everything we render (the renderer recurses).
constexpr int kMaxDepth = 256;

void check_depth(int depth) {
  if (depth > kMaxDepth) fail("JSON value nested more than ", kMaxDepth, " levels deep");
}

// format_argument(argument, escape_keys)
void format_argument(const ojson& v, bool escape_keys, std::string& out, int depth = 0) {
  check_depth(depth);
  switch (v.type()) {
    case ojson::value_t::string:
      out += kQ;
      out += v.get_ref<const std::string&>();
      out += kQ;
      return;
    case ojson::value_t::boolean:
      out += v.get<bool>() ? "true" : "false";
      return;
    case ojson::value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, value] : dictsort(v)) {
        if (!first) out += ',';
        first = false;
        if (escape_keys) {
          out += kQ;
          out += key;
          out += kQ;
        } else {
          out += key;
        }
        out += ':';
        format_argument(*value, escape_keys, out, depth + 1);
      }
      out += '}';
      return;
    }
    case ojson::value_t::array:
      out += '[';
      for (size_t i = 0; i < v.size(); ++i) {
        if (i) out += ',';
        format_argument(v[i], escape_keys, out, depth + 1);
      }
      out += ']';
      return;
    case ojson::value_t::number_integer:
    case ojson::value_t::number_unsigned:
    case ojson::value_t::number_float:
      out += js_number_to_string(as_double(v));
      return;
    default:  // null (and undefined) print as nothing in the JS engine
      return;
  }
}

std::string format_argument(const ojson& v, bool escape_keys) {
  std::string out;
  format_argument(v, escape_keys, out);
  return out;
}

void format_parameters(const ojson& properties, const std::string& where, std::string& out, int depth);

// The `items:{…}` block of an ARRAY property: every non-null key of `items`,
// sorted; properties/required/type specially, the rest via format_argument
// with quoted keys.
void format_items(const ojson& items, const std::string& where, std::string& out, int depth) {
  check_depth(depth);
  bool first = true;
  for (const auto& [key, value] : dictsort(items)) {
    if (value->is_null()) continue;
    if (!first) out += ',';
    first = false;
    const std::string at = where + "." + std::string(key);
    if (key == "properties") {
      out += "properties:{";
      if (value->is_object()) format_parameters(*value, at, out, depth + 1);
      out += '}';
    } else if (key == "required") {
      out += required_list(*value, where);
    } else if (key == "type") {
      if (value->is_string()) {
        out += "type:";
        format_argument(ojson(ascii_upper(value->get_ref<const std::string&>())), true, out);
      } else if (value->is_array()) {  // `map('upper') | list`: jinja2 result
        ojson upper = ojson::array();
        for (const auto& t : *value) {
          if (!t.is_string()) fail(at, ": type list entries must be strings");
          upper.push_back(ascii_upper(t.get_ref<const std::string&>()));
        }
        out += "type:";
        format_argument(upper, true, out);
      } else {
        fail(at, ": must be a string or a list of strings");
      }
    } else {
      out += key;
      out += ':';
      format_argument(*value, true, out);
    }
  }
}

// format_parameters(properties, required): one `name:{…}` per property, sorted,
// skipping properties named like the schema keywords the macro reserves.
void format_parameters(const ojson& properties, const std::string& where, std::string& out, int depth) {
  check_depth(depth);
  if (!properties.is_object()) fail(where, ": `properties` must be an object");
  static const ojson kEmpty = ojson::object();
  bool found_first = false;
  for (const auto& [key, value_ref] : dictsort(properties)) {
    if (key == "description" || key == "type" || key == "properties" || key == "required" ||
        key == "nullable")
      continue;
    const std::string at = where + "." + std::string(key);
    // A non-object schema reads as an empty one (jinja2; the JS engine throws).
    const ojson& value = value_ref->is_object() ? *value_ref : kEmpty;
    if (found_first) out += ',';
    found_first = true;
    out += key;
    out += ":{";
    bool add_comma = false;
    auto comma = [&] {
      if (add_comma) out += ',';
      add_comma = true;
    };
    const ojson& description = member(value, "description");
    if (truthy(description)) {
      out += "description:";
      out += kQ;
      out += scalar_text(description, at + ".description");
      out += kQ;
      add_comma = true;
    }
    const std::string type = upper_type(member(value, "type"), at + ".type");
    if (type == "STRING") {
      if (truthy(member(value, "enum"))) {
        comma();
        out += "enum:";
        format_argument(member(value, "enum"), true, out);
      }
    } else if (type == "ARRAY") {
      const ojson& items = member(value, "items");
      if (items.is_object() && !items.empty()) {
        comma();
        out += "items:{";
        format_items(items, at + ".items", out, depth + 1);
        out += '}';
      }
    }
    if (truthy(member(value, "nullable"))) {
      comma();
      out += "nullable:true";
    }
    if (type == "OBJECT") {
      const ojson& props = member(value, "properties");
      comma();
      out += "properties:{";
      // `properties` missing or not an object: the macro recurses into the
      // property's own keys (`elif value is mapping`).
      format_parameters(props.is_object() ? props : value, at, out, depth + 1);
      out += '}';
      if (truthy(member(value, "required"))) {
        comma();
        out += required_list(member(value, "required"), at);
      }
    }
    comma();
    out += "type:";
    out += kQ;
    out += type;
    out += kQ;
    out += '}';
  }
}

// strip_thinking(text): drop every <|channel>…<channel|> span (and anything
// after an unclosed <|channel>), then trim.
std::string strip_thinking(std::string_view text) {
  constexpr std::string_view kOpen = "<|channel>";
  constexpr std::string_view kClose = "<channel|>";
  std::string result;
  size_t pos = 0;
  while (true) {
    size_t end = text.find(kClose, pos);
    std::string_view part = text.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    size_t open = part.find(kOpen);
    result += open == std::string_view::npos ? part : part.substr(0, open);
    if (end == std::string_view::npos) break;
    pos = end + kClose.size();
  }
  return std::string(js_trim(result));
}

// format_tool_response_block(tool_name, response)
void format_tool_response_block(std::string_view name, const ojson& response, std::string& out) {
  out += "<|tool_response>response:";
  out += name;
  out += '{';
  if (response.is_object()) {
    bool first = true;
    for (const auto& [key, value] : dictsort(response)) {
      if (!first) out += ',';
      first = false;
      out += key;
      out += ':';
      format_argument(*value, false, out);
    }
  } else {
    out += "value:";
    format_argument(response, false, out);
  }
  out += "}<tool_response|>";
}

}  // namespace

// ---------------------------------------------------------------------------
// Public formatting helpers

std::string js_number_to_string(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v < 0 ? "-Infinity" : "Infinity";
  if (v == 0) return "0";  // also -0
  std::string sign = v < 0 ? "-" : "";
  v = std::fabs(v);
  // Shortest round-trip digits (the same digits ECMAScript's Number::toString
  // picks), then ECMAScript's layout rules.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));  // d[.ddd]e±XX
  const size_t epos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, epos))
    if (c != '.') digits += c;
  const int exp10 = std::atoi(std::string(sci.substr(epos + 1)).c_str());
  const int k = static_cast<int>(digits.size());
  const int n = exp10 + 1;  // value = 0.DIGITS × 10^n
  std::string out = sign;
  if (k <= n && n <= 21) {
    out.append(digits).append(static_cast<size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {
    out.append(digits, 0, static_cast<size_t>(n)).append(1, '.').append(digits, static_cast<size_t>(n));
  } else if (-6 < n && n <= 0) {
    out.append("0.").append(static_cast<size_t>(-n), '0').append(digits);
  } else {
    out.append(digits, 0, 1);
    if (k > 1) out.append(1, '.').append(digits, 1);
    const int e = n - 1;
    out.append(1, 'e').append(1, e < 0 ? '-' : '+').append(std::to_string(std::abs(e)));
  }
  return out;
}

std::string format_gemma_value(const ojson& v, bool quote_keys) { return format_argument(v, quote_keys); }

std::string format_tool_call(const ToolCall& call) {
  std::string out = "<|tool_call>call:" + call.name + "{";
  bool first = true;
  for (const auto& [key, value] : dictsort(call.arguments)) {
    if (!first) out += ',';
    first = false;
    out += key;
    out += ':';
    format_argument(*value, false, out);
  }
  out += "}<tool_call|>";
  return out;
}

// format_function_declaration(tool_data)
std::string format_tool_declaration(const ToolFunction& tool) {
  const std::string where = "tool '" + tool.name + "'";
  std::string out = "declaration:" + tool.name + "{description:";
  out += kQ;
  out += tool.description;
  out += kQ;
  const ojson& params = tool.parameters;
  if (truthy(params)) {
    if (!params.is_object()) fail(where, ": `parameters` must be an object");
    out += ",parameters:{";
    if (truthy(member(params, "properties"))) {
      out += "properties:{";
      format_parameters(member(params, "properties"), where + ".parameters.properties", out, 0);
      out += "},";
    }
    if (truthy(member(params, "required"))) {
      out += required_list(member(params, "required"), where + ".parameters");
      out += ',';
    }
    // The template closes `parameters` only here: without a `type` the brace
    // stays open (reproduced as is).
    if (truthy(member(params, "type"))) {
      out += "type:";
      out += kQ;
      out += upper_type(member(params, "type"), where + ".parameters.type");
      out += kQ;
      out += '}';
    }
  }
  if (tool.response) {
    const ojson& r = *tool.response;
    if (!r.is_object()) fail(where, ": `response` must be an object");
    out += ",response:{";
    if (truthy(member(r, "description"))) {
      out += "description:";
      out += kQ;
      out += scalar_text(member(r, "description"), where + ".response.description");
      out += kQ;
      out += ',';
    }
    // Likewise closed only for an OBJECT response.
    if (upper_type(member(r, "type"), where + ".response.type") == "OBJECT") {
      out += "type:";
      out += kQ;
      out += "OBJECT";
      out += kQ;
      out += '}';
    }
  }
  out += '}';
  return std::string(js_trim(out));
}

// ---------------------------------------------------------------------------
// Parsing (OpenAI chat-completions JSON)

std::string_view chat_role_name(ChatRole r) {
  switch (r) {
    case ChatRole::System: return "system";
    case ChatRole::Developer: return "developer";
    case ChatRole::User: return "user";
    case ChatRole::Assistant: return "assistant";
    case ChatRole::Model: return "model";
    case ChatRole::Tool: return "tool";
  }
  return "?";
}

ChatRole parse_chat_role(std::string_view name) {
  for (ChatRole r : {ChatRole::System, ChatRole::Developer, ChatRole::User, ChatRole::Assistant,
                     ChatRole::Model, ChatRole::Tool})
    if (chat_role_name(r) == name) return r;
  fail("unknown role '", name, "' (expected system, developer, user, assistant, model or tool)");
}

bool MessageContent::truthy() const {
  switch (kind) {
    case Kind::None: return false;
    case Kind::String: return !text.empty();
    case Kind::Parts: return !parts.empty();
    case Kind::Value: return g4::truthy(value);
  }
  return false;
}

namespace {

std::optional<std::string> optional_string(const ojson& obj, std::string_view key, const std::string& where) {
  const ojson& v = member(obj, key);
  if (v.is_null()) return std::nullopt;
  if (!v.is_string()) fail(where, ".", key, ": expected a string, got ", v.type_name());
  return v.get<std::string>();
}

ContentPart parse_part(const ojson& p, const std::string& where) {
  if (!p.is_object()) fail(where, ": a content part must be an object, got ", p.type_name());
  const ojson& type = member(p, "type");
  if (!type.is_string()) fail(where, ".type: expected a string");
  const auto& t = type.get_ref<const std::string&>();
  ContentPart part;
  if (t == "text") {
    const ojson& text = member(p, "text");
    if (!text.is_string()) fail(where, ".text: a text part needs a string `text`");
    part.kind = ContentPart::Kind::Text;
    part.text = text.get<std::string>();
    return part;
  }
  if (t == "image" || t == "image_url") {
    part.kind = ContentPart::Kind::Image;
  } else if (t == "audio" || t == "input_audio") {
    part.kind = ContentPart::Kind::Audio;
  } else if (t == "video" || t == "video_url") {
    part.kind = ContentPart::Kind::Video;
  } else {
    fail(where, ".type: unknown content part type '", t, "' (expected text, image, image_url, audio, ",
         "input_audio, video or video_url)");
  }
  part.source = p;
  return part;
}

ojson parse_arguments(const ojson& a, const std::string& where) {
  if (a.is_null()) return ojson::object();
  if (a.is_object()) return a;
  if (a.is_string()) {
    const auto& s = a.get_ref<const std::string&>();
    if (js_trim(s).empty()) return ojson::object();
    ojson parsed;
    try {
      parsed = ojson::parse(s);
    } catch (const std::exception& e) {
      fail(where, ": malformed JSON string: ", e.what());
    }
    if (!parsed.is_object()) fail(where, ": the JSON string must hold an object, got ", parsed.type_name());
    return parsed;
  }
  fail(where, ": expected an object or a JSON string, got ", a.type_name());
}

}  // namespace

ChatMessage parse_chat_message(const ojson& m, const std::string& where) {
  if (!m.is_object()) fail(where, ": a message must be an object, got ", m.type_name());
  ChatMessage msg;
  const ojson& role = member(m, "role");
  if (!role.is_string()) fail(where, ".role: missing or not a string");
  try {
    msg.role = parse_chat_role(role.get_ref<const std::string&>());
  } catch (const Error& e) {
    fail(where, ".role: ", e.what());
  }
  const bool is_model = msg.role == ChatRole::Assistant || msg.role == ChatRole::Model;

  const ojson& content = member(m, "content");
  if (content.is_string()) {
    msg.content.kind = MessageContent::Kind::String;
    msg.content.text = content.get<std::string>();
  } else if (content.is_array()) {
    msg.content.kind = MessageContent::Kind::Parts;
    for (size_t i = 0; i < content.size(); ++i)
      msg.content.parts.push_back(parse_part(content[i], where + ".content[" + std::to_string(i) + "]"));
  } else if (!content.is_null()) {
    if (msg.role != ChatRole::Tool)
      fail(where, ".content: expected a string, an array of parts or null, got ", content.type_name());
    msg.content.kind = MessageContent::Kind::Value;
    msg.content.value = content;
  }

  const auto reasoning = optional_string(m, "reasoning", where);
  const auto reasoning_content = optional_string(m, "reasoning_content", where);
  msg.reasoning = reasoning && !reasoning->empty() ? *reasoning : reasoning_content.value_or("");

  const ojson& calls = member(m, "tool_calls");
  if (!calls.is_null()) {
    if (!calls.is_array()) fail(where, ".tool_calls: expected an array");
    if (!calls.empty() && !is_model) fail(where, ".tool_calls: only assistant messages carry tool calls");
    for (size_t i = 0; i < calls.size(); ++i) {
      const std::string at = where + ".tool_calls[" + std::to_string(i) + "]";
      const ojson& c = calls[i];
      if (!c.is_object()) fail(at, ": expected an object");
      ToolCall call;
      call.id = optional_string(c, "id", at);
      const ojson& fn = member(c, "function");
      if (!fn.is_object()) fail(at, ".function: missing or not an object");
      const ojson& name = member(fn, "name");
      if (!name.is_string() || name.get_ref<const std::string&>().empty())
        fail(at, ".function.name: a tool call needs a non-empty name");
      call.name = name.get<std::string>();
      call.arguments = parse_arguments(member(fn, "arguments"), at + ".function.arguments");
      msg.tool_calls.push_back(std::move(call));
    }
  }

  const ojson& responses = member(m, "tool_responses");
  if (!responses.is_null()) {
    if (!responses.is_array()) fail(where, ".tool_responses: expected an array");
    if (!responses.empty() && !is_model) fail(where, ".tool_responses: only assistant messages carry them");
    for (size_t i = 0; i < responses.size(); ++i) {
      const std::string at = where + ".tool_responses[" + std::to_string(i) + "]";
      const ojson& r = responses[i];
      if (!r.is_object()) fail(at, ": expected an object");
      NativeToolResponse tr;
      tr.name = optional_string(r, "name", at);
      tr.response = member(r, "response");
      msg.tool_responses.push_back(std::move(tr));
    }
  }

  msg.name = optional_string(m, "name", where);
  msg.tool_call_id = optional_string(m, "tool_call_id", where);
  return msg;
}

ToolFunction parse_tool(const ojson& t, const std::string& where) {
  if (!t.is_object()) fail(where, ": a tool must be an object");
  const ojson& type = member(t, "type");
  if (!type.is_null() && type != "function")
    fail(where, ".type: only function tools are supported, got ",
         type.dump(-1, ' ', false, ojson::error_handler_t::replace));
  const ojson& fn = member(t, "function");
  if (!fn.is_object()) fail(where, ".function: missing or not an object");
  ToolFunction tool;
  const ojson& name = member(fn, "name");
  if (!name.is_string() || name.get_ref<const std::string&>().empty())
    fail(where, ".function.name: a tool needs a non-empty name");
  tool.name = name.get<std::string>();
  tool.description = scalar_text(member(fn, "description"), where + ".function.description");
  tool.parameters = member(fn, "parameters");
  if (!tool.parameters.is_null() && !tool.parameters.is_object())
    fail(where, ".function.parameters: expected an object");
  if (has_member(fn, "response")) {
    tool.response = member(fn, "response");
    if (!tool.response->is_object()) fail(where, ".function.response: expected an object");
  }
  // Render once so that schema errors surface here, naming the tool.
  (void)format_tool_declaration(tool);
  return tool;
}

Conversation parse_conversation(const ojson& request) {
  if (!request.is_object()) fail("chat request: expected a JSON object");
  Conversation conv;
  const ojson& messages = member(request, "messages");
  if (!messages.is_array()) fail("chat request: `messages` must be an array");
  for (size_t i = 0; i < messages.size(); ++i)
    conv.messages.push_back(parse_chat_message(messages[i], "messages[" + std::to_string(i) + "]"));
  const ojson& tools = member(request, "tools");
  if (!tools.is_null()) {
    if (!tools.is_array()) fail("chat request: `tools` must be an array");
    for (size_t i = 0; i < tools.size(); ++i)
      conv.tools.push_back(parse_tool(tools[i], "tools[" + std::to_string(i) + "]"));
  }
  return conv;
}

namespace {
ojson to_ordered(const nlohmann::json& j, int depth = 0) {
  check_depth(depth);
  if (j.is_object()) {
    ojson o = ojson::object();
    for (auto it = j.begin(); it != j.end(); ++it) o[it.key()] = to_ordered(it.value(), depth + 1);
    return o;
  }
  if (j.is_array()) {
    ojson a = ojson::array();
    for (const auto& e : j) a.push_back(to_ordered(e, depth + 1));
    return a;
  }
  switch (j.type()) {
    case nlohmann::json::value_t::string: return j.get<std::string>();
    case nlohmann::json::value_t::boolean: return j.get<bool>();
    case nlohmann::json::value_t::number_integer: return j.get<int64_t>();
    case nlohmann::json::value_t::number_unsigned: return j.get<uint64_t>();
    case nlohmann::json::value_t::number_float: return j.get<double>();
    default: return nullptr;
  }
}
}  // namespace

Conversation parse_conversation(const nlohmann::json& request) { return parse_conversation(to_ordered(request)); }

void apply_chat_options(const ojson& request, ChatOptions& opts) {
  auto read = [](const ojson& obj, std::string_view key, bool& dst, const char* where) {
    const ojson& v = member(obj, key);
    if (v.is_null()) return;
    if (!v.is_boolean()) fail(where, key, ": expected a boolean");
    dst = v.get<bool>();
  };
  read(request, "add_generation_prompt", opts.add_generation_prompt, "");
  read(request, "enable_thinking", opts.enable_thinking, "");
  const ojson& kw = member(request, "chat_template_kwargs");
  if (!kw.is_null()) {
    if (!kw.is_object()) fail("chat_template_kwargs: expected an object");
    read(kw, "add_generation_prompt", opts.add_generation_prompt, "chat_template_kwargs.");
    read(kw, "enable_thinking", opts.enable_thinking, "chat_template_kwargs.");
  }
}

// ---------------------------------------------------------------------------
// Rendering: the template's main body

namespace {

// ns.prev_message_type: what the last rendered message ended with; decides
// the closing of each message and whether a generation prompt is written.
enum class Last : uint8_t { None, Think, Tool, ToolCall, ToolResponse, Image, Audio, Video };

// System text of a leading system/developer message (`content | trim`).
std::string system_text(const ChatMessage& m, const std::string& where) {
  switch (m.content.kind) {
    case MessageContent::Kind::None:
      return {};  // extension: the JS engine throws on trim(null)
    case MessageContent::Kind::String:
      return std::string(js_trim(m.content.text));
    case MessageContent::Kind::Parts: {  // extension: like user parts
      std::string out;
      for (const auto& p : m.content.parts) {
        if (p.kind != ContentPart::Kind::Text) fail(where, ": the system turn takes text only");
        out += js_trim(p.text);
      }
      return out;
    }
    case MessageContent::Kind::Value:
      break;
  }
  fail(where, ".content: unsupported content");
}

// The result of role:tool message `follow` answering `caller`'s calls.
void render_tool_message(const ChatMessage& caller, const ChatMessage& follow, const std::string& where,
                         std::string& out) {
  // Name: the message's `name`, overridden by the function name of every
  // call whose id equals tool_call_id. The template compares with `==`, so a
  // call without id matches a message without tool_call_id (null == null):
  // then the *last* such call's name wins, even over an explicit `name`.
  std::optional<std::string> name = follow.name;
  for (const auto& tc : caller.tool_calls)
    if (tc.id == follow.tool_call_id) name = tc.name;
  if (!name)
    fail(where, ": cannot name this tool result: ",
         follow.tool_call_id ? "tool_call_id '" + *follow.tool_call_id + "' matches no call of the preceding assistant message"
                             : std::string("no tool_call_id"),
         ", and the message has no `name`");
  switch (follow.content.kind) {
    case MessageContent::Kind::None:
      format_tool_response_block(*name, ojson(), out);
      return;
    case MessageContent::Kind::String:
      format_tool_response_block(*name, ojson(follow.content.text), out);
      return;
    case MessageContent::Kind::Parts: {  // the text parts, concatenated untrimmed
      std::string text;
      for (const auto& p : follow.content.parts)
        if (p.kind == ContentPart::Kind::Text) text += p.text;
      format_tool_response_block(*name, ojson(text), out);
      return;
    }
    case MessageContent::Kind::Value:
      // The template iterates an object like a parts list: {} yields "" and
      // any other object throws (our extension renders it as a mapping).
      if (follow.content.value.is_object() && follow.content.value.empty()) {
        format_tool_response_block(*name, ojson(""), out);
      } else {
        format_tool_response_block(*name, follow.content.value, out);
      }
      return;
  }
}

}  // namespace

std::string render_chat(const Conversation& conv, const ChatOptions& opts) {
  const auto& messages = conv.messages;
  if (messages.empty()) fail("chat: no messages");
  std::string out = opts.bos_token;
  Last last = Last::None;
  size_t first = 0;  // loop_messages = messages[first:]

  const bool system_first =
      messages[0].role == ChatRole::System || messages[0].role == ChatRole::Developer;
  if (opts.enable_thinking || !conv.tools.empty() || system_first) {
    out += "<|turn>system\n";
    if (opts.enable_thinking) {
      out += "<|think|>\n";
      last = Last::Think;
    }
    if (system_first) {
      out += system_text(messages[0], "messages[0]");
      first = 1;
    }
    for (const auto& tool : conv.tools) {
      out += "<|tool>";
      out += format_tool_declaration(tool);
      out += "<tool|>";
    }
    if (!conv.tools.empty()) last = Last::Tool;
    out += "<turn|>\n";
  }

  // Reasoning is replayed only after the last user message.
  std::optional<size_t> last_user;
  for (size_t i = first; i < messages.size(); ++i)
    if (messages[i].role == ChatRole::User) last_user = i;

  std::optional<ChatRole> prev_role;  // raw role of the previous non-tool message
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == ChatRole::Tool) continue;  // rendered by the forward scan below (or dropped)
    const std::string where = "messages[" + std::to_string(i) + "]";
    last = Last::None;
    const bool model = m.role == ChatRole::Assistant || m.role == ChatRole::Model;
    const std::string_view role = model ? std::string_view("model") : chat_role_name(m.role);
    const bool continue_turn = model && prev_role == ChatRole::Assistant;
    prev_role = m.role;
    if (!continue_turn) {
      out += "<|turn>";
      out += role;
      out += '\n';
    }

    if (!m.reasoning.empty() && (!last_user || i > *last_user) && !m.tool_calls.empty()) {
      out += "<|channel>thought\n";
      out += m.reasoning;
      out += "\n<channel|>";
    }

    if (!m.tool_calls.empty()) {
      for (const auto& call : m.tool_calls) out += format_tool_call(call);
      last = Last::ToolCall;
    }

    bool results = false;
    if (!m.tool_responses.empty()) {  // Google-native results on the message
      for (const auto& r : m.tool_responses) {
        format_tool_response_block(r.name.value_or("unknown"), r.response, out);
        results = true;
        last = Last::ToolResponse;
      }
    } else if (!m.tool_calls.empty()) {  // OpenAI: the role:tool messages that follow
      for (size_t k = i + 1; k < messages.size() && messages[k].role == ChatRole::Tool; ++k) {
        render_tool_message(m, messages[k], "messages[" + std::to_string(k) + "]", out);
        results = true;
        last = Last::ToolResponse;
      }
    }

    switch (m.content.kind) {
      case MessageContent::Kind::String:
        out += model ? strip_thinking(m.content.text) : std::string(js_trim(m.content.text));
        break;
      case MessageContent::Kind::Parts:
        for (const auto& p : m.content.parts) {
          switch (p.kind) {
            case ContentPart::Kind::Text:
              out += model ? strip_thinking(p.text) : std::string(js_trim(p.text));
              break;
            case ContentPart::Kind::Image:
              out += "<|image|>";
              last = Last::Image;
              break;
            case ContentPart::Kind::Audio:
              out += "<|audio|>";
              last = Last::Audio;
              break;
            case ContentPart::Kind::Video:
              out += "<|video|>";
              last = Last::Video;
              break;
          }
        }
        break;
      case MessageContent::Kind::None:
        break;
      case MessageContent::Kind::Value:  // only tool messages hold these
        fail(where, ".content: unsupported content");
    }

    if (last == Last::ToolCall && !results) {
      out += "<|tool_response>";  // calls awaiting results: the model's stop token
    } else if (!(results && !m.content.truthy())) {
      out += "<turn|>\n";
    }
  }

  if (opts.add_generation_prompt && last != Last::ToolResponse && last != Last::ToolCall) {
    out += "<|turn>model\n";
    if (!opts.enable_thinking && opts.variant == ChatVariant::Large) out += "<|channel>thought\n<channel|>";
  }
  return out;
}

}  // namespace g4
