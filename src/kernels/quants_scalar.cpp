// Scalar references of the quants.h types: exact dequantization (ggml's fp32
// operation order) and the block dot products of the quantized-activation
// matmuls. Plain sequential code, no intrinsics: the definition the SIMD
// kernels are tested against.
#include <cstring>

#include "core/dtype.h"
#include "kernels/quants.h"

namespace g4::kernels::detail {
namespace {

inline float half(uint16_t h) { return fp16_to_f32(h); }
inline float half_at(const uint16_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_f32(h);
}

// 5-bit values of a Q5_0/Q5_1 block (0..31): low nibbles from qs, bit j of qh
// on top of element j.
inline void unpack5(const uint8_t* qs, const uint8_t* qh_bytes, int* q) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
  for (int j = 0; j < kQK / 2; ++j) {
    q[j] = (qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1) << 4);
    q[j + kQK / 2] = (qs[j] >> 4) | static_cast<int>(((qh >> (j + kQK / 2)) & 1) << 4);
  }
}

// Levels of one Q4_K/Q5_K super-block in element order (0..15 / 0..31).
inline void unpack_q4_K(const BlockQ4_K& b, int* q) {
  for (int g = 0; g < 4; ++g)
    for (int l = 0; l < 32; ++l) {
      q[64 * g + l] = b.qs[32 * g + l] & 0x0F;
      q[64 * g + 32 + l] = b.qs[32 * g + l] >> 4;
    }
}
inline void unpack_q5_K(const BlockQ5_K& b, int* q) {
  for (int g = 0; g < 4; ++g)
    for (int l = 0; l < 32; ++l) {
      q[64 * g + l] = (b.qs[32 * g + l] & 0x0F) | (((b.qh[l] >> (2 * g)) & 1) << 4);
      q[64 * g + 32 + l] = (b.qs[32 * g + l] >> 4) | (((b.qh[l] >> (2 * g + 1)) & 1) << 4);
    }
}
// Signed levels of one Q6_K super-block in element order (−32..31).
inline void unpack_q6_K(const BlockQ6_K& b, int* q) {
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = b.ql + 64 * h;
    const uint8_t* qh = b.qh + 32 * h;
    int* o = q + 128 * h;
    for (int l = 0; l < 32; ++l) {
      o[l] = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
      o[l + 32] = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
      o[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      o[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
    }
  }
}

}  // namespace

// ---- dequantization ---------------------------------------------------------------

void dequant_q4_1_scalar(const uint8_t* src, float* dst, int64_t n) {
  const auto* b = reinterpret_cast<const BlockQ4_1*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d = half_at(&b[i].d), m = half_at(&b[i].m);
    float* o = dst + i * kQK;
    for (int j = 0; j < kQK / 2; ++j) {
      o[j] = static_cast<float>(b[i].qs[j] & 0x0F) * d + m;
      o[j + kQK / 2] = static_cast<float>(b[i].qs[j] >> 4) * d + m;
    }
  }
}

void dequant_q5_0_scalar(const uint8_t* src, float* dst, int64_t n) {
  const auto* b = reinterpret_cast<const BlockQ5_0*>(src);
  int q[kQK];
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d = half_at(&b[i].d);
    unpack5(b[i].qs, b[i].qh, q);
    for (int j = 0; j < kQK; ++j) dst[i * kQK + j] = static_cast<float>(q[j] - 16) * d;
  }
}

void dequant_q5_1_scalar(const uint8_t* src, float* dst, int64_t n) {
  const auto* b = reinterpret_cast<const BlockQ5_1*>(src);
  int q[kQK];
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d = half_at(&b[i].d), m = half_at(&b[i].m);
    unpack5(b[i].qs, b[i].qh, q);
    for (int j = 0; j < kQK; ++j) dst[i * kQK + j] = static_cast<float>(q[j]) * d + m;
  }
}

void dequant_mxfp4_scalar(const uint8_t* src, float* dst, int64_t n) {
  const auto* b = reinterpret_cast<const BlockMxfp4*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d = e8m0_half(b[i].e);
    float* o = dst + i * kQK;
    for (int j = 0; j < kQK / 2; ++j) {
      o[j] = static_cast<float>(kMxfp4Values[b[i].qs[j] & 0x0F]) * d;
      o[j + kQK / 2] = static_cast<float>(kMxfp4Values[b[i].qs[j] >> 4]) * d;
    }
  }
}

// Q4_K/Q5_K: value = (d·sc_j)·q − dmin·m_j, both products rounded to fp32 first.
void dequant_q4_K_scalar(const uint8_t* src, float* dst, int64_t n) {
  const auto* b = reinterpret_cast<const BlockQ4_K*>(src);
  int q[kQK_K];
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = half_at(&b[i].d), dmin = half_at(&b[i].dmin);
    const KScales k = unpack_k_scales(b[i].scales);
    unpack_q4_K(b[i], q);
    for (int j = 0; j < 8; ++j) {
      const float ds = d * static_cast<float>(k.sc[j]), dm = dmin * static_cast<float>(k.m[j]);
      for (int l = 0; l < 32; ++l) dst[i * kQK_K + 32 * j + l] = ds * static_cast<float>(q[32 * j + l]) - dm;
    }
  }
}

void dequant_q5_K_scalar(const uint8_t* src, float* dst, int64_t n) {
  const auto* b = reinterpret_cast<const BlockQ5_K*>(src);
  int q[kQK_K];
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = half_at(&b[i].d), dmin = half_at(&b[i].dmin);
    const KScales k = unpack_k_scales(b[i].scales);
    unpack_q5_K(b[i], q);
    for (int j = 0; j < 8; ++j) {
      const float ds = d * static_cast<float>(k.sc[j]), dm = dmin * static_cast<float>(k.m[j]);
      for (int l = 0; l < 32; ++l) dst[i * kQK_K + 32 * j + l] = ds * static_cast<float>(q[32 * j + l]) - dm;
    }
  }
}

// Q6_K: value = (d·sc_j)·(q − 32), sub-blocks of 16.
void dequant_q6_K_scalar(const uint8_t* src, float* dst, int64_t n) {
  const auto* b = reinterpret_cast<const BlockQ6_K*>(src);
  int q[kQK_K];
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = half_at(&b[i].d);
    unpack_q6_K(b[i], q);
    for (int s = 0; s < 16; ++s) {
      const float ds = d * static_cast<float>(b[i].scales[s]);
      for (int l = 0; l < 16; ++l) dst[i * kQK_K + 16 * s + l] = ds * static_cast<float>(q[16 * s + l]);
    }
  }
}

void dequant_q8_K_scalar(const uint8_t* src, float* dst, int64_t n) {
  const auto* b = reinterpret_cast<const BlockQ8_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    float d;
    std::memcpy(&d, &b[i].d, 4);
    for (int j = 0; j < kQK_K; ++j) dst[i * kQK_K + j] = d * static_cast<float>(b[i].qs[j]);
  }
}

// ---- block dot products (formulas in quants.h) -------------------------------------

float vec_dot_q4_1_q8_1(const BlockQ4_1* w, const BlockQ8_1* a, int64_t nb) {
  float sumf = 0, summ = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int sumi = 0;
    for (int j = 0; j < kQK / 2; ++j)
      sumi += (w[b].qs[j] & 0x0F) * a[b].qs[j] + (w[b].qs[j] >> 4) * a[b].qs[j + kQK / 2];
    sumf += static_cast<float>(sumi) * (half(w[b].d) * half(a[b].d));
    summ += half(w[b].m) * half(a[b].s);
  }
  return sumf + summ;
}

float vec_dot_q5_0_q8_0(const BlockQ5_0* w, const BlockQ8_0* a, int64_t nb) {
  float sumf = 0;
  int q[kQK];
  for (int64_t b = 0; b < nb; ++b) {
    unpack5(w[b].qs, w[b].qh, q);
    int sumi = 0;
    for (int j = 0; j < kQK; ++j) sumi += (q[j] - 16) * a[b].qs[j];
    sumf += static_cast<float>(sumi) * (half(w[b].d) * half(a[b].d));
  }
  return sumf;
}

float vec_dot_q5_1_q8_1(const BlockQ5_1* w, const BlockQ8_1* a, int64_t nb) {
  float sumf = 0, summ = 0;
  int q[kQK];
  for (int64_t b = 0; b < nb; ++b) {
    unpack5(w[b].qs, w[b].qh, q);
    int sumi = 0;
    for (int j = 0; j < kQK; ++j) sumi += q[j] * a[b].qs[j];
    sumf += static_cast<float>(sumi) * (half(w[b].d) * half(a[b].d));
    summ += half(w[b].m) * half(a[b].s);
  }
  return sumf + summ;
}

float vec_dot_mxfp4_q8_0(const BlockMxfp4* w, const BlockQ8_0* a, int64_t nb) {
  float sumf = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int sumi = 0;
    for (int j = 0; j < kQK / 2; ++j)
      sumi += kMxfp4Values[w[b].qs[j] & 0x0F] * a[b].qs[j] + kMxfp4Values[w[b].qs[j] >> 4] * a[b].qs[j + kQK / 2];
    sumf += static_cast<float>(sumi) * (half(a[b].d) * e8m0_half(w[b].e));
  }
  return sumf;
}

namespace {
// Σ_j sc_j·Σ q·a over the eight 32-element sub-blocks, and Σ_j m_j·(bsums of
// sub-block j) — the min term, with the activation sums ggml stores.
inline void k_sums(const int* q, const KScales& k, const BlockQ8_K& a, int& sumi, int& summ) {
  sumi = 0;
  summ = 0;
  for (int j = 0; j < 8; ++j) {
    int s = 0;
    for (int l = 0; l < 32; ++l) s += q[32 * j + l] * a.qs[32 * j + l];
    sumi += static_cast<int>(k.sc[j]) * s;
    summ += static_cast<int>(k.m[j]) * (a.bsums[2 * j] + a.bsums[2 * j + 1]);
  }
}
}  // namespace

float vec_dot_q4_K_q8_K(const BlockQ4_K* w, const BlockQ8_K* a, int64_t nb) {
  float sumf = 0, summ = 0;
  int q[kQK_K];
  for (int64_t b = 0; b < nb; ++b) {
    unpack_q4_K(w[b], q);
    int sumi, sumq;
    k_sums(q, unpack_k_scales(w[b].scales), a[b], sumi, sumq);
    sumf += (a[b].d * half(w[b].d)) * static_cast<float>(sumi);
    summ += (-a[b].d * half(w[b].dmin)) * static_cast<float>(sumq);
  }
  return sumf + summ;
}

float vec_dot_q5_K_q8_K(const BlockQ5_K* w, const BlockQ8_K* a, int64_t nb) {
  float sumf = 0, summ = 0;
  int q[kQK_K];
  for (int64_t b = 0; b < nb; ++b) {
    unpack_q5_K(w[b], q);
    int sumi, sumq;
    k_sums(q, unpack_k_scales(w[b].scales), a[b], sumi, sumq);
    sumf += (a[b].d * half(w[b].d)) * static_cast<float>(sumi);
    summ += (-a[b].d * half(w[b].dmin)) * static_cast<float>(sumq);
  }
  return sumf + summ;
}

float vec_dot_q6_K_q8_K(const BlockQ6_K* w, const BlockQ8_K* a, int64_t nb) {
  float sumf = 0;
  int q[kQK_K];
  for (int64_t b = 0; b < nb; ++b) {
    unpack_q6_K(w[b], q);
    int sumi = 0;
    for (int s = 0; s < 16; ++s) {
      int p = 0;
      for (int l = 0; l < 16; ++l) p += q[16 * s + l] * a[b].qs[16 * s + l];
      sumi += static_cast<int>(w[b].scales[s]) * p;
    }
    sumf += (a[b].d * half(w[b].d)) * static_cast<float>(sumi);
  }
  return sumf;
}

float vec_dot_q8_K_q8_K(const BlockQ8_K* w, const BlockQ8_K* a, int64_t nb) {
  float sumf = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int sumi = 0;
    for (int j = 0; j < kQK_K; ++j) sumi += w[b].qs[j] * a[b].qs[j];
    sumf += (a[b].d * w[b].d) * static_cast<float>(sumi);
  }
  return sumf;
}

}  // namespace g4::kernels::detail
