// Scalar reference kernels: the definition every SIMD path is tested against.
// Plain sequential fp32 arithmetic (sums of squares in double), no intrinsics.
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "kernels/kernels_internal.h"
#include "kernels/quants.h"

namespace g4::kernels::detail {

void dequant_f32_scalar(const uint8_t* src, float* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

void dequant_f16_scalar(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = fp16_to_f32(h);
  }
}

void dequant_bf16_scalar(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = bf16_to_f32(h);
  }
}

void dequant_q8_0_scalar(const uint8_t* src, float* dst, int64_t n) {
  const auto* b = reinterpret_cast<const BlockQ8_0*>(src);
  for (int64_t blk = 0; blk < n / kQK; ++blk) {
    uint16_t dh;
    std::memcpy(&dh, &b[blk].d, 2);
    const float d = fp16_to_f32(dh);
    for (int j = 0; j < kQK; ++j) dst[blk * kQK + j] = static_cast<float>(b[blk].qs[j]) * d;
  }
}

void dequant_q4_0_scalar(const uint8_t* src, float* dst, int64_t n) {
  const auto* b = reinterpret_cast<const BlockQ4_0*>(src);
  for (int64_t blk = 0; blk < n / kQK; ++blk) {
    uint16_t dh;
    std::memcpy(&dh, &b[blk].d, 2);
    const float d = fp16_to_f32(dh);
    for (int j = 0; j < kQK / 2; ++j) {
      const int lo = (b[blk].qs[j] & 0x0F) - 8;
      const int hi = (b[blk].qs[j] >> 4) - 8;
      dst[blk * kQK + j] = static_cast<float>(lo) * d;
      dst[blk * kQK + j + kQK / 2] = static_cast<float>(hi) * d;
    }
  }
}

namespace {

float dot_scalar(const float* a, const float* b, int64_t n) {
  float acc = 0.f;
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// Dequantize each row (F32 rows are used in place), then sequential dots.
template <KernelTable::DequantFn Dequant, bool kIsF32>
void matmul_scalar(const WeightMatrix& w, int64_t r0, int64_t r1, const float* x, int64_t n_tok,
                   int64_t x_stride, float* y, int64_t y_stride) {
  float* buf = kIsF32 ? nullptr : scratch_floats(static_cast<size_t>(w.n_in));
  for (int64_t r = r0; r < r1; ++r) {
    const float* wr;
    if constexpr (kIsF32) {
      wr = reinterpret_cast<const float*>(w.row(r));
    } else {
      Dequant(w.row(r), buf, w.n_in);
      wr = buf;
    }
    for (int64_t t = 0; t < n_tok; ++t) y[t * y_stride + r] = dot_scalar(wr, x + t * x_stride, w.n_in);
  }
}

// Q8_0-activation path (ggml vec_dot_q8_0_q8_0 / vec_dot_q4_0_q8_0 math):
// exact integer sum per block, then sumf += float(sumi) · (d_w · d_a) in block
// order. This is the definition the SIMD paths are tested against.
inline float block_scale(uint16_t dw, uint16_t da) { return fp16_to_f32(dw) * fp16_to_f32(da); }

float vec_dot_q8_0_q8_0_scalar(const BlockQ8_0* w, const BlockQ8_0* a, int64_t nb) {
  float sumf = 0.f;
  for (int64_t b = 0; b < nb; ++b) {
    int sumi = 0;
    for (int j = 0; j < kQK; ++j) sumi += static_cast<int>(w[b].qs[j]) * static_cast<int>(a[b].qs[j]);
    uint16_t dw, da;
    std::memcpy(&dw, &w[b].d, 2);
    std::memcpy(&da, &a[b].d, 2);
    sumf += static_cast<float>(sumi) * block_scale(dw, da);
  }
  return sumf;
}

float vec_dot_q4_0_q8_0_scalar(const BlockQ4_0* w, const BlockQ8_0* a, int64_t nb) {
  float sumf = 0.f;
  for (int64_t b = 0; b < nb; ++b) {
    int sumi = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      const int lo = (w[b].qs[j] & 0x0F) - 8;
      const int hi = (w[b].qs[j] >> 4) - 8;
      sumi += lo * static_cast<int>(a[b].qs[j]) + hi * static_cast<int>(a[b].qs[j + kQK / 2]);
    }
    uint16_t dw, da;
    std::memcpy(&dw, &w[b].d, 2);
    std::memcpy(&da, &a[b].d, 2);
    sumf += static_cast<float>(sumi) * block_scale(dw, da);
  }
  return sumf;
}

// Generic driver: every (row, token) pair through the type's block dot.
// WBlock/ABlock: weight and activation block types, Dot(w, a, n_blocks).
template <typename WBlock, typename ABlock, int64_t kBlock, float (*Dot)(const WBlock*, const ABlock*, int64_t)>
void matmul_qact_scalar(const WeightMatrix& w, int64_t r0, int64_t r1, const void* xq, int64_t n_tok,
                        size_t xq_row_bytes, float* y, int64_t y_stride) {
  const int64_t nb = w.n_in / kBlock;
  const auto* xb = static_cast<const uint8_t*>(xq);
  for (int64_t r = r0; r < r1; ++r) {
    const auto* wr = reinterpret_cast<const WBlock*>(w.row(r));
    for (int64_t t = 0; t < n_tok; ++t)
      y[t * y_stride + r] = Dot(wr, reinterpret_cast<const ABlock*>(xb + static_cast<size_t>(t) * xq_row_bytes), nb);
  }
}

void quantize_act_q8_0_any(const float* x, void* dst, int64_t n) {
  quantize_act_q8_0(x, static_cast<BlockQ8_0*>(dst), n);
}
void quantize_act_q8_1_any(const float* x, void* dst, int64_t n) {
  quantize_act_q8_1(x, static_cast<BlockQ8_1*>(dst), n);
}
void quantize_act_q8_K_any(const float* x, void* dst, int64_t n) {
  quantize_act_q8_K(x, static_cast<BlockQ8_K*>(dst), n);
}

void axpy_scalar(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void rmsnorm_scalar(const float* x, const float* w, float* y, int64_t n, float eps) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float ms = static_cast<float>(ss / static_cast<double>(n)) + eps;
  const float r = 1.0f / std::sqrt(ms);
  if (w) {
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * r) * w[i];
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * r;
  }
}

inline float gelu1(float x) {
  constexpr float kAlpha = 0.7978845608028654f;  // sqrt(2/pi)
  constexpr float kBeta = 0.044715f;
  return 0.5f * x * (1.0f + std::tanh(kAlpha * (x + kBeta * x * x * x)));
}

void gelu_scalar(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu1(x[i]);
}

void geglu_scalar(const float* g, const float* u, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu1(g[i]) * u[i];
}

void rope_neox_scalar(float* x, int64_t head_dim, const float* c, const float* s) {
  const int64_t half = head_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float x0 = x[i], x1 = x[i + half];
    const float a = x0 * c[i], b = x1 * s[i];
    const float e = x1 * c[i], f = x0 * s[i];
    x[i] = a - b;
    x[i + half] = e + f;
  }
}

void softmax_scalar(float* x, int64_t n) {
  if (n <= 0) return;
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void softcap_scalar(float* x, int64_t n, float cap) {
  for (int64_t i = 0; i < n; ++i) x[i] = std::tanh(x[i] / cap) * cap;
}

KernelTable make_scalar_table() {
  KernelTable t;
  t.isa = Isa::Scalar;
  auto set = [&t](GgmlType type, KernelTable::DequantFn dq, KernelTable::MatmulFn mm, KernelTable::MatmulQFn mq) {
    t.types[static_cast<int>(type)] = {dq, mm, mq};
  };
  set(GgmlType::F32, dequant_f32_scalar, matmul_scalar<dequant_f32_scalar, true>, nullptr);
  set(GgmlType::F16, dequant_f16_scalar, matmul_scalar<dequant_f16_scalar, false>, nullptr);
  set(GgmlType::BF16, dequant_bf16_scalar, matmul_scalar<dequant_bf16_scalar, false>, nullptr);
  set(GgmlType::Q8_0, dequant_q8_0_scalar, matmul_scalar<dequant_q8_0_scalar, false>,
      matmul_qact_scalar<BlockQ8_0, BlockQ8_0, kQK, vec_dot_q8_0_q8_0_scalar>);
  set(GgmlType::Q4_0, dequant_q4_0_scalar, matmul_scalar<dequant_q4_0_scalar, false>,
      matmul_qact_scalar<BlockQ4_0, BlockQ8_0, kQK, vec_dot_q4_0_q8_0_scalar>);
  // The quants.h types (dequantizers and block dots in quants_scalar.cpp).
  set(GgmlType::Q4_1, dequant_q4_1_scalar, matmul_scalar<dequant_q4_1_scalar, false>,
      matmul_qact_scalar<BlockQ4_1, BlockQ8_1, kQK, vec_dot_q4_1_q8_1>);
  set(GgmlType::Q5_0, dequant_q5_0_scalar, matmul_scalar<dequant_q5_0_scalar, false>,
      matmul_qact_scalar<BlockQ5_0, BlockQ8_0, kQK, vec_dot_q5_0_q8_0>);
  set(GgmlType::Q5_1, dequant_q5_1_scalar, matmul_scalar<dequant_q5_1_scalar, false>,
      matmul_qact_scalar<BlockQ5_1, BlockQ8_1, kQK, vec_dot_q5_1_q8_1>);
  set(GgmlType::MXFP4, dequant_mxfp4_scalar, matmul_scalar<dequant_mxfp4_scalar, false>,
      matmul_qact_scalar<BlockMxfp4, BlockQ8_0, kQK, vec_dot_mxfp4_q8_0>);
  set(GgmlType::Q4_K, dequant_q4_K_scalar, matmul_scalar<dequant_q4_K_scalar, false>,
      matmul_qact_scalar<BlockQ4_K, BlockQ8_K, kQK_K, vec_dot_q4_K_q8_K>);
  set(GgmlType::Q5_K, dequant_q5_K_scalar, matmul_scalar<dequant_q5_K_scalar, false>,
      matmul_qact_scalar<BlockQ5_K, BlockQ8_K, kQK_K, vec_dot_q5_K_q8_K>);
  set(GgmlType::Q6_K, dequant_q6_K_scalar, matmul_scalar<dequant_q6_K_scalar, false>,
      matmul_qact_scalar<BlockQ6_K, BlockQ8_K, kQK_K, vec_dot_q6_K_q8_K>);
  set(GgmlType::Q8_K, dequant_q8_K_scalar, matmul_scalar<dequant_q8_K_scalar, false>,
      matmul_qact_scalar<BlockQ8_K, BlockQ8_K, kQK_K, vec_dot_q8_K_q8_K>);
  t.quantize_act[static_cast<int>(GgmlType::Q8_0)] = quantize_act_q8_0_any;
  t.quantize_act[static_cast<int>(GgmlType::Q8_1)] = quantize_act_q8_1_any;
  t.quantize_act[static_cast<int>(GgmlType::Q8_K)] = quantize_act_q8_K_any;
  t.dot = dot_scalar;
  t.axpy = axpy_scalar;
  t.rmsnorm = rmsnorm_scalar;
  t.gelu_tanh = gelu_scalar;
  t.geglu = geglu_scalar;
  t.rope_neox = rope_neox_scalar;
  t.softmax = softmax_scalar;
  t.softcap = softcap_scalar;
  return t;
}

}  // namespace

const KernelTable& scalar_table() {
  static const KernelTable t = make_scalar_table();
  return t;
}

}  // namespace g4::kernels::detail
