// Reference quantizers of the types in quants.h: the weight quantizers
// llama-quantize runs without an importance matrix and the activation
// quantizers of ggml's x86 run time. Both must produce ggml's bytes exactly,
// so the fp32 arithmetic below keeps ggml's operation order term by term
// (e.g. (w·l)·l, never w·(l·l)); this file is compiled without FMA, so no
// product is fused into an addition behind our back.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/quants.h"

namespace g4::kernels {
namespace {

void check_multiple(const char* type, int64_t n, int64_t block) {
  if (n % block != 0) fail(type, " row of ", n, " elements is not a multiple of ", block);
}

void store_fp16(uint16_t* dst, float v) {
  const uint16_t h = f32_to_fp16(v);
  std::memcpy(dst, &h, 2);
}

// Round to the nearest integer, ties to even, for |v| < 2^22: adding 1.5·2^23
// leaves the integer in the low mantissa bits (the fp32 addition does the
// rounding). ggml's K-quant code rounds exactly this way.
inline int round_even(float v) {
  const float shifted = v + 12582912.f;
  int32_t bits;
  std::memcpy(&bits, &shifted, 4);
  return (bits & 0x007FFFFF) - 0x00400000;
}

// float -> small int the way C's (int8_t)/(uint8_t) casts compile on x86:
// truncate toward zero to int32, keep the low byte.
inline int8_t trunc_i8(float v) { return static_cast<int8_t>(static_cast<int32_t>(v)); }
inline uint8_t trunc_u8(float v) { return static_cast<uint8_t>(static_cast<int32_t>(v)); }

// ---- K-quant searches ------------------------------------------------------------

// Asymmetric search of Q4_K/Q5_K: L[i] in [0, nmax] and (scale, min) with
// x ≈ scale·L + min (min <= 0), minimising Σ w·(scale·L + min − x)².
// Candidates: the plain min/max grid, then nstep+1 grids with nmax stretched
// by rmin + rdelta·k, each refit by weighted least squares. Returns scale,
// writes −min to *neg_min. Laux: scratch of n.
float search_scale_min(int n, int nmax, const float* x, const float* w, uint8_t* L, float* neg_min, uint8_t* Laux,
                       float rmin, float rdelta, int nstep) {
  float mn = x[0], mx = x[0];
  float sum_w = w[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < mn) mn = x[i];
    if (x[i] > mx) mx = x[i];
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (mn > 0) mn = 0;
  if (mx == mn) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *neg_min = -mn;
    return 0.f;
  }
  float iscale = static_cast<float>(nmax) / (mx - mn);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = round_even(iscale * (x[i] - mn));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    const float diff = scale * static_cast<float>(L[i]) + mn - x[i];
    best_error += w[i] * (diff * diff);
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (mx - mn);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(0, std::min(nmax, round_even(iscale * (x[i] - mn))));
      Laux[i] = static_cast<uint8_t>(l);
      const float fl = static_cast<float>(l);
      sum_l += w[i] * fl;
      sum_l2 += w[i] * fl * fl;
      sum_xl += w[i] * fl * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        const float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
        cur_error += w[i] * (diff * diff);
      }
      if (cur_error < best_error) {
        std::memcpy(L, Laux, static_cast<size_t>(n));
        best_error = cur_error;
        scale = this_scale;
        mn = this_min;
      }
    }
  }
  *neg_min = -mn;
  return scale;
}

// Symmetric search of Q6_K (ggml's rmse_type 1, weights x²): L[i] − nmax in
// [−nmax, nmax − 1], the signed value of largest magnitude mapped to −nmax;
// 18 more grids with nmax ± 0.1·k, kept when Σwxl²/Σwl² improves. Returns the
// least-squares scale of the best grid.
float search_scale_symmetric(int n, int nmax, const float* x, int8_t* L) {
  float mx = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      mx = x[i];
    }
  }
  if (amax < 1e-15f) {  // an all-zero group
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  auto clamp_l = [nmax](int l) { return std::max(-nmax, std::min(nmax - 1, l)); };
  float iscale = static_cast<float>(-nmax) / mx;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = clamp_l(round_even(iscale * x[i]));
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    const float fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / mx;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const float fl = static_cast<float>(clamp_l(round_even(iscale * x[i])));
      const float w = x[i] * x[i];
      sumlx += w * x[i] * fl;
      suml2 += w * fl * fl;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + clamp_l(round_even(iscale * x[i])));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Q4_K/Q5_K super-block: the eight sub-block searches, the 6-bit scales and
// mins (packed as described at KScales), the fp16 super-scales and the final
// levels L (256 entries in [0, nmax]).
void quantize_k_superblock(const float* x, int nmax, float rmin, int nstep, uint8_t* scales_out, uint16_t* d_out,
                           uint16_t* dmin_out, uint8_t* L) {
  float scales[8], mins[8], weights[32];
  uint8_t Laux[32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
    scales[j] = search_scale_min(32, nmax, xs, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < 8; ++j) {
    // (uint8_t) of the rounded value, then capped at 63, as ggml does.
    const uint8_t ls = std::min<uint8_t>(63, static_cast<uint8_t>(round_even(inv_scale * scales[j])));
    const uint8_t lm = std::min<uint8_t>(63, static_cast<uint8_t>(round_even(inv_min * mins[j])));
    if (j < 4) {
      scales_out[j] = ls;
      scales_out[j + 4] = lm;
    } else {
      scales_out[j + 4] = static_cast<uint8_t>((ls & 0x0F) | ((lm & 0x0F) << 4));
      scales_out[j - 4] = static_cast<uint8_t>(scales_out[j - 4] | ((ls >> 4) << 6));
      scales_out[j] = static_cast<uint8_t>(scales_out[j] | ((lm >> 4) << 6));
    }
  }
  store_fp16(d_out, max_scale / 63.f);
  store_fp16(dmin_out, max_min / 63.f);
  uint16_t dh, mh;
  std::memcpy(&dh, d_out, 2);
  std::memcpy(&mh, dmin_out, 2);
  const detail::KScales k = detail::unpack_k_scales(scales_out);
  for (int j = 0; j < 8; ++j) {
    const float d = fp16_to_f32(dh) * static_cast<float>(k.sc[j]);
    if (d == 0) continue;  // keeps the search's levels, as ggml does
    const float dm = fp16_to_f32(mh) * static_cast<float>(k.m[j]);
    for (int i = 0; i < 32; ++i) {
      const int l = round_even((x[32 * j + i] + dm) / d);
      L[32 * j + i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
}

}  // namespace

// ---- 32-element block types -----------------------------------------------------

void quantize_row_q4_1(const float* x, BlockQ4_1* dst, int64_t n) {
  check_multiple("Q4_1", n, kQK);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    float mn = FLT_MAX, mx = -FLT_MAX;
    for (int j = 0; j < kQK; ++j) {
      if (xb[j] < mn) mn = xb[j];
      if (xb[j] > mx) mx = xb[j];
    }
    const float d = (mx - mn) / 15;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    store_fp16(&dst[b].d, d);
    store_fp16(&dst[b].m, mn);
    for (int j = 0; j < kQK / 2; ++j) {
      const int q0 = std::min<int>(15, trunc_i8((xb[j] - mn) * id + 0.5f));
      const int q1 = std::min<int>(15, trunc_i8((xb[j + kQK / 2] - mn) * id + 0.5f));
      dst[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

// Q5_0/Q5_1: element j's 5th bit goes to bit j of qh (little-endian u32),
// its low four bits to the nibble of byte j % 16 (low for j < 16).
namespace {
template <class Block>
void pack5(Block& b, const uint8_t* q) {
  uint32_t qh = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    b.qs[j] = static_cast<uint8_t>((q[j] & 0x0F) | ((q[j + kQK / 2] & 0x0F) << 4));
    qh |= static_cast<uint32_t>((q[j] & 0x10) >> 4) << j;
    qh |= static_cast<uint32_t>((q[j + kQK / 2] & 0x10) >> 4) << (j + kQK / 2);
  }
  std::memcpy(b.qh, &qh, 4);
}
}  // namespace

void quantize_row_q5_0(const float* x, BlockQ5_0* dst, int64_t n) {
  check_multiple("Q5_0", n, kQK);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    float amax = 0, mx = 0;
    for (int j = 0; j < kQK; ++j) {
      if (amax < std::fabs(xb[j])) {
        amax = std::fabs(xb[j]);
        mx = xb[j];
      }
    }
    const float d = mx / -16;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    store_fp16(&dst[b].d, d);
    uint8_t q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = static_cast<uint8_t>(std::min<int>(31, trunc_i8(xb[j] * id + 16.5f)));
    pack5(dst[b], q);
  }
}

void quantize_row_q5_1(const float* x, BlockQ5_1* dst, int64_t n) {
  check_multiple("Q5_1", n, kQK);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    float mn = FLT_MAX, mx = -FLT_MAX;
    for (int j = 0; j < kQK; ++j) {
      if (xb[j] < mn) mn = xb[j];
      if (xb[j] > mx) mx = xb[j];
    }
    const float d = (mx - mn) / 31;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    store_fp16(&dst[b].d, d);
    store_fp16(&dst[b].m, mn);
    uint8_t q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = trunc_u8((xb[j] - mn) * id + 0.5f);  // no cap, as ggml
    pack5(dst[b], q);
  }
}

void quantize_row_mxfp4(const float* x, BlockMxfp4* dst, int64_t n) {
  check_multiple("MXFP4", n, kQK);
  auto nearest_code = [](float v, float d) {
    int best = 0;
    float best_err = std::fabs(static_cast<float>(detail::kMxfp4Values[0]) * d - v);
    for (int i = 1; i < 16; ++i) {
      const float err = std::fabs(static_cast<float>(detail::kMxfp4Values[i]) * d - v);
      if (err < best_err) {
        best = i;
        best_err = err;
      }
    }
    return best;
  };
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(xb[j]));
    // amax / 2^(e−127) lies in [4, 8): the largest values land on the top
    // E2M1 magnitudes (4 and 6, the doubled codes 8 and 12 times d).
    const uint8_t e = amax > 0 ? trunc_u8(std::floor(std::log2(amax)) - 2 + 127) : 0;
    dst[b].e = e;
    const float d = detail::e8m0_half(e);
    for (int j = 0; j < kQK / 2; ++j)
      dst[b].qs[j] = static_cast<uint8_t>(nearest_code(xb[j], d) | (nearest_code(xb[j + kQK / 2], d) << 4));
  }
}

// ---- K-quants --------------------------------------------------------------------

void quantize_row_q4_K(const float* x, BlockQ4_K* dst, int64_t n) {
  check_multiple("Q4_K", n, kQK_K);
  uint8_t L[kQK_K];
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    BlockQ4_K& o = dst[b];
    quantize_k_superblock(x + b * kQK_K, 15, -1.f, 20, o.scales, &o.d, &o.dmin, L);
    // Four groups of 64: byte l of group g holds element 64g + l (low nibble)
    // and 64g + 32 + l (high nibble).
    for (int g = 0; g < 4; ++g)
      for (int l = 0; l < 32; ++l) o.qs[32 * g + l] = static_cast<uint8_t>(L[64 * g + l] | (L[64 * g + 32 + l] << 4));
  }
}

void quantize_row_q5_K(const float* x, BlockQ5_K* dst, int64_t n) {
  check_multiple("Q5_K", n, kQK_K);
  uint8_t L[kQK_K];
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    BlockQ5_K& o = dst[b];
    quantize_k_superblock(x + b * kQK_K, 31, -0.5f, 15, o.scales, &o.d, &o.dmin, L);
    // Low four bits as in Q4_K; the 5th bit of element 64g + l is bit 2g of
    // qh[l], that of element 64g + 32 + l bit 2g + 1.
    std::memset(o.qh, 0, sizeof(o.qh));
    for (int g = 0; g < 4; ++g) {
      for (int l = 0; l < 32; ++l) {
        const int lo = L[64 * g + l], hi = L[64 * g + 32 + l];
        o.qs[32 * g + l] = static_cast<uint8_t>((lo & 0x0F) | ((hi & 0x0F) << 4));
        o.qh[l] = static_cast<uint8_t>(o.qh[l] | ((lo >> 4) << (2 * g)) | ((hi >> 4) << (2 * g + 1)));
      }
    }
  }
}

void quantize_row_q6_K(const float* x, BlockQ6_K* dst, int64_t n) {
  check_multiple("Q6_K", n, kQK_K);
  int8_t L[kQK_K];
  float scales[kQK_K / 16];
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float* xb = x + b * kQK_K;
    BlockQ6_K& o = dst[b];
    float max_scale = 0, max_abs_scale = 0;
    for (int s = 0; s < kQK_K / 16; ++s) {
      scales[s] = search_scale_symmetric(16, 32, xb + 16 * s, L + 16 * s);
      if (std::fabs(scales[s]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[s]);
        max_scale = scales[s];
      }
    }
    if (max_abs_scale < 1e-15f) {
      std::memset(&o, 0, sizeof(o));
      continue;
    }
    const float iscale = -128.f / max_scale;
    store_fp16(&o.d, 1 / iscale);
    for (int s = 0; s < kQK_K / 16; ++s)
      o.scales[s] = static_cast<int8_t>(std::min(127, round_even(iscale * scales[s])));
    uint16_t dh;
    std::memcpy(&dh, &o.d, 2);
    for (int s = 0; s < kQK_K / 16; ++s) {
      const float d = fp16_to_f32(dh) * static_cast<float>(o.scales[s]);
      if (d == 0) continue;  // keeps the search's levels, as ggml does
      for (int i = 0; i < 16; ++i) {
        const int l = std::max(-32, std::min(31, round_even(xb[16 * s + i] / d)));
        L[16 * s + i] = static_cast<int8_t>(l + 32);
      }
    }
    // Two halves of 128: ql[64h + l] holds elements 128h + l (low nibble) and
    // 128h + 64 + l (high); ql[64h + 32 + l] elements 128h + 32 + l and
    // 128h + 96 + l; qh[32h + l] the top two bits of 128h + l, +32, +64, +96
    // in bit pairs 0-1, 2-3, 4-5, 6-7.
    for (int h = 0; h < 2; ++h) {
      const int8_t* Lh = L + 128 * h;
      for (int l = 0; l < 32; ++l) {
        o.ql[64 * h + l] = static_cast<uint8_t>((Lh[l] & 0x0F) | ((Lh[l + 64] & 0x0F) << 4));
        o.ql[64 * h + 32 + l] = static_cast<uint8_t>((Lh[l + 32] & 0x0F) | ((Lh[l + 96] & 0x0F) << 4));
        o.qh[32 * h + l] = static_cast<uint8_t>((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                                                ((Lh[l + 96] >> 4) << 6));
      }
    }
  }
}

void quantize_row_q8_K(const float* x, BlockQ8_K* dst, int64_t n) {
  check_multiple("Q8_K", n, kQK_K);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float* xb = x + b * kQK_K;
    BlockQ8_K& o = dst[b];
    float mx = 0, amax = 0;
    for (int j = 0; j < kQK_K; ++j) {
      const float ax = std::fabs(xb[j]);
      if (ax > amax) {
        amax = ax;
        mx = xb[j];
      }
    }
    if (amax == 0) {  // ggml leaves bsums untouched here; they are zero
      std::memset(&o, 0, sizeof(o));
      continue;
    }
    const float iscale = -127.f / mx;
    for (int j = 0; j < kQK_K; ++j) o.qs[j] = static_cast<int8_t>(std::min(127, round_even(iscale * xb[j])));
    for (int g = 0; g < kQK_K / 16; ++g) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) sum += o.qs[16 * g + i];
      o.bsums[g] = static_cast<int16_t>(sum);
    }
    o.d = 1 / iscale;
  }
}

// ---- activations -----------------------------------------------------------------

void quantize_act_q8_1(const float* x, BlockQ8_1* dst, int64_t n) {
  check_multiple("Q8_1", n, kQK);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.f;
    const float id = amax != 0 ? 127.f / amax : 0.f;
    store_fp16(&dst[b].d, d);
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      const int q = static_cast<int>(std::nearbyint(xb[j] * id));  // half to even (default rounding mode)
      dst[b].qs[j] = static_cast<int8_t>(q);
      sum += q;
    }
    store_fp16(&dst[b].s, d * static_cast<float>(sum));
  }
}

void quantize_act_q8_K(const float* x, BlockQ8_K* dst, int64_t n) { quantize_row_q8_K(x, dst, n); }

}  // namespace g4::kernels
