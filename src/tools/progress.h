// A progress bar for long-running tools (convert, quantize, perplexity) on
// stderr. On a terminal the bar redraws in place (at most ~10 times a
// second, so tiny steps cost nothing); when stderr is not a terminal (logs,
// CI, tests) nothing is drawn until finish(), which prints one plain line —
// so captured output stays readable and deterministic.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace g4 {

class Progress {
 public:
  // `total` units of work (bytes, chunks ...); `label` prefixes the bar and
  // the final line. `out` nullptr: silent. The bar is drawn when `out` is a
  // terminal; the second form decides explicitly (tests).
  Progress(std::string label, uint64_t total, FILE* out = stderr);
  Progress(std::string label, uint64_t total, FILE* out, bool interactive);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Adds `n` done units; `item` names what is being worked on (e.g. a tensor).
  void advance(uint64_t n, std::string_view item = {});
  // Ends the bar with a plain summary line ("label: summary").
  void finish(std::string_view summary);
  bool interactive() const { return interactive_; }

 private:
  void draw(bool force);

  std::string label_;
  uint64_t total_ = 0, done_ = 0;
  FILE* out_ = nullptr;
  bool interactive_ = false;
  bool finished_ = false;
  std::string item_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  size_t last_width_ = 0;
};

}  // namespace g4
