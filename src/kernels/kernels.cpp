// Run-time ISA selection, weight views, threaded drivers and the scalar
// reference quantizers.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "kernels/kernels_internal.h"
#include "kernels/quants.h"

namespace g4::kernels {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "unknown";
}

bool isa_available(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2: {
      const CpuFeatures& f = cpu_features();
      return f.avx2 && f.fma && f.f16c;
    }
    case Isa::Avx512: {
      const CpuFeatures& f = cpu_features();
      return f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
    }
  }
  return false;
}

const KernelTable& table(Isa isa) {
  if (!isa_available(isa)) fail("this CPU does not support the ", isa_name(isa), " kernels");
  switch (isa) {
    case Isa::Scalar: return detail::scalar_table();
    case Isa::Avx2: return detail::avx2_table();
    case Isa::Avx512: return detail::avx512_table();
  }
  fail("unknown kernel ISA ", static_cast<int>(isa));
}

namespace {
// llama.cpp's CPU GELU reads an fp16 lookup table: y = fp16(gelu(fp16(x))) for
// -10 < x < 10, 0 below, x above. With G4_GELU=ggml ours does the same. This is
// a test-only switch: the reference (transformers) uses the exact function, and
// so does the engine by default; the oracle tests against llama.cpp use it to
// separate llama.cpp's GELU rounding from differences in our quantized matmuls.
float gelu_ggml_one(float x) {
  if (x <= -10.0f) return 0.0f;
  if (x >= 10.0f) return x;
  float h = fp16_to_f32(f32_to_fp16(x)), g = 0.0f;
  detail::scalar_table().gelu_tanh(&h, &g, 1);
  return fp16_to_f32(f32_to_fp16(g));
}
void gelu_ggml(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu_ggml_one(x[i]);
}
void geglu_ggml(const float* g, const float* u, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i], ui = u[i];
    y[i] = gi >= 10.0f ? gi * ui : gelu_ggml_one(gi) * ui;
  }
}

const KernelTable& with_env_overrides(const KernelTable& base) {
  const char* env = std::getenv("G4_GELU");
  if (!env || std::string_view(env) != "ggml") return base;
  static KernelTable t = base;
  t.gelu_tanh = gelu_ggml;
  t.geglu = geglu_ggml;
  return t;
}

const KernelTable& pick_isa() {
  int cap = kIsaCount - 1;
  if (const char* env = std::getenv("G4_ISA")) {
    std::string_view v(env);
    for (int i = 0; i < kIsaCount; ++i)
      if (v == isa_name(static_cast<Isa>(i))) cap = i;
  }
  for (int i = cap; i > 0; --i)
    if (isa_available(static_cast<Isa>(i))) return table(static_cast<Isa>(i));
  return detail::scalar_table();
}

const KernelTable& pick_active() { return with_env_overrides(pick_isa()); }
}  // namespace

const KernelTable& active() {
  static const KernelTable& t = pick_active();
  return t;
}

bool type_supported(GgmlType t) {
  const auto id = static_cast<uint32_t>(t);
  return id < KernelTable::kTypeSlots && detail::scalar_table().types[id].matmul != nullptr;
}

std::string supported_types() {
  std::string out;
  for (uint32_t id = 0; id < KernelTable::kTypeSlots; ++id) {
    if (!detail::scalar_table().types[id].matmul) continue;
    if (!out.empty()) out += ", ";
    out += ggml_type_name(id);
  }
  return out;
}

GgmlType activation_type(GgmlType t) {
  switch (t) {
    case GgmlType::Q8_0:
    case GgmlType::Q4_0:
    case GgmlType::Q5_0:
    case GgmlType::MXFP4: return GgmlType::Q8_0;
    case GgmlType::Q4_1:
    case GgmlType::Q5_1: return GgmlType::Q8_1;
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
    case GgmlType::Q8_K: return GgmlType::Q8_K;
    default: return GgmlType::F32;
  }
}

namespace {
const KernelTable::TypeKernels* slot(const KernelTable& k, GgmlType t) {
  const auto id = static_cast<uint32_t>(t);
  return id < KernelTable::kTypeSlots ? &k.types[id] : nullptr;
}
}  // namespace

KernelTable::MatmulFn KernelTable::matmul_for(GgmlType t) const {
  const TypeKernels* s = slot(*this, t);
  if (!s || !s->matmul) fail("no matmul kernel for type ", ggml_type_name(t), " (supported: ", supported_types(), ")");
  return s->matmul;
}

KernelTable::DequantFn KernelTable::dequant_for(GgmlType t) const {
  const TypeKernels* s = slot(*this, t);
  if (!s || !s->dequant)
    fail("no dequantize kernel for type ", ggml_type_name(t), " (supported: ", supported_types(), ")");
  return s->dequant;
}

KernelTable::MatmulQFn KernelTable::matmul_q_for(GgmlType t) const {
  const TypeKernels* s = slot(*this, t);
  if (!s || !s->matmul_q)
    fail("no quantized-activation matmul kernel for type ", ggml_type_name(t), " (activations ",
         ggml_type_name(activation_type(t)), ")");
  return s->matmul_q;
}

KernelTable::QuantizeActFn KernelTable::quantize_act_for(GgmlType act) const {
  const auto id = static_cast<uint32_t>(act);
  if (id >= kTypeSlots || !quantize_act[id]) fail("no activation quantizer for type ", ggml_type_name(act));
  return quantize_act[id];
}

// ---- WeightMatrix -----------------------------------------------------------

WeightMatrix WeightMatrix::raw(GgmlType type, const void* data, int64_t n_in, int64_t n_out) {
  if (!type_supported(type))
    fail("weight type ", ggml_type_name(type), " is not computable (supported: ", supported_types(), ")");
  WeightMatrix w;
  w.type = type;
  w.data = static_cast<const uint8_t*>(data);
  w.n_in = n_in;
  w.n_out = n_out;
  w.row_bytes = ggml_row_bytes(type, n_in);
  return w;
}

WeightMatrix WeightMatrix::of(const TensorView& t) {
  if (!type_supported(t.type))
    fail("tensor ", t.name, " has type ", ggml_type_name(t.type), ", which the CPU kernels cannot compute with (supported: ",
         supported_types(), ")");
  if (t.ne.empty() || t.ne.size() > 2 || (t.ne.size() == 2 && t.ne[1] < 1))
    fail("tensor ", t.name, " with shape ", t.shape_string(), " is not a 2-D matrix");
  const int64_t n_out = t.ne.size() == 2 ? t.ne[1] : 1;
  WeightMatrix w = raw(t.type, t.data, t.ne[0], n_out);
  if (w.row_bytes * static_cast<size_t>(n_out) > t.nbytes)
    fail("tensor ", t.name, ": data (", t.nbytes, " bytes) is smaller than its shape ", t.shape_string(), " needs");
  return w;
}

WeightMatrix WeightMatrix::expert(const TensorView& t, int64_t e) {
  if (!type_supported(t.type))
    fail("tensor ", t.name, " has type ", ggml_type_name(t.type), ", which the CPU kernels cannot compute with (supported: ",
         supported_types(), ")");
  if (t.ne.size() != 3) fail("tensor ", t.name, " with shape ", t.shape_string(), " is not a 3-D expert tensor");
  if (e < 0 || e >= t.ne[2]) fail("expert ", e, " out of range for tensor ", t.name, " ", t.shape_string());
  const size_t rb = ggml_row_bytes(t.type, t.ne[0]);
  const size_t slice = rb * static_cast<size_t>(t.ne[1]);
  if (slice * static_cast<size_t>(t.ne[2]) > t.nbytes)
    fail("tensor ", t.name, ": data (", t.nbytes, " bytes) is smaller than its shape ", t.shape_string(), " needs");
  return raw(t.type, t.data + slice * static_cast<size_t>(e), t.ne[0], t.ne[1]);
}

// ---- drivers ----------------------------------------------------------------

namespace {
bool default_act_q8() {
  static const bool q8 = [] {
    const char* env = std::getenv("G4_MATMUL_ACT");
    return !(env && std::string_view(env) == "f32");
  }();
  return q8;
}
}  // namespace

bool quantizes_activations(GgmlType t, ActMode mode) {
  if (activation_type(t) == GgmlType::F32) return false;
  switch (mode) {
    case ActMode::F32: return false;
    case ActMode::Q8: return true;
    case ActMode::Default: break;
  }
  return default_act_q8();
}

namespace {

// Task layout of one matmul: tasks of kRowsPerTask rows (a multiple of every
// kernel's row tile: 16-row AVX-512 panels, 2/4/8-row tiles elsewhere) times
// token blocks of kTokBlock·j tokens (a multiple of the 8-token tile). Every
// output element is computed the same way whatever the task it falls in, so
// the split only affects speed, never results.
struct TaskGrid {
  int64_t row_tasks = 1, tok_blocks = 1, tok_per_block = 1;
  int64_t count() const { return row_tasks * tok_blocks; }
};

constexpr int64_t kRowsPerTask = 16;
constexpr int64_t kTokBlock = 8;

TaskGrid task_grid(int64_t n_out, int64_t n_tok, int threads) {
  TaskGrid g;
  g.row_tasks = (n_out + kRowsPerTask - 1) / kRowsPerTask;
  g.tok_per_block = n_tok;
  // Rows alone give every thread several tasks for all but the narrowest
  // matrices (the MoE router, small experts with many threads); only then
  // split the tokens too (each block re-packs its weight rows).
  const int64_t want = 4 * static_cast<int64_t>(threads);
  if (threads > 1 && g.row_tasks < want && n_tok >= 2 * kTokBlock) {
    const int64_t max_blocks = (n_tok + kTokBlock - 1) / kTokBlock;
    const int64_t blocks = std::min(max_blocks, (want + g.row_tasks - 1) / g.row_tasks);
    g.tok_per_block = ((n_tok + blocks - 1) / blocks + kTokBlock - 1) / kTokBlock * kTokBlock;
    g.tok_blocks = (n_tok + g.tok_per_block - 1) / g.tok_per_block;
  }
  return g;
}

// Runs body(r0, r1, t0, t1) over the grid, on the pool when it is worth it.
// Tasks are claimed dynamically (ThreadPool::parallel_for_dynamic): a busy or
// sleeping worker never holds up the caller, and results do not depend on who
// ran what.
template <class Body>
void run_grid(const TaskGrid& g, int64_t n_out, int64_t n_tok, bool threaded, ThreadPool* pool, Body&& body) {
  auto run = [&](int64_t b, int64_t e, int) {
    // Consecutive tasks of a chunk share a token block when possible, so a
    // chunk streams contiguous weight rows.
    for (int64_t task = b; task < e;) {
      const int64_t tb = task / g.row_tasks, rt = task % g.row_tasks;
      const int64_t rt_end = std::min(g.row_tasks, rt + (e - task));
      const int64_t t0 = tb * g.tok_per_block, t1 = std::min(n_tok, t0 + g.tok_per_block);
      body(rt * kRowsPerTask, std::min(rt_end * kRowsPerTask, n_out), t0, t1);
      task += rt_end - rt;
    }
  };
  // About 4 chunks per thread for balance; with many tokens at least 4 tasks
  // (64 rows) per chunk while that still leaves 2 chunks per thread, since a
  // kernel call re-prepares the activations (AVX-512 int8: block sums).
  const int64_t T = pool ? pool->size() : 1;
  int64_t grain = std::max<int64_t>(1, g.count() / (4 * T));
  if (n_tok > 4) grain = std::max(grain, std::min<int64_t>(4, g.count() / (2 * T)));
  if (threaded) pool->parallel_for_dynamic(g.count(), grain, run);
  else run(0, g.count(), 0);
}

}  // namespace

void matmul(const WeightMatrix& w, const float* x, int64_t n_tok, int64_t x_stride, float* y, int64_t y_stride,
            ThreadPool* pool, const KernelTable* k, ActMode mode) {
  if (!k) k = &active();
  if (n_tok <= 0 || w.n_out <= 0) return;
  const int threads = pool ? pool->size() : 1;
  const TaskGrid grid = task_grid(w.n_out, n_tok, threads);
  // Small products are not worth waking the workers for.
  const double work = static_cast<double>(w.n_out) * static_cast<double>(w.n_in) * static_cast<double>(n_tok);
  const bool threaded = threads > 1 && grid.count() > 1 && work >= 32768.0;

  if (quantizes_activations(w.type, mode)) {
    const GgmlType act = activation_type(w.type);
    const int64_t act_block = ggml_type_info(act).block_size;
    if (w.n_in % act_block != 0)
      fail(ggml_type_name(w.type), " matmul with n_in = ", w.n_in, " (not a multiple of ", act_block, ")");
    const size_t xq_row = ggml_row_bytes(act, w.n_in);
    // Quantize every activation row once (calling thread's scratch; the
    // workers only read it, and the parallel loops return after they are done).
    uint8_t* xq = detail::scratch_act(xq_row * static_cast<size_t>(n_tok));
    const KernelTable::QuantizeActFn qf = k->quantize_act_for(act);
    auto quant = [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t) qf(x + t * x_stride, xq + static_cast<size_t>(t) * xq_row, w.n_in);
    };
    if (threads > 1 && n_tok > 1 && static_cast<double>(n_tok) * static_cast<double>(w.n_in) >= 65536.0)
      pool->parallel_for_dynamic(n_tok, 0, quant);
    else
      quant(0, n_tok, 0);
    const KernelTable::MatmulQFn fn = k->matmul_q_for(w.type);
    run_grid(grid, w.n_out, n_tok, threaded, pool, [&](int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
      fn(w, r0, r1, xq + static_cast<size_t>(t0) * xq_row, t1 - t0, xq_row, y + t0 * y_stride, y_stride);
    });
    return;
  }

  const KernelTable::MatmulFn fn = k->matmul_for(w.type);
  run_grid(grid, w.n_out, n_tok, threaded, pool, [&](int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
    fn(w, r0, r1, x + t0 * x_stride, t1 - t0, x_stride, y + t0 * y_stride, y_stride);
  });
}

void dequantize_row(const WeightMatrix& w, int64_t r, float* dst, const KernelTable* k) {
  if (!k) k = &active();
  if (r < 0 || r >= w.n_out) fail("row ", r, " out of range [0, ", w.n_out, ")");
  k->dequant_for(w.type)(w.row(r), dst, w.n_in);
}

void get_rows(const WeightMatrix& t, const int32_t* ids, int64_t n, float* dst, int64_t dst_stride,
              const KernelTable* k) {
  if (!k) k = &active();
  const KernelTable::DequantFn fn = k->dequant_for(t.type);
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= t.n_out) fail("token id ", ids[i], " out of range [0, ", t.n_out, ")");
    fn(t.row(ids[i]), dst + i * dst_stride, t.n_in);
  }
}

// ---- quantizers -------------------------------------------------------------

namespace {
// The two Q8_0 roundings ggml uses: llama-quantize's reference for weights
// (q = round-half-away(x · (1/d))) and its x86 run-time kernels for activations
// (q = round-half-even(x · (127/amax))). Both store d = amax/127 as fp16.
enum class Q8Rounding { WeightReference, X86Runtime };
void quantize_q8_0_blocks(const float* x, BlockQ8_0* dst, int64_t n, Q8Rounding mode) {
  if (n % kQK != 0) fail("Q8_0 row of ", n, " elements is not a multiple of 32");
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    float amax = 0.f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.f;
    const uint16_t dh = f32_to_fp16(d);
    std::memcpy(&dst[b].d, &dh, 2);
    if (mode == Q8Rounding::WeightReference) {
      const float id = d != 0.f ? 1.0f / d : 0.f;
      for (int j = 0; j < kQK; ++j) dst[b].qs[j] = static_cast<int8_t>(std::lround(xb[j] * id));
    } else {
      const float id = amax != 0.f ? 127.f / amax : 0.f;
      // std::nearbyint rounds half to even in the default rounding mode.
      for (int j = 0; j < kQK; ++j) dst[b].qs[j] = static_cast<int8_t>(std::nearbyint(xb[j] * id));
    }
  }
}
}  // namespace

void quantize_row_q8_0(const float* x, BlockQ8_0* dst, int64_t n) {
  quantize_q8_0_blocks(x, dst, n, Q8Rounding::WeightReference);
}

void quantize_act_q8_0(const float* x, BlockQ8_0* dst, int64_t n) {
  quantize_q8_0_blocks(x, dst, n, Q8Rounding::X86Runtime);
}

void quantize_row_q4_0(const float* x, BlockQ4_0* dst, int64_t n) {
  if (n % kQK != 0) fail("Q4_0 row of ", n, " elements is not a multiple of 32");
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    float amax = 0.f, mx = 0.f;
    for (int j = 0; j < kQK; ++j) {
      if (std::fabs(xb[j]) > amax) {
        amax = std::fabs(xb[j]);
        mx = xb[j];
      }
    }
    const float d = mx / -8.f;
    const float id = d != 0.f ? 1.0f / d : 0.f;
    const uint16_t dh = f32_to_fp16(d);
    std::memcpy(&dst[b].d, &dh, 2);
    for (int j = 0; j < kQK / 2; ++j) {
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(xb[j] * id + 8.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(xb[j + kQK / 2] * id + 8.5f)));
      dst[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

namespace {
void quantize_f32(const float* x, void* dst, int64_t n) { std::memcpy(dst, x, static_cast<size_t>(n) * sizeof(float)); }
void quantize_f16(const float* x, void* dst, int64_t n) {
  auto* o = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = f32_to_fp16(x[i]);
    std::memcpy(o + 2 * i, &h, 2);
  }
}
void quantize_bf16(const float* x, void* dst, int64_t n) {
  auto* o = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = f32_to_bf16(x[i]);
    std::memcpy(o + 2 * i, &h, 2);
  }
}
void quantize_q8_0_weights(const float* x, void* dst, int64_t n) {
  quantize_row_q8_0(x, static_cast<BlockQ8_0*>(dst), n);
}
void quantize_q4_0_weights(const float* x, void* dst, int64_t n) {
  quantize_row_q4_0(x, static_cast<BlockQ4_0*>(dst), n);
}
// The quants.h types: fn(x, (Block*)dst, n) behind the untyped signature.
template <class Block, void (*Fn)(const float*, Block*, int64_t)>
void quantize_weights(const float* x, void* dst, int64_t n) {
  Fn(x, static_cast<Block*>(dst), n);
}
}  // namespace

QuantizeRowFn weight_quantizer(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return quantize_f32;
    case GgmlType::F16: return quantize_f16;
    case GgmlType::BF16: return quantize_bf16;
    case GgmlType::Q8_0: return quantize_q8_0_weights;
    case GgmlType::Q4_0: return quantize_q4_0_weights;
    case GgmlType::Q4_1: return quantize_weights<BlockQ4_1, quantize_row_q4_1>;
    case GgmlType::Q5_0: return quantize_weights<BlockQ5_0, quantize_row_q5_0>;
    case GgmlType::Q5_1: return quantize_weights<BlockQ5_1, quantize_row_q5_1>;
    case GgmlType::MXFP4: return quantize_weights<BlockMxfp4, quantize_row_mxfp4>;
    case GgmlType::Q4_K: return quantize_weights<BlockQ4_K, quantize_row_q4_K>;
    case GgmlType::Q5_K: return quantize_weights<BlockQ5_K, quantize_row_q5_K>;
    case GgmlType::Q6_K: return quantize_weights<BlockQ6_K, quantize_row_q6_K>;
    case GgmlType::Q8_K: return quantize_weights<BlockQ8_K, quantize_row_q8_K>;
    default: return nullptr;
  }
}

std::string quantizable_types() {
  std::string out;
  for (uint32_t id = 0; id < KernelTable::kTypeSlots; ++id) {
    if (!ggml_type_info(id) || !weight_quantizer(static_cast<GgmlType>(id))) continue;
    if (!out.empty()) out += ", ";
    out += ggml_type_name(id);
  }
  return out;
}

size_t quantize_rows(GgmlType type, const float* x, void* dst, int64_t n_rows, int64_t n_per_row) {
  const QuantizeRowFn q = weight_quantizer(type);
  if (!q) fail("cannot quantize to ", ggml_type_name(type), " (supported: ", quantizable_types(), ")");
  const size_t rb = ggml_row_bytes(type, n_per_row);
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t r = 0; r < n_rows; ++r) q(x + r * n_per_row, out + static_cast<size_t>(r) * rb, n_per_row);
  return rb * static_cast<size_t>(n_rows);
}

void rope_cos_sin(int64_t pos, const float* freqs, int64_t half, float* cos_out, float* sin_out) {
  const float p = static_cast<float>(pos);
  for (int64_t i = 0; i < half; ++i) {
    const float angle = p * freqs[i];
    if (angle == 0.f) {
      cos_out[i] = 1.f;
      sin_out[i] = 0.f;
    } else {
      cos_out[i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sin_out[i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
}

}  // namespace g4::kernels
