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

namespace g4::kernels {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
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
  }
  return false;
}

const KernelTable& table(Isa isa) {
  if (!isa_available(isa)) fail("this CPU does not support the ", isa_name(isa), " kernels");
  switch (isa) {
    case Isa::Scalar: return detail::scalar_table();
    case Isa::Avx2: return detail::avx2_table();
  }
  fail("unknown kernel ISA ", static_cast<int>(isa));
}

namespace {
const KernelTable& pick_active() {
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
}  // namespace

const KernelTable& active() {
  static const KernelTable& t = pick_active();
  return t;
}

bool type_supported(GgmlType t) {
  switch (t) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::Q8_0:
    case GgmlType::Q4_0: return true;
    default: return false;
  }
}

const char* supported_types() { return "F32, F16, BF16, Q8_0, Q4_0"; }

KernelTable::MatmulFn KernelTable::matmul_for(GgmlType t) const {
  switch (t) {
    case GgmlType::F32: return matmul_f32;
    case GgmlType::F16: return matmul_f16;
    case GgmlType::BF16: return matmul_bf16;
    case GgmlType::Q8_0: return matmul_q8_0;
    case GgmlType::Q4_0: return matmul_q4_0;
    default: fail("no matmul kernel for type ", ggml_type_name(t), " (supported: ", supported_types(), ")");
  }
}

KernelTable::DequantFn KernelTable::dequant_for(GgmlType t) const {
  switch (t) {
    case GgmlType::F32: return dequant_f32;
    case GgmlType::F16: return dequant_f16;
    case GgmlType::BF16: return dequant_bf16;
    case GgmlType::Q8_0: return dequant_q8_0;
    case GgmlType::Q4_0: return dequant_q4_0;
    default: fail("no dequantize kernel for type ", ggml_type_name(t), " (supported: ", supported_types(), ")");
  }
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

void matmul(const WeightMatrix& w, const float* x, int64_t n_tok, int64_t x_stride, float* y, int64_t y_stride,
            ThreadPool* pool, const KernelTable* k) {
  if (!k) k = &active();
  if (n_tok <= 0 || w.n_out <= 0) return;
  const KernelTable::MatmulFn fn = k->matmul_for(w.type);
  // Tasks of 16 rows (multiples of the 4-row micro-kernel); results do not
  // depend on the split, only the load balance does.
  constexpr int64_t kRowsPerTask = 16;
  const int64_t n_tasks = (w.n_out + kRowsPerTask - 1) / kRowsPerTask;
  auto body = [&](int64_t b, int64_t e, int) {
    fn(w, b * kRowsPerTask, std::min(e * kRowsPerTask, w.n_out), x, n_tok, x_stride, y, y_stride);
  };
  // Small products are not worth waking the workers for.
  const double work = static_cast<double>(w.n_out) * static_cast<double>(w.n_in) * static_cast<double>(n_tok);
  if (pool && pool->size() > 1 && n_tasks > 1 && work >= 32768.0)
    pool->parallel_for(n_tasks, body);
  else
    body(0, n_tasks, 0);
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

void quantize_row_q8_0(const float* x, BlockQ8_0* dst, int64_t n) {
  if (n % kQK != 0) fail("Q8_0 row of ", n, " elements is not a multiple of 32");
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    float amax = 0.f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.f;
    const float id = d != 0.f ? 1.0f / d : 0.f;
    const uint16_t dh = f32_to_fp16(d);
    std::memcpy(&dst[b].d, &dh, 2);
    for (int j = 0; j < kQK; ++j) dst[b].qs[j] = static_cast<int8_t>(std::lround(xb[j] * id));
  }
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

size_t quantize_rows(GgmlType type, const float* x, void* dst, int64_t n_rows, int64_t n_per_row) {
  const size_t rb = ggml_row_bytes(type, n_per_row);
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * n_per_row;
    uint8_t* o = out + static_cast<size_t>(r) * rb;
    switch (type) {
      case GgmlType::F32: std::memcpy(o, xr, rb); break;
      case GgmlType::F16:
        for (int64_t i = 0; i < n_per_row; ++i) {
          const uint16_t h = f32_to_fp16(xr[i]);
          std::memcpy(o + 2 * i, &h, 2);
        }
        break;
      case GgmlType::BF16:
        for (int64_t i = 0; i < n_per_row; ++i) {
          const uint16_t h = f32_to_bf16(xr[i]);
          std::memcpy(o + 2 * i, &h, 2);
        }
        break;
      case GgmlType::Q8_0: quantize_row_q8_0(xr, reinterpret_cast<BlockQ8_0*>(o), n_per_row); break;
      case GgmlType::Q4_0: quantize_row_q4_0(xr, reinterpret_cast<BlockQ4_0*>(o), n_per_row); break;
      default: fail("cannot quantize to ", ggml_type_name(type), " (supported: ", supported_types(), ")");
    }
  }
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
