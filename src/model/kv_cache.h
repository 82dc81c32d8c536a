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
// K is stored after k_norm + RoPE, V after the scale-free norm, as rows of
// n_kv_heads·head_dim elements per slot ([head][lane]) in the cache's element
// type (kernels/attention.h: f32, f16 — the engine default —, bf16 or q8_0,
// whose 32-element blocks run along head_dim); the forward pass converts its
// fp32 rows on store() and the attention kernels read the type directly. With
// max_batch = 1, kv_bytes() == ModelConfig::kv_cache_bytes(n_ctx, elem_bytes()).
// Each slot remembers the absolute position it holds (a tag of position + 1,
// 0 = empty, so untouched zero pages read as empty), so a stale or overwritten
// slot is never attended.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/reserved_memory.h"
#include "kernels/attention.h"
#include "model/config.h"

namespace g4 {

// Positions a query at absolute position `pos` attends to: [first, pos].
// Sliding layers: pos − window < k ≤ pos. Full layers: 0 ≤ k ≤ pos.
inline int64_t first_visible_position(LayerType type, int64_t window, int64_t pos) {
  return type == LayerType::Sliding ? attn::first_visible(window, pos) : 0;
}

class KvCache {
 public:
  static constexpr int kTagBytes = sizeof(int64_t);  // per slot

  struct Layer {
    bool present = false;   // false on KV-shared layers
    bool ring = false;      // sliding: slot = pos mod capacity
    int64_t capacity = 0;   // slots
    int n_kv_heads = 0;
    int head_dim = 0;
    GgmlType type = GgmlType::F32;  // element type of K and V
    size_t head_bytes = 0;  // one head's row: attn::kv_head_bytes(type, head_dim)
    size_t row_bytes = 0;   // one slot: n_kv_heads × head_bytes
    uint8_t* k = nullptr;   // capacity × row_bytes, in `mem`
    uint8_t* v = nullptr;   // capacity × row_bytes, in `mem`
    int64_t* tags = nullptr;  // per slot: absolute position + 1, 0 = empty
    ReservedMemory mem;     // the tags (padded to 64 bytes), then K, then V

    int64_t row() const { return int64_t(n_kv_heads) * head_dim; }  // elements per slot
    int64_t slot(int64_t pos) const { return ring ? pos % capacity : pos; }
    bool holds(int64_t pos) const {
      return pos >= 0 && (ring || pos < capacity) && tags[slot(pos)] == pos + 1;
    }
    // Slot bytes for `pos` (no check; see holds()).
    uint8_t* k_row(int64_t pos) { return k + static_cast<size_t>(slot(pos)) * row_bytes; }
    uint8_t* v_row(int64_t pos) { return v + static_cast<size_t>(slot(pos)) * row_bytes; }
    const uint8_t* k_row(int64_t pos) const { return k + static_cast<size_t>(slot(pos)) * row_bytes; }
    const uint8_t* v_row(int64_t pos) const { return v + static_cast<size_t>(slot(pos)) * row_bytes; }
    // Stores position `pos`: row() fp32 values of K and of V, converted to
    // `type` (attn::store_row), then marks the slot. Overwrites whatever
    // position the slot held before.
    void store(int64_t pos, const float* k_f32, const float* v_f32);
    // Reads position `pos` back as fp32 (row() values each; tests, tools).
    void load(int64_t pos, float* k_f32, float* v_f32) const;
    // Marks `pos` as stored in its slot (after k_row/v_row were written).
    void mark(int64_t pos) { tags[slot(pos)] = pos + 1; }
    // K+V bytes of `slots` slots (no tags).
    uint64_t kv_bytes(int64_t slots) const { return 2ull * uint64_t(slots) * row_bytes; }
    // Bytes reserved for the tags of `slots` slots: kTagBytes each, rounded up to 64.
    static uint64_t tag_region_bytes(int64_t slots) { return (uint64_t(slots) * kTagBytes + 63) / 64 * 64; }
    // The layer as the attention kernels read it.
    attn::KvView view() const;
  };

  KvCache() = default;
  // Reserves (does not commit) every layer's storage, elements of `type`
  // (attn::kv_type_supported). Throws g4::Error for n_ctx < 1 or max_batch < 1,
  // an unsupported type (or q8_0 with a head dim that is not a multiple of 32),
  // or when the address space cannot be reserved.
  KvCache(const ModelConfig& c, int64_t n_ctx, int64_t max_batch, GgmlType type = attn::kDefaultKvType);

  GgmlType type() const { return type_; }
  // Bytes per K or V element (4, 2, 2, 34/32 for q8_0), for ModelConfig::kv_cache_bytes.
  double elem_bytes() const { return attn::kv_elem_bytes(type_); }

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
  // shared layers: 0). Equals ModelConfig::kv_cache_bytes(n_ctx, elem_bytes())
  // when max_batch is 1; each sliding ring holds max_batch − 1 more slots otherwise.
  uint64_t kv_bytes() const;
  // Everything reserved: kv_bytes() plus each layer's tag region (tag_region_bytes).
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
  GgmlType type_ = attn::kDefaultKvType;
  std::vector<Layer> layers_;
  std::vector<int> kv_source_;
};

}  // namespace g4
