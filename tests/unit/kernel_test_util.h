// Helpers shared by the kernel tests: seeded normal random data and the list of
// kernel tables this CPU can run (every ISA a test must cover).
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/kernels.h"

namespace g4::kernels::test {

inline std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

inline std::vector<const KernelTable*> tables() {
  std::vector<const KernelTable*> t;
  for (int i = 0; i < kIsaCount; ++i)
    if (isa_available(static_cast<Isa>(i))) t.push_back(&table(static_cast<Isa>(i)));
  return t;
}

}  // namespace g4::kernels::test
