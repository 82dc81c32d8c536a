// What this x86-64 CPU supports, read once from CPUID (and XGETBV for the OS
// saving AVX/AVX-512 state). Kernels and converters choose their paths from it,
// so one binary runs on every x86-64.
#pragma once

namespace g4 {

struct CpuFeatures {
  bool avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512vnni = false, avx512bf16 = false;
};

const CpuFeatures& cpu_features();

}  // namespace g4
