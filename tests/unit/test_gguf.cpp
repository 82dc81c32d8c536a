// GGUF reader/writer and core/dtype tests.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"

namespace fs = std::filesystem;
using namespace g4;

// Timing assertions only make sense in optimised builds without sanitizers.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define G4_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define G4_TEST_ASAN 1
#endif
#if defined(NDEBUG) && !defined(G4_TEST_ASAN)
constexpr bool kOptimizedBuild = true;
#else
constexpr bool kOptimizedBuild = false;
#endif

namespace {

// ---------------------------------------------------------------------------
// Helpers

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("g4_test_gguf_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// An exactly-sized heap copy, so AddressSanitizer flags any read past the end.
struct Buffer {
  explicit Buffer(const uint8_t* p, size_t n) : size(n), data(new uint8_t[n ? n : 1]) {
    if (n) std::memcpy(data.get(), p, n);
  }
  explicit Buffer(const std::vector<uint8_t>& v) : Buffer(v.data(), v.size()) {}
  size_t size;
  std::unique_ptr<uint8_t[]> data;
};

GgufFile parse_buffer(const Buffer& b) { return GgufFile::parse(MappedFile::borrow(b.data.get(), b.size, "mem.gguf")); }

// Expects fn() to throw g4::Error whose message contains every `needles`.
void expect_error(const std::function<void()>& fn, std::initializer_list<std::string> needles) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "message: " << msg << "\nmissing: " << n;
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-g4::Error: " << e.what();
    return;
  }
  ADD_FAILURE() << "did not throw";
}

void expect_parse_error(const std::vector<uint8_t>& bytes, std::initializer_list<std::string> needles) {
  Buffer b(bytes);
  expect_error([&] { parse_buffer(b); }, needles);
}

// Structural equality of metadata values (floats compared bitwise, NaN == NaN).
bool same(const GgufValue& a, const GgufValue& b) {
  if (a.type != b.type) return false;
  if (a.type == GgufType::ARRAY) {
    if (a.elem_type != b.elem_type) return false;
    const auto& x = a.as_array();
    const auto& y = b.as_array();
    if (x.size() != y.size()) return false;
    for (size_t i = 0; i < x.size(); ++i)
      if (!same(x[i], y[i])) return false;
    return true;
  }
  if (a.type == GgufType::FLOAT32) {
    float fa = static_cast<float>(std::get<double>(a.v)), fb = static_cast<float>(std::get<double>(b.v));
    return std::memcmp(&fa, &fb, 4) == 0;
  }
  if (a.type == GgufType::FLOAT64) return std::memcmp(&std::get<double>(a.v), &std::get<double>(b.v), 8) == 0;
  if (a.v.index() != b.v.index()) return false;
  if (const auto* u = std::get_if<uint64_t>(&a.v)) return *u == std::get<uint64_t>(b.v);
  if (const auto* i = std::get_if<int64_t>(&a.v)) return *i == std::get<int64_t>(b.v);
  if (const auto* x = std::get_if<bool>(&a.v)) return *x == std::get<bool>(b.v);
  if (const auto* t = std::get_if<std::string>(&a.v)) return *t == std::get<std::string>(b.v);
  return false;
}

// Little-endian byte builder for hand-made (and deliberately broken) files.
struct Bytes {
  std::vector<uint8_t> b;
  Bytes& raw(const void* p, size_t n) {
    const auto* c = static_cast<const uint8_t*>(p);
    b.insert(b.end(), c, c + n);
    return *this;
  }
  Bytes& u8(uint8_t x) { return raw(&x, 1); }
  Bytes& u32(uint32_t x) { return raw(&x, 4); }
  Bytes& u64(uint64_t x) { return raw(&x, 8); }
  Bytes& f32(float x) { return raw(&x, 4); }
  Bytes& str(std::string_view s) {
    u64(s.size());
    return raw(s.data(), s.size());
  }
  Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    raw("GGUF", 4);
    u32(version);
    u64(n_tensors);
    return u64(n_kv);
  }
  Bytes& kv_u32(std::string_view k, uint32_t v) {
    str(k);
    u32(static_cast<uint32_t>(GgufType::UINT32));
    return u32(v);
  }
  Bytes& kv_str(std::string_view k, std::string_view v) {
    str(k);
    u32(static_cast<uint32_t>(GgufType::STRING));
    return str(v);
  }
  Bytes& tensor(std::string_view name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    str(name);
    u32(static_cast<uint32_t>(ne.size()));
    for (uint64_t d : ne) u64(d);
    u32(type);
    return u64(offset);
  }
  Bytes& pad(size_t alignment = 32) {
    while (b.size() % alignment) b.push_back(0);
    return *this;
  }
  Bytes& zeros(size_t n) {
    b.insert(b.end(), n, 0);
    return *this;
  }
};

const uint32_t kF32 = 0, kQ4_0 = 2, kQ8_0 = 8;

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 31 + seed);
  return v;
}

// A small valid file with metadata of several kinds and three tensors.
std::vector<uint8_t> small_valid_file(const TempDir& dir) {
  const std::string p = dir.file("small.gguf");
  GgufWriter w(p);
  w.set("general.architecture", GgufValue::str("gemma4"));
  w.set("gemma4.block_count", GgufValue::u32(2));
  w.set("gemma4.rope.freq_base", GgufValue::f32(1e6f));
  w.set("list", GgufValue::array(GgufType::ARRAY, {GgufValue::i32s({1, 2}), GgufValue::strings({"x", ""})}));
  w.set("flags", GgufValue::bools({true, false, true}));
  w.add_tensor_info("a", GgmlType::F32, {3});
  w.add_tensor_info("b", GgmlType::Q8_0, {32, 2});
  w.add_tensor_info("c", GgmlType::F16, {5});
  w.write_header();
  auto a = pattern(12, 1), b = pattern(68, 2), c = pattern(10, 3);
  w.write_tensor_data("a", a.data(), a.size());
  w.write_tensor_data("b", b.data(), b.size());
  w.write_tensor_data("c", c.data(), c.size());
  w.finish();
  return read_all(p);
}

}  // namespace

// ---------------------------------------------------------------------------
// Round trips

namespace {

// `levels` nested arrays around a single UINT8 array.
GgufValue nested(int levels) {
  GgufValue v = GgufValue::array(GgufType::UINT8, {GgufValue::u8(42)});
  for (int i = 1; i < levels; ++i) v = GgufValue::array(GgufType::ARRAY, {v});
  return v;
}

std::vector<std::pair<std::string, GgufValue>> every_value() {
  return {
      {"u8", GgufValue::u8(255)},
      {"i8", GgufValue::i8(-128)},
      {"u16", GgufValue::u16(65535)},
      {"i16", GgufValue::i16(-32768)},
      {"u32", GgufValue::u32(4294967295u)},
      {"i32", GgufValue::i32(std::numeric_limits<int32_t>::min())},
      {"u64", GgufValue::u64(std::numeric_limits<uint64_t>::max())},
      {"i64", GgufValue::i64(std::numeric_limits<int64_t>::min())},
      {"f32", GgufValue::f32(-1.25e-7f)},
      {"f32.nan", GgufValue::f32(std::numeric_limits<float>::quiet_NaN())},
      {"f32.inf", GgufValue::f32(-std::numeric_limits<float>::infinity())},
      {"f32.denorm", GgufValue::f32(std::numeric_limits<float>::denorm_min())},
      {"f64", GgufValue::f64(3.141592653589793)},
      {"bool.t", GgufValue::boolean(true)},
      {"bool.f", GgufValue::boolean(false)},
      {"str", GgufValue::str("h\xc3\xa9llo \xe2\x96\x81 world")},
      {"str.empty", GgufValue::str("")},
      {"str.nul", GgufValue::str(std::string("a\0b", 3))},
      {"arr.u8", GgufValue::array(GgufType::UINT8, {GgufValue::u8(0), GgufValue::u8(7)})},
      {"arr.i8", GgufValue::array(GgufType::INT8, {GgufValue::i8(-1)})},
      {"arr.u16", GgufValue::array(GgufType::UINT16, {GgufValue::u16(1), GgufValue::u16(2)})},
      {"arr.i16", GgufValue::array(GgufType::INT16, {GgufValue::i16(-2)})},
      {"arr.u32", GgufValue::u32s({1, 2, 3})},
      {"arr.i32", GgufValue::i32s({-1, 0, 1})},
      {"arr.u64", GgufValue::array(GgufType::UINT64, {GgufValue::u64(1ull << 40)})},
      {"arr.i64", GgufValue::array(GgufType::INT64, {GgufValue::i64(-(1ll << 40))})},
      {"arr.f32", GgufValue::f32s({0.5f, -0.0f, 1e30f})},
      {"arr.f64", GgufValue::array(GgufType::FLOAT64, {GgufValue::f64(1e-300)})},
      {"arr.bool", GgufValue::bools({true, false, true})},
      {"arr.str", GgufValue::strings({"a", "", "\xe2\x96\x81"})},
      {"arr.empty.f32", GgufValue::f32s({})},
      {"arr.empty.str", GgufValue::strings({})},
      {"arr.empty.arr", GgufValue::array(GgufType::ARRAY, {})},
      {"arr.nested", GgufValue::array(GgufType::ARRAY, {GgufValue::i32s({1, 2}), GgufValue::strings({"x", ""}),
                                                        GgufValue::array(GgufType::BOOL, {}), nested(3)})},
      {"arr.deepest", nested(8)},
  };
}

}  // namespace

TEST(GgufRoundTrip, EveryValueType) {
  TempDir dir;
  const std::string p = dir.file("values.gguf");
  const auto kvs = every_value();
  {
    GgufWriter w(p);
    w.set("placeholder", GgufValue::u8(1));
    for (const auto& [k, v] : kvs) w.set(k, v);
    w.set("placeholder", GgufValue::str("replaced"));  // replaced in place, keeps its position
    w.write_header();
    w.finish();
  }
  GgufFile g = GgufFile::open(p);
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.alignment(), 32u);
  EXPECT_TRUE(g.tensors().empty());
  ASSERT_EQ(g.metadata().size(), kvs.size() + 1);
  EXPECT_EQ(g.metadata()[0].first, "placeholder");
  EXPECT_EQ(g.get_string("placeholder"), "replaced");
  for (size_t i = 0; i < kvs.size(); ++i) {
    EXPECT_EQ(g.metadata()[i + 1].first, kvs[i].first);
    EXPECT_TRUE(same(g.metadata()[i + 1].second, kvs[i].second)) << kvs[i].first << ": "
                                                                 << g.metadata()[i + 1].second.to_display_string();
    ASSERT_NE(g.find(kvs[i].first), nullptr);
  }
  EXPECT_TRUE(std::isnan(g.get_f64("f32.nan")));
  EXPECT_EQ(g.get_u64("u64"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(g.get_i64("i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(g.get_string("str.nul"), std::string("a\0b", 3));
  EXPECT_EQ(g.get("arr.deepest").as_array()[0].as_array()[0].as_array().size(), 1u);
  EXPECT_EQ(g.get_strings("arr.str"), (std::vector<std::string>{"a", "", "\xe2\x96\x81"}));
  EXPECT_EQ(g.get_i64s("arr.i32"), (std::vector<int64_t>{-1, 0, 1}));
  EXPECT_EQ(g.get_i64s("arr.u32"), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(g.get_f64s("arr.f32"), (std::vector<double>{0.5, -0.0, static_cast<double>(1e30f)}));
  EXPECT_TRUE(g.get_strings("arr.empty.str").empty());
}

TEST(GgufRoundTrip, TensorsOfSeveralTypes) {
  TempDir dir;
  const std::string p = dir.file("tensors.gguf");
  struct T {
    std::string name;
    GgmlType type;
    std::vector<int64_t> ne;
    size_t nbytes;
  };
  const std::vector<T> ts = {
      {"f32", GgmlType::F32, {3, 2}, 24},
      {"f16", GgmlType::F16, {5}, 10},
      {"q4_0", GgmlType::Q4_0, {64, 2}, 2 * 2 * 18},
      {"q8_0", GgmlType::Q8_0, {32, 3}, 3 * 34},
      {"bf16", GgmlType::BF16, {7, 1, 2}, 14 * 2},
      {"q4_k", GgmlType::Q4_K, {256, 1, 1, 2}, 2 * 144},
  };
  {
    GgufWriter w(p);
    w.set("general.architecture", GgufValue::str("gemma4"));
    for (const auto& t : ts) w.add_tensor_info(t.name, t.type, t.ne);
    w.write_header();
    for (size_t i = 0; i < ts.size(); ++i) {
      auto data = pattern(ts[i].nbytes, static_cast<uint8_t>(i));
      w.write_tensor_data(ts[i].name, data.data(), data.size());
    }
    w.finish();
  }
  EXPECT_FALSE(fs::exists(p + ".tmp")) << "no temporary left behind";
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);

  GgufFile g = GgufFile::open(p);
  ASSERT_EQ(g.tensors().size(), ts.size());
  EXPECT_EQ(g.data_offset() % 32, 0u);
  const uint8_t* base = g.file()->data();
  for (size_t i = 0; i < ts.size(); ++i) {
    const TensorView& v = g.tensors()[i];
    EXPECT_EQ(v.name, ts[i].name);
    EXPECT_EQ(v.type, ts[i].type);
    EXPECT_EQ(v.ne, ts[i].ne);
    EXPECT_EQ(v.nbytes, ts[i].nbytes) << v.name;
    EXPECT_EQ(g.tensor(ts[i].name), &v);
    // Zero copy: the view points into the mapping, aligned, with the written bytes.
    EXPECT_GE(v.data, base);
    EXPECT_LE(v.data + v.nbytes, base + g.file_size());
    EXPECT_EQ(static_cast<size_t>(v.data - base) % 32, 0u);
    EXPECT_EQ(v.file.get(), g.file().get());
    auto expect = pattern(ts[i].nbytes, static_cast<uint8_t>(i));
    EXPECT_EQ(std::memcmp(v.data, expect.data(), v.nbytes), 0) << v.name;
  }
  EXPECT_EQ(g.tensor("missing"), nullptr);
  EXPECT_EQ(g.tensors()[4].nelements(), 14);
  EXPECT_EQ(g.tensors()[4].nrows(), 2);
  EXPECT_EQ(g.tensors()[4].shape_string(), "{7, 1, 2}");

  // Views keep the mapping alive after the GgufFile is gone.
  TensorView keep;
  {
    GgufFile g2 = GgufFile::open(p);
    keep = *g2.tensor("f16");
  }
  auto expect = pattern(10, 1);
  EXPECT_EQ(std::memcmp(keep.data, expect.data(), 10), 0);
}

TEST(GgufRoundTrip, CustomAlignment) {
  for (size_t al : {1u, 8u, 64u, 4096u}) {
    TempDir dir;
    const std::string p = dir.file("aligned.gguf");
    {
      GgufWriter w(p, al);
      w.add_tensor_info("x", GgmlType::F16, {3});
      w.add_tensor_info("y", GgmlType::F32, {1});
      w.write_header();
      auto x = pattern(6, 1), y = pattern(4, 2);
      w.write_tensor_data("x", x.data(), 6);
      w.write_tensor_data("y", y.data(), 4);
      w.finish();
    }
    GgufFile g = GgufFile::open(p);
    EXPECT_EQ(g.alignment(), al);
    if (al != 32) {
      EXPECT_EQ(g.get("general.alignment").type, GgufType::UINT32);
      EXPECT_EQ(g.get_u64("general.alignment"), al);
    }
    EXPECT_EQ(g.data_offset() % al, 0u);
    for (const auto& t : g.tensors()) EXPECT_EQ(static_cast<size_t>(t.data - g.file()->data()) % al, 0u);
    EXPECT_EQ(g.file_size() % al, 0u) << "last tensor padded";
    const size_t y_off = static_cast<size_t>(g.tensor("y")->data - g.file()->data()) - g.data_offset();
    EXPECT_EQ(y_off, (6 + al - 1) / al * al);  // x (6 bytes) padded to the alignment
  }
  // general.alignment set as metadata wins over the constructor argument.
  TempDir dir;
  const std::string p = dir.file("key.gguf");
  {
    GgufWriter w(p);
    w.set("general.alignment", GgufValue::u32(128));
    w.add_tensor_info("x", GgmlType::F32, {1});
    w.add_tensor_info("z", GgmlType::F32, {1});
    w.write_header();
    float one = 1.0f;
    w.write_tensor_data("x", &one, 4);
    w.write_tensor_data("z", &one, 4);
    w.finish();
  }
  GgufFile g = GgufFile::open(p);
  EXPECT_EQ(g.alignment(), 128u);
  EXPECT_EQ(g.data_offset() % 128, 0u);
  EXPECT_EQ(g.tensor("z")->data - g.tensor("x")->data, 128);
}

TEST(GgufRoundTrip, ParsesHandMadeVersion2) {
  Bytes b;
  b.header(1, 1, 2).kv_str("general.architecture", "gemma4").tensor("w", {2}, kF32, 0).pad().f32(1).f32(2);
  Buffer buf(b.b);
  GgufFile g = parse_buffer(buf);
  EXPECT_EQ(g.version(), 2u);
  EXPECT_EQ(g.get_string("general.architecture"), "gemma4");
  ASSERT_NE(g.tensor("w"), nullptr);
  float x[2];
  std::memcpy(x, g.tensor("w")->data, 8);
  EXPECT_EQ(x[1], 2.0f);
}

TEST(GgufRoundTrip, SeedCorpusParses) {
  const fs::path dir = fs::path(GEMMA4_SOURCE_DIR) / "tests/fuzz/corpus/gguf";
  ASSERT_TRUE(fs::is_directory(dir)) << dir;
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    SCOPED_TRACE(e.path().string());
    EXPECT_NO_THROW(GgufFile::open(e.path().string()));
    ++n;
  }
  EXPECT_GE(n, 3u);
  // The Python-made seed with every kind of value reads back as written.
  GgufFile g = GgufFile::open((dir / "all-value-types").string());
  EXPECT_EQ(g.get_u64("u64"), (1ull << 63) + 5);
  EXPECT_EQ(g.get_i64("i16"), -30000);
  EXPECT_EQ(g.get_string("str"), "h\xc3\xa9llo");
  EXPECT_EQ(g.get("arr.nested").as_array()[2].as_array()[0].as_array()[0].as_i64(), 7);
  GgufFile t = GgufFile::open((dir / "tensors").string());
  EXPECT_EQ(t.tensor("blk.0.attn_q.weight")->nbytes, 36u);
  EXPECT_EQ(t.tensor("blk.0.ffn_down.weight")->type, GgmlType::Q4_K);
}

// ---------------------------------------------------------------------------
// Accessors

TEST(GgufValue, ConvertingAccessors) {
  EXPECT_EQ(GgufValue::u8(7).as_i64(), 7);
  EXPECT_EQ(GgufValue::i32(7).as_u64(), 7u);
  EXPECT_EQ(GgufValue::i32(-3).as_f64(), -3.0);
  EXPECT_EQ(GgufValue::u64(10).as_f64(), 10.0);
  EXPECT_EQ(GgufValue::f32(0.5f).as_f64(), 0.5);
  EXPECT_TRUE(GgufValue::boolean(true).as_bool());
  EXPECT_TRUE(GgufValue::u8(1).is_integer());
  EXPECT_FALSE(GgufValue::f32(1).is_integer());
  EXPECT_TRUE(GgufValue::f64(1).is_float());
  expect_error([] { GgufValue::i32(-1).as_u64("gemma4.block_count"); }, {"gemma4.block_count", "INT32", "-1"});
  expect_error([] { GgufValue::u64(~0ull).as_i64("k"); }, {"k", "UINT64"});
  expect_error([] { GgufValue::str("x").as_i64("k"); }, {"k", "STRING", "\"x\""});
  expect_error([] { GgufValue::f32(1.5f).as_u64("k"); }, {"FLOAT32"});
  expect_error([] { GgufValue::u8(1).as_bool("k"); }, {"UINT8"});
  expect_error([] { GgufValue::u8(1).as_string("k"); }, {"STRING"});
  expect_error([] { GgufValue::u8(1).as_array("k"); }, {"ARRAY"});
  expect_error([] { GgufValue::i32s({1}).as_f64("arr"); }, {"arr", "ARRAY"});
  expect_error([] { GgufValue::array(GgufType::INT32, {GgufValue::u8(1)}); }, {"element 0", "UINT8"});
  expect_error([] { GgufValue::array(static_cast<GgufType>(77), {}); }, {"77"});
}

TEST(GgufValue, DisplayString) {
  EXPECT_EQ(GgufValue::u32(5).to_display_string(), "5");
  EXPECT_EQ(GgufValue::i8(-5).to_display_string(), "-5");
  EXPECT_EQ(GgufValue::f32(1e-6f).to_display_string(), "1e-06");
  EXPECT_EQ(GgufValue::f32(0.1f).to_display_string(), "0.1");
  EXPECT_EQ(GgufValue::boolean(false).to_display_string(), "false");
  EXPECT_EQ(GgufValue::str("a\"b\n").to_display_string(), "\"a\\\"b\\n\"");
  EXPECT_EQ(GgufValue::i32s({1, 2, 3}).to_display_string(), "[1, 2, 3]");
  EXPECT_EQ(GgufValue::i32s({1, 2, 3, 4}).to_display_string(2), "[1, 2, ... 4 items]");
  EXPECT_EQ(GgufValue::i32s({}).to_display_string(), "[]");
  EXPECT_EQ(GgufValue::array(GgufType::ARRAY, {GgufValue::strings({"x"})}).to_display_string(), "[[\"x\"]]");
  const std::string long_str = GgufValue::str(std::string(1000, 'z')).to_display_string();
  EXPECT_LT(long_str.size(), 300u);
  EXPECT_NE(long_str.find("1000 bytes"), std::string::npos);
  EXPECT_STREQ(gguf_type_name(GgufType::FLOAT64), "FLOAT64");
}

TEST(GgufFileGetters, ErrorsNameFileAndKey) {
  Bytes b;
  b.header(0, 2).kv_u32("n", 3).kv_str("s", "x");
  Buffer buf(b.b);
  GgufFile g = parse_buffer(buf);
  EXPECT_EQ(g.get_u64("n"), 3u);
  EXPECT_TRUE(g.has("s"));
  EXPECT_FALSE(g.has("nope"));
  EXPECT_EQ(g.find("nope"), nullptr);
  expect_error([&] { g.get("nope"); }, {"mem.gguf", "missing key 'nope'"});
  expect_error([&] { g.get_string("n"); }, {"mem.gguf", "'n'", "UINT32"});
  expect_error([&] { g.get_bool("s"); }, {"'s'", "STRING"});
  expect_error([&] { g.get_strings("n"); }, {"'n'", "ARRAY"});
  expect_error([&] { g.get_i64s("missing"); }, {"missing key"});
}

// ---------------------------------------------------------------------------
// Writer errors

TEST(GgufWriter, RejectsBadDeclarationsAndOrder) {
  TempDir dir;
  const std::string p = dir.file("w.gguf");
  expect_error([&] { GgufWriter w(p, 0); }, {"alignment 0"});
  expect_error([&] { GgufWriter w(p, 48); }, {"alignment 48"});
  {
    GgufWriter w(p);
    expect_error([&] { w.set("", GgufValue::u8(1)); }, {"empty metadata key"});
    expect_error([&] { w.set("general.alignment", GgufValue::u64(64)); }, {"general.alignment", "UINT32"});
    expect_error([&] { w.set("general.alignment", GgufValue::u32(48)); }, {"48"});
    GgufValue bad = GgufValue::u8(1);
    bad.v = uint64_t{300};
    expect_error([&] { w.set("k", bad); }, {"'k'", "300", "UINT8"});
    GgufValue bad2 = GgufValue::i32s({1});
    std::get<std::vector<GgufValue>>(bad2.v).push_back(GgufValue::str("x"));
    expect_error([&] { w.set("k", bad2); }, {"'k'", "element 1"});
    expect_error([&] { w.set("k", nested(9)); }, {"nested deeper"});
    expect_error([&] { w.add_tensor_info("", GgmlType::F32, {1}); }, {"empty tensor name"});
    expect_error([&] { w.add_tensor_info(std::string(64, 'n'), GgmlType::F32, {1}); }, {"64 bytes"});
    expect_error([&] { w.add_tensor_info("t", GgmlType::F32, {}); }, {"'t'", "0 dimensions"});
    expect_error([&] { w.add_tensor_info("t", GgmlType::F32, {1, 1, 1, 1, 1}); }, {"5 dimensions"});
    expect_error([&] { w.add_tensor_info("t", GgmlType::F32, {4, 0}); }, {"dimension 1 is 0"});
    expect_error([&] { w.add_tensor_info("t", GgmlType::F32, {-4}); }, {"-4"});
    expect_error([&] { w.add_tensor_info("t", GgmlType::F32, {1ll << 40, 1ll << 40}); }, {"overflow"});
    expect_error([&] { w.add_tensor_info("t", GgmlType::Q4_0, {33}); }, {"'t'", "Q4_0", "33", "32"});
    expect_error([&] { w.add_tensor_info("t", static_cast<GgmlType>(31), {32}); }, {"'t'", "31"});
    expect_error([&] { w.write_tensor_data("a", nullptr, 0); }, {"before write_header"});
    expect_error([&] { w.finish(); }, {"before write_header"});
    w.add_tensor_info("a", GgmlType::F32, {2});
    expect_error([&] { w.add_tensor_info("a", GgmlType::F32, {2}); }, {"'a'", "twice"});
    w.add_tensor_info("b", GgmlType::Q8_0, {32});
    w.write_header();
    expect_error([&] { w.set("late", GgufValue::u8(1)); }, {"after write_header"});
    expect_error([&] { w.add_tensor_info("c", GgmlType::F32, {1}); }, {"after write_header"});
    expect_error([&] { w.write_header(); }, {"after write_header"});
    std::vector<uint8_t> buf(64);
    expect_error([&] { w.write_tensor_data("b", buf.data(), 34); }, {"expected data for tensor 'a'", "'b'"});
    expect_error([&] { w.write_tensor_data("a", buf.data(), 7); }, {"'a'", "needs 8 bytes, got 7"});
    w.write_tensor_data("a", buf.data(), 8);
    expect_error([&] { w.finish(); }, {"'b'", "1 of 2"});
    w.write_tensor_data("b", buf.data(), 34);
    expect_error([&] { w.write_tensor_data("c", buf.data(), 4); }, {"already written"});
    w.finish();
    expect_error([&] { w.finish(); }, {"after finish"});
  }
  EXPECT_EQ(GgufFile::open(p).tensors().size(), 2u);
}

TEST(GgufWriter, UnfinishedWriterLeavesNothing) {
  TempDir dir;
  const std::string p = dir.file("partial.gguf");
  {
    GgufWriter w(p);
    w.add_tensor_info("a", GgmlType::F32, {2});
    w.write_header();
  }
  EXPECT_FALSE(fs::exists(p));
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(GgufWriter, IoErrorsAreClear) {
  expect_error(
      [] {
        GgufWriter w("/nonexistent-dir-g4/x.gguf");
        w.write_header();
      },
      {"/nonexistent-dir-g4/x.gguf", "No such file"});
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "/dev/full not available";
  expect_error(
      [] {
        GgufWriter w("/dev/full");
        w.set("big", GgufValue::str(std::string(4 << 20, 'x')));
        w.write_header();
        w.finish();
      },
      {"/dev/full", "No space left"});
}

// ---------------------------------------------------------------------------
// Corrupt input

TEST(GgufCorrupt, EveryTruncationFailsCleanly) {
  TempDir dir;
  const std::vector<uint8_t> full = small_valid_file(dir);
  Buffer whole(full);
  GgufFile g = parse_buffer(whole);
  size_t required = 0;
  for (const auto& t : g.tensors())
    required = std::max(required, static_cast<size_t>(t.data - whole.data.get()) + t.nbytes);
  ASSERT_GT(required, 100u);
  ASSERT_LE(required, full.size());
  for (size_t n = 0; n < required; ++n) {
    Buffer b(full.data(), n);
    bool threw = false;
    try {
      parse_buffer(b);
    } catch (const Error& e) {
      threw = true;
      ASSERT_NE(std::string(e.what()).find("mem.gguf"), std::string::npos) << e.what();
    }
    ASSERT_TRUE(threw) << "prefix of " << n << " bytes parsed";
  }
  for (size_t n = required; n <= full.size(); ++n) {
    Buffer b(full.data(), n);
    EXPECT_NO_THROW(parse_buffer(b)) << n;  // only trailing padding is missing
  }
  expect_parse_error({}, {"truncated at offset 0", "magic"});
  expect_parse_error(std::vector<uint8_t>(full.begin(), full.begin() + 30), {"metadata count 5"});
  expect_parse_error(std::vector<uint8_t>(full.begin(), full.begin() + 20), {"truncated at offset 16", "metadata"});
}

TEST(GgufCorrupt, BadMagicAndVersions) {
  Bytes b;
  b.raw("GGUX", 4).u32(3).u64(0).u64(0);
  expect_parse_error(b.b, {"not a GGUF file", "GGUX"});
  for (uint32_t v : {1u, 99u, 0u, 3u << 24}) {
    Bytes c;
    c.header(0, 0, v);
    if (v == 1)
      expect_parse_error(c.b, {"version 1 is not supported"});
    else if (v == (3u << 24))
      expect_parse_error(c.b, {"byte-swapped"});
    else
      expect_parse_error(c.b, {"unsupported GGUF version " + std::to_string(v)});
  }
}

TEST(GgufCorrupt, AbsurdCountsAndLengths) {
  {
    Bytes b;
    b.header(~0ull, 0);
    expect_parse_error(b.b, {"tensor count 18446744073709551615"});
  }
  {
    Bytes b;
    b.header(0, 1ull << 62);
    expect_parse_error(b.b, {"metadata count"});
  }
  {
    Bytes b;
    b.header(2, 2).kv_u32("a", 1).zeros(60);  // each count alone would fit
    expect_parse_error(b.b, {"cannot fit"});
  }
  {
    Bytes b;  // key length beyond the file
    b.header(0, 1).u64(1ull << 63).raw("abcdefghijklmnop", 16);
    expect_parse_error(b.b, {"claims 9223372036854775808 bytes"});
  }
  {
    Bytes b;  // string value length beyond the file
    b.header(0, 1).str("k").u32(static_cast<uint32_t>(GgufType::STRING)).u64(~0ull);
    expect_parse_error(b.b, {"claims", "key \"k\""});
  }
  {
    Bytes b;  // array count beyond the file
    b.header(0, 1).str("k").u32(9).u32(static_cast<uint32_t>(GgufType::UINT32)).u64(1ull << 40).u32(0);
    expect_parse_error(b.b, {"1099511627776 UINT32 elements"});
  }
  {
    Bytes b;  // array of strings, count fits the bytes but the second string doesn't
    b.header(0, 1).str("k").u32(9).u32(8).u64(2).str("a").u64(5).raw("ab", 2);
    expect_parse_error(b.b, {"string array element", "\"k\"", "claims 5 bytes but only 2 remain"});
  }
  {
    Bytes b;  // array of arrays, the inner array's count is too large
    b.header(0, 1).str("k").u32(9).u32(9).u64(1).u32(0).u64(5).raw("ab", 2);
    expect_parse_error(b.b, {"array at offset 53", "\"k\"", "claims 5 UINT8 elements"});
  }
}

TEST(GgufCorrupt, TotalMetadataElementsAreCapped) {
  // An array of 2^24 + 1 one-byte elements fits the file but exceeds the cap
  // (refused before anything is allocated for it).
  Bytes b;
  b.header(0, 2).kv_u32("small", 1).str("big").u32(9).u32(0).u64((1u << 24) + 1).zeros((1u << 24) + 1);
  expect_parse_error(b.b, {"metadata array elements", "\"big\""});
}

TEST(GgufCorrupt, UnknownValueTypesAndDepth) {
  {
    Bytes b;
    b.header(0, 1).str("k").u32(13).u32(0);
    expect_parse_error(b.b, {"unknown metadata value type 13", "\"k\""});
  }
  {
    Bytes b;
    b.header(0, 1).str("k").u32(9).u32(0xFFFF).u64(0);
    expect_parse_error(b.b, {"unknown metadata value type 65535"});
  }
  auto deep = [](int levels) {
    Bytes b;
    b.header(0, 1).str("deep").u32(9);
    for (int i = 1; i < levels; ++i) b.u32(9).u64(1);
    b.u32(0).u64(1).u8(5);
    return b.b;
  };
  {
    Buffer ok(deep(8));
    EXPECT_EQ(parse_buffer(ok).get("deep").as_array()[0].as_array().size(), 1u);
  }
  expect_parse_error(deep(9), {"nested deeper than 8"});
  expect_parse_error(deep(100000), {"nested deeper than 8"});
  {
    Bytes b;
    b.header(0, 1).str("").u32(0).u8(1).zeros(4);
    expect_parse_error(b.b, {"empty key"});
  }
  {
    Bytes b;
    b.header(0, 2).kv_u32("dup", 1).kv_u32("dup", 2);
    expect_parse_error(b.b, {"duplicate metadata key \"dup\""});
  }
}

TEST(GgufCorrupt, BadAlignmentKey) {
  for (uint32_t al : {0u, 3u, 48u}) {
    Bytes b;
    b.header(0, 1).kv_u32("general.alignment", al);
    expect_parse_error(b.b, {"general.alignment", "power of two"});
  }
  Bytes b;
  b.header(0, 1).kv_str("general.alignment", "32");
  expect_parse_error(b.b, {"general.alignment is STRING"});
}

TEST(GgufCorrupt, BadTensorInfos) {
  auto one = [](std::vector<uint64_t> ne, uint32_t type, uint64_t off = 0, size_t data = 64) {
    Bytes b;
    b.header(1, 0).tensor("blk.0.w", std::move(ne), type, off).pad().zeros(data);
    return b.b;
  };
  {
    Buffer ok(one({4, 2}, kF32));
    EXPECT_EQ(parse_buffer(ok).tensors()[0].nbytes, 32u);
  }
  expect_parse_error(one({4}, 31), {"\"blk.0.w\"", "unknown ggml type id 31"});
  expect_parse_error(one({4}, 4000), {"\"blk.0.w\"", "4000"});
  {
    Buffer scalar(one({}, kF32));  // 0 dims: a scalar, as ggml reads it
    GgufFile g = parse_buffer(scalar);
    EXPECT_EQ(g.tensors()[0].ne, std::vector<int64_t>{1});
    EXPECT_EQ(g.tensors()[0].nbytes, 4u);
  }
  expect_parse_error(one({1, 1, 1, 1, 1}, kF32), {"5 dimensions"});
  expect_parse_error(one({4, 0}, kF32), {"dimension 1 is 0"});
  expect_parse_error(one({~0ull}, kF32), {"dimension 0 is -1"});
  expect_parse_error(one({1ull << 32, 1ull << 32}, kF32), {"overflows int64"});
  expect_parse_error(one({1ull << 62}, kF32), {"absurd byte size"});
  expect_parse_error(one({33}, kQ4_0), {"Q4_0", "33", "block size 32"});
  expect_parse_error(one({4}, kF32, 8), {"offset 8", "alignment 32"});
  expect_parse_error(one({4}, kF32, 1ull << 63), {"extends past the end"});
  expect_parse_error(one({32}, kF32, 0, 127), {"\"blk.0.w\"", "128 bytes", "extends past the end"});
  expect_parse_error(one({32}, kQ8_0, 32, 65), {"extends past the end"});
  {
    Bytes b;  // header ends, but the padding before the data is missing
    b.header(1, 0).tensor("w", {1}, kF32, 0);
    b.zeros(2);
    expect_parse_error(b.b, {"data section should start at offset"});
  }
  {
    Bytes b;
    b.header(1, 0).tensor("", {1}, kF32, 0).pad().zeros(32);
    expect_parse_error(b.b, {"empty name"});
  }
  {
    Bytes b;
    b.header(2, 0).tensor("same", {1}, kF32, 0).tensor("same", {1}, kF32, 32).pad().zeros(64);
    expect_parse_error(b.b, {"duplicate tensor name \"same\""});
  }
  {
    Bytes b;  // b starts inside a
    b.header(2, 0).tensor("a", {16}, kF32, 0).tensor("b", {4}, kF32, 32).pad().zeros(96);
    expect_parse_error(b.b, {"\"a\"", "\"b\"", "overlap"});
  }
  {
    Bytes b;  // identical ranges, declared out of order
    b.header(3, 0).tensor("z", {8}, kF32, 64).tensor("a", {8}, kF32, 0).tensor("c", {8}, kF32, 64).pad().zeros(128);
    expect_parse_error(b.b, {"overlap"});
  }
  {
    Bytes b;  // out of order but disjoint: fine
    b.header(2, 0).tensor("z", {8}, kF32, 32).tensor("a", {8}, kF32, 0).pad().zeros(64);
    Buffer ok(b.b);
    GgufFile g = parse_buffer(ok);
    EXPECT_EQ(g.tensor("z")->data - g.tensor("a")->data, 32);
  }
}

// ---------------------------------------------------------------------------
// The real Gemma 4 vocabulary GGUF

TEST(GgufRealFile, GemmaVocab) {
  const std::string p = std::string(GEMMA4_SOURCE_DIR) + "/tests/oracle/llama.cpp-src/models/ggml-vocab-gemma-4.gguf";
  if (!fs::exists(p)) GTEST_SKIP() << p << " is missing; run scripts/setup-oracles.sh to create it";
  double best = 1e9;
  for (int i = 0; i < 3; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    GgufFile g = GgufFile::open(p);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::printf("parse time of %s: %.3f s (best of 3)\n", p.c_str(), best);
  if (kOptimizedBuild) {
    EXPECT_LT(best, 0.5);
  }
  GgufFile g = GgufFile::open(p);
  EXPECT_EQ(g.get_string("general.architecture"), "gemma4");
  EXPECT_EQ(g.get_string("tokenizer.ggml.model"), "gemma4");
  EXPECT_EQ(g.get("tokenizer.ggml.tokens").as_array().size(), 262144u);
  EXPECT_EQ(g.get("tokenizer.ggml.tokens").elem_type, GgufType::STRING);
  EXPECT_EQ(g.get("tokenizer.ggml.merges").as_array().size(), 514906u);
  EXPECT_EQ(g.get_u64("tokenizer.ggml.bos_token_id"), 2u);
  const auto tokens = g.get_strings("tokenizer.ggml.tokens");
  EXPECT_EQ(tokens[2], "<bos>");
}

// ---------------------------------------------------------------------------
// core/dtype

namespace {
uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Round |f| to a binary float with `mant` explicit mantissa bits, minimum normal
// exponent `emin` and largest finite value `maxv`, ties to even (reference).
double round_ref(double f, int mant, int emin, double maxv) {
  if (std::isnan(f) || std::isinf(f) || f == 0) return f;
  double a = std::fabs(f);
  int e = std::max(std::ilogb(a), emin);
  double q = std::ldexp(1.0, e - mant);
  double r = std::nearbyint(a / q) * q;  // default rounding mode: to nearest even
  if (r > maxv) r = INFINITY;
  return std::copysign(r, f);
}
}  // namespace

TEST(Dtype, Fp16RoundTripAll65536) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_f32(static_cast<uint16_t>(h));
    const bool nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
    ASSERT_EQ(std::isnan(f), nan) << h;
    const uint16_t back = f32_to_fp16(f);
    if (nan) {
      ASSERT_TRUE(std::isnan(fp16_to_f32(back))) << h;
      ASSERT_EQ(back & 0x8000, h & 0x8000) << h;
    } else {
      ASSERT_EQ(back, h) << h << " -> " << f;
    }
  }
  EXPECT_EQ(fp16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(fp16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(fp16_to_f32(0x7bff), 65504.0f);
  EXPECT_TRUE(std::signbit(fp16_to_f32(0x8000)));
}

TEST(Dtype, Fp16RoundsToNearestEven) {
  const float one = 1.0f, ulp = std::ldexp(1.0f, -10);
  EXPECT_EQ(f32_to_fp16(one + ulp / 2), 0x3c00);                    // tie, even stays
  EXPECT_EQ(f32_to_fp16(one + 3 * ulp / 2), 0x3c02);                // tie, odd rounds up
  EXPECT_EQ(f32_to_fp16(std::nextafter(one + ulp / 2, 2.0f)), 0x3c01);  // just above the tie
  EXPECT_EQ(f32_to_fp16(std::nextafter(one + ulp / 2, 0.0f)), 0x3c00);
  EXPECT_EQ(f32_to_fp16(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_fp16(65520.0f), 0x7c00);                         // tie at max rounds to inf
  EXPECT_EQ(f32_to_fp16(-1e9f), 0xfc00);
  EXPECT_EQ(f32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);            // tie with 0
  EXPECT_EQ(f32_to_fp16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(f32_to_fp16(3 * std::ldexp(1.0f, -25)), 0x0002);        // subnormal tie, odd rounds up
  EXPECT_EQ(f32_to_fp16(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -25)), 0x0400);  // into the normals
  EXPECT_EQ(f32_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_fp16(1e-30f), 0x0000);
  EXPECT_EQ(f32_to_fp16(INFINITY), 0x7c00);
  EXPECT_EQ(f32_to_fp16(one + ulp * 1023 + ulp / 2), 0x4000);       // mantissa carry into exponent
  // Random sweep against a reference rounding.
  std::mt19937 rng(1234);
  for (int i = 0; i < 2000000; ++i) {
    const float f = from_bits(rng());
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(fp16_to_f32(f32_to_fp16(f))));
      continue;
    }
    const float got = fp16_to_f32(f32_to_fp16(f));
    const float want = static_cast<float>(round_ref(f, 10, -14, 65504.0));
    ASSERT_EQ(bits_of(got), bits_of(want)) << "f=" << f;
  }
}

TEST(Dtype, Bf16) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = bf16_to_f32(static_cast<uint16_t>(b));
    const uint16_t back = f32_to_bf16(f);
    if (std::isnan(f))
      ASSERT_TRUE(std::isnan(bf16_to_f32(back))) << b;
    else
      ASSERT_EQ(back, b) << b;
  }
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808000)), 0x3f80);  // tie, even stays
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f818000)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808001)), 0x3f81);
  EXPECT_EQ(f32_to_bf16(from_bits(0x7f7fffff)), 0x7f80);  // rounds to inf
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(from_bits(0x7f800001)))));  // low-payload NaN stays NaN
  std::mt19937 rng(99);
  for (int i = 0; i < 2000000; ++i) {
    const float f = from_bits(rng());
    if (std::isnan(f)) continue;
    const float got = bf16_to_f32(f32_to_bf16(f));
    const float want = static_cast<float>(round_ref(f, 7, -126, 3.3895313892515355e38));
    ASSERT_EQ(bits_of(got), bits_of(want)) << "f=" << f;
  }
}

TEST(Dtype, TypeTable) {
  EXPECT_EQ(ggml_type_from_name("q4_0"), GgmlType::Q4_0);
  EXPECT_EQ(ggml_type_from_name("BF16"), GgmlType::BF16);
  EXPECT_EQ(ggml_type_from_name("bf16"), GgmlType::BF16);
  EXPECT_EQ(ggml_type_from_name("Q4_k"), GgmlType::Q4_K);
  EXPECT_EQ(ggml_type_from_name("iq2_xxs"), GgmlType::IQ2_XXS);
  EXPECT_FALSE(ggml_type_from_name("Q4"));
  EXPECT_FALSE(ggml_type_from_name(""));
  EXPECT_FALSE(ggml_type_from_name("Q4_0 "));
  int known = 0;
  for (uint32_t id = 0; id < 100; ++id) {
    const GgmlTypeInfo* i = ggml_type_info(id);
    if (!i) {
      EXPECT_EQ(ggml_type_name(id), "unknown type " + std::to_string(id));
      continue;
    }
    ++known;
    EXPECT_EQ(static_cast<uint32_t>(i->type), id);
    EXPECT_EQ(ggml_type_from_name(i->name), i->type) << i->name;
    EXPECT_EQ(ggml_type_name(id), i->name);
    EXPECT_GT(i->block_size, 0);
    EXPECT_GT(i->block_bytes, 0u);
  }
  EXPECT_EQ(known, 35);
  for (uint32_t removed : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u}) EXPECT_EQ(ggml_type_info(removed), nullptr);
  expect_error([] { ggml_type_info(static_cast<GgmlType>(31)); }, {"31"});
}

TEST(Dtype, RowBytes) {
  EXPECT_EQ(ggml_row_bytes(GgmlType::F32, 7), 28u);
  EXPECT_EQ(ggml_row_bytes(GgmlType::BF16, 3), 6u);
  EXPECT_EQ(ggml_row_bytes(GgmlType::Q4_0, 64), 36u);
  EXPECT_EQ(ggml_row_bytes(GgmlType::Q8_0, 32), 34u);
  EXPECT_EQ(ggml_row_bytes(GgmlType::Q4_K, 512), 288u);
  EXPECT_EQ(ggml_row_bytes(GgmlType::Q4_0, 0), 0u);
  expect_error([] { ggml_row_bytes(GgmlType::Q4_0, 33); }, {"33", "Q4_0", "32"});
  expect_error([] { ggml_row_bytes(GgmlType::Q6_K, 128); }, {"Q6_K", "256"});
  expect_error([] { ggml_row_bytes(GgmlType::F32, -1); }, {"-1"});
}

// ---------------------------------------------------------------------------
// Chunked tensor data (write_tensor_chunk)

TEST(GgufWriter, ChunkedTensorDataEqualsWholeWrites) {
  TempDir dir;
  const std::string whole = dir.file("whole.gguf"), chunked = dir.file("chunked.gguf");
  struct T {
    std::string name;
    GgmlType type;
    std::vector<int64_t> ne;
  };
  // Sizes that are not multiples of the alignment, so padding follows a
  // tensor completed by its last chunk.
  const std::vector<T> ts = {{"a", GgmlType::F32, {7, 3}},
                             {"q", GgmlType::Q4_0, {64, 5}},
                             {"b", GgmlType::F16, {1001}},
                             {"c", GgmlType::Q8_0, {32, 1}}};
  auto sizes = [&](const T& t) {
    size_t n = 1;
    for (int64_t d : t.ne) n *= static_cast<size_t>(d);
    return ggml_row_bytes(t.type, static_cast<int64_t>(n));
  };
  auto write = [&](const std::string& p, bool chunks) {
    GgufWriter w(p);
    w.set("general.architecture", GgufValue::str("gemma4"));
    for (const auto& t : ts) w.add_tensor_info(t.name, t.type, t.ne);
    w.write_header();
    for (size_t i = 0; i < ts.size(); ++i) {
      const auto data = pattern(sizes(ts[i]), static_cast<uint8_t>(i + 3));
      if (!chunks) {
        w.write_tensor_data(ts[i].name, data.data(), data.size());
        continue;
      }
      // Uneven pieces (1, 2, 3, … bytes), including an empty chunk.
      size_t off = 0, k = 0;
      w.write_tensor_chunk(ts[i].name, data.data(), 0);
      while (off < data.size()) {
        const size_t n = std::min(data.size() - off, ++k * 7 % 61 + 1);
        w.write_tensor_chunk(ts[i].name, data.data() + off, n);
        off += n;
      }
    }
    w.finish();
  };
  write(whole, false);
  write(chunked, true);
  EXPECT_EQ(read_all(whole), read_all(chunked));
  GgufFile g = GgufFile::open(chunked);
  ASSERT_EQ(g.tensors().size(), ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    const auto expect = pattern(sizes(ts[i]), static_cast<uint8_t>(i + 3));
    ASSERT_EQ(g.tensors()[i].nbytes, expect.size());
    EXPECT_EQ(std::memcmp(g.tensors()[i].data, expect.data(), expect.size()), 0) << ts[i].name;
  }
}

TEST(GgufWriter, ChunkMisuseIsAnError) {
  TempDir dir;
  const std::string p = dir.file("c.gguf");
  std::vector<uint8_t> buf(64, 0x5A);
  {
    GgufWriter w(p);
    w.add_tensor_info("a", GgmlType::F32, {4});  // 16 bytes
    w.add_tensor_info("b", GgmlType::F32, {2});  // 8 bytes
    expect_error([&] { w.write_tensor_chunk("a", buf.data(), 4); }, {"before write_header"});
    w.write_header();
    expect_error([&] { w.write_tensor_chunk("b", buf.data(), 4); }, {"expected data for tensor 'a'", "'b'"});
    expect_error([&] { w.write_tensor_chunk("a", buf.data(), 17); }, {"'a'", "needs 16 bytes", "17"});
    w.write_tensor_chunk("a", buf.data(), 10);
    expect_error([&] { w.write_tensor_chunk("a", buf.data(), 7); }, {"'a'", "needs 16 bytes", "after 10"});
    expect_error([&] { w.write_tensor_chunk("a", nullptr, 2); }, {"'a'", "null data"});
    expect_error([&] { w.write_tensor_chunk("b", buf.data(), 8); }, {"'b'", "'a' is incomplete", "10 of 16"});
    expect_error([&] { w.write_tensor_data("a", buf.data(), 16); }, {"'a' is partly written", "10 of 16"});
    expect_error([&] { w.finish(); }, {"'a' incomplete", "10 of 16"});
    w.write_tensor_chunk("a", buf.data(), 6);  // completes 'a'
    expect_error([&] { w.write_tensor_chunk("a", buf.data(), 1); }, {"expected data for tensor 'b'"});
    w.write_tensor_data("b", buf.data(), 8);  // whole and chunked writes mix per tensor
    expect_error([&] { w.write_tensor_chunk("b", buf.data(), 1); }, {"already written"});
    w.finish();
  }
  GgufFile g = GgufFile::open(p);
  ASSERT_EQ(g.tensors().size(), 2u);
  EXPECT_EQ(std::memcmp(g.tensor("a")->data, buf.data(), 16), 0);
  {
    // A writer abandoned mid-tensor leaves nothing behind.
    const std::string q = dir.file("abandoned.gguf");
    {
      GgufWriter w(q);
      w.add_tensor_info("a", GgmlType::F32, {4});
      w.write_header();
      w.write_tensor_chunk("a", buf.data(), 8);
    }
    EXPECT_FALSE(fs::exists(q));
  }
}
