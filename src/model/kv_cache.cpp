#include "model/kv_cache.h"

#include <algorithm>

#include "core/error.h"

namespace g4 {

KvCache::KvCache(const ModelConfig& c, int64_t n_ctx, int64_t max_batch, GgmlType type)
    : n_ctx_(n_ctx), max_batch_(max_batch), type_(type) {
  if (n_ctx < 1) fail("context length must be at least 1, got ", n_ctx);
  if (max_batch < 1) fail("batch size must be at least 1, got ", max_batch);
  if (!attn::kv_type_supported(type))
    fail("KV cache type ", ggml_type_name(type), " is not supported (", attn::kv_type_choices(), ")");
  if (c.layers.size() != static_cast<size_t>(c.n_layers)) fail("KV cache: model config was not derived");
  layers_.resize(c.layers.size());
  kv_source_.resize(c.layers.size());
  for (size_t i = 0; i < c.layers.size(); ++i) {
    const LayerConfig& lc = c.layers[i];
    kv_source_[i] = lc.has_kv ? static_cast<int>(i) : lc.kv_source;
    if (kv_source_[i] < 0 || kv_source_[i] >= c.n_layers || !c.layers[static_cast<size_t>(kv_source_[i])].has_kv)
      fail("KV cache: layer ", i, " reads K/V of layer ", kv_source_[i], ", which computes none");
    Layer& l = layers_[i];
    if (!lc.has_kv) continue;
    l.present = true;
    l.n_kv_heads = lc.n_kv_heads;
    l.head_dim = lc.head_dim;
    l.type = type;
    l.head_bytes = attn::kv_head_bytes(type, lc.head_dim);  // throws for q8_0 with head_dim % 32 != 0
    l.row_bytes = l.head_bytes * static_cast<size_t>(l.n_kv_heads);
    if (lc.type == LayerType::Sliding) {
      const int64_t need = int64_t(c.sliding_window) + max_batch - 1;
      l.ring = need < n_ctx;  // a ring only pays off when shorter than the context
      l.capacity = std::min(need, n_ctx);
    } else {
      l.capacity = n_ctx;
    }
    // One reservation per layer: the slot tags, then K, then V. The tags come
    // first so that they stay 8-byte aligned whatever the row size (q8_0 rows
    // are multiples of 34 bytes), padded to 64 bytes so that K starts on a
    // cache line. The kernel commits pages on first write; tags of untouched
    // slots read 0 (empty).
    const uint64_t kv = l.kv_bytes(l.capacity);
    const uint64_t tags = Layer::tag_region_bytes(l.capacity);
    try {
      l.mem = ReservedMemory(static_cast<size_t>(tags + kv));
    } catch (const Error& e) {
      fail("KV cache of layer ", i, " (", l.capacity, " positions × ", l.row(), " × 2 ", attn::kv_type_name(type),
           ") does not fit: ", e.what());
    }
    auto* base = static_cast<uint8_t*>(l.mem.data());
    l.tags = reinterpret_cast<int64_t*>(base);
    l.k = base + tags;
    l.v = base + tags + kv / 2;
  }
}

void KvCache::Layer::store(int64_t pos, const float* k_f32, const float* v_f32) {
  attn::store_row(type, k_f32, k_row(pos), row());
  attn::store_row(type, v_f32, v_row(pos), row());
  mark(pos);
}

void KvCache::Layer::load(int64_t pos, float* k_f32, float* v_f32) const {
  attn::load_row(type, k_row(pos), k_f32, row());
  attn::load_row(type, v_row(pos), v_f32, row());
}

attn::KvView KvCache::Layer::view() const {
  attn::KvView v;
  v.type = type;
  v.n_kv_heads = n_kv_heads;
  v.head_dim = head_dim;
  v.k = k;
  v.v = this->v;
  v.row_bytes = row_bytes;
  v.head_bytes = head_bytes;
  v.capacity = capacity;
  v.ring = ring;
  v.tags = tags;
  return v;
}

void KvCache::clear() {
  n_past_ = 0;
  for (Layer& l : layers_) l.mem.discard();
}

uint64_t KvCache::kv_bytes() const {
  uint64_t b = 0;
  for (const Layer& l : layers_)
    if (l.present) b += l.kv_bytes(l.capacity);
  return b;
}

uint64_t KvCache::reserved_bytes() const {
  uint64_t b = 0;
  for (const Layer& l : layers_) b += l.mem.size();
  return b;
}

uint64_t KvCache::bytes_for_tokens(int64_t n_tokens) const {
  uint64_t b = 0;
  if (n_tokens <= 0) return 0;
  for (const Layer& l : layers_) {
    if (!l.present) continue;
    const int64_t slots = std::min(n_tokens, l.capacity);
    b += l.kv_bytes(slots) + Layer::tag_region_bytes(slots);
  }
  return b;
}

uint64_t KvCache::resident_bytes() const {
  uint64_t b = 0;
  for (const Layer& l : layers_) b += l.mem.resident_bytes();
  return b;
}

}  // namespace g4
