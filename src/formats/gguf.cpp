// GGUF reader and writer. See gguf.h for the layout.
//
// The reader never trusts a count, length, dimension or offset from the file:
// everything is checked against the bytes that are actually there before any
// allocation or access, so corrupt input becomes a g4::Error, never a crash or
// a huge allocation.
#include "formats/gguf.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace g4 {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian u32
constexpr size_t kDefaultAlignment = 32;
constexpr int kMaxArrayDepth = 8;  // nested arrays deeper than this are refused
constexpr uint32_t kMaxDims = 4;   // GGML_MAX_DIMS
constexpr size_t kMaxNameLen = 64; // GGML_MAX_NAME (incl. NUL): llama.cpp refuses longer names
// Total metadata array elements per file. Each costs sizeof(GgufValue) (~48
// bytes) in memory, so without a cap a file of N bytes could demand 48·N bytes;
// real files hold ~1.3M (262144 tokens + 514906 merges + scores + types).
constexpr uint64_t kMaxMetadataElements = uint64_t{1} << 24;

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::FLOAT64); }

// Smallest encoding of one value of type t (used to reject absurd counts
// before allocating).
size_t min_encoded_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
    case GgufType::STRING: return 8;   // u64 length
    case GgufType::ARRAY: return 12;   // u32 type + u64 count
  }
  return 1;
}

bool is_unsigned_type(GgufType t) {
  return t == GgufType::UINT8 || t == GgufType::UINT16 || t == GgufType::UINT32 || t == GgufType::UINT64;
}
bool is_signed_type(GgufType t) {
  return t == GgufType::INT8 || t == GgufType::INT16 || t == GgufType::INT32 || t == GgufType::INT64;
}
bool is_float_type(GgufType t) { return t == GgufType::FLOAT32 || t == GgufType::FLOAT64; }

bool is_pow2(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

std::string type_str(GgufType t) {
  if (valid_type(static_cast<uint32_t>(t))) return gguf_type_name(t);
  return "type " + std::to_string(static_cast<uint32_t>(t));
}

// Quote a string for messages and display: printable ASCII and UTF-8 are kept,
// control bytes are escaped; long strings are cut at a UTF-8 boundary.
std::string quote(std::string_view s, size_t max_bytes = std::numeric_limits<size_t>::max()) {
  std::string out = "\"";
  size_t n = s.size();
  bool cut = false;
  if (n > max_bytes) {
    n = max_bytes;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // don't split a code point
    cut = true;
  }
  out.reserve(n + 2);
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  if (cut) out += "... (" + std::to_string(s.size()) + " bytes)";
  return out;
}

template <class F>
std::string shortest(F x) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, r.ptr);
}

// ---------------------------------------------------------------------------
// Bounds-checked little-endian reader over the mapped bytes.

class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& path) : data_(data), size_(size), path_(path) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  // Describes the item being parsed, appended to truncation messages.
  void set_context(std::string c) { context_ = std::move(c); }

  void need(size_t n, const char* what) const {
    if (n > size_ - pos_) truncated(what, n);
  }

  template <class T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  // u64 length + bytes; returns a view into the mapping.
  std::string_view read_string(const char* what) {
    const size_t at = pos_;
    uint64_t len = read<uint64_t>(what);
    if (len > size_ - pos_) {
      fail("GGUF '", path_, "': string at offset ", at, " (", what, context_suffix(), ") claims ", len,
           " bytes but only ", size_ - pos_, " remain in the file");
    }
    std::string_view s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

  [[noreturn]] void truncated(const char* what, size_t n) const {
    fail("GGUF '", path_, "': truncated at offset ", pos_, " while reading ", what, context_suffix(), " (need ", n,
         " bytes, file has ", size_, ")");
  }

  std::string context_suffix() const { return context_.empty() ? std::string() : " of " + context_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
  std::string context_;
};

class Parser {
 public:
  Parser(Cursor& c, const std::string& path) : c_(c), path_(path) {}

  GgufValue read_value(GgufType t, int depth) {
    GgufValue v;
    v.type = t;
    switch (t) {
      case GgufType::UINT8: v.v = uint64_t{c_.read<uint8_t>("UINT8 value")}; break;
      case GgufType::INT8: v.v = int64_t{c_.read<int8_t>("INT8 value")}; break;
      case GgufType::UINT16: v.v = uint64_t{c_.read<uint16_t>("UINT16 value")}; break;
      case GgufType::INT16: v.v = int64_t{c_.read<int16_t>("INT16 value")}; break;
      case GgufType::UINT32: v.v = uint64_t{c_.read<uint32_t>("UINT32 value")}; break;
      case GgufType::INT32: v.v = int64_t{c_.read<int32_t>("INT32 value")}; break;
      case GgufType::UINT64: v.v = uint64_t{c_.read<uint64_t>("UINT64 value")}; break;
      case GgufType::INT64: v.v = int64_t{c_.read<int64_t>("INT64 value")}; break;
      case GgufType::FLOAT32: v.v = double{c_.read<float>("FLOAT32 value")}; break;
      case GgufType::FLOAT64: v.v = c_.read<double>("FLOAT64 value"); break;
      case GgufType::BOOL: v.v = c_.read<uint8_t>("BOOL value") != 0; break;
      case GgufType::STRING: v.v = std::string(c_.read_string("string value")); break;
      case GgufType::ARRAY: read_array(v, depth); break;
    }
    return v;
  }

  GgufType read_type(const char* what) {
    const size_t at = c_.pos();
    uint32_t t = c_.read<uint32_t>(what);
    if (!valid_type(t))
      fail("GGUF '", path_, "': unknown metadata value type ", t, " at offset ", at, c_.context_suffix());
    return static_cast<GgufType>(t);
  }

 private:
  template <class Disk, class Stored>
  void read_numbers(std::vector<GgufValue>& items, GgufType t, uint64_t n, const char* what) {
    for (uint64_t i = 0; i < n; ++i) {
      GgufValue& e = items.emplace_back();
      e.type = t;
      e.v = static_cast<Stored>(c_.read<Disk>(what));
    }
  }

  void read_array(GgufValue& v, int depth) {
    if (depth >= kMaxArrayDepth)
      fail("GGUF '", path_, "': arrays nested deeper than ", kMaxArrayDepth, " levels at offset ", c_.pos(),
           c_.context_suffix());
    GgufType et = read_type("array element type");
    const size_t at = c_.pos();
    uint64_t n = c_.read<uint64_t>("array length");
    if (n > c_.remaining() / min_encoded_size(et))
      fail("GGUF '", path_, "': array at offset ", at, c_.context_suffix(), " claims ", n, " ", gguf_type_name(et),
           " elements but only ", c_.remaining(), " bytes remain in the file");
    elements_ += n;
    if (elements_ > kMaxMetadataElements)
      fail("GGUF '", path_, "': more than ", kMaxMetadataElements, " metadata array elements in total (at offset ", at,
           c_.context_suffix(), "); refusing an absurd file");
    v.elem_type = et;
    std::vector<GgufValue> items;
    items.reserve(static_cast<size_t>(n));
    switch (et) {
      case GgufType::UINT8: read_numbers<uint8_t, uint64_t>(items, et, n, "UINT8 array element"); break;
      case GgufType::INT8: read_numbers<int8_t, int64_t>(items, et, n, "INT8 array element"); break;
      case GgufType::UINT16: read_numbers<uint16_t, uint64_t>(items, et, n, "UINT16 array element"); break;
      case GgufType::INT16: read_numbers<int16_t, int64_t>(items, et, n, "INT16 array element"); break;
      case GgufType::UINT32: read_numbers<uint32_t, uint64_t>(items, et, n, "UINT32 array element"); break;
      case GgufType::INT32: read_numbers<int32_t, int64_t>(items, et, n, "INT32 array element"); break;
      case GgufType::UINT64: read_numbers<uint64_t, uint64_t>(items, et, n, "UINT64 array element"); break;
      case GgufType::INT64: read_numbers<int64_t, int64_t>(items, et, n, "INT64 array element"); break;
      case GgufType::FLOAT32: read_numbers<float, double>(items, et, n, "FLOAT32 array element"); break;
      case GgufType::FLOAT64: read_numbers<double, double>(items, et, n, "FLOAT64 array element"); break;
      case GgufType::BOOL:
        for (uint64_t i = 0; i < n; ++i) {
          GgufValue& e = items.emplace_back();
          e.type = et;
          e.v = c_.read<uint8_t>("BOOL array element") != 0;
        }
        break;
      case GgufType::STRING:
        for (uint64_t i = 0; i < n; ++i) {
          GgufValue& e = items.emplace_back();
          e.type = et;
          e.v.emplace<std::string>(c_.read_string("string array element"));
        }
        break;
      case GgufType::ARRAY:
        for (uint64_t i = 0; i < n; ++i) {
          GgufValue& e = items.emplace_back();
          e.type = et;
          read_array(e, depth + 1);
        }
        break;
    }
    v.v = std::move(items);
  }

  Cursor& c_;
  const std::string& path_;
  uint64_t elements_ = 0;
};

}  // namespace

// ---------------------------------------------------------------------------
// GgufType / GgufValue

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::UINT8: return "UINT8";
    case GgufType::INT8: return "INT8";
    case GgufType::UINT16: return "UINT16";
    case GgufType::INT16: return "INT16";
    case GgufType::UINT32: return "UINT32";
    case GgufType::INT32: return "INT32";
    case GgufType::FLOAT32: return "FLOAT32";
    case GgufType::BOOL: return "BOOL";
    case GgufType::STRING: return "STRING";
    case GgufType::ARRAY: return "ARRAY";
    case GgufType::UINT64: return "UINT64";
    case GgufType::INT64: return "INT64";
    case GgufType::FLOAT64: return "FLOAT64";
  }
  return "INVALID";
}

namespace {
GgufValue make_u(GgufType t, uint64_t x) {
  GgufValue v;
  v.type = t;
  v.v = x;
  return v;
}
GgufValue make_i(GgufType t, int64_t x) {
  GgufValue v;
  v.type = t;
  v.v = x;
  return v;
}
}  // namespace

GgufValue GgufValue::u8(uint8_t x) { return make_u(GgufType::UINT8, x); }
GgufValue GgufValue::i8(int8_t x) { return make_i(GgufType::INT8, x); }
GgufValue GgufValue::u16(uint16_t x) { return make_u(GgufType::UINT16, x); }
GgufValue GgufValue::i16(int16_t x) { return make_i(GgufType::INT16, x); }
GgufValue GgufValue::u32(uint32_t x) { return make_u(GgufType::UINT32, x); }
GgufValue GgufValue::i32(int32_t x) { return make_i(GgufType::INT32, x); }
GgufValue GgufValue::u64(uint64_t x) { return make_u(GgufType::UINT64, x); }
GgufValue GgufValue::i64(int64_t x) { return make_i(GgufType::INT64, x); }
GgufValue GgufValue::f32(float x) {
  GgufValue v;
  v.type = GgufType::FLOAT32;
  v.v = double{x};
  return v;
}
GgufValue GgufValue::f64(double x) {
  GgufValue v;
  v.type = GgufType::FLOAT64;
  v.v = x;
  return v;
}
GgufValue GgufValue::boolean(bool x) {
  GgufValue v;
  v.type = GgufType::BOOL;
  v.v = x;
  return v;
}
GgufValue GgufValue::str(std::string x) {
  GgufValue v;
  v.type = GgufType::STRING;
  v.v = std::move(x);
  return v;
}
GgufValue GgufValue::array(GgufType elem_type, std::vector<GgufValue> items) {
  if (!valid_type(static_cast<uint32_t>(elem_type)))
    fail("GGUF array: invalid element type ", static_cast<uint32_t>(elem_type));
  for (size_t i = 0; i < items.size(); ++i)
    if (items[i].type != elem_type)
      fail("GGUF array of ", gguf_type_name(elem_type), ": element ", i, " is ", type_str(items[i].type));
  GgufValue v;
  v.type = GgufType::ARRAY;
  v.elem_type = elem_type;
  v.v = std::move(items);
  return v;
}
GgufValue GgufValue::strings(const std::vector<std::string>& xs) {
  std::vector<GgufValue> items;
  items.reserve(xs.size());
  for (const auto& s : xs) items.push_back(str(s));
  return array(GgufType::STRING, std::move(items));
}
GgufValue GgufValue::i32s(const std::vector<int32_t>& xs) {
  std::vector<GgufValue> items;
  items.reserve(xs.size());
  for (int32_t x : xs) items.push_back(i32(x));
  return array(GgufType::INT32, std::move(items));
}
GgufValue GgufValue::u32s(const std::vector<uint32_t>& xs) {
  std::vector<GgufValue> items;
  items.reserve(xs.size());
  for (uint32_t x : xs) items.push_back(u32(x));
  return array(GgufType::UINT32, std::move(items));
}
GgufValue GgufValue::f32s(const std::vector<float>& xs) {
  std::vector<GgufValue> items;
  items.reserve(xs.size());
  for (float x : xs) items.push_back(f32(x));
  return array(GgufType::FLOAT32, std::move(items));
}
GgufValue GgufValue::bools(const std::vector<bool>& xs) {
  std::vector<GgufValue> items;
  items.reserve(xs.size());
  for (bool x : xs) items.push_back(boolean(x));
  return array(GgufType::BOOL, std::move(items));
}

bool GgufValue::is_integer() const { return is_unsigned_type(type) || is_signed_type(type); }
bool GgufValue::is_float() const { return is_float_type(type); }

namespace {
[[noreturn]] void type_error(const GgufValue& v, std::string_view what, const char* expected) {
  if (const auto* a = std::get_if<std::vector<GgufValue>>(&v.v); a && v.is_array())
    fail(what, " is an ARRAY of ", a->size(), " ", type_str(v.elem_type), ", expected ", expected);
  fail(what, " is ", type_str(v.type), " ", v.to_display_string(), ", expected ", expected);
}
}  // namespace

uint64_t GgufValue::as_u64(std::string_view what) const {
  if (const auto* u = std::get_if<uint64_t>(&v); u && is_unsigned_type(type)) return *u;
  if (const auto* s = std::get_if<int64_t>(&v); s && is_signed_type(type) && *s >= 0) return static_cast<uint64_t>(*s);
  type_error(*this, what, "a non-negative integer");
}

int64_t GgufValue::as_i64(std::string_view what) const {
  if (const auto* s = std::get_if<int64_t>(&v); s && is_signed_type(type)) return *s;
  if (const auto* u = std::get_if<uint64_t>(&v);
      u && is_unsigned_type(type) && *u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return static_cast<int64_t>(*u);
  type_error(*this, what, "an integer that fits in int64");
}

double GgufValue::as_f64(std::string_view what) const {
  if (const auto* d = std::get_if<double>(&v); d && is_float_type(type)) return *d;
  if (const auto* s = std::get_if<int64_t>(&v); s && is_signed_type(type)) return static_cast<double>(*s);
  if (const auto* u = std::get_if<uint64_t>(&v); u && is_unsigned_type(type)) return static_cast<double>(*u);
  type_error(*this, what, "a number");
}

bool GgufValue::as_bool(std::string_view what) const {
  if (const auto* b = std::get_if<bool>(&v); b && type == GgufType::BOOL) return *b;
  type_error(*this, what, "a BOOL");
}

const std::string& GgufValue::as_string(std::string_view what) const {
  if (const auto* s = std::get_if<std::string>(&v); s && type == GgufType::STRING) return *s;
  type_error(*this, what, "a STRING");
}

const std::vector<GgufValue>& GgufValue::as_array(std::string_view what) const {
  if (const auto* a = std::get_if<std::vector<GgufValue>>(&v); a && type == GgufType::ARRAY) return *a;
  type_error(*this, what, "an ARRAY");
}

std::string GgufValue::to_display_string(size_t max_items) const {
  if (type == GgufType::ARRAY) {
    const auto* a = std::get_if<std::vector<GgufValue>>(&v);
    if (!a) return "<malformed array>";
    std::string out = "[";
    const size_t n = std::min(max_items, a->size());
    for (size_t i = 0; i < n; ++i) {
      if (i) out += ", ";
      out += (*a)[i].to_display_string(max_items);
    }
    if (n < a->size()) out += (n ? ", ... " : "... ") + std::to_string(a->size()) + " items";
    out += "]";
    return out;
  }
  if (const auto* u = std::get_if<uint64_t>(&v)) return std::to_string(*u);
  if (const auto* s = std::get_if<int64_t>(&v)) return std::to_string(*s);
  if (const auto* d = std::get_if<double>(&v)) {
    return type == GgufType::FLOAT32 ? shortest(static_cast<float>(*d)) : shortest(*d);
  }
  if (const auto* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  if (const auto* s = std::get_if<std::string>(&v)) return quote(*s, 256);
  return "<malformed value>";
}

// ---------------------------------------------------------------------------
// GgufFile

GgufFile GgufFile::open(const std::string& path) { return parse(MappedFile::open(path)); }

GgufFile GgufFile::parse(std::shared_ptr<MappedFile> file) {
  if (!file) fail("GGUF: no file given");
  GgufFile g;
  g.file_ = std::move(file);
  const std::string& path = g.file_->path();
  const uint8_t* base = g.file_->data();
  const size_t size = g.file_->size();
  Cursor c(base, size, path);
  Parser p(c, path);

  // Header.
  c.set_context("header");
  const uint32_t magic = c.read<uint32_t>("magic");
  if (magic != kMagic) {
    std::string shown;
    for (int i = 0; i < 4; ++i) {
      unsigned char ch = static_cast<unsigned char>(magic >> (8 * i));
      shown += (ch >= 0x20 && ch < 0x7f) ? static_cast<char>(ch) : '?';
    }
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08" PRIx32, magic);
    fail("GGUF '", path, "': not a GGUF file (magic '", shown, "' ", hex, ", expected 'GGUF')");
  }
  g.version_ = c.read<uint32_t>("version");
  if (g.version_ != 2 && g.version_ != 3) {
    if (g.version_ == 1)
      fail("GGUF '", path, "': GGUF version 1 is not supported (only versions 2 and 3); re-convert the model");
    if (g.version_ != 0 && (g.version_ & 0xFFFF) == 0)
      fail("GGUF '", path, "': version ", g.version_, " looks byte-swapped: big-endian GGUF files are not supported");
    fail("GGUF '", path, "': unsupported GGUF version ", g.version_, " (only versions 2 and 3 are supported)");
  }
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata key/value count");
  // Smallest possible entries: kv = key length + 1-byte key + type + 1-byte value;
  // tensor info = name length + 1-byte name + n_dims + one dim + type + offset.
  constexpr uint64_t kMinKv = 8 + 1 + 4 + 1, kMinTensor = 8 + 1 + 4 + 8 + 4 + 8;
  if (n_kv > c.remaining() / kMinKv)
    fail("GGUF '", path, "': metadata count ", n_kv, " is impossible: only ", c.remaining(),
         " bytes follow the header");
  if (n_tensors > c.remaining() / kMinTensor)
    fail("GGUF '", path, "': tensor count ", n_tensors, " is impossible: only ", c.remaining(),
         " bytes follow the header");
  if (n_kv * kMinKv + n_tensors * kMinTensor > c.remaining())
    fail("GGUF '", path, "': ", n_kv, " metadata entries and ", n_tensors, " tensors cannot fit in the ",
         c.remaining(), " bytes that follow the header");

  // Metadata.
  g.kv_.reserve(static_cast<size_t>(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    c.set_context("metadata entry #" + std::to_string(i));
    std::string_view key = c.read_string("key");
    if (key.empty()) fail("GGUF '", path, "': metadata entry #", i, " has an empty key");
    c.set_context("metadata key " + quote(key, 200));
    GgufType t = p.read_type("value type");
    GgufValue v = p.read_value(t, 0);
    auto [it, inserted] = g.kv_index_.emplace(std::string(key), g.kv_.size());
    if (!inserted) fail("GGUF '", path, "': duplicate metadata key ", quote(key, 200));
    g.kv_.emplace_back(std::string(key), std::move(v));
  }

  // Alignment.
  if (const GgufValue* a = g.find("general.alignment")) {
    if (!a->is_integer())
      fail("GGUF '", path, "': general.alignment is ", type_str(a->type), ", expected an integer");
    const bool neg = std::holds_alternative<int64_t>(a->v) && std::get<int64_t>(a->v) < 0;
    uint64_t al = neg ? 0 : a->as_u64("general.alignment");
    if (neg || !is_pow2(al) || al > (uint64_t{1} << 32))
      fail("GGUF '", path, "': general.alignment ", a->to_display_string(), " is not a power of two in [1, 2^32]");
    g.alignment_ = static_cast<size_t>(al);
  }

  // Tensor infos.
  struct Pending {
    uint64_t offset;
    size_t nbytes;
  };
  std::vector<Pending> pending;
  pending.reserve(static_cast<size_t>(n_tensors));
  g.tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    c.set_context("tensor info #" + std::to_string(i));
    std::string_view name = c.read_string("tensor name");
    if (name.empty()) fail("GGUF '", path, "': tensor #", i, " has an empty name");
    const std::string qname = quote(name, 200);
    c.set_context("tensor " + qname);
    const uint32_t n_dims = c.read<uint32_t>("dimension count");
    if (n_dims > kMaxDims)
      fail("GGUF '", path, "': tensor ", qname, " has ", n_dims, " dimensions (at most ", kMaxDims, ")");
    TensorView tv;
    // ggml reads n_dims 0 (a scalar, e.g. from gguf-py given a 0-d array) as
    // all dimensions 1; it is exposed as ne = {1} so ne[0] always exists.
    tv.ne.assign(n_dims ? n_dims : 1, 1);
    int64_t nelem = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.read<uint64_t>("dimension");
      if (ne == 0 || ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail("GGUF '", path, "': tensor ", qname, " dimension ", d, " is ", static_cast<int64_t>(ne),
             " (must be positive)");
      tv.ne[d] = static_cast<int64_t>(ne);
      if (__builtin_mul_overflow(nelem, tv.ne[d], &nelem))
        fail("GGUF '", path, "': tensor ", qname, " has an absurd shape ", tv.shape_string(),
             ": the element count overflows int64");
    }
    const uint32_t type_id = c.read<uint32_t>("ggml type");
    const GgmlTypeInfo* ti = ggml_type_info(type_id);
    if (!ti) fail("GGUF '", path, "': tensor ", qname, " has unknown ggml type id ", type_id);
    tv.type = ti->type;
    if (tv.ne[0] % ti->block_size != 0)
      fail("GGUF '", path, "': tensor ", qname, " of type ", ti->name, " has rows of ", tv.ne[0],
           " elements, not a multiple of the block size ", ti->block_size);
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(nelem / ti->block_size), uint64_t{ti->block_bytes}, &nbytes) ||
        nbytes > std::numeric_limits<size_t>::max())
      fail("GGUF '", path, "': tensor ", qname, " ", ti->name, " ", tv.shape_string(), " has an absurd byte size");
    const uint64_t offset = c.read<uint64_t>("data offset");
    if (offset % g.alignment_ != 0)
      fail("GGUF '", path, "': tensor ", qname, " data offset ", offset, " is not a multiple of the alignment ",
           g.alignment_);
    auto [it, inserted] = g.tensor_index_.emplace(std::string(name), g.tensors_.size());
    if (!inserted) fail("GGUF '", path, "': duplicate tensor name ", qname);
    tv.name = std::string(name);
    tv.nbytes = static_cast<size_t>(nbytes);
    g.tensors_.push_back(std::move(tv));
    pending.push_back({offset, static_cast<size_t>(nbytes)});
  }
  c.set_context("");

  // Data section: starts at the next multiple of the alignment.
  const size_t header_end = c.pos();
  size_t data_offset = (header_end + g.alignment_ - 1) / g.alignment_ * g.alignment_;
  if (data_offset < header_end) fail("GGUF '", path, "': data section offset overflows");  // unreachable on 64-bit
  if (n_tensors == 0) {
    g.data_offset_ = std::min(data_offset, size);
  } else {
    if (data_offset > size)
      fail("GGUF '", path, "': truncated: the tensor data section should start at offset ", data_offset,
           " but the file has only ", size, " bytes");
    g.data_offset_ = data_offset;
  }
  const size_t data_size = size - g.data_offset_;

  for (size_t i = 0; i < g.tensors_.size(); ++i) {
    TensorView& tv = g.tensors_[i];
    const Pending& pd = pending[i];
    if (pd.offset > data_size || tv.nbytes > data_size - pd.offset)
      fail("GGUF '", path, "': tensor ", quote(tv.name, 200), " (", ggml_type_name(tv.type), " ", tv.shape_string(),
           ", ", tv.nbytes, " bytes at data offset ", pd.offset, ") extends past the end of the file (data section is ",
           data_size, " bytes)");
    tv.data = base + g.data_offset_ + pd.offset;
    tv.file = g.file_;
  }

  // Overlaps: sort by offset and compare neighbours.
  if (g.tensors_.size() > 1) {
    std::vector<size_t> order(g.tensors_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return pending[a].offset < pending[b].offset; });
    for (size_t k = 1; k < order.size(); ++k) {
      const size_t a = order[k - 1], b = order[k];
      if (pending[a].offset + g.tensors_[a].nbytes > pending[b].offset)
        fail("GGUF '", path, "': tensors ", quote(g.tensors_[a].name, 200), " (data offset ", pending[a].offset, ", ",
             g.tensors_[a].nbytes, " bytes) and ", quote(g.tensors_[b].name, 200), " (data offset ",
             pending[b].offset, ") overlap");
    }
  }
  return g;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufValue& GgufFile::get(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) fail("GGUF '", path(), "': missing key '", key, "'");
  return *v;
}

namespace {
std::string key_what(const GgufFile& f, std::string_view key) {
  return "GGUF '" + f.path() + "': key '" + std::string(key) + "'";
}
}  // namespace

uint64_t GgufFile::get_u64(std::string_view key) const { return get(key).as_u64(key_what(*this, key)); }
int64_t GgufFile::get_i64(std::string_view key) const { return get(key).as_i64(key_what(*this, key)); }
double GgufFile::get_f64(std::string_view key) const { return get(key).as_f64(key_what(*this, key)); }
bool GgufFile::get_bool(std::string_view key) const { return get(key).as_bool(key_what(*this, key)); }
std::string GgufFile::get_string(std::string_view key) const { return get(key).as_string(key_what(*this, key)); }

std::vector<std::string> GgufFile::get_strings(std::string_view key) const {
  const std::string what = key_what(*this, key);
  const auto& a = get(key).as_array(what);
  std::vector<std::string> out;
  out.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i) out.push_back(a[i].as_string(what + " element " + std::to_string(i)));
  return out;
}

std::vector<int64_t> GgufFile::get_i64s(std::string_view key) const {
  const std::string what = key_what(*this, key);
  const auto& a = get(key).as_array(what);
  std::vector<int64_t> out;
  out.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i) out.push_back(a[i].as_i64(what + " element " + std::to_string(i)));
  return out;
}

std::vector<double> GgufFile::get_f64s(std::string_view key) const {
  const std::string what = key_what(*this, key);
  const auto& a = get(key).as_array(what);
  std::vector<double> out;
  out.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i) out.push_back(a[i].as_f64(what + " element " + std::to_string(i)));
  return out;
}

const TensorView* GgufFile::tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

// ---------------------------------------------------------------------------
// GgufWriter

struct GgufWriter::Impl {
  enum class State { Declaring, Writing, Finished, Failed };
  struct Info {
    std::string name;
    GgmlType type;
    std::vector<int64_t> ne;
    size_t nbytes;
    uint64_t offset;
  };

  std::string path;       // final destination
  std::string temp_path;  // written here, renamed on finish(); empty when writing in place
  size_t alignment;
  bool alignment_from_key = false;
  std::vector<std::pair<std::string, GgufValue>> kv;
  std::map<std::string, size_t, std::less<>> kv_index;
  std::vector<Info> tensors;
  std::map<std::string, size_t, std::less<>> tensor_index;
  State state = State::Declaring;
  size_t next_tensor = 0;
  uint64_t partial = 0;  // bytes of tensors[next_tensor] written so far by write_tensor_chunk()
  std::FILE* f = nullptr;
  uint64_t written = 0;

  [[noreturn]] void io_fail(const char* what, int err) {
    state = State::Failed;
    fail("GGUF writer '", path, "': ", what, ": ", std::strerror(err));
  }

  void require(State s, const char* op) {
    if (state == s) return;
    switch (state) {
      case State::Failed: fail("GGUF writer '", path, "': ", op, " after an earlier error");
      case State::Finished: fail("GGUF writer '", path, "': ", op, " after finish()");
      case State::Writing: fail("GGUF writer '", path, "': ", op, " after write_header()");
      case State::Declaring: fail("GGUF writer '", path, "': ", op, " before write_header()");
    }
    fail("GGUF writer '", path, "': ", op, " in a bad state");
  }

  void put(const void* p, size_t n) {
    if (n == 0) return;
    if (std::fwrite(p, 1, n, f) != n) io_fail("write failed", errno ? errno : EIO);
    written += n;
  }
  template <class T>
  void put_le(T x) {
    put(&x, sizeof x);  // x86-64 and aarch64 are little-endian, as GGUF is
  }
  void put_string(std::string_view s) {
    put_le<uint64_t>(s.size());
    put(s.data(), s.size());
  }
  void pad() {
    static const uint8_t zeros[256] = {};
    uint64_t n = (alignment - written % alignment) % alignment;
    while (n > 0) {
      size_t k = static_cast<size_t>(std::min<uint64_t>(n, sizeof zeros));
      put(zeros, k);
      n -= k;
    }
  }

  void put_payload(const GgufValue& v) {
    switch (v.type) {
      case GgufType::UINT8: put_le<uint8_t>(static_cast<uint8_t>(std::get<uint64_t>(v.v))); break;
      case GgufType::INT8: put_le<int8_t>(static_cast<int8_t>(std::get<int64_t>(v.v))); break;
      case GgufType::UINT16: put_le<uint16_t>(static_cast<uint16_t>(std::get<uint64_t>(v.v))); break;
      case GgufType::INT16: put_le<int16_t>(static_cast<int16_t>(std::get<int64_t>(v.v))); break;
      case GgufType::UINT32: put_le<uint32_t>(static_cast<uint32_t>(std::get<uint64_t>(v.v))); break;
      case GgufType::INT32: put_le<int32_t>(static_cast<int32_t>(std::get<int64_t>(v.v))); break;
      case GgufType::UINT64: put_le<uint64_t>(std::get<uint64_t>(v.v)); break;
      case GgufType::INT64: put_le<int64_t>(std::get<int64_t>(v.v)); break;
      case GgufType::FLOAT32: put_le<float>(static_cast<float>(std::get<double>(v.v))); break;
      case GgufType::FLOAT64: put_le<double>(std::get<double>(v.v)); break;
      case GgufType::BOOL: put_le<uint8_t>(std::get<bool>(v.v) ? 1 : 0); break;
      case GgufType::STRING: put_string(std::get<std::string>(v.v)); break;
      case GgufType::ARRAY: {
        const auto& items = std::get<std::vector<GgufValue>>(v.v);
        put_le<uint32_t>(static_cast<uint32_t>(v.elem_type));
        put_le<uint64_t>(items.size());
        for (const auto& e : items) put_payload(e);
        break;
      }
    }
  }
};

namespace {

// Checks that a value is internally consistent and representable on disk.
void validate_value(const GgufValue& v, const std::string& where, int depth) {
  if (!valid_type(static_cast<uint32_t>(v.type)))
    fail(where, ": invalid value type ", static_cast<uint32_t>(v.type));
  auto range_u = [&](uint64_t max) {
    const auto* u = std::get_if<uint64_t>(&v.v);
    if (!u) fail(where, ": ", gguf_type_name(v.type), " value does not hold an unsigned integer");
    if (*u > max) fail(where, ": ", *u, " does not fit in ", gguf_type_name(v.type));
  };
  auto range_i = [&](int64_t lo, int64_t hi) {
    const auto* s = std::get_if<int64_t>(&v.v);
    if (!s) fail(where, ": ", gguf_type_name(v.type), " value does not hold a signed integer");
    if (*s < lo || *s > hi) fail(where, ": ", *s, " does not fit in ", gguf_type_name(v.type));
  };
  switch (v.type) {
    case GgufType::UINT8: range_u(UINT8_MAX); break;
    case GgufType::UINT16: range_u(UINT16_MAX); break;
    case GgufType::UINT32: range_u(UINT32_MAX); break;
    case GgufType::UINT64: range_u(UINT64_MAX); break;
    case GgufType::INT8: range_i(INT8_MIN, INT8_MAX); break;
    case GgufType::INT16: range_i(INT16_MIN, INT16_MAX); break;
    case GgufType::INT32: range_i(INT32_MIN, INT32_MAX); break;
    case GgufType::INT64: range_i(INT64_MIN, INT64_MAX); break;
    case GgufType::FLOAT32:
    case GgufType::FLOAT64:
      if (!std::holds_alternative<double>(v.v)) fail(where, ": ", gguf_type_name(v.type), " value does not hold a number");
      break;
    case GgufType::BOOL:
      if (!std::holds_alternative<bool>(v.v)) fail(where, ": BOOL value does not hold a bool");
      break;
    case GgufType::STRING:
      if (!std::holds_alternative<std::string>(v.v)) fail(where, ": STRING value does not hold a string");
      break;
    case GgufType::ARRAY: {
      if (depth >= kMaxArrayDepth) fail(where, ": arrays nested deeper than ", kMaxArrayDepth, " levels");
      if (!valid_type(static_cast<uint32_t>(v.elem_type)))
        fail(where, ": invalid array element type ", static_cast<uint32_t>(v.elem_type));
      const auto* items = std::get_if<std::vector<GgufValue>>(&v.v);
      if (!items) fail(where, ": ARRAY value does not hold a list");
      for (size_t i = 0; i < items->size(); ++i) {
        const GgufValue& e = (*items)[i];
        if (e.type != v.elem_type)
          fail(where, ": array of ", gguf_type_name(v.elem_type), " has element ", i, " of ", type_str(e.type));
        validate_value(e, where, depth + 1);
      }
      break;
    }
  }
}

}  // namespace

GgufWriter::GgufWriter(std::string path, size_t alignment) : impl_(std::make_unique<Impl>()) {
  impl_->path = std::move(path);
  if (!is_pow2(alignment) || alignment > (size_t{1} << 31))
    fail("GGUF writer '", impl_->path, "': alignment ", alignment, " is not a power of two in [1, 2^31]");
  impl_->alignment = alignment;
}

GgufWriter::~GgufWriter() {
  if (!impl_) return;
  if (impl_->f) {
    std::fclose(impl_->f);
    impl_->f = nullptr;
  }
  // An unfinished file is never left under the destination name.
  if (impl_->state != Impl::State::Finished && !impl_->temp_path.empty()) ::unlink(impl_->temp_path.c_str());
}

void GgufWriter::set(std::string key, GgufValue value) {
  Impl& w = *impl_;
  w.require(Impl::State::Declaring, "set()");
  if (key.empty()) fail("GGUF writer '", w.path, "': empty metadata key");
  validate_value(value, "GGUF writer '" + w.path + "': key '" + key + "'", 0);
  if (key == "general.alignment") {
    if (value.type != GgufType::UINT32)
      fail("GGUF writer '", w.path, "': general.alignment must be UINT32 (llama.cpp requires it), got ",
           type_str(value.type));
    const uint64_t al = std::get<uint64_t>(value.v);
    if (!is_pow2(al)) fail("GGUF writer '", w.path, "': general.alignment ", al, " is not a power of two");
    w.alignment = static_cast<size_t>(al);
    w.alignment_from_key = true;
  }
  auto it = w.kv_index.find(key);
  if (it != w.kv_index.end()) {
    w.kv[it->second].second = std::move(value);
  } else {
    w.kv_index.emplace(key, w.kv.size());
    w.kv.emplace_back(std::move(key), std::move(value));
  }
}

void GgufWriter::add_tensor_info(std::string name, GgmlType type, std::vector<int64_t> ne) {
  Impl& w = *impl_;
  w.require(Impl::State::Declaring, "add_tensor_info()");
  const std::string where = "GGUF writer '" + w.path + "': tensor '" + name + "'";
  if (name.empty()) fail("GGUF writer '", w.path, "': empty tensor name");
  if (name.size() >= kMaxNameLen)
    fail(where, ": name is ", name.size(), " bytes; GGUF readers accept at most ", kMaxNameLen - 1);
  if (w.tensor_index.count(name)) fail(where, ": declared twice");
  const GgmlTypeInfo* ti = ggml_type_info(static_cast<uint32_t>(type));
  if (!ti) fail(where, ": invalid ggml type id ", static_cast<uint32_t>(type));
  if (ne.empty() || ne.size() > kMaxDims) fail(where, ": ", ne.size(), " dimensions (must be 1 to ", kMaxDims, ")");
  int64_t nelem = 1;
  for (size_t d = 0; d < ne.size(); ++d) {
    if (ne[d] <= 0) fail(where, ": dimension ", d, " is ", ne[d], " (must be positive)");
    if (__builtin_mul_overflow(nelem, ne[d], &nelem)) fail(where, ": element count overflows int64");
  }
  if (ne[0] % ti->block_size != 0)
    fail(where, ": ", ti->name, " rows of ", ne[0], " elements are not a multiple of the block size ",
         ti->block_size);
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(nelem / ti->block_size), uint64_t{ti->block_bytes}, &nbytes))
    fail(where, ": byte size overflows");
  w.tensor_index.emplace(name, w.tensors.size());
  w.tensors.push_back({std::move(name), type, std::move(ne), static_cast<size_t>(nbytes), 0});
}

void GgufWriter::write_header() {
  Impl& w = *impl_;
  w.require(Impl::State::Declaring, "write_header()");
  if (!w.alignment_from_key && w.alignment != kDefaultAlignment)
    set("general.alignment", GgufValue::u32(static_cast<uint32_t>(w.alignment)));

  // Offsets: each tensor starts aligned, in declaration order.
  uint64_t off = 0;
  for (auto& t : w.tensors) {
    t.offset = off;
    uint64_t padded = (static_cast<uint64_t>(t.nbytes) + w.alignment - 1) / w.alignment * w.alignment;
    if (padded < t.nbytes || __builtin_add_overflow(off, padded, &off))
      fail("GGUF writer '", w.path, "': total tensor data size overflows");
  }

  // Regular files are written under a temporary name and renamed by finish(),
  // so a failed conversion never leaves a truncated model behind and a file
  // being read (mapped) is not truncated under its reader. Devices and pipes
  // are written in place.
  struct stat st {};
  const bool in_place = ::stat(w.path.c_str(), &st) == 0 && !S_ISREG(st.st_mode);
  int fd = -1;
  if (in_place) {
    fd = ::open(w.path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) w.io_fail("cannot open for writing", errno);
  } else {
    static std::atomic<unsigned> counter{0};
    for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
      w.temp_path = w.path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
      fd = ::open(w.temp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd < 0 && errno != EEXIST) {
        const int e = errno;
        w.temp_path.clear();
        w.io_fail("cannot create output file", e);
      }
    }
    if (fd < 0) {
      w.temp_path.clear();
      w.io_fail("cannot create a temporary output file", EEXIST);
    }
  }
  w.f = ::fdopen(fd, "wb");
  if (!w.f) {
    const int e = errno;
    ::close(fd);
    w.io_fail("cannot open output stream", e);
  }
  std::setvbuf(w.f, nullptr, _IOFBF, 1 << 20);

  w.put_le<uint32_t>(kMagic);
  w.put_le<uint32_t>(3);
  w.put_le<uint64_t>(w.tensors.size());
  w.put_le<uint64_t>(w.kv.size());
  for (const auto& [k, v] : w.kv) {
    w.put_string(k);
    w.put_le<uint32_t>(static_cast<uint32_t>(v.type));
    w.put_payload(v);
  }
  for (const auto& t : w.tensors) {
    w.put_string(t.name);
    w.put_le<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) w.put_le<uint64_t>(static_cast<uint64_t>(d));
    w.put_le<uint32_t>(static_cast<uint32_t>(t.type));
    w.put_le<uint64_t>(t.offset);
  }
  w.pad();
  w.state = Impl::State::Writing;
}

void GgufWriter::write_tensor_data(std::string_view name, const void* data, size_t nbytes) {
  Impl& w = *impl_;
  w.require(Impl::State::Writing, "write_tensor_data()");
  if (w.next_tensor >= w.tensors.size())
    fail("GGUF writer '", w.path, "': data for tensor '", name, "' but all ", w.tensors.size(),
         " declared tensors were already written");
  const Impl::Info& t = w.tensors[w.next_tensor];
  if (w.partial > 0)
    fail("GGUF writer '", w.path, "': write_tensor_data('", name, "') while tensor '", t.name, "' is partly written (",
         w.partial, " of ", t.nbytes, " bytes by write_tensor_chunk)");
  if (name != t.name)
    fail("GGUF writer '", w.path, "': expected data for tensor '", t.name, "' (declaration order), got '", name, "'");
  if (nbytes != t.nbytes)
    fail("GGUF writer '", w.path, "': tensor '", t.name, "' (", ggml_type_name(t.type), " ",
         TensorView{t.name, t.type, t.ne, nullptr, 0, nullptr}.shape_string(), ") needs ", t.nbytes,
         " bytes, got ", nbytes);
  if (nbytes > 0 && !data) fail("GGUF writer '", w.path, "': tensor '", t.name, "': null data");
  w.put(data, nbytes);
  w.pad();
  ++w.next_tensor;
}

void GgufWriter::write_tensor_chunk(std::string_view name, const void* data, size_t nbytes) {
  Impl& w = *impl_;
  w.require(Impl::State::Writing, "write_tensor_chunk()");
  if (w.next_tensor >= w.tensors.size())
    fail("GGUF writer '", w.path, "': data for tensor '", name, "' but all ", w.tensors.size(),
         " declared tensors were already written");
  const Impl::Info& t = w.tensors[w.next_tensor];
  if (name != t.name) {
    if (w.partial > 0)
      fail("GGUF writer '", w.path, "': data for tensor '", name, "' while tensor '", t.name, "' is incomplete (",
           w.partial, " of ", t.nbytes, " bytes written)");
    fail("GGUF writer '", w.path, "': expected data for tensor '", t.name, "' (declaration order), got '", name, "'");
  }
  if (nbytes > t.nbytes - w.partial)
    fail("GGUF writer '", w.path, "': tensor '", t.name, "' (", ggml_type_name(t.type), " ",
         TensorView{t.name, t.type, t.ne, nullptr, 0, nullptr}.shape_string(), ") needs ", t.nbytes,
         " bytes; a chunk of ", nbytes, " after ", w.partial, " would exceed it");
  if (nbytes > 0 && !data) fail("GGUF writer '", w.path, "': tensor '", t.name, "': null data");
  w.put(data, nbytes);
  w.partial += nbytes;
  if (w.partial == t.nbytes) {
    w.pad();
    ++w.next_tensor;
    w.partial = 0;
  }
}

void GgufWriter::finish() {
  Impl& w = *impl_;
  w.require(Impl::State::Writing, "finish()");
  if (w.partial > 0)
    fail("GGUF writer '", w.path, "': finish() with tensor '", w.tensors[w.next_tensor].name, "' incomplete (",
         w.partial, " of ", w.tensors[w.next_tensor].nbytes, " bytes written)");
  if (w.next_tensor != w.tensors.size())
    fail("GGUF writer '", w.path, "': finish() before the data of tensor '", w.tensors[w.next_tensor].name, "' (",
         w.tensors.size() - w.next_tensor, " of ", w.tensors.size(), " tensors missing)");
  if (std::fflush(w.f) != 0) w.io_fail("write failed", errno);
  std::FILE* f = w.f;
  w.f = nullptr;
  if (std::fclose(f) != 0) w.io_fail("close failed", errno);
  if (!w.temp_path.empty() && std::rename(w.temp_path.c_str(), w.path.c_str()) != 0)
    w.io_fail("cannot rename the temporary file into place", errno);
  w.state = Impl::State::Finished;
}

}  // namespace g4
