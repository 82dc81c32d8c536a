// Per-layer K/V cache of the text decoder (spec §2.4.1, §2.4.4, §2.6).
//
// * Full-attention layers that own K/V: n_ctx slots, slot = position. The
//   storage is reserved address space (core/reserved_memory.h), not allocated
//   memory: resident memory grows with the positions actually written, so a
//   cache opened at the model's maximum context (128K/256K) costs nothing
//   until it is used.
// * Sliding layers that own K/V: a ring of window + max_batch − 1 slots,
//   slot = position mod capacity. Memory depends on the window and the largest
//   chunk, never on the context length; with max_batch = 1 (decode) it is
//   exactly `window` slots. The slack lets one chunk of up to max_batch tokens
//   be written before anybody attends, with every key the chunk's queries (and
//   the KV-shared layers reading this cache afterwards) still in place.
// * KV-shared layers: nothing; they read the cache of their kv_source.
//
// K is stored after k_norm + RoPE, V after the scale-free norm, fp32 rows of
// n_kv_heads·head_dim ([head][lane]) — kElemBytes = 4 bytes per element, so
// with max_batch = 1 kv_bytes() == ModelConfig::kv_cache_bytes(n_ctx, 4).
// Each slot remembers the absolute position it holds (a tag of position + 1,
// 0 = empty, so untouched zero pages read as empty), so a stale or overwritten
// slot is never attended.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "core/reserved_memory.h"
#include "model/config.h"

namespace g4 {

// Positions a query at absolute position `pos` attends to: [first, pos].
// Sliding layers: pos − window < k ≤ pos. Full layers: 0 ≤ k ≤ pos.
inline int64_t first_visible_position(LayerType type, int64_t window, int64_t pos) {
  if (type == LayerType::Sliding) {
    const int64_t lo = pos - window + 1;
    return lo > 0 ? lo : 0;
  }
  return 0;
}

class KvCache {
 public:
  static constexpr int kElemBytes = sizeof(float);  // K/V element type: fp32
  static constexpr const char* kElemType = "f32";
  static constexpr int kTagBytes = sizeof(int64_t);  // per slot

  struct Layer {
    bool present = false;   // false on KV-shared layers
    bool ring = false;      // sliding: slot = pos mod capacity
    int64_t capacity = 0;   // slots
    int n_kv_heads = 0;
    int head_dim = 0;
    float* k = nullptr;     // capacity × row(), in `mem`
    float* v = nullptr;     // capacity × row(), in `mem`
    int64_t* tags = nullptr;  // per slot: absolute position + 1, 0 = empty
    ReservedMemory mem;     // K, then V, then the tags

    int64_t row() const { return int64_t(n_kv_heads) * head_dim; }
    int64_t slot(int64_t pos) const { return ring ? pos % capacity : pos; }
    bool holds(int64_t pos) const {
      return pos >= 0 && (ring || pos < capacity) && tags[slot(pos)] == pos + 1;
    }
    // Row pointers for `pos` (no check; see holds()).
    float* k_row(int64_t pos) { return k + slot(pos) * row(); }
    float* v_row(int64_t pos) { return v + slot(pos) * row(); }
    const float* k_row(int64_t pos) const { return k + slot(pos) * row(); }
    const float* v_row(int64_t pos) const { return v + slot(pos) * row(); }
    // Marks `pos` as stored in its slot (after k_row/v_row were written).
    void mark(int64_t pos) { tags[slot(pos)] = pos + 1; }
    // K+V bytes of `slots` slots (no tags).
    uint64_t kv_bytes(int64_t slots) const { return 2ull * uint64_t(slots) * uint64_t(row()) * kElemBytes; }
  };

  KvCache() = default;
  // Reserves (does not commit) every layer's storage. Throws g4::Error for
  // n_ctx < 1 or max_batch < 1, or when the address space cannot be reserved.
  KvCache(const ModelConfig& c, int64_t n_ctx, int64_t max_batch);

  int64_t n_ctx() const { return n_ctx_; }
  int64_t max_batch() const { return max_batch_; }
  // Positions [0, n_past) have been processed; the next token goes to n_past.
  int64_t n_past() const { return n_past_; }
  void set_n_past(int64_t n) { n_past_ = n; }
  // Forgets everything (n_past = 0, all slots empty) and gives the pages back.
  void clear();

  // The cache a layer writes (has_kv) — check present.
  Layer& layer(int l) { return layers_[static_cast<size_t>(l)]; }
  const Layer& layer(int l) const { return layers_[static_cast<size_t>(l)]; }
  // The cache a layer attends over: its own, or its kv_source's.
  const Layer& source(int l) const { return layers_[static_cast<size_t>(kv_source_[static_cast<size_t>(l)])]; }
  int kv_source(int l) const { return kv_source_[static_cast<size_t>(l)]; }
  int n_layers() const { return static_cast<int>(layers_.size()); }

  // ---- byte accounting ----
  // K+V bytes reserved for the whole context (sliding layers: their ring,
  // shared layers: 0). Equals ModelConfig::kv_cache_bytes(n_ctx, kElemBytes)
  // when max_batch is 1; each sliding ring holds max_batch − 1 more slots otherwise.
  uint64_t kv_bytes() const;
  // Everything reserved: kv_bytes() plus the position tags.
  uint64_t reserved_bytes() const;
  uint64_t bytes() const { return reserved_bytes(); }
  // K+V+tag bytes that `n_tokens` stored positions occupy (each layer holds
  // min(n_tokens, capacity) slots): what becomes resident, up to page rounding.
  uint64_t bytes_for_tokens(int64_t n_tokens) const;
  // Bytes of the cache resident in RAM now (measured, page granular).
  uint64_t resident_bytes() const;

 private:
  int64_t n_ctx_ = 0;
  int64_t max_batch_ = 0;
  int64_t n_past_ = 0;
  std::vector<Layer> layers_;
  std::vector<int> kv_source_;
};

}  // namespace g4
