// Zero-initialised anonymous memory that is reserved (address space) up front
// and committed by the kernel page by page on first write.
//
// Used for buffers whose worst-case size is large but whose used part grows
// over time, like a KV cache at a 128K/256K context: MAP_NORESERVE keeps the
// reservation out of the commit charge, so a cache sized for the model's
// maximum context costs nothing until positions are written, and resident
// memory then grows with the positions actually stored. Untouched pages read
// as zero. Move-only; the mapping's address never changes (pointers into it
// stay valid across moves).
#pragma once
#include <cstddef>
#include <cstdint>

namespace g4 {

class ReservedMemory {
 public:
  ReservedMemory() = default;
  // Throws g4::Error when the address space cannot be reserved. 0 bytes: empty.
  explicit ReservedMemory(size_t bytes);
  ~ReservedMemory();
  ReservedMemory(ReservedMemory&& o) noexcept;
  ReservedMemory& operator=(ReservedMemory&& o) noexcept;
  ReservedMemory(const ReservedMemory&) = delete;
  ReservedMemory& operator=(const ReservedMemory&) = delete;

  void* data() const { return data_; }
  size_t size() const { return size_; }  // bytes requested
  // Returns every page to the kernel; the contents read as zero afterwards.
  void discard();
  // Bytes of this buffer currently resident in RAM (mincore; page granular).
  size_t resident_bytes() const;

 private:
  void release();
  void* data_ = nullptr;
  size_t size_ = 0;
  size_t mapped_ = 0;  // size rounded up to pages
};

// Bytes of [p, p + n) resident in this process's RAM (mincore over the pages
// the range touches; anonymous or file-backed). 0 for n == 0.
size_t resident_bytes_of(const void* p, size_t n);

}  // namespace g4
