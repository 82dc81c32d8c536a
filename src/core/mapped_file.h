// Read-only memory-mapped file. Model weights are used in place (zero copy);
// tensor views keep the mapping alive through a shared_ptr.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace g4 {

class MappedFile {
 public:
  // Throws g4::Error naming the path when it cannot be opened or mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  // Wraps a caller-owned buffer (fuzzing, tests); no copy, caller keeps it alive.
  static std::shared_ptr<MappedFile> borrow(const uint8_t* data, size_t size, std::string name);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool owns_mapping_ = false;
  std::string path_;
};

}  // namespace g4
