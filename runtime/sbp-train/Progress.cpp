// Progress.cpp - progress bar / periodic lines.
#include "Progress.h"

#include <fmt/format.h>

namespace sbp::train {

Progress::Progress(std::FILE *out, bool terminal, std::string label, int64_t total)
    : out_(out), terminal_(terminal), label_(std::move(label)), total_(total > 0 ? total : 1) {}

void Progress::update(int64_t done, double loss, double images_per_second) {
  if (!terminal_) {
    // Non-terminals get a line at each 10% crossed, never a carriage return.
    if (done * 10 < next_decile_ * total_)
      return;
    while (next_decile_ * total_ <= done * 10)
      ++next_decile_;
    fmt::print(out_, "{}  {:3d}%  {}/{}  loss {:.4f}  {:.0f} img/s\n", label_,
               int(done * 100 / total_), done, total_, loss, images_per_second);
    std::fflush(out_);
    return;
  }
  auto now = std::chrono::steady_clock::now();
  if (drawn_ && done < total_ && now - last_draw_ < std::chrono::milliseconds(100))
    return;
  last_draw_ = now;
  drawn_ = true;
  constexpr int kWidth = 30;
  int filled = int(done * kWidth / total_);
  fmt::print(out_, "\r{} [{}{}] {:3d}% loss {:.4f} {:.0f} img/s\x1b[K", label_,
             std::string(size_t(filled), '#'), std::string(size_t(kWidth - filled), '.'),
             int(done * 100 / total_), loss, images_per_second);
  std::fflush(out_);
}

void Progress::finish() {
  if (terminal_ && drawn_) {
    fmt::print(out_, "\r\x1b[K");
    std::fflush(out_);
  }
}

} // namespace sbp::train
