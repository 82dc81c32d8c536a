// safetensors reader / writer / sharded checkpoint tests.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/safetensors.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace g4;
using namespace g4::testutil;

namespace {

std::vector<uint8_t> read_all(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}
void write_all(const std::string& p, const std::vector<uint8_t>& b) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
void write_text(const std::string& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

// A raw safetensors image: u64 header length, header text, data bytes.
std::vector<uint8_t> image(const std::string& header, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out(8 + header.size() + data.size());
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  if (!header.empty()) std::memcpy(out.data() + 8, header.data(), header.size());
  if (!data.empty()) std::memcpy(out.data() + 8 + header.size(), data.data(), data.size());
  return out;
}

// Parses an in-memory image (the buffer must outlive the result's use).
SafetensorsFile parse(const std::vector<uint8_t>& b) {
  return SafetensorsFile::parse(MappedFile::borrow(b.data(), b.size(), "mem.safetensors"));
}

// Expects a g4::Error whose message contains every `needle`.
void expect_header_error(const std::string& header, const std::vector<uint8_t>& data,
                         std::initializer_list<std::string> needles) {
  const auto b = image(header, data);
  expect_error([&] { parse(b); }, needles);
}

// Writes a small file with several dtypes; returns the float data written.
struct Sample {
  std::vector<float> a{1, 2, 3, 4, 5, 6};  // F32 [2, 3]
  std::vector<uint16_t> h{0x3c00, 0x4000, 0xc000, 0x0000};  // F16 [4]
  std::vector<uint16_t> bf{0x3f80, 0x4000, 0x4040, 0x4080, 0x40a0, 0x40c0, 0x40e0, 0x4100};  // BF16 [2, 2, 2]
  float s = 7.5f;  // F32 []
  std::vector<int64_t> ids{10, 20, 30};  // I64 [3]
};

void write_sample(const std::string& path, const Sample& d, bool with_i64 = true) {
  SafetensorsWriter w(path);
  w.set_metadata("producer", "test");
  w.add_tensor_info("a", GgmlType::F32, {2, 3});
  w.add_tensor_info("h", GgmlType::F16, {4});
  w.add_tensor_info("bf", GgmlType::BF16, {2, 2, 2});
  w.add_tensor_info("scalar", GgmlType::F32, {});
  w.add_tensor_info("empty", GgmlType::F32, {0, 5});
  if (with_i64) w.add_tensor_info("ids", GgmlType::I64, {3});
  w.write_header();
  w.write_tensor_data("a", d.a.data(), d.a.size() * 4);
  w.write_tensor_data("h", d.h.data(), d.h.size() * 2);
  w.write_tensor_data("bf", d.bf.data(), d.bf.size() * 2);
  w.write_tensor_data("scalar", &d.s, 4);
  w.write_tensor_data("empty", nullptr, 0);
  if (with_i64) w.write_tensor_data("ids", d.ids.data(), d.ids.size() * 8);
  w.finish();
}

}  // namespace

TEST(Safetensors, WriterReaderRoundTrip) {
  TempDir dir("g4_st");
  Sample d;
  const std::string p = dir / "m.safetensors";
  write_sample(p, d);
  EXPECT_FALSE(fs::exists(p + ".tmp"));

  // Header: length multiple of 8 (space padded), __metadata__ with format pt.
  const auto raw = read_all(p);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | raw[i];
  EXPECT_EQ(n % 8, 0u);
  const std::string header(raw.begin() + 8, raw.begin() + 8 + static_cast<long>(n));
  auto j = nlohmann::json::parse(header);
  EXPECT_EQ(j["__metadata__"]["format"], "pt");
  EXPECT_EQ(j["a"]["shape"], nlohmann::json::array({2, 3}));

  SafetensorsFile f = SafetensorsFile::open(p);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("producer"), "test");
  ASSERT_EQ(f.tensors().size(), 5u);

  const TensorView* a = f.tensor("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->type, GgmlType::F32);
  EXPECT_EQ(a->ne, (std::vector<int64_t>{3, 2}));  // ggml order
  ASSERT_EQ(a->nbytes, 24u);
  EXPECT_EQ(std::memcmp(a->data, d.a.data(), 24), 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a->data) % 8, 0u);  // data section 8-aligned

  const TensorView* h = f.tensor("h");
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->type, GgmlType::F16);
  EXPECT_EQ(h->ne, (std::vector<int64_t>{4}));
  EXPECT_EQ(std::memcmp(h->data, d.h.data(), 8), 0);

  const TensorView* bf = f.tensor("bf");
  ASSERT_NE(bf, nullptr);
  EXPECT_EQ(bf->type, GgmlType::BF16);
  EXPECT_EQ(bf->ne, (std::vector<int64_t>{2, 2, 2}));
  uint16_t last;
  std::memcpy(&last, bf->data + 14, 2);
  EXPECT_EQ(bf16_to_f32(last), 8.0f);

  const TensorView* s = f.tensor("scalar");
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->ne.empty());
  EXPECT_EQ(s->nelements(), 1);
  float sv;
  std::memcpy(&sv, s->data, 4);
  EXPECT_EQ(sv, 7.5f);

  const TensorView* e = f.tensor("empty");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->ne, (std::vector<int64_t>{5, 0}));
  EXPECT_EQ(e->nbytes, 0u);

  // I64 is listed but not usable.
  ASSERT_EQ(f.unsupported().size(), 1u);
  EXPECT_EQ(f.unsupported()[0].name, "ids");
  EXPECT_EQ(f.unsupported()[0].dtype, "I64");
  EXPECT_EQ(f.unsupported()[0].hf_shape, (std::vector<int64_t>{3}));
  expect_error([&] { f.tensor("ids"); }, {"'ids'", "I64"});
  EXPECT_EQ(f.tensor("nope"), nullptr);
}

TEST(Safetensors, ViewsOutliveTheFileObject) {
  TempDir dir("g4_st");
  Sample d;
  write_sample(dir / "m.safetensors", d, false);
  TensorView keep;
  {
    SafetensorsFile f = SafetensorsFile::open(dir / "m.safetensors");
    keep = *f.tensor("a");
  }
  float x;
  std::memcpy(&x, keep.data + 20, 4);
  EXPECT_EQ(x, 6.0f);
}

TEST(Safetensors, WriterProtocolErrors) {
  TempDir dir("g4_st");
  const float x[4] = {1, 2, 3, 4};
  {
    SafetensorsWriter w(dir / "a.safetensors");
    expect_error([&] { w.add_tensor_info("q", GgmlType::Q4_0, {32}); }, {"'q'", "Q4_0"});
    w.add_tensor_info("t", GgmlType::F32, {4});
    expect_error([&] { w.add_tensor_info("t", GgmlType::F32, {4}); }, {"'t'", "twice"});
    expect_error([&] { w.add_tensor_info("neg", GgmlType::F32, {-1}); }, {"'neg'"});
    expect_error([&] { w.write_tensor_data("t", x, 16); }, {"outside"});
    w.add_tensor_info("u", GgmlType::F32, {2});
    w.write_header();
    expect_error([&] { w.add_tensor_info("late", GgmlType::F32, {1}); }, {"'late'"});
    expect_error([&] { w.write_tensor_data("u", x, 8); }, {"'t'", "'u'"});  // order
    expect_error([&] { w.write_tensor_data("t", x, 12); }, {"'t'", "16"});   // size
    w.write_tensor_data("t", x, 16);
    expect_error([&] { w.finish(); }, {"'u'"});  // missing data
    // Destroyed without finish: no file left behind.
  }
  EXPECT_FALSE(fs::exists(dir / "a.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "a.safetensors.tmp"));
}

// ---------------------------------------------------------------------------
// Corrupt files

TEST(Safetensors, EveryTruncationIsACleanError) {
  TempDir dir("g4_st");
  Sample d;
  write_sample(dir / "m.safetensors", d);
  const auto full = read_all(dir / "m.safetensors");
  ASSERT_NO_THROW(parse(full));
  for (size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<long>(n));
    EXPECT_THROW(parse(cut), Error) << "truncated to " << n << " bytes";
  }
}

TEST(Safetensors, HeaderLengthSanity) {
  expect_error([] { parse(std::vector<uint8_t>{1, 2, 3}); }, {"mem.safetensors", "too short"});
  // Absurd header length (> 100 MB).
  std::vector<uint8_t> b(16, 0);
  const uint64_t huge = 200ull << 20;
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(huge >> (8 * i));
  expect_error([&] { parse(b); }, {"100 MB"});
  // Header longer than the file.
  auto c = image("{}", {});
  c[0] = 100;
  expect_error([&] { parse(c); }, {"past the end"});
  // All ones (u64 max).
  std::vector<uint8_t> ff(64, 0xff);
  EXPECT_THROW(parse(ff), Error);
}

TEST(Safetensors, BadJson) {
  expect_header_error("{not json", {}, {"not valid JSON"});
  expect_header_error("[1, 2]   ", {}, {"not a JSON object"});
  expect_header_error("{\"a\": 1}", {}, {"'a'", "not a JSON object"});
  expect_header_error("{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", {0, 0, 0, 0}, {"'a'", "dtype"});
  expect_header_error("{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", {0, 0, 0, 0}, {"'a'", "shape"});
  expect_header_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}", {0, 0, 0, 0}, {"'a'", "data_offsets"});
  expect_header_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", {0, 0, 0, 0},
                      {"'a'", "data_offsets"});
  expect_header_error("{\"a\": {\"dtype\": \"Q9\", \"shape\": [1], \"data_offsets\": [0, 4]}}", {0, 0, 0, 0},
                      {"'a'", "unknown dtype", "Q9"});
  expect_header_error("{\"__metadata__\": [1], \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
                      {0, 0, 0, 0}, {"__metadata__"});
}

TEST(Safetensors, BadShapesAndOffsets) {
  const std::vector<uint8_t> d16(16, 0);
  auto hdr = [](const std::string& shape, const std::string& offs, const std::string& dtype = "F32") {
    return "{\"t\": {\"dtype\": \"" + dtype + "\", \"shape\": " + shape + ", \"data_offsets\": " + offs + "}}";
  };
  expect_header_error(hdr("[-1]", "[0, 4]"), d16, {"'t'", "non-negative"});
  expect_header_error(hdr("[2.5]", "[0, 4]"), d16, {"'t'", "non-negative"});
  expect_header_error(hdr("[\"2\"]", "[0, 4]"), d16, {"'t'", "non-negative"});
  expect_header_error(hdr("[1099511627777]", "[0, 4]"), d16, {"'t'", "absurd"});
  expect_header_error(hdr("[1048576, 1048576, 1048576, 1048576]", "[0, 4]"), d16, {"'t'", "absurd"});
  expect_header_error(hdr("[0, 1099511627776, 1099511627776]", "[0, 0]"), d16, {"'t'", "absurd"});
  expect_header_error(hdr("[1,1,1,1,1,1,1,1,1]", "[0, 4]"), d16, {"'t'", "dimensions"});
  expect_header_error(hdr("[4]", "[0, 32]"), d16, {"'t'", "past the end"});
  expect_header_error(hdr("[4]", "[20, 36]"), d16, {"'t'", "past the end"});
  expect_header_error(hdr("[1]", "[8, 4]"), d16, {"'t'", "begin"});
  expect_header_error(hdr("[1]", "[-4, 0]"), d16, {"'t'", "non-negative"});
  expect_header_error(hdr("[3]", "[0, 16]"), d16, {"'t'", "needs 12 bytes", "hold 16"});
  expect_header_error(hdr("[3]", "[0, 12]", "BF16"), d16, {"'t'", "BF16", "needs 6 bytes"});
  // Overlap.
  expect_header_error(
      "{\"x\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
      " \"y\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
      d16, {"'x'", "'y'", "overlap"});
  // Unsupported dtypes are still bounds-checked.
  expect_header_error(hdr("[4]", "[0, 8]", "F8_E4M3"), d16, {"'t'", "needs 4 bytes"});
}

TEST(Safetensors, LenientButValidLayouts) {
  // Trailing space / NUL padding, null __metadata__, zero-size tensors sharing an offset.
  const std::vector<uint8_t> d8(8, 0);
  std::string h =
      "{\"__metadata__\": null, \"x\": {\"dtype\": \"F16\", \"shape\": [2, 2], \"data_offsets\": [0, 8]},"
      " \"z\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]},"
      " \"u\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [8, 8]}}   ";
  h.push_back('\0');
  const auto b = image(h, d8);
  SafetensorsFile f = parse(b);
  EXPECT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.unsupported().size(), 1u);
  EXPECT_EQ(f.tensor("x")->ne, (std::vector<int64_t>{2, 2}));
}

// ---------------------------------------------------------------------------
// Checkpoints: single file, folder, sharded with index

namespace {

void write_shard(const std::string& path, const std::vector<std::pair<std::string, std::vector<float>>>& ts) {
  SafetensorsWriter w(path);
  for (const auto& [name, v] : ts) w.add_tensor_info(name, GgmlType::F32, {static_cast<int64_t>(v.size())});
  w.write_header();
  for (const auto& [name, v] : ts) w.write_tensor_data(name, v.data(), v.size() * 4);
  w.finish();
}

void write_index(const std::string& path, const std::vector<std::pair<std::string, std::string>>& map) {
  nlohmann::json j;
  j["metadata"] = {{"total_size", 0}};
  j["weight_map"] = nlohmann::json::object();
  for (const auto& [t, s] : map) j["weight_map"][t] = s;
  write_text(path, j.dump(2));
}

}  // namespace

TEST(SafetensorsCheckpoint, SingleFileAndFolder) {
  TempDir dir("g4_st");
  Sample d;
  write_sample(dir / "model.safetensors", d);
  for (const std::string& p : {dir / "model.safetensors", dir.path().string()}) {
    SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(p);
    EXPECT_EQ(ck.tensors().size(), 5u);
    EXPECT_EQ(ck.files().size(), 1u);
    EXPECT_EQ(ck.total_bytes(), fs::file_size(dir / "model.safetensors"));
    ASSERT_NE(ck.tensor("a"), nullptr);
    EXPECT_EQ(ck.tensor("a")->ne, (std::vector<int64_t>{3, 2}));
    EXPECT_EQ(ck.unsupported().size(), 1u);
    expect_error([&] { ck.tensor("ids"); }, {"'ids'", "I64"});
  }
  TempDir empty_dir_holder("g4_st");
  fs::create_directories(empty_dir_holder.path() / "sub");
  expect_error([&] { SafetensorsCheckpoint::open((empty_dir_holder.path() / "sub").string()); },
               {"model.safetensors", "model.safetensors.index.json"});
}

TEST(SafetensorsCheckpoint, ShardedWithIndex) {
  TempDir dir("g4_st");
  write_shard(dir / "model-00001-of-00002.safetensors", {{"w1", {1, 2}}, {"w2", {3}}});
  write_shard(dir / "model-00002-of-00002.safetensors", {{"w3", {4, 5, 6}}});
  write_index(dir / "model.safetensors.index.json", {{"w1", "model-00001-of-00002.safetensors"},
                                                     {"w2", "model-00001-of-00002.safetensors"},
                                                     {"w3", "model-00002-of-00002.safetensors"}});
  for (const std::string& p : {dir.path().string(), dir / "model.safetensors.index.json"}) {
    SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(p);
    EXPECT_EQ(ck.tensors().size(), 3u);
    EXPECT_EQ(ck.files().size(), 2u);
    EXPECT_EQ(ck.total_bytes(), fs::file_size(dir / "model-00001-of-00002.safetensors") +
                                    fs::file_size(dir / "model-00002-of-00002.safetensors"));
    const TensorView* w3 = ck.tensor("w3");
    ASSERT_NE(w3, nullptr);
    float x;
    std::memcpy(&x, w3->data + 8, 4);
    EXPECT_EQ(x, 6.0f);
  }
}

TEST(SafetensorsCheckpoint, IndexErrors) {
  TempDir dir("g4_st");
  write_shard(dir / "s1.safetensors", {{"w1", {1, 2}}, {"dup", {0}}});
  write_shard(dir / "s2.safetensors", {{"w2", {3}}, {"dup", {0}}});
  const std::string idx = dir / "model.safetensors.index.json";

  write_index(idx, {{"w1", "s1.safetensors"}, {"w2", "missing.safetensors"}});
  expect_error([&] { SafetensorsCheckpoint::open(idx); }, {"missing.safetensors", "does not exist", "'w2'"});

  write_index(idx, {{"w1", "s2.safetensors"}});
  expect_error([&] { SafetensorsCheckpoint::open(idx); }, {"'w1'", "s2.safetensors", "does not contain"});

  write_index(idx, {{"w1", "s1.safetensors"}, {"w2", "s2.safetensors"}});
  expect_error([&] { SafetensorsCheckpoint::open(idx); }, {"'dup'", "both"});

  write_index(idx, {{"w1", "../s1.safetensors"}});
  expect_error([&] { SafetensorsCheckpoint::open(idx); }, {"../s1.safetensors"});

  write_text(idx, "{\"weight_map\": ");
  expect_error([&] { SafetensorsCheckpoint::open(idx); }, {"not valid JSON"});
  write_text(idx, "{\"metadata\": {}}");
  expect_error([&] { SafetensorsCheckpoint::open(idx); }, {"weight_map"});
  write_text(idx, "{\"weight_map\": {\"w1\": 3}}");
  expect_error([&] { SafetensorsCheckpoint::open(idx); }, {"'w1'", "not a string"});
  expect_error([&] { SafetensorsCheckpoint::open(dir / "nothing.safetensors"); }, {"nothing.safetensors"});
}

TEST(SafetensorsCheckpoint, CorruptShardIsNamed) {
  TempDir dir("g4_st");
  write_shard(dir / "s1.safetensors", {{"w1", {1, 2}}});
  auto b = read_all(dir / "s1.safetensors");
  b.resize(b.size() - 2);
  write_all(dir / "s1.safetensors", b);
  write_index(dir / "model.safetensors.index.json", {{"w1", "s1.safetensors"}});
  expect_error([&] { SafetensorsCheckpoint::open(dir.path().string()); }, {"s1.safetensors", "'w1'"});
}

// ---------------------------------------------------------------------------
// Chunked tensor data (write_tensor_chunk)

TEST(Safetensors, ChunkedWritesEqualWholeWrites) {
  TempDir dir("g4_st");
  std::vector<float> big(1000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(i) * 0.5f - 3.f;
  const std::vector<uint16_t> h = {0x3c00, 0x4000, 0xc000};
  auto write = [&](const std::string& p, bool chunks) {
    SafetensorsWriter w(p);
    w.add_tensor_info("big", GgmlType::F32, {10, 100});
    w.add_tensor_info("empty", GgmlType::F32, {0});
    w.add_tensor_info("h", GgmlType::F16, {3});
    w.write_header();
    if (!chunks) {
      w.write_tensor_data("big", big.data(), big.size() * 4);
      w.write_tensor_data("empty", nullptr, 0);
      w.write_tensor_data("h", h.data(), 6);
    } else {
      const auto* b = reinterpret_cast<const uint8_t*>(big.data());
      size_t off = 0, k = 0;
      while (off < big.size() * 4) {
        const size_t n = std::min(big.size() * 4 - off, ++k * 13 % 97 + 1);  // uneven, unaligned pieces
        w.write_tensor_chunk("big", b + off, n);
        off += n;
      }
      w.write_tensor_chunk("empty", nullptr, 0);  // a zero-byte tensor is complete at once
      w.write_tensor_chunk("h", h.data(), 6);
    }
    w.finish();
  };
  write(dir / "whole.safetensors", false);
  write(dir / "chunked.safetensors", true);
  EXPECT_EQ(read_all(dir / "whole.safetensors"), read_all(dir / "chunked.safetensors"));
  SafetensorsFile f = SafetensorsFile::open(dir / "chunked.safetensors");
  ASSERT_NE(f.tensor("big"), nullptr);
  ASSERT_EQ(f.tensor("big")->nbytes, big.size() * 4);
  EXPECT_EQ(std::memcmp(f.tensor("big")->data, big.data(), big.size() * 4), 0);
  EXPECT_EQ(std::memcmp(f.tensor("h")->data, h.data(), 6), 0);
}

TEST(Safetensors, ChunkMisuseIsAnError) {
  TempDir dir("g4_st");
  const float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  {
    SafetensorsWriter w(dir / "c.safetensors");
    w.add_tensor_info("t", GgmlType::F32, {4});
    w.add_tensor_info("u", GgmlType::F32, {2});
    expect_error([&] { w.write_tensor_chunk("t", x, 4); }, {"outside"});
    w.write_header();
    expect_error([&] { w.write_tensor_chunk("u", x, 4); }, {"'t'", "'u'"});
    expect_error([&] { w.write_tensor_chunk("t", x, 20); }, {"'t'", "needs 16 bytes", "20"});
    w.write_tensor_chunk("t", x, 12);
    expect_error([&] { w.write_tensor_chunk("t", x, 8); }, {"'t'", "needs 16 bytes", "after 12"});
    expect_error([&] { w.write_tensor_chunk("t", nullptr, 4); }, {"'t'", "null data"});
    expect_error([&] { w.write_tensor_chunk("u", x, 8); }, {"'u'", "'t' is incomplete", "12 of 16"});
    expect_error([&] { w.write_tensor_data("t", x, 16); }, {"'t' is partly written", "12 of 16"});
    expect_error([&] { w.finish(); }, {"'t' incomplete", "12 of 16"});
    w.write_tensor_chunk("t", x + 3, 4);
    w.write_tensor_chunk("u", x, 8);
    expect_error([&] { w.write_tensor_chunk("v", x, 4); }, {"'v'", "not declared"});
    w.finish();
  }
  SafetensorsFile f = SafetensorsFile::open(dir / "c.safetensors");
  const float expect_t[4] = {1, 2, 3, 4};
  EXPECT_EQ(std::memcmp(f.tensor("t")->data, expect_t, 16), 0);
  {
    SafetensorsWriter w(dir / "abandoned.safetensors");
    w.add_tensor_info("t", GgmlType::F32, {4});
    w.write_header();
    w.write_tensor_chunk("t", x, 8);
  }
  EXPECT_FALSE(fs::exists(dir / "abandoned.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "abandoned.safetensors.tmp"));
}
