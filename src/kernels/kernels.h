// CPU compute kernels: weight-type aware matmul, (de)quantization, embedding
// row gather and the fp32 element-wise ops of the Gemma 4 forward pass.
//
// Structure: one KernelTable per instruction set (kernels_scalar.cpp is the
// reference, kernels_avx2.cpp the AVX2+FMA+F16C path, kernels_avx512*.cpp the
// AVX-512 F/BW/VL/DQ path (+ VNNI int8 matmuls when the CPU has them), each
// ISA in its own files with per-function target attributes, never -march
// flags). active() picks the best table the CPU supports at run time (CPUID);
// the env var G4_ISA=scalar|avx2|avx512 caps it. A new ISA (e.g. NEON) adds a
// file and an Isa entry; callers only go through the table or the drivers.
//
// Matmul convention (ggml): W has n_out rows of n_in contiguous elements (the
// TensorView ne = {n_in, n_out}); activations are n_tok rows of n_in fp32.
//   y[t][o] = sum_i W[o][i] * x[t][i]
// Every output element is computed the same way no matter how rows are split
// across threads or tiles, so results are bit-identical for any thread count
// (and, for one ISA, for any n_tok: prefill and decode agree bit for bit).
//
// Supported weight types: see supported_types() (ggml block layouts,
// quant_blocks.h); each has a TypeKernels slot per ISA.
//
// Quantized weights (ggml CPU semantics): by default each activation row is
// first quantized to activation_type(w) blocks once per matmul call, into
// per-thread scratch, as ggml's x86 CPU backend does at run time. For Q8_0
// (quantize_act_q8_0): d = amax/127 stored as fp16, q = round-half-even(x ·
// (127/amax)); llama-quantize's reference for weights rounds half away
// instead. Every output is then
//   y = Σ_blocks fp32(d_w) · fp32(d_a) · Σ_j q_w[j]·q_a[j]   (integer inner sum)
// plus the type's min/offset terms (Q4_1/Q5_1: m·s; K-quants: dmin·Σ m_j·bsums).
// The scalar table adds the block terms sequentially (sumf += float(sumi) ·
// (d_w·d_a)); SIMD tables may use other fp32 accumulation orders (AVX2: 8
// lanes of FMA, then a fixed horizontal sum), so ISAs agree to fp32 rounding,
// not bit for bit. (The AVX-512 VNNI Q4_0/Q8_0 kernels keep the scalar order,
// one row per lane, and match it bit for bit.) ActMode::F32 (or env
// G4_MATMUL_ACT=f32 for the default) keeps the fp32-activation path that
// multiplies the exactly dequantized weights with the fp32 activations.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "kernels/quant_blocks.h"

namespace g4 {
class ThreadPool;
struct TensorView;
}  // namespace g4

namespace g4::kernels {

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };
constexpr int kIsaCount = 3;
const char* isa_name(Isa isa);  // "scalar", "avx2", "avx512"
bool isa_available(Isa isa);

// Weight types the kernels compute with (those with a matmul in the scalar
// table; every ISA table covers at least the same types).
bool type_supported(GgmlType t);
std::string supported_types();  // "F32, F16, BF16, Q8_0, Q4_0, ..."

// The activation format of a weight type's integer dot products, as ggml's
// CPU backend picks it (vec_dot_type): Q8_0 for Q8_0/Q4_0/Q5_0/MXFP4, Q8_1
// for Q4_1/Q5_1, Q8_K for the K-quants; F32 for the float types (fp32 dots).
GgmlType activation_type(GgmlType weight_type);

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

// One instruction set's kernels. Every ISA table starts as a copy of the
// scalar table and overrides what it accelerates, so a slot the scalar table
// fills is never null in any table; a weight type is added by filling its
// TypeKernels slot (scalar reference first), an ISA by adding a file.
struct KernelTable {
  Isa isa = Isa::Scalar;

  // Rows [r0, r1) of w times all n_tok fp32 activation rows (see the header).
  using MatmulFn = void (*)(const WeightMatrix& w, int64_t r0, int64_t r1, const float* x,
                            int64_t n_tok, int64_t x_stride, float* y, int64_t y_stride);
  // Rows [r0, r1) of w times n_tok activation rows already quantized to
  // activation_type(w.type): row t starts at (const uint8_t*)xq + t·xq_row_bytes.
  using MatmulQFn = void (*)(const WeightMatrix& w, int64_t r0, int64_t r1, const void* xq, int64_t n_tok,
                             size_t xq_row_bytes, float* y, int64_t y_stride);
  // n elements (a multiple of the type's block size) to fp32.
  using DequantFn = void (*)(const uint8_t* src, float* dst, int64_t n);
  // n fp32 (a multiple of the activation block) to activation blocks.
  using QuantizeActFn = void (*)(const float* x, void* dst, int64_t n);

  struct TypeKernels {
    DequantFn dequant = nullptr;  // exact dequantization
    MatmulFn matmul = nullptr;    // fp32 activations (float types; ActMode::F32 for the others)
    MatmulQFn matmul_q = nullptr; // quantized activations (types whose activation_type is not F32)
  };
  static constexpr int kTypeSlots = 48;  // > largest ggml type id
  TypeKernels types[kTypeSlots] = {};
  // Activation quantizers, indexed by the activation type (Q8_0, Q8_1, Q8_K),
  // bit-identical across ISAs.
  QuantizeActFn quantize_act[kTypeSlots] = {};

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

  // Lookups; throw g4::Error naming the type when the slot is empty.
  MatmulFn matmul_for(GgmlType t) const;
  MatmulQFn matmul_q_for(GgmlType t) const;
  DequantFn dequant_for(GgmlType t) const;
  QuantizeActFn quantize_act_for(GgmlType act_type) const;
};

const KernelTable& table(Isa isa);  // throws g4::Error when the CPU lacks it
const KernelTable& active();        // best available (capped by env G4_ISA)

// ---- threaded drivers -------------------------------------------------------

// How matmuls of quantized weight types treat the activations (float weight
// types always use fp32 activations).
enum class ActMode : int {
  Default = 0,  // Q8 unless env G4_MATMUL_ACT=f32 (read once)
  F32 = 1,      // fp32 activations × dequantized weights
  Q8 = 2,       // activations quantized to activation_type(w), integer block dots (ggml)
};
// Whether a matmul of weight type t under `mode` quantizes the activations.
bool quantizes_activations(GgmlType t, ActMode mode = ActMode::Default);

// y[t·y_stride + o] = Σ_i W[o][i]·x[t·x_stride + i], threaded over tasks of
// 16 output rows (× token blocks when the rows alone give the threads too few
// tasks), claimed dynamically (ThreadPool::parallel_for_dynamic); results do
// not depend on the split. pool == nullptr: single-threaded. k == nullptr:
// active(). For quantized weights see ActMode (the activation scratch is per
// calling thread, reused). No heap allocation once the scratch has grown.
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
// The weight quantizer of `type` (llama-quantize's reference, no importance
// matrix): n fp32 (a multiple of the block size) into blocks. nullptr when
// the type has none.
using QuantizeRowFn = void (*)(const float* x, void* dst, int64_t n);
QuantizeRowFn weight_quantizer(GgmlType type);
// Types weight_quantizer() covers, "F32, F16, BF16, Q8_0, Q4_0, ...".
std::string quantizable_types();
// n_rows rows of n_per_row fp32 into `type` (any type with a weight
// quantizer); returns the bytes written (n_rows · ggml_row_bytes(type, n_per_row)).
size_t quantize_rows(GgmlType type, const float* x, void* dst, int64_t n_rows, int64_t n_per_row);

// ---- RoPE helpers -----------------------------------------------------------

// cos/sin of angle_i = float(pos) · freqs[i] for i < half (fp32 angle, as HF).
void rope_cos_sin(int64_t pos, const float* freqs, int64_t half, float* cos_out, float* sin_out);

}  // namespace g4::kernels
