// CPU compute kernels: weight-type aware matmul, (de)quantization, embedding
// row gather and the fp32 element-wise ops of the Gemma 4 forward pass.
//
// Structure: one KernelTable per instruction set (kernels_scalar.cpp is the
// reference, kernels_avx2.cpp the AVX2+FMA+F16C path, each ISA in its own file
// with per-function target attributes, never -march flags). active() picks the
// best table the CPU supports at run time (__builtin_cpu_supports); the env var
// G4_ISA=scalar|avx2 caps it. A new ISA (AVX-512, VNNI, int8 activations) adds
// a file and an Isa entry; callers only go through the table or the drivers.
//
// Matmul convention (ggml): W has n_out rows of n_in contiguous elements (the
// TensorView ne = {n_in, n_out}); activations are n_tok rows of n_in fp32.
//   y[t][o] = sum_i W[o][i] * x[t][i]
// Every output element is computed the same way no matter how rows are split
// across threads or tiles, so results are bit-identical for any thread count
// (and, for one ISA, for any n_tok: prefill and decode agree bit for bit).
//
// Supported weight types: F32, F16, BF16, Q8_0, Q4_0 (ggml block layouts).
//
// Q8_0 / Q4_0 weights (ggml CPU semantics): by default each activation row is
// first quantized to Q8_0 blocks (quantize_act_q8_0, what ggml's x86 CPU
// backend does at run time: d = amax/127 stored as fp16, q = round-half-even(x ·
// (127/amax)); llama-quantize's reference for weights rounds half away instead),
// once per matmul call into per-thread scratch, then every output is
//   y = Σ_blocks fp32(d_w) · fp32(d_a) · Σ_j q_w[j]·q_a[j]   (integer inner sum)
// (Q4_0: q_w = nibble − 8). The scalar table adds the block terms
// sequentially (sumf += float(sumi) · (d_w·d_a)); SIMD tables may use other
// fp32 accumulation orders (AVX2: 8 lanes of FMA, then a fixed horizontal
// sum), so ISAs agree to fp32 rounding, not bit for bit. ActMode::F32 (or env
// G4_MATMUL_ACT=f32 for the default) keeps the fp32-activation path that
// multiplies the exactly dequantized weights with the fp32 activations.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace g4 {
class ThreadPool;
struct TensorView;
}  // namespace g4

namespace g4::kernels {

constexpr int64_t kQK = 32;  // elements per Q8_0 / Q4_0 block

// ggml block_q8_0: fp16 scale d, 32 int8; value = q * d.
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
// ggml block_q4_0: fp16 scale d, 16 bytes; byte j holds element j in its low
// nibble and element j+16 in its high nibble; value = (q - 8) * d.
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ8_0) == 34, "block_q8_0 layout");
static_assert(sizeof(BlockQ4_0) == 18, "block_q4_0 layout");

enum class Isa : int { Scalar = 0, Avx2 = 1 };
constexpr int kIsaCount = 2;
const char* isa_name(Isa isa);  // "scalar", "avx2"
bool isa_available(Isa isa);

// Weight types the kernels compute with.
bool type_supported(GgmlType t);
const char* supported_types();  // "F32, F16, BF16, Q8_0, Q4_0"

// A 2-D weight matrix view: n_out rows of n_in elements of `type`.
struct WeightMatrix {
  GgmlType type = GgmlType::F32;
  const uint8_t* data = nullptr;
  int64_t n_in = 0;
  int64_t n_out = 0;
  size_t row_bytes = 0;

  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes; }
  // Throws g4::Error (naming the tensor) for an unsupported type or a tensor
  // that is not 2-D (1-D counts as one row).
  static WeightMatrix of(const TensorView& t);
  // Slice `e` of a 3-D expert tensor ne = {n_in, n_out, n_experts}.
  static WeightMatrix expert(const TensorView& t, int64_t e);
  static WeightMatrix raw(GgmlType type, const void* data, int64_t n_in, int64_t n_out);
};

// One instruction set's kernels. Function pointers never null.
struct KernelTable {
  Isa isa = Isa::Scalar;

  // Rows [r0, r1) of w times all n_tok activation rows (see the header).
  using MatmulFn = void (*)(const WeightMatrix& w, int64_t r0, int64_t r1, const float* x,
                            int64_t n_tok, int64_t x_stride, float* y, int64_t y_stride);
  // n elements (a multiple of the type's block size) to fp32.
  using DequantFn = void (*)(const uint8_t* src, float* dst, int64_t n);

  MatmulFn matmul_f32, matmul_f16, matmul_bf16, matmul_q8_0, matmul_q4_0;
  DequantFn dequant_f32, dequant_f16, dequant_bf16, dequant_q8_0, dequant_q4_0;

  float (*dot)(const float* a, const float* b, int64_t n);
  void (*axpy)(float a, const float* x, float* y, int64_t n);  // y += a·x
  // y = x · (mean(x²) + eps)^(-1/2) · w   (w == nullptr: scale-free). y may be x.
  void (*rmsnorm)(const float* x, const float* w, float* y, int64_t n, float eps);
  // y = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). y may be x.
  void (*gelu_tanh)(const float* x, float* y, int64_t n);
  // y = gelu_tanh(g) · u   (GeGLU). y may alias g or u.
  void (*geglu)(const float* g, const float* u, float* y, int64_t n);
  // NeoX RoPE of one head of `head_dim` lanes in place, pairs (i, i + head_dim/2),
  // with per-pair cos/sin (head_dim/2 entries each).
  void (*rope_neox)(float* x, int64_t head_dim, const float* cos, const float* sin);
  void (*softmax)(float* x, int64_t n);                 // in place, fp32
  void (*softcap)(float* x, int64_t n, float cap);      // x = cap·tanh(x/cap)

  // Q8_0-activation path: rows [r0, r1) of a Q8_0 / Q4_0 w times n_tok
  // activation rows already quantized to Q8_0 (row t starts at xq + t·xq_stride,
  // n_in/32 blocks).
  using MatmulQ8Fn = void (*)(const WeightMatrix& w, int64_t r0, int64_t r1, const BlockQ8_0* xq, int64_t n_tok,
                              int64_t xq_stride, float* y, int64_t y_stride);
  MatmulQ8Fn matmul_q8_0_q8, matmul_q4_0_q8;
  // quantize_act_q8_0 (below); every ISA gives bit-identical blocks.
  void (*quantize_q8_0)(const float* x, BlockQ8_0* dst, int64_t n);

  MatmulFn matmul_for(GgmlType t) const;    // throws for unsupported types
  MatmulQ8Fn matmul_q8_for(GgmlType t) const;  // Q8_0 / Q4_0 only; throws otherwise
  DequantFn dequant_for(GgmlType t) const;  // throws for unsupported types
};

const KernelTable& table(Isa isa);  // throws g4::Error when the CPU lacks it
const KernelTable& active();        // best available (capped by env G4_ISA)

// ---- threaded drivers -------------------------------------------------------

// How Q8_0 / Q4_0 matmuls treat the activations (other types are always fp32).
enum class ActMode : int {
  Default = 0,  // Q8 unless env G4_MATMUL_ACT=f32 (read once)
  F32 = 1,      // fp32 activations × dequantized weights
  Q8 = 2,       // activations quantized to Q8_0, integer block dots (ggml)
};
// Whether a matmul of weight type t under `mode` quantizes the activations.
bool quantizes_activations(GgmlType t, ActMode mode = ActMode::Default);

// y[t·y_stride + o] = Σ_i W[o][i]·x[t·x_stride + i], threaded over output rows.
// pool == nullptr: single-threaded. k == nullptr: active(). For Q8_0 / Q4_0
// weights see ActMode (the Q8 scratch is per calling thread, reused).
void matmul(const WeightMatrix& w, const float* x, int64_t n_tok, int64_t x_stride, float* y,
            int64_t y_stride, ThreadPool* pool, const KernelTable* k = nullptr, ActMode mode = ActMode::Default);

// Row `r` of a weight/embedding matrix to fp32 (n_in values).
void dequantize_row(const WeightMatrix& w, int64_t r, float* dst, const KernelTable* k = nullptr);
// Embedding gather: dst[i·dst_stride ..] = row ids[i] of `table` (any supported
// type). Throws g4::Error naming the tensor for an id outside [0, rows).
void get_rows(const WeightMatrix& table, const int32_t* ids, int64_t n, float* dst,
              int64_t dst_stride, const KernelTable* k = nullptr);

// ---- scalar reference quantizers (ggml round-to-nearest) --------------------

// Q8_0: d = amax/127, q = round(x/d). n must be a multiple of 32.
void quantize_row_q8_0(const float* x, BlockQ8_0* dst, int64_t n);
// Activation rows for the int8 matmul path, as ggml's x86 kernels quantize them
// at run time: d = amax/127 (stored fp16), q = round-half-even(x · (127/amax)).
void quantize_act_q8_0(const float* x, BlockQ8_0* dst, int64_t n);
// Q4_0: d = max/-8 (max = the signed value of largest magnitude),
// q = min(15, (int)(x/d + 8.5)). n must be a multiple of 32.
void quantize_row_q4_0(const float* x, BlockQ4_0* dst, int64_t n);
// n_rows rows of n_per_row fp32 into `type` (F32, F16, BF16, Q8_0, Q4_0);
// returns the bytes written (n_rows · ggml_row_bytes(type, n_per_row)).
size_t quantize_rows(GgmlType type, const float* x, void* dst, int64_t n_rows, int64_t n_per_row);

// ---- RoPE helpers -----------------------------------------------------------

// cos/sin of angle_i = float(pos) · freqs[i] for i < half (fp32 angle, as HF).
void rope_cos_sin(int64_t pos, const float* freqs, int64_t half, float* cos_out, float* sin_out);

}  // namespace g4::kernels
