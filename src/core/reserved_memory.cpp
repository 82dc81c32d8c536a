#include "core/reserved_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "core/error.h"

namespace g4 {
namespace {

size_t page_size() {
  static const size_t ps = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return ps;
}

}  // namespace

ReservedMemory::ReservedMemory(size_t bytes) {
  if (bytes == 0) return;
  const size_t ps = page_size();
  const size_t mapped = (bytes + ps - 1) / ps * ps;
  if (mapped < bytes) fail("cannot reserve ", bytes, " bytes: size overflows");
  void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    fail("cannot reserve ", bytes, " bytes of address space: ", std::strerror(errno));
  data_ = p;
  size_ = bytes;
  mapped_ = mapped;
}

ReservedMemory::~ReservedMemory() { release(); }

ReservedMemory::ReservedMemory(ReservedMemory&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), mapped_(std::exchange(o.mapped_, 0)) {}

ReservedMemory& ReservedMemory::operator=(ReservedMemory&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    mapped_ = std::exchange(o.mapped_, 0);
  }
  return *this;
}

void ReservedMemory::release() {
  if (data_) ::munmap(data_, mapped_);
  data_ = nullptr;
  size_ = mapped_ = 0;
}

void ReservedMemory::discard() {
  if (!data_) return;
  // Private anonymous pages: MADV_DONTNEED frees them and later reads see zeros.
  if (::madvise(data_, mapped_, MADV_DONTNEED) != 0) std::memset(data_, 0, size_);
}

size_t ReservedMemory::resident_bytes() const { return resident_bytes_of(data_, size_); }

size_t resident_bytes_of(const void* p, size_t n) {
  if (!p || n == 0) return 0;
  const size_t ps = page_size();
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p) / ps * ps;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n + ps - 1) / ps * ps;
  const size_t pages = (end - begin) / ps;
  std::vector<unsigned char> vec(std::min<size_t>(pages, size_t{1} << 20));
  size_t resident = 0;
  for (size_t done = 0; done < pages;) {
    const size_t k = std::min(pages - done, vec.size());
    if (::mincore(reinterpret_cast<void*>(begin + done * ps), k * ps, vec.data()) != 0) return 0;
    for (size_t i = 0; i < k; ++i) resident += vec[i] & 1;
    done += k;
  }
  return resident * ps;
}

}  // namespace g4
