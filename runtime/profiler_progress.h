// Progress display for long runs (`tandem profile`): tokens done/total, tokens/s, ETA.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace tandem {

struct ProfileProgressInfo {
  uint64_t tokens_done = 0;
  uint64_t tokens_total = 0;  // after the -n cap
  double seconds = 0.0;       // since the first evaluation started
};

// The progress display: on a TTY a bar redrawn in place (tokens done/total, tokens/s, ETA),
// elsewhere one plain line every `plain_every` (and at the end). Writes to `out` (stderr).
class ProgressPrinter {
 public:
  explicit ProgressPrinter(std::FILE* out, std::chrono::seconds plain_every = std::chrono::seconds(10));
  void operator()(const ProfileProgressInfo& info);
  void finish();  // ends the bar's line on a TTY

 private:
  std::FILE* out_;
  bool tty_;
  std::chrono::seconds plain_every_;
  double last_print_ = -1e9;
  bool drawn_ = false;
};

// The text of one progress report, without line end: "  1234/5000 tokens [#####.....] 24.7%
// 812.3 tokens/s ETA 4.6 s" (`bar_width` 0 = no bar).
std::string format_progress(const ProfileProgressInfo& info, int bar_width);

}  // namespace tandem
