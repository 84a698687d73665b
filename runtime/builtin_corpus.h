// builtin_corpus(): about 30 KB of original English prose shipped inside Tandem (computing,
// machines, nature, cooking, travel, dialogues, numbers and punctuation; mostly ASCII with a
// little UTF-8). vocab_builtin() learns its BPE merges from it, and the profiler uses it as
// calibration text, so both see the same words. The text is fixed: changing it changes every
// built-in vocabulary and every model made with one.
#pragma once

#include <string_view>

namespace tandem {

// The whole text, valid UTF-8, '\n' line ends; lives for the whole program.
std::string_view builtin_corpus();

}  // namespace tandem
