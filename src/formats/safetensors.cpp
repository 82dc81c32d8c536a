// safetensors reader/writer; see safetensors.h for the format and the dtype policy.
#include "formats/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace g4 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;  // 100 MB, as the reference library
constexpr size_t kMaxDims = 8;
constexpr int64_t kMaxDim = int64_t(1) << 40;

// Element size of every dtype of the format, in bits (sub-byte float types pack).
struct StDtype {
  const char* name;
  unsigned bits;
  std::optional<GgmlType> ggml;  // set for the dtypes the engine uses
};
const StDtype kDtypes[] = {
    {"F32", 32, GgmlType::F32},  {"F16", 16, GgmlType::F16},  {"BF16", 16, GgmlType::BF16},
    {"F64", 64, std::nullopt},   {"I64", 64, std::nullopt},   {"U64", 64, std::nullopt},
    {"I32", 32, std::nullopt},   {"U32", 32, std::nullopt},   {"I16", 16, std::nullopt},
    {"U16", 16, std::nullopt},   {"I8", 8, std::nullopt},     {"U8", 8, std::nullopt},
    {"BOOL", 8, std::nullopt},   {"F8_E4M3", 8, std::nullopt}, {"F8_E5M2", 8, std::nullopt},
    {"F8_E8M0", 8, std::nullopt}, {"F6_E2M3", 6, std::nullopt}, {"F6_E3M2", 6, std::nullopt},
    {"F4", 4, std::nullopt},
};

const StDtype* find_dtype(std::string_view s) {
  for (const auto& d : kDtypes)
    if (s == d.name) return &d;
  return nullptr;
}

const char* dtype_for_writer(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return "F32";
    case GgmlType::F16: return "F16";
    case GgmlType::BF16: return "BF16";
    case GgmlType::F64: return "F64";
    case GgmlType::I64: return "I64";
    case GgmlType::I32: return "I32";
    case GgmlType::I16: return "I16";
    case GgmlType::I8: return "I8";
    default: return nullptr;
  }
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Non-negative JSON integer, or nullopt.
std::optional<uint64_t> json_uint(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) {
    int64_t x = v.get<int64_t>();
    if (x >= 0) return static_cast<uint64_t>(x);
  }
  return std::nullopt;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

bool is_directory(const std::string& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}
bool exists(const std::string& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

[[noreturn]] void throw_unsupported(const std::string& file, const SafetensorsUnsupported& u) {
  fail("safetensors '", file, "': tensor '", u.name, "' has dtype ", u.dtype, " (shape ",
       shape_str(u.hf_shape), "), which this engine cannot use (supported: F32, F16, BF16)");
}

}  // namespace

// ---------------------------------------------------------------------------
// SafetensorsFile

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  return parse(MappedFile::open(path));
}

SafetensorsFile SafetensorsFile::parse(std::shared_ptr<MappedFile> file) {
  if (!file) fail("safetensors: null file");
  const std::string where = "safetensors '" + file->path() + "': ";
  const size_t size = file->size();
  if (size < 8) fail(where, "file is ", size, " bytes, too short for the 8-byte header length");
  const uint64_t n = read_u64_le(file->data());
  if (n > kMaxHeaderBytes)
    fail(where, "header length ", n, " bytes exceeds the 100 MB limit (corrupt or not a safetensors file)");
  if (n > size - 8)
    fail(where, "header length ", n, " bytes runs past the end of the ", size, "-byte file (truncated?)");
  if (n < 2) fail(where, "header of ", n, " bytes cannot hold a JSON object");

  // The reference writer pads the header with spaces; tolerate NUL padding too.
  const char* hb = reinterpret_cast<const char*>(file->data() + 8);
  size_t hn = static_cast<size_t>(n);
  while (hn > 0 && (hb[hn - 1] == ' ' || hb[hn - 1] == '\0')) --hn;
  json header;
  try {
    header = json::parse(hb, hb + hn);
  } catch (const json::exception& e) {
    fail(where, "header is not valid JSON: ", e.what());
  }
  if (!header.is_object()) fail(where, "header is not a JSON object");

  SafetensorsFile out;
  out.file_ = file;
  const uint8_t* data = file->data() + 8 + n;
  const uint64_t data_size = size - 8 - n;

  struct Range {
    uint64_t b, e;
    std::string name;
  };
  std::vector<Range> ranges;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (v.is_null()) continue;
      if (!v.is_object()) fail(where, "__metadata__ is not a JSON object");
      for (auto m = v.begin(); m != v.end(); ++m)
        out.metadata_[m.key()] = m.value().is_string() ? m.value().get<std::string>() : m.value().dump();
      continue;
    }
    if (name.empty()) fail(where, "a tensor has an empty name");
    if (!v.is_object()) fail(where, "entry for tensor '", name, "' is not a JSON object");
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto of = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) fail(where, "tensor '", name, "' has no string \"dtype\"");
    if (sh == v.end() || !sh->is_array()) fail(where, "tensor '", name, "' has no \"shape\" array");
    if (of == v.end() || !of->is_array() || of->size() != 2)
      fail(where, "tensor '", name, "' has no \"data_offsets\" pair [begin, end]");

    const std::string dtype = dt->get<std::string>();
    const StDtype* d = find_dtype(dtype);
    if (!d) fail(where, "tensor '", name, "' has unknown dtype '", dtype, "'");

    if (sh->size() > kMaxDims) fail(where, "tensor '", name, "' has ", sh->size(), " dimensions (at most ", kMaxDims, ")");
    std::vector<int64_t> shape;
    unsigned __int128 nelem = 1, nonzero = 1;  // nonzero: product of the non-zero dims
    for (const json& dim : *sh) {
      auto x = json_uint(dim);
      if (!x) fail(where, "tensor '", name, "' has a shape entry that is not a non-negative integer: ", dim.dump());
      if (*x > static_cast<uint64_t>(kMaxDim)) fail(where, "tensor '", name, "' has an absurd dimension ", *x);
      shape.push_back(static_cast<int64_t>(*x));
      nelem *= *x;
      if (*x) nonzero *= *x;
      if (nonzero > (static_cast<unsigned __int128>(1) << 62))
        fail(where, "tensor '", name, "' has an absurd shape ", shape_str(shape));
    }
    auto b = json_uint((*of)[0]);
    auto e = json_uint((*of)[1]);
    if (!b || !e) fail(where, "tensor '", name, "' has data_offsets that are not non-negative integers");
    if (*b > *e) fail(where, "tensor '", name, "' has data_offsets begin ", *b, " > end ", *e);
    if (*e > data_size)
      fail(where, "tensor '", name, "' data [", *b, ", ", *e, ") runs past the end of the ", data_size,
          "-byte data section (truncated file?)");
    const unsigned __int128 need_bits = nelem * d->bits;
    const uint64_t need = static_cast<uint64_t>((need_bits + 7) / 8);
    if (*e - *b != need)
      fail(where, "tensor '", name, "' of dtype ", dtype, " and shape ", shape_str(shape), " needs ", need,
          " bytes but data_offsets [", *b, ", ", *e, ") hold ", *e - *b);
    if (*e > *b) ranges.push_back({*b, *e, name});

    if (d->ggml) {
      TensorView t;
      t.name = name;
      t.type = *d->ggml;
      t.ne.assign(shape.rbegin(), shape.rend());
      t.data = data + *b;
      t.nbytes = static_cast<size_t>(need);
      t.file = file;
      out.index_[name] = out.tensors_.size();
      out.tensors_.push_back(std::move(t));
    } else {
      out.unsupported_.push_back({name, dtype, shape, static_cast<size_t>(need)});
    }
  }

  std::sort(ranges.begin(), ranges.end(), [](const Range& x, const Range& y) { return x.b < y.b; });
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].b < ranges[i - 1].e)
      fail(where, "tensors '", ranges[i - 1].name, "' [", ranges[i - 1].b, ", ", ranges[i - 1].e, ") and '", ranges[i].name,
          "' [", ranges[i].b, ", ", ranges[i].e, ") overlap");
  return out;
}

const TensorView* SafetensorsFile::tensor(std::string_view name) const {
  auto it = index_.find(name);
  if (it != index_.end()) return &tensors_[it->second];
  if (const SafetensorsUnsupported* u = find_unsupported(name)) throw_unsupported(path(), *u);
  return nullptr;
}

const SafetensorsUnsupported* SafetensorsFile::find_unsupported(std::string_view name) const {
  for (const auto& u : unsupported_)
    if (u.name == name) return &u;
  return nullptr;
}

// ---------------------------------------------------------------------------
// SafetensorsCheckpoint

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::string& path) {
  SafetensorsCheckpoint ck;
  std::string index_path, single_path;
  if (is_directory(path)) {
    const std::string idx = (fs::path(path) / "model.safetensors.index.json").string();
    const std::string one = (fs::path(path) / "model.safetensors").string();
    if (exists(idx)) index_path = idx;
    else if (exists(one)) single_path = one;
    else fail("folder '", path, "' has neither model.safetensors nor model.safetensors.index.json");
  } else if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0) {
    index_path = path;
  } else {
    single_path = path;
  }

  // Tensors by name -> file they came from, to reject duplicates across files.
  std::map<std::string, std::string, std::less<>> origin;
  auto add_shard = [&](SafetensorsFile f) {
    for (const TensorView& t : f.tensors()) {
      auto [it, fresh] = origin.emplace(t.name, f.path());
      if (!fresh) fail("tensor '", t.name, "' is in both '", it->second, "' and '", f.path(), "'");
      ck.index_[t.name] = ck.tensors_.size();
      ck.tensors_.push_back(t);
    }
    for (const auto& u : f.unsupported()) {
      auto [it, fresh] = origin.emplace(u.name, f.path());
      if (!fresh) fail("tensor '", u.name, "' is in both '", it->second, "' and '", f.path(), "'");
      ck.unsupported_.push_back(u);
    }
    ck.files_.push_back(f.path());
    ck.shards_.push_back(std::move(f));
  };

  if (!single_path.empty()) {
    add_shard(SafetensorsFile::open(single_path));
    return ck;
  }

  // Sharded: model.safetensors.index.json {"metadata": {...}, "weight_map": {name: shard}}.
  std::string text;
  {
    std::ifstream in(index_path, std::ios::binary);
    if (!in) fail("cannot open safetensors index '", index_path, "': ", std::strerror(errno));
    std::ostringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  json idx;
  try {
    idx = json::parse(text);
  } catch (const json::exception& e) {
    fail("safetensors index '", index_path, "' is not valid JSON: ", e.what());
  }
  if (!idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object())
    fail("safetensors index '", index_path, "' has no \"weight_map\" object");
  const fs::path dir = fs::path(index_path).parent_path();
  std::map<std::string, std::vector<std::string>> by_shard;  // shard file -> tensor names
  for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
    if (!it.value().is_string())
      fail("safetensors index '", index_path, "': shard of tensor '", it.key(), "' is not a string");
    const std::string shard = it.value().get<std::string>();
    const fs::path sp(shard);
    bool bad = shard.empty() || sp.is_absolute();
    for (const auto& part : sp)
      if (part == "..") bad = true;
    if (bad)
      fail("safetensors index '", index_path, "': shard name '", shard, "' of tensor '", it.key(),
           "' is not a file name inside the checkpoint folder");
    by_shard[shard].push_back(it.key());
  }
  if (by_shard.empty()) fail("safetensors index '", index_path, "' lists no tensors");
  for (const auto& [shard, names] : by_shard) {
    const std::string sp = (dir / shard).string();
    if (!exists(sp))
      fail("safetensors index '", index_path, "' lists shard '", shard, "' (for tensor '", names.front(),
           "'), which does not exist");
    SafetensorsFile f = SafetensorsFile::open(sp);
    std::set<std::string, std::less<>> held;
    for (const auto& t : f.tensors()) held.insert(t.name);
    for (const auto& u : f.unsupported()) held.insert(u.name);
    for (const std::string& name : names) {
      if (!held.count(name))
        fail("safetensors index '", index_path, "' places tensor '", name, "' in shard '", shard,
             "', but that shard does not contain it");
    }
    add_shard(std::move(f));
  }
  return ck;
}

const TensorView* SafetensorsCheckpoint::tensor(std::string_view name) const {
  auto it = index_.find(name);
  if (it != index_.end()) return &tensors_[it->second];
  if (const SafetensorsUnsupported* u = find_unsupported(name)) {
    for (const auto& s : shards_)
      if (s.find_unsupported(name)) throw_unsupported(s.path(), *u);
  }
  return nullptr;
}

const SafetensorsUnsupported* SafetensorsCheckpoint::find_unsupported(std::string_view name) const {
  for (const auto& u : unsupported_)
    if (u.name == name) return &u;
  return nullptr;
}

size_t SafetensorsCheckpoint::total_bytes() const {
  size_t n = 0;
  for (const auto& s : shards_) n += s.file_size();
  return n;
}

// ---------------------------------------------------------------------------
// SafetensorsWriter

struct SafetensorsWriter::Impl {
  struct Info {
    std::string name;
    const char* dtype;
    std::vector<int64_t> shape;
    uint64_t nbytes;
  };
  std::string path, tmp_path;
  std::vector<std::pair<std::string, std::string>> metadata{{"format", "pt"}};
  std::vector<Info> infos;
  std::set<std::string, std::less<>> names;
  std::FILE* fp = nullptr;
  enum class State { Declaring, Writing, Finished } state = State::Declaring;
  size_t next = 0;
  uint64_t partial = 0;  // bytes of infos[next] written so far by write_tensor_chunk()

  void write(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, fp) != n)
      fail("safetensors '", path, "': write failed: ", std::strerror(errno));
  }
};

SafetensorsWriter::SafetensorsWriter(std::string path) : impl_(std::make_unique<Impl>()) {
  impl_->path = std::move(path);
  impl_->tmp_path = impl_->path + ".tmp";
}

SafetensorsWriter::~SafetensorsWriter() {
  if (impl_ && impl_->state != Impl::State::Finished) {
    if (impl_->fp) std::fclose(impl_->fp);
    if (impl_->state == Impl::State::Writing) std::remove(impl_->tmp_path.c_str());
  }
}

void SafetensorsWriter::set_metadata(std::string key, std::string value) {
  if (impl_->state != Impl::State::Declaring) fail("safetensors '", impl_->path, "': metadata after write_header()");
  for (auto& kv : impl_->metadata)
    if (kv.first == key) {
      kv.second = std::move(value);
      return;
    }
  impl_->metadata.emplace_back(std::move(key), std::move(value));
}

void SafetensorsWriter::add_tensor_info(std::string name, GgmlType type, std::vector<int64_t> hf_shape) {
  Impl& m = *impl_;
  if (m.state != Impl::State::Declaring) fail("safetensors '", m.path, "': tensor '", name, "' declared after write_header()");
  if (name.empty() || name == "__metadata__") fail("safetensors '", m.path, "': invalid tensor name '", name, "'");
  if (!m.names.insert(name).second) fail("safetensors '", m.path, "': tensor '", name, "' declared twice");
  const char* dt = dtype_for_writer(type);
  if (!dt) fail("safetensors '", m.path, "': tensor '", name, "' has type ", ggml_type_name(type),
                ", which safetensors cannot store (F32, F16, BF16, F64, I8..I64)");
  if (hf_shape.size() > kMaxDims) fail("safetensors '", m.path, "': tensor '", name, "' has too many dimensions");
  uint64_t n = find_dtype(dt)->bits / 8;
  for (int64_t d : hf_shape) {
    if (d < 0 || d > kMaxDim) fail("safetensors '", m.path, "': tensor '", name, "' has invalid dimension ", d);
    if (d && n > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(d))
      fail("safetensors '", m.path, "': tensor '", name, "' is too large");
    n *= static_cast<uint64_t>(d);
  }
  m.infos.push_back({std::move(name), dt, std::move(hf_shape), n});
}

void SafetensorsWriter::write_header() {
  Impl& m = *impl_;
  if (m.state != Impl::State::Declaring) fail("safetensors '", m.path, "': write_header() called twice");
  nlohmann::ordered_json h;
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  for (const auto& [k, v] : m.metadata) meta[k] = v;
  h["__metadata__"] = meta;
  uint64_t off = 0;
  for (const auto& t : m.infos) {
    nlohmann::ordered_json e;
    e["dtype"] = t.dtype;
    e["shape"] = t.shape;
    e["data_offsets"] = {off, off + t.nbytes};
    h[t.name] = e;
    off += t.nbytes;
  }
  std::string text = h.dump();
  while (text.size() % 8) text.push_back(' ');
  m.fp = std::fopen(m.tmp_path.c_str(), "wb");
  if (!m.fp) fail("cannot create '", m.tmp_path, "': ", std::strerror(errno));
  m.state = Impl::State::Writing;
  uint8_t len[8];
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  m.write(len, 8);
  m.write(text.data(), text.size());
}

void SafetensorsWriter::write_tensor_data(std::string_view name, const void* data, size_t nbytes) {
  Impl& m = *impl_;
  if (m.state != Impl::State::Writing) fail("safetensors '", m.path, "': tensor data written outside write_header()..finish()");
  if (m.next >= m.infos.size()) fail("safetensors '", m.path, "': tensor '", name, "' was not declared");
  const auto& t = m.infos[m.next];
  if (m.partial > 0)
    fail("safetensors '", m.path, "': write_tensor_data('", name, "') while tensor '", t.name,
         "' is partly written (", m.partial, " of ", t.nbytes, " bytes by write_tensor_chunk)");
  if (t.name != name)
    fail("safetensors '", m.path, "': expected data of tensor '", t.name, "' next, got '", name, "'");
  if (t.nbytes != nbytes)
    fail("safetensors '", m.path, "': tensor '", t.name, "' needs ", t.nbytes, " bytes, got ", nbytes);
  if (nbytes > 0 && !data) fail("safetensors '", m.path, "': tensor '", t.name, "': null data");
  m.write(data, nbytes);
  ++m.next;
}

void SafetensorsWriter::write_tensor_chunk(std::string_view name, const void* data, size_t nbytes) {
  Impl& m = *impl_;
  if (m.state != Impl::State::Writing) fail("safetensors '", m.path, "': tensor data written outside write_header()..finish()");
  if (m.next >= m.infos.size()) fail("safetensors '", m.path, "': tensor '", name, "' was not declared");
  const auto& t = m.infos[m.next];
  if (t.name != name) {
    if (m.partial > 0)
      fail("safetensors '", m.path, "': data of tensor '", name, "' while tensor '", t.name, "' is incomplete (",
           m.partial, " of ", t.nbytes, " bytes written)");
    fail("safetensors '", m.path, "': expected data of tensor '", t.name, "' next, got '", name, "'");
  }
  if (nbytes > t.nbytes - m.partial)
    fail("safetensors '", m.path, "': tensor '", t.name, "' needs ", t.nbytes, " bytes; a chunk of ", nbytes,
         " after ", m.partial, " would exceed it");
  if (nbytes > 0 && !data) fail("safetensors '", m.path, "': tensor '", t.name, "': null data");
  m.write(data, nbytes);
  m.partial += nbytes;
  if (m.partial == t.nbytes) {
    ++m.next;
    m.partial = 0;
  }
}

void SafetensorsWriter::finish() {
  Impl& m = *impl_;
  if (m.state == Impl::State::Declaring) write_header();
  if (m.state != Impl::State::Writing) fail("safetensors '", m.path, "': finish() called twice");
  if (m.partial > 0)
    fail("safetensors '", m.path, "': finish() with tensor '", m.infos[m.next].name, "' incomplete (", m.partial,
         " of ", m.infos[m.next].nbytes, " bytes written)");
  if (m.next != m.infos.size())
    fail("safetensors '", m.path, "': finish() before the data of tensor '", m.infos[m.next].name, "'");
  const bool ok = std::fflush(m.fp) == 0;
  const int e1 = errno;
  const bool closed = std::fclose(m.fp) == 0;
  m.fp = nullptr;
  if (!ok || !closed) {
    std::remove(m.tmp_path.c_str());
    m.state = Impl::State::Finished;
    fail("safetensors '", m.path, "': write failed: ", std::strerror(ok ? errno : e1));
  }
  std::error_code ec;
  fs::rename(m.tmp_path, m.path, ec);
  m.state = Impl::State::Finished;
  if (ec) {
    std::remove(m.tmp_path.c_str());
    fail("cannot rename '", m.tmp_path, "' to '", m.path, "': ", ec.message());
  }
}

}  // namespace g4
