// Fused attention over the KV cache (spec gemma4-text.md §2.4.1): one pass
// over the keys with an online softmax (flash-attention style: running max m,
// running sum l, fp32 accumulator o rescaled by exp(m_old − m_new) whenever the
// max grows), so no score vector over the context is ever materialised.
//
//   o[t][h] = Σ_k softmax_k(q[t][h] · K[k][h/G]) · V[k][h/G]      (scale 1.0, no softcap)
//   over the positions k that query t (at absolute position p0 + t) sees:
//   sliding (window W > 0): p − W < k ≤ p;  full (W = 0): 0 ≤ k ≤ p.
//
// GQA: the G = n_heads / n_kv_heads query heads of a KV head (contiguous:
// head h reads KV head h / G) are processed together, so a K/V row is read
// once per tile for all of them (and for all queries of a prefill block).
// Work is split into tasks of (KV heads × block of queries × group of query
// heads) on the model's ThreadPool: prefill tasks take one KV head and a block
// of queries; decode tasks take several consecutive KV heads (so a task
// streams whole stretches of each slot) or, with fewer KV heads than threads,
// part of a KV head's query heads. Each query row's result depends only on
// the row itself (its q, its visible key range and the cache), never on the
// block, task or thread it lands in: key tiles sit on a grid of absolute
// positions, masked keys contribute exact zeros, and every row's reductions
// run in a fixed order. Hence decode and prefill give bit-identical outputs,
// for any thread count, on every ISA (ISAs differ from each other in rounding).
//
// Cache layout (model/kv_cache.h): per layer, slots of n_kv_heads·head_dim
// elements ([slot][kv head][lane]) in one of the element types below; slot =
// pos (linear) or pos mod capacity (ring); tags[slot] = pos + 1 of the position
// stored there. attend() first checks that every position the batch reads is
// held by its slot (a stale or overwritten slot is never attended: it fails
// with g4::Error instead); the kernels then index slots directly.
//
// Element types: F32; F16 (IEEE half, round to nearest even, saturated at
// ±65504 so an overflow cannot become inf — 0·inf = NaN would leak into rows
// that mask the key); BF16 (round to nearest even); Q8_0 (ggml block_q8_0:
// blocks of 32 lanes along head_dim, fp16 scale d = amax/127 and 32 int8,
// quantized the way ggml's x86 backend quantizes at run time, which is what
// llama.cpp stores in a q8_0 cache; head_dim must be a multiple of 32). The
// kernels dequantize exactly (int8 × fp16 scale is exact in fp32) and compute
// q·k, the softmax and Σ p·v in fp32 with fp32 queries.
//
// Structure as in kernels.h: attention.cpp holds the scalar reference (one key
// at a time), the driver and the dispatch; attention_avx2.cpp and
// attention_avx512.cpp the SIMD tables, every function with its own target
// attribute (no -march flags), chosen at run time; env G4_ISA=scalar|avx2|avx512
// caps the choice (any value starting with "avx512" caps at avx512).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace g4 {
class ThreadPool;
}

namespace g4::attn {

// ---- KV cache element types ---------------------------------------------------

constexpr GgmlType kDefaultKvType = GgmlType::F16;
bool kv_type_supported(GgmlType t);                // F32, F16, BF16, Q8_0
const char* kv_type_choices();                     // "f32|f16|bf16|q8_0"
std::string kv_type_name(GgmlType t);              // "f32", "f16", "bf16", "q8_0"
GgmlType parse_kv_type(std::string_view name);     // case-insensitive; throws g4::Error
// Bytes of one head's K (or V) row of head_dim elements; throws g4::Error for
// an unsupported type or a Q8_0 head_dim that is not a multiple of 32.
size_t kv_head_bytes(GgmlType t, int64_t head_dim);
// Average bytes per element: 4, 2, 2, 34/32 (Q8_0).
double kv_elem_bytes(GgmlType t);

// n fp32 values to `t` (Q8_0: n is a multiple of 32, consecutive blocks).
// Every ISA writes the same bytes as the scalar definition (NaN payloads aside).
void store_row(GgmlType t, const float* x, uint8_t* dst, int64_t n);
// n elements of `t` back to fp32 (exact).
void load_row(GgmlType t, const uint8_t* src, float* dst, int64_t n);

// ---- the cache as the kernels see it -------------------------------------------

struct KvView {
  GgmlType type = GgmlType::F32;
  int n_kv_heads = 0;
  int head_dim = 0;
  const uint8_t* k = nullptr;  // capacity slots of row_bytes
  const uint8_t* v = nullptr;
  size_t row_bytes = 0;   // one slot: n_kv_heads × head_bytes
  size_t head_bytes = 0;  // one head's row: kv_head_bytes(type, head_dim)
  int64_t capacity = 0;
  bool ring = false;
  const int64_t* tags = nullptr;  // per slot: position + 1, 0 = empty

  int64_t slot(int64_t pos) const { return ring ? pos % capacity : pos; }
  bool holds(int64_t pos) const { return pos >= 0 && (ring || pos < capacity) && tags[slot(pos)] == pos + 1; }
  const uint8_t* k_head(int64_t pos, int h) const {
    return k + static_cast<size_t>(slot(pos)) * row_bytes + static_cast<size_t>(h) * head_bytes;
  }
  const uint8_t* v_head(int64_t pos, int h) const {
    return v + static_cast<size_t>(slot(pos)) * row_bytes + static_cast<size_t>(h) * head_bytes;
  }
};

// A chunk of queries: n_tok tokens at positions p0 … p0+n_tok−1, n_heads heads
// of head_dim (= the cache's) lanes. Token t, head h: q + t·q_stride + h·head_dim
// (fp32, after q_norm and RoPE); the output goes to the same place in `out`.
struct Batch {
  const float* q = nullptr;
  int64_t q_stride = 0;
  float* out = nullptr;
  int64_t out_stride = 0;
  int n_heads = 0;
  int64_t n_tok = 0;
  int64_t p0 = 0;
  int64_t window = 0;  // > 0: sliding window of that many keys (incl. the query's own); 0: full causal
};

// The first position a query at `pos` sees.
inline int64_t first_visible(int64_t window, int64_t pos) {
  if (window <= 0) return 0;
  const int64_t lo = pos - window + 1;
  return lo > 0 ? lo : 0;
}

// ---- kernel interface -------------------------------------------------------------

// Largest key tile any ISA uses (per-thread score scratch is rows × this).
constexpr int kMaxTile = 64;

// One task for a kernel: n query rows in n_seg segments; the rows
// [seg[s], seg[s+1]) read KV head kv_head0 + s (consecutive heads, so a task
// over several heads reads each slot's K/V bytes for them in one stretch).
// Row r reads q[r] (head_dim fp32) and sees the positions [lo[r], hi[r]];
// k_lo/k_hi is the union of those ranges (the only positions the kernel
// touches). The kernel writes the normalised attention output to o[r]
// (head_dim fp32; o may not alias q). m, l, alpha (n floats) and scores
// (n × kMaxTile) are scratch.
struct Rows {
  int n = 0;
  int n_seg = 0;
  int kv_head0 = 0;
  const int* seg = nullptr;  // n_seg + 1 entries, seg[0] = 0, seg[n_seg] = n
  const float* const* q = nullptr;
  float* const* o = nullptr;
  const int64_t* lo = nullptr;
  const int64_t* hi = nullptr;
  int64_t k_lo = 0, k_hi = -1;
  float* m = nullptr;
  float* l = nullptr;
  float* alpha = nullptr;
  float* scores = nullptr;
};

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };
constexpr int kIsaCount = 3;
const char* isa_name(Isa isa);  // "scalar", "avx2", "avx512"
bool isa_available(Isa isa);
// The attention ISA that goes with a matmul kernel ISA name (kernels::isa_name),
// so forcing the kernels' ISA (ModelParams::isa, tests) forces this one too:
// "scalar" → Scalar, "avx2" → the best up to Avx2, "avx512…" → the best up to
// Avx512; any other (newer) name → the best available.
Isa isa_for_kernel_isa(std::string_view kernel_isa_name);

struct Table {
  Isa isa = Isa::Scalar;
  using AttendFn = void (*)(const KvView& kv, const Rows& rows);
  using StoreFn = void (*)(const float* x, uint8_t* dst, int64_t n);
  AttendFn attend_f32, attend_f16, attend_bf16, attend_q8_0;
  StoreFn store_f16, store_bf16;  // F32: memcpy; Q8_0: kernels' run-time quantizer

  AttendFn attend_for(GgmlType t) const;  // throws for unsupported types
};

const Table& table(Isa isa);  // throws g4::Error when the CPU lacks it
const Table& active();        // best available, capped by env G4_ISA

// ---- driver -----------------------------------------------------------------------

// Per-thread scratch of the driver and the kernels, sized once (no allocation
// per call): row pointers, ranges, m/l/alpha and the score tile.
class Workspace {
 public:
  Workspace() = default;
  Workspace(int n_threads, int max_rows);
  int max_rows() const { return max_rows_; }
  int n_threads() const { return n_threads_; }
  uint64_t bytes() const;

  struct Thread {
    std::vector<int> seg;  // max_rows + 1
    std::vector<const float*> q;
    std::vector<float*> o;
    std::vector<int64_t> lo, hi;
    std::vector<float> m, l, alpha, scores;
  };
  Thread& thread(int tid) { return threads_[static_cast<size_t>(tid)]; }

 private:
  int n_threads_ = 0;
  int max_rows_ = 0;
  std::vector<Thread> threads_;
};

// Rows per task the driver aims for (queries of a prefill block × the G query
// heads of a KV head × KV heads per task); a group larger than this is one
// task's row set on its own.
constexpr int kTargetRows = 32;
// Rows one task can hold for this head layout: size Workspace with it.
int max_task_rows(int n_heads, int n_kv_heads);

// Attention of a whole batch over one layer's cache. Throws g4::Error (before
// computing anything) for inconsistent shapes or when a position the batch
// needs is not held by the cache. pool == nullptr: single-threaded; else the
// workspace needs pool->size() threads.
void attend(const KvView& kv, const Batch& b, Workspace& ws, ThreadPool* pool, const Table& t);

}  // namespace g4::attn
