// Counts operator new calls in a test binary, to prove hot loops do not
// allocate. Include from exactly one translation unit of a test executable (it
// replaces the global operator new/delete). Not under AddressSanitizer, which
// owns the allocator (its interceptors and a replaced operator new do not mix):
// G4_COUNT_ALLOCS is 0 there and allocation checks must skip.
#pragma once
#include <atomic>
#include <cstdlib>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define G4_COUNT_ALLOCS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define G4_COUNT_ALLOCS 0
#endif
#endif
#ifndef G4_COUNT_ALLOCS
#define G4_COUNT_ALLOCS 1
#endif
namespace {
std::atomic<long> g_allocs{0};
}
#if G4_COUNT_ALLOCS
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop
#endif
