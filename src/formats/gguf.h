// GGUF (llama.cpp model file) reader and writer.
//
// Layout (little endian): magic "GGUF", u32 version (2 or 3), u64 tensor_count,
// u64 kv_count, kv_count × (string key, u32 value_type, value), tensor_count ×
// (string name, u32 n_dims, n_dims × u64 ne, u32 ggml_type, u64 offset), padding
// to `general.alignment` (default 32), then the tensor data; offsets are
// relative to that data section. Strings are u64 length + bytes.
//
// The reader maps the file and never copies tensor data: TensorView::data points
// into the mapping. TensorView::ne has the on-disk number of dims (1..4; a
// 0-dim scalar, which ggml accepts, reads as {1}); every dim must be positive.
// Tensors may appear in any order but must be aligned, inside the file and
// disjoint. Metadata arrays may nest up to 8 levels (at most 2^24 array
// elements per file). Every structural problem (bad magic, truncation, data
// past the end, overlapping or misaligned tensors, absurd counts or dims) is a
// g4::Error naming the file and the offending item.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"

namespace g4 {

enum class GgufType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* gguf_type_name(GgufType t);

// One metadata value. Scalars keep their exact on-disk type; arrays keep their
// element type and may nest (array of arrays).
struct GgufValue {
  GgufType type = GgufType::UINT32;
  std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<GgufValue>> v;
  GgufType elem_type = GgufType::UINT32;  // for ARRAY

  // Constructors for the writer and tests.
  static GgufValue u8(uint8_t x);
  static GgufValue i8(int8_t x);
  static GgufValue u16(uint16_t x);
  static GgufValue i16(int16_t x);
  static GgufValue u32(uint32_t x);
  static GgufValue i32(int32_t x);
  static GgufValue u64(uint64_t x);
  static GgufValue i64(int64_t x);
  static GgufValue f32(float x);
  static GgufValue f64(double x);
  static GgufValue boolean(bool x);
  static GgufValue str(std::string x);
  static GgufValue array(GgufType elem_type, std::vector<GgufValue> items);
  static GgufValue strings(const std::vector<std::string>& xs);
  static GgufValue i32s(const std::vector<int32_t>& xs);
  static GgufValue u32s(const std::vector<uint32_t>& xs);
  static GgufValue f32s(const std::vector<float>& xs);
  static GgufValue bools(const std::vector<bool>& xs);

  bool is_array() const { return type == GgufType::ARRAY; }
  bool is_integer() const;  // any signed/unsigned int type
  bool is_float() const;    // FLOAT32/FLOAT64
  // Converting accessors: throw g4::Error (with `what` in the message) on a
  // type that cannot represent the request (e.g. negative to unsigned, string to int).
  uint64_t as_u64(std::string_view what = "value") const;
  int64_t as_i64(std::string_view what = "value") const;
  double as_f64(std::string_view what = "value") const;  // ints convert too
  bool as_bool(std::string_view what = "value") const;
  const std::string& as_string(std::string_view what = "value") const;
  const std::vector<GgufValue>& as_array(std::string_view what = "value") const;
  std::string to_display_string(size_t max_items = 8) const;  // for `gemma4 info`
};

class GgufFile {
 public:
  static GgufFile open(const std::string& path);
  // Parse an in-memory image (fuzzing, tests). The buffer must outlive the object.
  static GgufFile parse(std::shared_ptr<MappedFile> file);

  uint32_t version() const { return version_; }
  const std::string& path() const { return file_->path(); }
  size_t file_size() const { return file_->size(); }
  size_t alignment() const { return alignment_; }
  size_t data_offset() const { return data_offset_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }
  // Typed getters: throw g4::Error "GGUF 'path': missing key 'k'" or a type error.
  const GgufValue& get(std::string_view key) const;
  uint64_t get_u64(std::string_view key) const;
  int64_t get_i64(std::string_view key) const;
  double get_f64(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  std::string get_string(std::string_view key) const;
  std::vector<std::string> get_strings(std::string_view key) const;
  std::vector<int64_t> get_i64s(std::string_view key) const;
  std::vector<double> get_f64s(std::string_view key) const;

  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* tensor(std::string_view name) const;  // nullptr if absent
  std::shared_ptr<const MappedFile> file() const { return file_; }

 private:
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  size_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// Streaming writer: declare metadata and tensor infos, then write_header(),
// then each tensor's bytes in declaration order, then finish(). Memory use is
// independent of model size (convert/quantize of 30B models go through here).
// Writes version 3. Tensor data is laid out in declaration order, each tensor
// padded to the alignment (the constructor's, or a UINT32 "general.alignment"
// set as metadata; a non-default constructor alignment is recorded as that
// key). A regular file is written under a temporary name in the same folder
// and renamed by finish(), so a writer destroyed before finish() (e.g. by an
// exception) leaves nothing behind. Misuse (wrong order or size, set() after
// write_header(), inconsistent values) and I/O failures throw g4::Error.
class GgufWriter {
 public:
  explicit GgufWriter(std::string path, size_t alignment = 32);
  ~GgufWriter();
  void set(std::string key, GgufValue value);  // replaces an existing key
  void add_tensor_info(std::string name, GgmlType type, std::vector<int64_t> ne);
  void write_header();
  // Bytes must equal the declared size for the next tensor in order.
  void write_tensor_data(std::string_view name, const void* data, size_t nbytes);
  // The next tensor's bytes in pieces: call repeatedly (same name) until the
  // declared size is reached; the tensor is complete (and padded) with the
  // chunk that reaches it. A chunk past the declared size, another tensor's
  // data (or write_tensor_data) while one is partly written, and finish()
  // with a partly written tensor throw g4::Error. Lets converters and the
  // test-model generator stream multi-GB tensors through a small buffer.
  void write_tensor_chunk(std::string_view name, const void* data, size_t nbytes);
  void finish();  // pads, flushes, closes; throws on I/O errors

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace g4
