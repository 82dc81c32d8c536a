#include "tools/progress.h"

#include <unistd.h>

#include <algorithm>

namespace g4 {

Progress::Progress(std::string label, uint64_t total, FILE* out)
    : Progress(std::move(label), total, out, out != nullptr && ::isatty(::fileno(out)) == 1) {}

Progress::Progress(std::string label, uint64_t total, FILE* out, bool interactive)
    : label_(std::move(label)), total_(total), out_(out), interactive_(interactive && out != nullptr) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
  if (interactive_) draw(true);
}

Progress::~Progress() {
  // Destroyed without finish() (an exception unwinds): end the bar's line so
  // the error message that follows starts on a fresh line.
  if (interactive_ && !finished_ && last_width_ > 0) {
    std::fputc('\n', out_);
    std::fflush(out_);
  }
}

void Progress::advance(uint64_t n, std::string_view item) {
  done_ = std::min(total_, done_ + n);
  if (!item.empty()) item_.assign(item);
  if (interactive_) draw(false);
}

void Progress::draw(bool force) {
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - last_draw_ < std::chrono::milliseconds(100) && done_ < total_) return;
  last_draw_ = now;
  const double frac = total_ ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(frac * kWidth);
  std::string bar(static_cast<size_t>(filled), '=');
  if (filled < kWidth) bar += '>';
  bar.resize(kWidth, ' ');
  const double secs = std::chrono::duration<double>(now - start_).count();
  char head[160];
  std::snprintf(head, sizeof head, "%s [%s] %5.1f%% %6.1fs ", label_.c_str(), bar.c_str(), 100.0 * frac, secs);
  std::string line = head;
  // Keep the line short enough for an 80-column terminal.
  std::string item = item_;
  if (line.size() + item.size() > 100) item = "..." + item.substr(item.size() - (100 - line.size() - 3));
  line += item;
  const size_t width = line.size();
  if (width < last_width_) line.append(last_width_ - width, ' ');
  last_width_ = width;
  std::fprintf(out_, "\r%s", line.c_str());
  std::fflush(out_);
}

void Progress::finish(std::string_view summary) {
  if (finished_) return;
  finished_ = true;
  if (!out_) return;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (interactive_) {
    done_ = total_;
    draw(true);
    std::fputc('\n', out_);
  }
  std::fprintf(out_, "%s: %.*s (%.2f s)\n", label_.c_str(), static_cast<int>(summary.size()), summary.data(), secs);
  std::fflush(out_);
}

}  // namespace g4
