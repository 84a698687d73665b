// Test-only: the real Qwen2 vocabulary (../shared/data/qwen.tiktoken), built once per test
// binary and shared by the [data] tests of tokenizer_test.cpp, tokenizer_gguf_test.cpp and
// vocab_builder_test.cpp (inline functions: one static across translation units).
#pragma once

#include <catch2/catch.hpp>

#include "runtime/tokenizer.h"
#include "runtime/vocab_builder.h"
#include "support/test_support.h"

namespace test {

inline const tandem::VocabData& qwen_vocab() {
  static const tandem::VocabData v = [] {
    const auto data = shared_data_dir();
    REQUIRE(data);
    auto r = tandem::vocab_from_tiktoken(*data / "qwen.tiktoken", 151936);
    INFO(r.status().message());
    REQUIRE(r.ok());
    return std::move(r).value();
  }();
  return v;
}

inline const tandem::Tokenizer& qwen_tokenizer() {
  static const tandem::Tokenizer t = [] {
    auto r = tandem::Tokenizer::from_vocab(qwen_vocab());
    INFO(r.status().message());
    REQUIRE(r.ok());
    return std::move(r).value();
  }();
  return t;
}

}  // namespace test
