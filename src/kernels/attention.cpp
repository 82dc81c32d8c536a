// Attention: KV element types, run-time ISA selection, the threaded driver and
// the scalar reference kernel (one key at a time, the textbook online softmax).
#include "kernels/attention.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/attention_internal.h"
#include "kernels/kernels.h"

namespace g4::attn {

// ---- element types ---------------------------------------------------------------

bool kv_type_supported(GgmlType t) {
  return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16 || t == GgmlType::Q8_0;
}

const char* kv_type_choices() { return "f32|f16|bf16|q8_0"; }

std::string kv_type_name(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return "f32";
    case GgmlType::F16: return "f16";
    case GgmlType::BF16: return "bf16";
    case GgmlType::Q8_0: return "q8_0";
    default: return ggml_type_name(t);
  }
}

GgmlType parse_kv_type(std::string_view name) {
  std::string s(name);
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (s == "f32") return GgmlType::F32;
  if (s == "f16") return GgmlType::F16;
  if (s == "bf16") return GgmlType::BF16;
  if (s == "q8_0") return GgmlType::Q8_0;
  fail("unknown KV cache type '", name, "' (choose ", kv_type_choices(), ")");
}

size_t kv_head_bytes(GgmlType t, int64_t head_dim) {
  if (!kv_type_supported(t)) fail("KV cache type ", ggml_type_name(t), " is not supported (", kv_type_choices(), ")");
  if (head_dim < 1) fail("KV cache: head dim must be positive, got ", head_dim);
  if (t == GgmlType::Q8_0 && head_dim % kernels::kQK != 0)
    fail("a q8_0 KV cache needs head dims that are a multiple of 32 (its blocks run along head_dim); this model has ",
         head_dim, ": use --kv-type f16, bf16 or f32");
  return ggml_row_bytes(t, head_dim);
}

double kv_elem_bytes(GgmlType t) {
  const GgmlTypeInfo& i = ggml_type_info(t);
  return static_cast<double>(i.block_bytes) / static_cast<double>(i.block_size);
}

void store_row(GgmlType t, const float* x, uint8_t* dst, int64_t n) {
  switch (t) {
    case GgmlType::F32: std::memcpy(dst, x, static_cast<size_t>(n) * sizeof(float)); return;
    case GgmlType::F16: active().store_f16(x, dst, n); return;
    case GgmlType::BF16: active().store_bf16(x, dst, n); return;
    case GgmlType::Q8_0:
      if (n % kernels::kQK != 0) fail("q8_0 KV row of ", n, " elements is not a multiple of 32");
      // ggml's x86 run-time rounding (what llama.cpp writes into a q8_0 cache);
      // every kernel ISA produces the same blocks.
      kernels::active().quantize_act_for(GgmlType::Q8_0)(x, dst, n);
      return;
    default: fail("KV cache type ", ggml_type_name(t), " is not supported (", kv_type_choices(), ")");
  }
}

void load_row(GgmlType t, const uint8_t* src, float* dst, int64_t n) {
  switch (t) {
    case GgmlType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float)); return;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = fp16_to_f32(h);
      }
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
      }
      return;
    case GgmlType::Q8_0:
      for (int64_t b = 0; b < n / kernels::kQK; ++b) {
        kernels::BlockQ8_0 blk;
        std::memcpy(&blk, src + static_cast<size_t>(b) * sizeof blk, sizeof blk);
        const float d = fp16_to_f32(blk.d);
        for (int j = 0; j < kernels::kQK; ++j) dst[b * kernels::kQK + j] = d * static_cast<float>(blk.qs[j]);
      }
      return;
    default: fail("KV cache type ", ggml_type_name(t), " is not supported (", kv_type_choices(), ")");
  }
}

// ---- ISA selection ---------------------------------------------------------------

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "unknown";
}

bool isa_available(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2: return f.avx2 && f.fma && f.f16c;
    case Isa::Avx512: return f.avx512f && f.avx512bw && f.avx512vl && f.avx2 && f.fma && f.f16c;
  }
  return false;
}

const Table& table(Isa isa) {
  if (!isa_available(isa)) fail("this CPU does not support the ", isa_name(isa), " attention kernels");
  switch (isa) {
    case Isa::Scalar: return detail::scalar_table();
    case Isa::Avx2: return detail::avx2_table();
    case Isa::Avx512: return detail::avx512_table();
  }
  fail("unknown attention ISA ", static_cast<int>(isa));
}

namespace {
// The highest ISA a name allows: "scalar", "avx2", "avx512…"; -1 = no cap.
int cap_of(std::string_view v) {
  if (v == "scalar") return 0;
  if (v == "avx2") return 1;
  if (v.substr(0, 6) == "avx512") return 2;
  return -1;
}

Isa best_up_to(int cap) {
  if (cap < 0 || cap >= kIsaCount) cap = kIsaCount - 1;
  for (int i = cap; i > 0; --i)
    if (isa_available(static_cast<Isa>(i))) return static_cast<Isa>(i);
  return Isa::Scalar;
}
}  // namespace

Isa isa_for_kernel_isa(std::string_view kernel_isa_name) {
  return best_up_to(cap_of(kernel_isa_name));  // an unknown (newer) kernel ISA: the best we have
}

const Table& active() {
  static const Table& t = [] () -> const Table& {
    const char* env = std::getenv("G4_ISA");
    return table(best_up_to(env ? cap_of(env) : -1));
  }();
  return t;
}

Table::AttendFn Table::attend_for(GgmlType t) const {
  switch (t) {
    case GgmlType::F32: return attend_f32;
    case GgmlType::F16: return attend_f16;
    case GgmlType::BF16: return attend_bf16;
    case GgmlType::Q8_0: return attend_q8_0;
    default: fail("no attention kernel for KV type ", ggml_type_name(t), " (", kv_type_choices(), ")");
  }
}

// ---- scalar reference ------------------------------------------------------------

namespace detail {

void store_f16_scalar(const float* x, uint8_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float c = x[i];
    if (c > 65504.f) c = 65504.f;  // saturate (NaN passes through)
    if (c < -65504.f) c = -65504.f;
    const uint16_t h = f32_to_fp16(c);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

void store_bf16_scalar(const float* x, uint8_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = f32_to_bf16(x[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

namespace {

// Element d of a head row, exactly dequantized.
struct GetF32 {
  static float get(const uint8_t* r, int64_t d) {
    float f;
    std::memcpy(&f, r + 4 * d, 4);
    return f;
  }
};
struct GetF16 {
  static float get(const uint8_t* r, int64_t d) {
    uint16_t h;
    std::memcpy(&h, r + 2 * d, 2);
    return fp16_to_f32(h);
  }
};
struct GetBF16 {
  static float get(const uint8_t* r, int64_t d) {
    uint16_t h;
    std::memcpy(&h, r + 2 * d, 2);
    return bf16_to_f32(h);
  }
};
struct GetQ8_0 {
  static float get(const uint8_t* r, int64_t d) {
    const uint8_t* b = r + (d / kernels::kQK) * sizeof(kernels::BlockQ8_0);
    uint16_t h;
    std::memcpy(&h, b, 2);
    return fp16_to_f32(h) * static_cast<float>(static_cast<int8_t>(b[2 + d % kernels::kQK]));
  }
};

// Per row, key by key: s = q·k; when s raises the max, rescale l and o by
// exp(m_old − s); then p = exp(s − m), l += p, o += p·v. Finally o /= l.
template <class T>
void attend_scalar(const KvView& kv, const Rows& rs) {
  const int64_t D = kv.head_dim;
  for (int r = 0; r < rs.n; ++r) {
    int s = 0;
    while (rs.seg[s + 1] <= r) ++s;
    const int h = rs.kv_head0 + s;
    const float* q = rs.q[r];
    float* o = rs.o[r];
    std::fill(o, o + D, 0.f);
    float m = -std::numeric_limits<float>::infinity(), l = 0.f;
    for (int64_t pos = rs.lo[r]; pos <= rs.hi[r]; ++pos) {
      const uint8_t* kr = kv.k_head(pos, h);
      const uint8_t* vr = kv.v_head(pos, h);
      float s = 0.f;
      for (int64_t d = 0; d < D; ++d) s += q[d] * T::get(kr, d);
      if (s > m) {
        const float a = std::exp(m - s);
        l *= a;
        for (int64_t d = 0; d < D; ++d) o[d] *= a;
        m = s;
      }
      const float p = std::exp(s - m);
      l += p;
      for (int64_t d = 0; d < D; ++d) o[d] += p * T::get(vr, d);
    }
    const float inv = l > 0.f ? 1.f / l : 0.f;
    for (int64_t d = 0; d < D; ++d) o[d] *= inv;
  }
}

}  // namespace

const Table& scalar_table() {
  static const Table t = [] {
    Table x;
    x.isa = Isa::Scalar;
    x.attend_f32 = attend_scalar<GetF32>;
    x.attend_f16 = attend_scalar<GetF16>;
    x.attend_bf16 = attend_scalar<GetBF16>;
    x.attend_q8_0 = attend_scalar<GetQ8_0>;
    x.store_f16 = store_f16_scalar;
    x.store_bf16 = store_bf16_scalar;
    return x;
  }();
  return t;
}

}  // namespace detail

// ---- driver ----------------------------------------------------------------------

Workspace::Workspace(int n_threads, int max_rows) : n_threads_(n_threads), max_rows_(max_rows) {
  if (n_threads < 1 || max_rows < 1) fail("attention workspace: need at least one thread and one row");
  threads_.resize(static_cast<size_t>(n_threads));
  const size_t R = static_cast<size_t>(max_rows);
  for (Thread& t : threads_) {
    t.seg.assign(R + 1, 0);
    t.q.assign(R, nullptr);
    t.o.assign(R, nullptr);
    t.lo.assign(R, 0);
    t.hi.assign(R, 0);
    t.m.assign(R, 0.f);
    t.l.assign(R, 0.f);
    t.alpha.assign(R, 0.f);
    t.scores.assign(R * kMaxTile, 0.f);
  }
}

uint64_t Workspace::bytes() const {
  uint64_t b = 0;
  for (const Thread& t : threads_)
    b += t.seg.capacity() * sizeof(int) + t.q.capacity() * sizeof(float*) + t.o.capacity() * sizeof(float*) +
         (t.lo.capacity() + t.hi.capacity()) * sizeof(int64_t) +
         (t.m.capacity() + t.l.capacity() + t.alpha.capacity() + t.scores.capacity()) * sizeof(float);
  return b;
}

namespace {
// Queries per task for a group of G heads: about kTargetRows rows in all.
int64_t queries_per_block(int G) { return std::max<int64_t>(1, kTargetRows / G); }
}  // namespace

int max_task_rows(int n_heads, int n_kv_heads) {
  if (n_kv_heads < 1 || n_heads % n_kv_heads != 0)
    fail("attention: ", n_heads, " query heads cannot be grouped over ", n_kv_heads, " KV heads");
  const int G = n_heads / n_kv_heads;
  return static_cast<int>(queries_per_block(G)) * G;
}

void attend(const KvView& kv, const Batch& b, Workspace& ws, ThreadPool* pool, const Table& t) {
  if (b.n_tok <= 0) return;
  if (kv.n_kv_heads < 1 || b.n_heads % kv.n_kv_heads != 0)
    fail("attention: ", b.n_heads, " query heads cannot be grouped over ", kv.n_kv_heads, " KV heads");
  if (kv.head_bytes != kv_head_bytes(kv.type, kv.head_dim) ||
      kv.row_bytes != kv.head_bytes * static_cast<size_t>(kv.n_kv_heads))
    fail("attention: KV view row sizes do not match its type and shape");
  const Table::AttendFn fn = t.attend_for(kv.type);
  const int64_t D = kv.head_dim;
  const int64_t first = first_visible(b.window, b.p0), last = b.p0 + b.n_tok - 1;
  // Never attend a stale slot: every position the batch reads must be the one
  // its slot holds (checked here, once, so the kernels can index slots freely).
  for (int64_t pos = first; pos <= last; ++pos)
    if (!kv.holds(pos))
      fail("internal: the KV cache does not hold position ", pos, " (needed by the queries at ", b.p0, "..", last,
           ")");

  const int G = b.n_heads / kv.n_kv_heads;
  const int64_t Hkv = kv.n_kv_heads;
  const int64_t bq = std::min(queries_per_block(G), b.n_tok);
  const int64_t n_qb = (b.n_tok + bq - 1) / bq;
  const int n_threads = pool ? pool->size() : 1;
  // KV heads per task: as many as fit kTargetRows (several only when a block
  // has few rows per head, i.e. decode), as long as there are tasks for all
  // threads. Rows are independent, so the split only moves work around.
  int64_t hb = std::min<int64_t>(Hkv, std::max<int64_t>(1, kTargetRows / (bq * G)));
  while (hb > 1 && (Hkv + hb - 1) / hb * n_qb < n_threads) --hb;
  const int64_t n_hg = (Hkv + hb - 1) / hb;
  // Still fewer tasks than threads (few KV heads, decode): split the query
  // heads of each group too.
  const int64_t base = n_hg * n_qb;
  int64_t n_sub = base < n_threads ? std::min<int64_t>(G, (n_threads + base - 1) / base) : 1;
  const int64_t gs = (G + n_sub - 1) / n_sub;
  n_sub = (G + gs - 1) / gs;
  const int64_t n_tasks = base * n_sub;
  if (ws.n_threads() < n_threads || ws.max_rows() < hb * bq * gs)
    fail("internal: attention workspace for ", ws.n_threads(), " threads × ", ws.max_rows(), " rows, need ", n_threads,
         " × ", hb * bq * gs);

  auto body = [&](int64_t tb, int64_t te, int tid) {
    Workspace::Thread& w = ws.thread(tid);
    for (int64_t task = tb; task < te; ++task) {
      const int64_t h0 = (task / (n_qb * n_sub)) * hb, h1 = std::min(h0 + hb, Hkv);
      const int64_t rem = task % (n_qb * n_sub);
      const int64_t t0 = (rem / n_sub) * bq, t1 = std::min(t0 + bq, b.n_tok);
      const int64_t g0 = (rem % n_sub) * gs, g1 = std::min<int64_t>(g0 + gs, G);
      int n = 0;
      for (int64_t h = h0; h < h1; ++h) {
        w.seg[static_cast<size_t>(h - h0)] = n;
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t pos = b.p0 + t;
          for (int64_t g = g0; g < g1; ++g) {
            const int64_t head = h * G + g;
            w.q[static_cast<size_t>(n)] = b.q + t * b.q_stride + head * D;
            w.o[static_cast<size_t>(n)] = b.out + t * b.out_stride + head * D;
            w.lo[static_cast<size_t>(n)] = first_visible(b.window, pos);
            w.hi[static_cast<size_t>(n)] = pos;
            ++n;
          }
        }
      }
      w.seg[static_cast<size_t>(h1 - h0)] = n;
      Rows rows;
      rows.n = n;
      rows.n_seg = static_cast<int>(h1 - h0);
      rows.kv_head0 = static_cast<int>(h0);
      rows.seg = w.seg.data();
      rows.q = w.q.data();
      rows.o = w.o.data();
      rows.lo = w.lo.data();
      rows.hi = w.hi.data();
      rows.k_lo = first_visible(b.window, b.p0 + t0);
      rows.k_hi = b.p0 + t1 - 1;
      rows.m = w.m.data();
      rows.l = w.l.data();
      rows.alpha = w.alpha.data();
      rows.scores = w.scores.data();
      fn(kv, rows);
    }
  };
  // ≈ flops: two passes (q·k, p·v) of 2·D per visible (row, key).
  const double keys = static_cast<double>(last - first + 1);
  const double work = static_cast<double>(b.n_tok) * b.n_heads * keys * static_cast<double>(D) * 4.0;
  if (pool && n_threads > 1 && n_tasks > 1 && work >= 65536.0)
    pool->parallel_for(n_tasks, body);
  else
    body(0, n_tasks, 0);
}

}  // namespace g4::attn
