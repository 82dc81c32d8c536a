#include "tools/checksum.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/dtype.h"

namespace g4 {
namespace {

constexpr uint64_t P1 = 0x9E3779B185EBCA87ULL;
constexpr uint64_t P2 = 0xC2B2AE3D27D4EB4FULL;
constexpr uint64_t P3 = 0x165667B19E3779F9ULL;
constexpr uint64_t P4 = 0x85EBCA77C2B2AE63ULL;
constexpr uint64_t P5 = 0x27D4EB2F165667C5ULL;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t read64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);  // little-endian hosts only (x86-64, arm64)
  return v;
}
inline uint32_t read32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t round1(uint64_t acc, uint64_t input) {
  acc += input * P2;
  acc = rotl(acc, 31);
  return acc * P1;
}
inline uint64_t merge_round(uint64_t acc, uint64_t val) {
  acc ^= round1(0, val);
  return acc * P1 + P4;
}

uint64_t finish_tail(uint64_t h, const unsigned char* p, size_t len) {
  while (len >= 8) {
    h ^= round1(0, read64(p));
    h = rotl(h, 27) * P1 + P4;
    p += 8;
    len -= 8;
  }
  if (len >= 4) {
    h ^= static_cast<uint64_t>(read32(p)) * P1;
    h = rotl(h, 23) * P2 + P3;
    p += 4;
    len -= 4;
  }
  while (len > 0) {
    h ^= (*p) * P5;
    h = rotl(h, 11) * P1;
    ++p;
    --len;
  }
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h;
}

}  // namespace

Xxh64::Xxh64(uint64_t seed) : seed_(seed) {
  v_[0] = seed + P1 + P2;
  v_[1] = seed + P2;
  v_[2] = seed;
  v_[3] = seed - P1;
}

void Xxh64::update(const void* data, size_t len) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  total_ += len;
  if (buf_len_ + len < 32) {
    std::memcpy(buf_ + buf_len_, p, len);
    buf_len_ += len;
    return;
  }
  if (buf_len_ > 0) {
    size_t fill = 32 - buf_len_;
    std::memcpy(buf_ + buf_len_, p, fill);
    for (int i = 0; i < 4; ++i) v_[i] = round1(v_[i], read64(buf_ + 8 * i));
    p += fill;
    len -= fill;
    buf_len_ = 0;
  }
  uint64_t v0 = v_[0], v1 = v_[1], v2 = v_[2], v3 = v_[3];
  while (len >= 32) {
    v0 = round1(v0, read64(p));
    v1 = round1(v1, read64(p + 8));
    v2 = round1(v2, read64(p + 16));
    v3 = round1(v3, read64(p + 24));
    p += 32;
    len -= 32;
  }
  v_[0] = v0, v_[1] = v1, v_[2] = v2, v_[3] = v3;
  if (len > 0) {
    std::memcpy(buf_, p, len);
    buf_len_ = len;
  }
}

uint64_t Xxh64::digest() const {
  uint64_t h;
  if (total_ >= 32) {
    h = rotl(v_[0], 1) + rotl(v_[1], 7) + rotl(v_[2], 12) + rotl(v_[3], 18);
    for (int i = 0; i < 4; ++i) h = merge_round(h, v_[i]);
  } else {
    h = seed_ + P5;
  }
  h += total_;
  return finish_tail(h, buf_, buf_len_);
}

uint64_t xxh64(const void* data, size_t len, uint64_t seed) {
  Xxh64 s(seed);
  s.update(data, len);
  return s.digest();
}

uint64_t tensor_checksum(const TensorView& t) { return xxh64(t.data, t.nbytes); }

uint64_t tensor_value_checksum(const TensorView& t) {
  if (t.type == GgmlType::F32) return xxh64(t.data, t.nbytes);
  if (t.type != GgmlType::F16 && t.type != GgmlType::BF16) return xxh64(t.data, t.nbytes);
  const size_t n = t.nbytes / 2;
  const auto* src = t.data;
  Xxh64 s;
  constexpr size_t kChunk = 1 << 14;
  std::vector<float> buf(kChunk);
  for (size_t i = 0; i < n; i += kChunk) {
    const size_t m = std::min(kChunk, n - i);
    for (size_t k = 0; k < m; ++k) {
      uint16_t h;
      std::memcpy(&h, src + 2 * (i + k), 2);
      buf[k] = t.type == GgmlType::F16 ? fp16_to_f32(h) : bf16_to_f32(h);
    }
    s.update(buf.data(), m * sizeof(float));
  }
  return s.digest();
}

std::string checksum_hex(uint64_t h) {
  static const char* kHex = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, h >>= 4) s[i] = kHex[h & 0xf];
  return s;
}

}  // namespace g4
