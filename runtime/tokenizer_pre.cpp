#include "runtime/tokenizer_pre.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace tandem {
namespace {

constexpr std::string_view k_qwen2_regex =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

struct MatchData {
  pcre2_match_data* md;
  explicit MatchData(const pcre2_code* code) : md(pcre2_match_data_create_from_pattern(code, nullptr)) {}
  ~MatchData() { pcre2_match_data_free(md); }
  MatchData(const MatchData&) = delete;
  MatchData& operator=(const MatchData&) = delete;
};

}  // namespace

struct PreTokenizer::Impl {
  std::string name;
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Impl() { pcre2_code_free(code); }
};

Result<PreTokenizer> PreTokenizer::create(std::string_view pre_name) {
  if (pre_name != "qwen2") {
    return make_error(ErrorCode::unsupported,
                      "unsupported tokenizer.ggml.pre '{}' (supported: qwen2)", pre_name);
  }
  auto impl = std::make_shared<Impl>();
  impl->name = std::string(pre_name);
  int err = 0;
  PCRE2_SIZE err_off = 0;
  impl->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(k_qwen2_regex.data()), k_qwen2_regex.size(),
                             PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr);
  if (!impl->code) {
    return make_error(ErrorCode::internal, "pre-tokenizer regex '{}' does not compile at offset {}: {}",
                      pre_name, err_off, pcre2_message(err));
  }
  // JIT is an optimisation only: without it (no JIT support on this platform) matching works the same.
  impl->jit = pcre2_jit_compile(impl->code, PCRE2_JIT_COMPLETE) == 0;
  return PreTokenizer(std::move(impl));
}

const std::string& PreTokenizer::name() const { return impl_->name; }

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& words) const {
  MatchData m(impl_->code);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos < text.size()) {
    int rc = pcre2_match(impl_->code, subject, text.size(), pos, 0, m.md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      // The JIT's default stack is small; the interpreter keeps its frames on the heap.
      rc = pcre2_match(impl_->code, subject, text.size(), pos, PCRE2_NO_JIT, m.md, nullptr);
    }
    if (rc < 0) break;  // no further match (or a resource limit): the rest is one word below
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(m.md);
    const size_t start = ov[0], end = ov[1];
    if (start > pos) words.push_back(text.substr(pos, start - pos));  // bytes no pattern matched
    if (end == start) {
      // Every alternative consumes at least one character, so this cannot happen; guard anyway.
      words.push_back(text.substr(start, 1));
      pos = start + 1;
      continue;
    }
    words.push_back(text.substr(start, end - start));
    pos = end;
  }
  if (pos < text.size()) words.push_back(text.substr(pos));
}

}  // namespace tandem
