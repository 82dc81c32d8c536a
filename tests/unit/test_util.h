// Helpers shared by the unit tests: where ../shared (golden data) lives, temp
// folders that clean up after themselves, and "this throws a g4::Error that
// says X" checks.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <system_error>

#include "core/error.h"

namespace g4::testutil {

namespace fs = std::filesystem;

// CI clones the repo with shared/ beside it; GEMMA4_SHARED_DIR overrides.
inline fs::path shared_dir() {
  if (const char* e = std::getenv("GEMMA4_SHARED_DIR"); e && *e) return e;
  return fs::path(GEMMA4_SOURCE_DIR) / ".." / "shared";
}
inline fs::path golden_text(const std::string& family) { return shared_dir() / "golden" / "text" / family; }

// A fresh folder per test (named after the test), removed at the end.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "g4") {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() / (prefix + "_" + std::to_string(::getpid()) + "_" +
                                         info->test_suite_name() + "_" + info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& f) const { return (path_ / f).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// One folder for the whole test binary, removed when the binary's tests end.
inline fs::path process_temp_dir(const std::string& prefix) {
  static const fs::path dir = [&] {
    fs::path p = fs::temp_directory_path() / (prefix + "_" + std::to_string(::getpid()));
    fs::create_directories(p);
    struct Cleanup : ::testing::Environment {
      fs::path p;
      explicit Cleanup(fs::path q) : p(std::move(q)) {}
      void TearDown() override {
        std::error_code ec;
        fs::remove_all(p, ec);
      }
    };
    ::testing::AddGlobalTestEnvironment(new Cleanup(p));
    return p;
  }();
  return dir;
}

// f() must throw g4::Error whose message contains every needle.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "expected g4::Error containing '" << *needles.begin() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "message: " << msg << "\nmissing: " << n;
  }
}

}  // namespace g4::testutil
