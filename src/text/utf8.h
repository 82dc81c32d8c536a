// UTF-8 helpers shared by the tokenizer, the streaming detokenizer and tests.
//
// Validity follows RFC 3629 / Unicode §3.9 (no overlong forms, no surrogates,
// nothing above U+10FFFF). Invalid input is replaced with U+FFFD using the
// "maximal subpart" rule (Unicode §3.9, W3C/WHATWG decoders): each maximal
// prefix of a would-be sequence becomes one U+FFFD, so a decoder that sees
// the bytes one at a time makes the same decisions as one that sees them all.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace g4::utf8 {

inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

struct Scan {
  enum Status : uint8_t { Valid, Invalid, Truncated };
  Status status;
  uint32_t len;  // Valid: bytes of the character; Invalid: bytes of the maximal
                 // subpart to replace (>= 1); Truncated: bytes available (a
                 // valid prefix of a character that needs more bytes)
  uint32_t cp;   // code point when Valid
};

// Examines the character starting at s[0] (n >= 1 bytes available).
inline Scan scan(const uint8_t* s, size_t n) {
  const uint8_t c = s[0];
  if (c < 0x80) return {Scan::Valid, 1, c};
  uint32_t need;
  uint32_t cp;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1; cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2; cp = c & 0x0F;
    if (c == 0xE0) lo = 0xA0;        // no overlongs
    else if (c == 0xED) hi = 0x9F;   // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3; cp = c & 0x07;
    if (c == 0xF0) lo = 0x90;        // no overlongs
    else if (c == 0xF4) hi = 0x8F;   // <= U+10FFFF
  } else {
    return {Scan::Invalid, 1, 0};    // 80..C1, F5..FF
  }
  for (uint32_t i = 1; i <= need; ++i) {
    if (i >= n) return {Scan::Truncated, static_cast<uint32_t>(n), 0};
    const uint8_t b = s[i];
    const uint8_t l = (i == 1) ? lo : 0x80, h = (i == 1) ? hi : 0xBF;
    if (b < l || b > h) return {Scan::Invalid, i, 0};
    cp = (cp << 6) | (b & 0x3F);
  }
  return {Scan::Valid, need + 1, cp};
}

inline Scan scan(std::string_view s, size_t pos) {
  return scan(reinterpret_cast<const uint8_t*>(s.data()) + pos, s.size() - pos);
}

inline bool is_valid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    Scan r = scan(s, i);
    if (r.status != Scan::Valid) return false;
    i += r.len;
  }
  return true;
}

// Appends the UTF-8 encoding of cp (cp must be a scalar value).
inline void append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Appends to `out` the longest prefix of `in` whose fate is decided: valid
// characters as they are, ill-formed subparts as U+FFFD. Returns the number of
// bytes consumed; the rest (< 4 bytes) is a truncated but possibly valid
// character. With final=true everything is consumed (a truncated tail becomes
// one U+FFFD).
inline size_t sanitize_into(std::string& out, std::string_view in, bool final) {
  size_t i = 0;
  while (i < in.size()) {
    // Fast path for runs of ASCII.
    size_t j = i;
    while (j < in.size() && static_cast<uint8_t>(in[j]) < 0x80) ++j;
    if (j > i) {
      out.append(in.data() + i, j - i);
      i = j;
      if (i == in.size()) break;
    }
    Scan r = scan(in, i);
    if (r.status == Scan::Valid) {
      out.append(in.data() + i, r.len);
    } else if (r.status == Scan::Invalid) {
      out += kReplacement;
    } else {  // Truncated
      if (!final) return i;
      out += kReplacement;
    }
    i += r.len;
  }
  return in.size();
}

// Whole-string replacement of ill-formed sequences by U+FFFD.
inline std::string sanitize(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  sanitize_into(out, in, /*final=*/true);
  return out;
}

}  // namespace g4::utf8
