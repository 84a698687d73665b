#include "runtime/profiler_progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>

namespace tandem {

std::string format_progress(const ProfileProgressInfo& info, int bar_width) {
  const double frac = info.tokens_total ? static_cast<double>(info.tokens_done) / static_cast<double>(info.tokens_total) : 1.0;
  const double rate = info.seconds > 0 ? static_cast<double>(info.tokens_done) / info.seconds : 0.0;
  std::string out = fmt::format("{}/{} tokens", info.tokens_done, info.tokens_total);
  if (bar_width > 0) {
    const int filled = std::clamp(static_cast<int>(frac * bar_width + 0.5), 0, bar_width);
    out += fmt::format(" [{}{}]", std::string(static_cast<size_t>(filled), '#'),
                       std::string(static_cast<size_t>(bar_width - filled), '.'));
  }
  out += fmt::format(" {:.1f}% {:.1f} tokens/s", 100.0 * frac, rate);
  if (rate > 0 && info.tokens_done < info.tokens_total) {
    out += fmt::format(" ETA {:.1f} s", static_cast<double>(info.tokens_total - info.tokens_done) / rate);
  } else if (info.tokens_done >= info.tokens_total) {
    out += fmt::format(" in {:.1f} s", info.seconds);
  }
  return out;
}

ProgressPrinter::ProgressPrinter(std::FILE* out, std::chrono::seconds plain_every)
    : out_(out), tty_(isatty(fileno(out)) == 1), plain_every_(plain_every) {}

void ProgressPrinter::operator()(const ProfileProgressInfo& info) {
  const bool last = info.tokens_done >= info.tokens_total;
  if (tty_) {
    // \r and clear-to-end-of-line: the bar is redrawn in place.
    std::fprintf(out_, "\r\033[Kprofile: %s", format_progress(info, 30).c_str());
    drawn_ = true;
  } else if (last || info.seconds - last_print_ >= static_cast<double>(plain_every_.count())) {
    std::fprintf(out_, "profile: %s\n", format_progress(info, 0).c_str());
    last_print_ = info.seconds;
  }
  std::fflush(out_);
}

void ProgressPrinter::finish() {
  if (tty_ && drawn_) std::fputc('\n', out_);
  drawn_ = false;
}

}  // namespace tandem
