#include "model/kv_cache.h"

#include <algorithm>

#include "core/error.h"

namespace g4 {

KvCache::KvCache(const ModelConfig& c, int64_t n_ctx, int64_t max_batch) : n_ctx_(n_ctx), max_batch_(max_batch) {
  if (n_ctx < 1) fail("context length must be at least 1, got ", n_ctx);
  if (max_batch < 1) fail("batch size must be at least 1, got ", max_batch);
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
    if (lc.type == LayerType::Sliding) {
      const int64_t need = int64_t(c.sliding_window) + max_batch - 1;
      l.ring = need < n_ctx;  // a ring only pays off when shorter than the context
      l.capacity = std::min(need, n_ctx);
    } else {
      l.capacity = n_ctx;
    }
    // One reservation per layer: K, V (fp32 rows), then the slot tags. The
    // kernel commits pages on first write; tags of untouched slots read 0 (empty).
    const uint64_t kv = l.kv_bytes(l.capacity);
    const uint64_t tags = uint64_t(l.capacity) * kTagBytes;
    try {
      l.mem = ReservedMemory(static_cast<size_t>(kv + tags));
    } catch (const Error& e) {
      fail("KV cache of layer ", i, " (", l.capacity, " positions × ", l.row(), " × 2 ", kElemType,
           ") does not fit: ", e.what());
    }
    auto* base = static_cast<uint8_t*>(l.mem.data());
    l.k = reinterpret_cast<float*>(base);
    l.v = reinterpret_cast<float*>(base + kv / 2);
    l.tags = reinterpret_cast<int64_t*>(base + kv);
  }
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
    b += l.kv_bytes(slots) + uint64_t(slots) * kTagBytes;
  }
  return b;
}

uint64_t KvCache::resident_bytes() const {
  uint64_t b = 0;
  for (const Layer& l : layers_) b += l.mem.resident_bytes();
  return b;
}

}  // namespace g4
