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
    const size_t n = static_cast<size_t>(l.capacity * l.row());
    l.k.assign(n, 0.f);
    l.v.assign(n, 0.f);
    l.slot_pos.assign(static_cast<size_t>(l.capacity), -1);
  }
}

void KvCache::clear() {
  n_past_ = 0;
  for (Layer& l : layers_) std::fill(l.slot_pos.begin(), l.slot_pos.end(), -1);
}

uint64_t KvCache::bytes() const {
  uint64_t b = 0;
  for (const Layer& l : layers_)
    b += (l.k.size() + l.v.size()) * sizeof(float) + l.slot_pos.size() * sizeof(int64_t);
  return b;
}

}  // namespace g4
