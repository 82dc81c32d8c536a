// The quants.h types against ggml itself: llama.cpp's own libraries as shipped
// by node-llama-cpp (tests/oracle/node_modules/@node-llama-cpp/linux-x64/bins/
// linux-x64: libggml-base.so, libggml-cpu-haswell.so), loaded with dlopen.
//   * weight quantizers: ggml_quantize_chunk(type, ..., imatrix = NULL), the
//     code llama-quantize runs without an importance matrix — byte for byte;
//   * dequantizers: ggml's to_float — bit for bit;
//   * activation quantizers Q8_0/Q8_1/Q8_K: the AVX2 build's run-time from_float
//     — bit for bit, on every ISA table;
//   * block dots: ggml's AVX2 vec_dot vs ours (scalar and every ISA's
//     matmul_q) within fp32 accumulation rounding (same integer sums).
// Without the libraries (or an AVX2 CPU) the tests skip; with CI=true or
// GEMMA4_REQUIRE_ORACLES=1 they fail instead. G4_GGML_LIB_DIR overrides the
// folder.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "kernel_test_util.h"
#include "core/dtype.h"
#include "kernels/kernels.h"
#include "kernels/quants.h"

using namespace g4;
using namespace g4::kernels;

namespace {

using g4::kernels::test::randn;
using g4::kernels::test::tables;

// ggml's C API, as declared in ggml.h / ggml-cpu.h of the bundled source.
using ToFloatFn = void (*)(const void* x, float* y, int64_t k);
using FromFloatFn = void (*)(const float* x, void* y, int64_t k);
using VecDotFn = void (*)(int n, float* s, size_t bs, const void* x, size_t bx, const void* y, size_t by, int nrc);
struct GgmlTypeTraits {
  const char* type_name;
  int64_t blck_size;
  int64_t blck_size_interleave;
  size_t type_size;
  bool is_quantized;
  ToFloatFn to_float;
  FromFloatFn from_float_ref;
};
struct GgmlTypeTraitsCpu {
  FromFloatFn from_float;
  VecDotFn vec_dot;
  int vec_dot_type;
  int64_t nrows;
};
using QuantizeChunkFn = size_t (*)(int type, const float* src, void* dst, int64_t start, int64_t nrows,
                                   int64_t n_per_row, const float* imatrix);

struct Ggml {
  std::string problem;  // why it is not usable; empty when it is
  QuantizeChunkFn quantize_chunk = nullptr;
  const GgmlTypeTraits* (*traits)(int) = nullptr;
  const GgmlTypeTraitsCpu* (*traits_cpu)(int) = nullptr;
  ToFloatFn dequantize_q8_K = nullptr;  // not in Q8_K's type traits

  const GgmlTypeTraits& t(GgmlType type) const { return *traits(static_cast<int>(type)); }
  const GgmlTypeTraitsCpu& cpu(GgmlType type) const { return *traits_cpu(static_cast<int>(type)); }
};

const Ggml& ggml() {
  static const Ggml g = [] {
    Ggml o;
    namespace fs = std::filesystem;
    fs::path dir = fs::path(GEMMA4_SOURCE_DIR) / "tests/oracle/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64";
    if (const char* e = std::getenv("G4_GGML_LIB_DIR"); e && *e) dir = e;
    if (!isa_available(Isa::Avx2)) {
      o.problem = "no AVX2 on this CPU (the oracle is ggml's AVX2 build)";
      return o;
    }
    const fs::path base = dir / "libggml-base.so", cpu = dir / "libggml-cpu-haswell.so";
    if (!fs::exists(base) || !fs::exists(cpu)) {
      o.problem = "ggml libraries not found in " + dir.string() + " (npm ci in tests/oracle)";
      return o;
    }
    void* hb = dlopen(base.c_str(), RTLD_NOW | RTLD_LOCAL);
    void* hc = hb ? dlopen(cpu.c_str(), RTLD_NOW | RTLD_LOCAL) : nullptr;
    if (!hb || !hc) {
      o.problem = std::string("dlopen failed: ") + dlerror();
      return o;
    }
    o.quantize_chunk = reinterpret_cast<QuantizeChunkFn>(dlsym(hb, "ggml_quantize_chunk"));
    o.traits = reinterpret_cast<const GgmlTypeTraits* (*)(int)>(dlsym(hb, "ggml_get_type_traits"));
    o.traits_cpu = reinterpret_cast<const GgmlTypeTraitsCpu* (*)(int)>(dlsym(hc, "ggml_get_type_traits_cpu"));
    o.dequantize_q8_K = reinterpret_cast<ToFloatFn>(dlsym(hb, "dequantize_row_q8_K"));
    auto init = reinterpret_cast<void (*)()>(dlsym(hc, "ggml_cpu_init"));
    if (!o.quantize_chunk || !o.traits || !o.traits_cpu || !o.dequantize_q8_K || !init) {
      o.problem = "ggml symbols missing";
      return o;
    }
    init();
    // The struct layouts above must be the library's.
    const GgmlTypeTraits& q4k = o.t(GgmlType::Q4_K);
    if (q4k.blck_size != 256 || q4k.type_size != 144 || !q4k.to_float ||
        o.cpu(GgmlType::Q4_K).vec_dot_type != static_cast<int>(GgmlType::Q8_K))
      o.problem = "ggml type-traits layout differs from the one this test declares";
    return o;
  }();
  return g;
}

#define REQUIRE_GGML()                                                                                 \
  do {                                                                                                 \
    const std::string& p = ggml().problem;                                                             \
    if (!p.empty()) {                                                                                  \
      const char* ci = std::getenv("CI");                                                              \
      const char* req = std::getenv("GEMMA4_REQUIRE_ORACLES");                                         \
      if ((ci && std::string(ci) == "true") || (req && std::string(req) == "1")) FAIL() << p;          \
      GTEST_SKIP() << p;                                                                               \
    }                                                                                                  \
  } while (0)

// Rows that stress the quantizers: gaussian, uniform, heavy tails, an
// all-zero block, constant blocks, tiny and huge magnitudes, exact ties.
std::vector<float> test_data(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> gauss(0.f, 1.f);
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t blk = i / 32;
    switch (blk % 9) {
      case 0: x[i] = gauss(rng); break;
      case 1: x[i] = uni(rng) * 0.02f; break;
      case 2: x[i] = gauss(rng) * (i % 7 == 0 ? 30.f : 1.f); break;
      case 3: x[i] = (seed % 3 == 0) ? 0.f : gauss(rng) * 1e-3f; break;
      case 4: x[i] = uni(rng) + 3.f; break;                                     // all positive
      case 5: x[i] = 0.25f * static_cast<float>(static_cast<int>(i % 17) - 8); break;  // exact grid values
      case 6: x[i] = gauss(rng) * 1e-6f; break;
      case 7: x[i] = 1.5f; break;  // constant
      default: x[i] = gauss(rng) * 100.f; break;
    }
  }
  return x;
}

const GgmlType kWeightTypes[] = {GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                                 GgmlType::MXFP4, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

}  // namespace

TEST(QuantsVsGgml, WeightQuantizersAreByteIdentical) {
  REQUIRE_GGML();
  for (GgmlType type : kWeightTypes) {
    const int64_t blk = ggml_type_info(type).block_size;
    for (int64_t n_per_row : {blk, 3 * blk, 9 * blk}) {
      for (uint32_t seed : {1u, 2u, 3u}) {
        const int64_t rows = 5;
        auto x = test_data(n_per_row * rows, seed * 977 + static_cast<uint32_t>(n_per_row));
        const size_t bytes = ggml_row_bytes(type, n_per_row) * rows;
        std::vector<uint8_t> ours(bytes, 0xAB), theirs(bytes, 0xCD);
        quantize_rows(type, x.data(), ours.data(), rows, n_per_row);
        ggml().quantize_chunk(static_cast<int>(type), x.data(), theirs.data(), 0, rows, n_per_row, nullptr);
        size_t first = 0;
        while (first < bytes && ours[first] == theirs[first]) ++first;
        EXPECT_EQ(first, bytes) << ggml_type_name(type) << " n_per_row=" << n_per_row << " seed=" << seed
                                << ": first difference at byte " << first << " (block "
                                << first / ggml_type_info(type).block_bytes << ")";
      }
    }
  }
}

TEST(QuantsVsGgml, WeightQuantizersAreByteIdenticalOnWeightLikeRows) {
  // Many super-blocks of the distributions real checkpoints have: gaussian
  // N(0, 0.02), heavy-tailed (Student-t-like), sparse rows (mostly zeros:
  // sub-blocks whose scale rounds to 0 keep the search's levels), and rows
  // with one large outlier per super-block.
  REQUIRE_GGML();
  const int64_t rows = 48, n_per_row = 1536;
  std::mt19937 rng(1234);
  std::normal_distribution<float> g(0.f, 0.02f);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(rows * n_per_row));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n_per_row; ++i) {
      float& v = x[static_cast<size_t>(r * n_per_row + i)];
      switch (r % 4) {
        case 0: v = g(rng); break;
        case 1: v = g(rng) / std::max(0.05f, std::sqrt(u(rng))); break;
        case 2: v = u(rng) < 0.05f ? g(rng) * 10.f : 0.f; break;
        default: v = g(rng) + (i % 256 == 17 ? 1.5f : 0.f); break;
      }
    }
  for (GgmlType type : kWeightTypes) {
    const size_t bytes = ggml_row_bytes(type, n_per_row) * rows;
    std::vector<uint8_t> ours(bytes, 0xAB), theirs(bytes, 0xCD);
    quantize_rows(type, x.data(), ours.data(), rows, n_per_row);
    ggml().quantize_chunk(static_cast<int>(type), x.data(), theirs.data(), 0, rows, n_per_row, nullptr);
    size_t first = 0;
    while (first < bytes && ours[first] == theirs[first]) ++first;
    EXPECT_EQ(first, bytes) << ggml_type_name(type) << ": first difference at byte " << first;
  }
}

TEST(QuantsVsGgml, DequantizationIsBitIdentical) {
  REQUIRE_GGML();
  for (GgmlType type : kWeightTypes) {
    const int64_t n = 7 * ggml_type_info(type).block_size;
    auto x = test_data(n, 11);
    std::vector<uint8_t> q(ggml_row_bytes(type, n));
    quantize_rows(type, x.data(), q.data(), 1, n);
    std::vector<float> theirs(static_cast<size_t>(n));
    ggml().t(type).to_float(q.data(), theirs.data(), n);
    for (const KernelTable* k : tables()) {
      std::vector<float> ours(static_cast<size_t>(n), -1.f);
      k->dequant_for(type)(q.data(), ours.data(), n);
      EXPECT_EQ(0, std::memcmp(ours.data(), theirs.data(), ours.size() * 4)) << ggml_type_name(type) << " "
                                                                             << isa_name(k->isa);
    }
  }
  // Q8_K: ggml_quantize_chunk and the type traits have no Q8_K; the blocks
  // come from our quantizer (compared with ggml's in the activation test).
  const int64_t n = 5 * kQK_K;
  auto x = test_data(n, 12);
  std::vector<BlockQ8_K> q(n / kQK_K);
  quantize_row_q8_K(x.data(), q.data(), n);
  std::vector<float> theirs(n), ours(n);
  ggml().dequantize_q8_K(q.data(), theirs.data(), n);
  for (const KernelTable* k : tables()) {
    k->dequant_for(GgmlType::Q8_K)(reinterpret_cast<const uint8_t*>(q.data()), ours.data(), n);
    EXPECT_EQ(0, std::memcmp(ours.data(), theirs.data(), ours.size() * 4)) << isa_name(k->isa);
  }
}

TEST(QuantsVsGgml, ActivationQuantizersAreBitIdentical) {
  REQUIRE_GGML();
  for (GgmlType act : {GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K}) {
    for (int64_t n : {int64_t{256}, int64_t{2048}, int64_t{256 * 11}}) {
      for (uint32_t seed : {5u, 6u}) {
        auto x = test_data(n, seed + static_cast<uint32_t>(n));
        // Exact .5 ties of x·(127/amax): amax 127 makes the factor 1.
        for (int j = 0; j < 32; ++j) x[64 + j] = static_cast<float>(j) - 15.5f;
        x[64] = 127.f;
        const size_t bytes = ggml_row_bytes(act, n);
        std::vector<uint8_t> theirs(bytes, 0);
        ggml().cpu(act).from_float(x.data(), theirs.data(), n);
        for (const KernelTable* k : tables()) {
          std::vector<uint8_t> ours(bytes, 0);
          k->quantize_act_for(act)(x.data(), ours.data(), n);
          EXPECT_EQ(0, std::memcmp(ours.data(), theirs.data(), bytes))
              << ggml_type_name(act) << " " << isa_name(k->isa) << " n=" << n << " seed=" << seed;
        }
      }
    }
  }
}

TEST(QuantsVsGgml, BlockDotsMatchGgmlWithinFp32Rounding) {
  REQUIRE_GGML();
  for (GgmlType type : kWeightTypes) {
    const GgmlType act = activation_type(type);
    const int64_t n = 8 * kQK_K + (ggml_type_info(type).block_size == kQK ? 3 * kQK : 0), n_out = 9;
    auto w = test_data(n * n_out, 21);
    auto x = test_data(n, 22);
    std::vector<uint8_t> wq(ggml_row_bytes(type, n) * n_out), xq(ggml_row_bytes(act, n));
    quantize_rows(type, w.data(), wq.data(), n_out, n);
    table(Isa::Scalar).quantize_act_for(act)(x.data(), xq.data(), n);
    const WeightMatrix m = WeightMatrix::raw(type, wq.data(), n, n_out);
    std::vector<float> deq(static_cast<size_t>(n));
    for (const KernelTable* k : tables()) {
      std::vector<float> y(static_cast<size_t>(n_out));
      k->matmul_q_for(type)(m, 0, n_out, xq.data(), 1, xq.size(), y.data(), n_out);
      for (int64_t o = 0; o < n_out; ++o) {
        float theirs = 0;
        ggml().cpu(type).vec_dot(static_cast<int>(n), &theirs, 0, m.row(o), 0, xq.data(), 0, 1);
        // Scale of the rounding: Σ|w|·|x| over the dequantized values.
        dequantize_row(m, o, deq.data(), &table(Isa::Scalar));
        double mag = 0;
        for (int64_t i = 0; i < n; ++i) mag += std::fabs(static_cast<double>(deq[i]) * x[i]);
        EXPECT_NEAR(y[o], theirs, 2e-6 * mag + 1e-30) << ggml_type_name(type) << " " << isa_name(k->isa) << " row " << o;
      }
    }
  }
}
