// Row-streaming conversion (tools/tensor_convert.h) and the progress
// reporter (tools/progress.h): chunking must not change a single byte, the
// trim and validation options do what they say, and a non-terminal gets one
// plain line.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "test_util.h"
#include "tools/progress.h"
#include "tools/tensor_convert.h"

namespace g4 {
namespace {

using testutil::expect_error;
using testutil::TempDir;

// A tensor of `rows` x `ne0` F32 values in a real file mapping (the
// converter drops pages of its source after use, which needs a file).
struct FileTensor {
  std::shared_ptr<MappedFile> file;
  TensorView view;
};
FileTensor file_tensor(const TempDir& tmp, const std::vector<float>& v, int64_t ne0, GgmlType type = GgmlType::F32) {
  const std::string path = tmp / "t.bin";
  std::vector<uint8_t> bytes;
  const int64_t rows = static_cast<int64_t>(v.size()) / ne0;
  bytes.resize(ggml_row_bytes(type, ne0) * static_cast<size_t>(rows));
  kernels::quantize_rows(type, v.data(), bytes.data(), rows, ne0);
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  FileTensor t;
  t.file = MappedFile::open(path);
  t.view.name = "blk.0.test.weight";
  t.view.type = type;
  t.view.ne = {ne0, rows};
  t.view.data = t.file->data();
  t.view.nbytes = t.file->size();
  t.view.file = t.file;
  return t;
}

std::vector<float> values(size_t n) {
  std::vector<float> v(n);
  uint64_t x = 42;
  for (float& f : v) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    f = static_cast<float>(static_cast<int64_t>(x >> 40) - (1 << 23)) / static_cast<float>(1 << 23);
  }
  return v;
}

std::vector<uint8_t> collect(const TensorView& t, GgmlType dst, const RowConvertOptions& o, int* pieces = nullptr) {
  std::vector<uint8_t> out;
  int n = 0;
  convert_tensor_rows(
      t, dst,
      [&](const uint8_t* p, size_t k, uint64_t) {
        out.insert(out.end(), p, p + k);
        ++n;
      },
      o);
  if (pieces) *pieces = n;
  return out;
}

TEST(TensorConvert, ChunksAndThreadsDoNotChangeTheBytes) {
  TempDir tmp;
  const int64_t ne0 = 96, rows = 300;
  const std::vector<float> v = values(static_cast<size_t>(ne0 * rows));
  FileTensor t = file_tensor(tmp, v, ne0);
  for (GgmlType dst : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::F16, GgmlType::BF16}) {
    std::vector<uint8_t> whole(ggml_row_bytes(dst, ne0) * rows);
    kernels::quantize_rows(dst, v.data(), whole.data(), rows, ne0);
    ThreadPool pool(3);
    RowConvertOptions o;
    o.pool = &pool;
    o.chunk_f32_bytes = 7 * ne0 * sizeof(float);  // 7 rows per chunk: 43 pieces, last one partial
    int pieces = 0;
    EXPECT_EQ(collect(t.view, dst, o, &pieces), whole) << ggml_type_name(dst);
    EXPECT_EQ(pieces, 43);
    EXPECT_EQ(collect(t.view, dst, {}), whole) << ggml_type_name(dst) << " single-threaded";
  }
  // The source stays readable after its pages were dropped.
  EXPECT_EQ(std::memcmp(t.view.data, v.data(), v.size() * sizeof(float)), 0);
}

TEST(TensorConvert, SameTypeIsCopiedAndRowsCanBeTrimmed) {
  TempDir tmp;
  const int64_t ne0 = 64, rows = 10;
  const std::vector<float> v = values(static_cast<size_t>(ne0 * rows));
  FileTensor t = file_tensor(tmp, v, ne0, GgmlType::Q8_0);
  RowConvertOptions o;
  o.n_rows = 6;
  const std::vector<uint8_t> got = collect(t.view, GgmlType::Q8_0, o);
  ASSERT_EQ(got.size(), 6 * ggml_row_bytes(GgmlType::Q8_0, ne0));
  EXPECT_EQ(std::memcmp(got.data(), t.view.data, got.size()), 0);
  o.n_rows = 11;
  expect_error([&] { collect(t.view, GgmlType::Q8_0, o); }, {"asked for 11 rows", "10"});
}

TEST(TensorConvert, DequantizesBeforeRequantizing) {
  TempDir tmp;
  const int64_t ne0 = 64, rows = 4;
  const std::vector<float> v = values(static_cast<size_t>(ne0 * rows));
  FileTensor t = file_tensor(tmp, v, ne0, GgmlType::Q8_0);
  std::vector<float> back(v.size());
  const kernels::WeightMatrix wm = kernels::WeightMatrix::raw(GgmlType::Q8_0, t.view.data, ne0, rows);
  for (int64_t r = 0; r < rows; ++r) kernels::dequantize_row(wm, r, back.data() + r * ne0);
  EXPECT_EQ(collect(t.view, GgmlType::F32, {}),
            std::vector<uint8_t>(reinterpret_cast<const uint8_t*>(back.data()),
                                 reinterpret_cast<const uint8_t*>(back.data() + back.size())));
}

TEST(TensorConvert, RoundViaF16) {
  TempDir tmp;
  const int64_t ne0 = 32, rows = 3;
  const std::vector<float> v = values(static_cast<size_t>(ne0 * rows));
  FileTensor t = file_tensor(tmp, v, ne0);
  std::vector<float> r(v);
  for (float& x : r) x = fp16_to_f32(f32_to_fp16(x));
  std::vector<uint8_t> want(ggml_row_bytes(GgmlType::Q4_0, ne0) * rows);
  kernels::quantize_rows(GgmlType::Q4_0, r.data(), want.data(), rows, ne0);
  RowConvertOptions o;
  o.round_via = GgmlType::F16;
  EXPECT_EQ(collect(t.view, GgmlType::Q4_0, o), want);
}

TEST(TensorConvert, Validation) {
  TempDir tmp;
  const int64_t ne0 = 32;
  std::vector<float> v = values(64);
  v[40] = std::numeric_limits<float>::quiet_NaN();
  FileTensor t = file_tensor(tmp, v, ne0);
  RowConvertOptions o;
  o.validate = true;
  expect_error([&] { collect(t.view, GgmlType::Q8_0, o); }, {"blk.0.test.weight", "non-finite", "row 1", "element 8"});
  EXPECT_NO_THROW(collect(t.view, GgmlType::Q8_0, {}));  // convert does not validate, like llama.cpp's converter
  TempDir tmp2;
  std::vector<float> big = values(32);
  big[3] = 70000.f;
  FileTensor b = file_tensor(tmp2, big, ne0);
  expect_error([&] { collect(b.view, GgmlType::F16, o); }, {"overflows F16"});
  EXPECT_NO_THROW(collect(b.view, GgmlType::BF16, o));
  // A row length the target's block does not divide.
  expect_error([&] { collect(b.view, GgmlType::Q4_K, {}); }, {"32 elements", "Q4_K"});
}

std::string captured(const std::function<void(FILE*)>& fn) {
  FILE* f = std::tmpfile();
  fn(f);
  std::fflush(f);
  std::rewind(f);
  std::string s;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}

TEST(Progress, PlainLineWhenNotATerminal) {
  const std::string s = captured([](FILE* f) {
    Progress p("convert", 100, f);  // a file is not a terminal
    for (int i = 0; i < 10; ++i) p.advance(10, "blk.0.attn_q.weight");
    p.finish("wrote x.gguf");
  });
  EXPECT_EQ(s.find('\r'), std::string::npos) << s;
  EXPECT_EQ(s.rfind("convert: wrote x.gguf (", 0), 0u) << s;
  EXPECT_EQ(std::count(s.begin(), s.end(), '\n'), 1) << s;
}

TEST(Progress, BarRedrawsInPlaceOnATerminal) {
  const std::string s = captured([](FILE* f) {
    Progress p("quantize", 4, f, /*interactive=*/true);
    p.advance(2, "token_embd.weight");
    p.finish("done");
  });
  EXPECT_NE(s.find("\rquantize ["), std::string::npos) << s;
  EXPECT_NE(s.find("100.0%"), std::string::npos) << s;
  EXPECT_NE(s.find("quantize: done ("), std::string::npos) << s;
}

}  // namespace
}  // namespace g4
