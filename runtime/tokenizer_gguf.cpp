// Tokenizer::from_gguf: the tokenizer.ggml.* keys of spec §3.5 into a VocabData.
// Kept apart from tokenizer.cpp so that code using only from_vocab() does not pull in GgufFile.
#include "runtime/gguf_file.h"
#include "runtime/tokenizer.h"

namespace tandem {
namespace {

// An optional key: absent -> fallback; present with the wrong type -> the getter's error.
template <class T, class Getter>
Result<T> optional_key(const GgufFile& f, std::string_view key, T fallback, Getter get) {
  if (!f.has_key(key)) return fallback;
  return (f.*get)(key);
}

}  // namespace

Result<Tokenizer> Tokenizer::from_gguf(const GgufFile& f) {
  const auto ctx = [&](const Status& s) { return s.with_context(f.path().string()); };
  VocabData v;
  {
    auto r = f.get_string("tokenizer.ggml.model");
    if (!r.ok()) return ctx(r.status());
    v.model = std::move(r).value();
  }
  if (v.model != "gpt2") {
    return ctx(make_error(ErrorCode::unsupported,
                          "unsupported tokenizer.ggml.model '{}' (supported: gpt2, byte-level BPE)", v.model));
  }
  {
    auto r = f.get_string("tokenizer.ggml.pre");
    if (!r.ok()) return ctx(r.status());
    v.pre = std::move(r).value();
  }
  {
    auto r = f.get_string_array("tokenizer.ggml.tokens");
    if (!r.ok()) return ctx(r.status());
    v.tokens = std::move(r).value();
  }
  {
    auto r = f.get_string_array("tokenizer.ggml.merges");
    if (!r.ok()) return ctx(r.status());
    v.merges = std::move(r).value();
  }
  if (f.has_key("tokenizer.ggml.token_type")) {
    auto r = f.get_i32_array("tokenizer.ggml.token_type");
    if (!r.ok()) return ctx(r.status());
    v.token_types = std::move(r).value();
  }
  // llama.cpp falls back to GPT-2's id 11 for absent bos/eos, meaningless for other
  // vocabularies; we require both.
  auto bos = f.get_u32("tokenizer.ggml.bos_token_id");
  auto eos = f.get_u32("tokenizer.ggml.eos_token_id");
  auto add_bos = optional_key<bool>(f, "tokenizer.ggml.add_bos_token", false, &GgufFile::get_bool);
  auto add_eos = optional_key<bool>(f, "tokenizer.ggml.add_eos_token", false, &GgufFile::get_bool);
  auto tmpl = optional_key<std::string>(f, "tokenizer.chat_template", std::string(), &GgufFile::get_string);
  for (const Status* s : {&bos.status(), &eos.status(), &add_bos.status(), &add_eos.status(), &tmpl.status()}) {
    if (!s->ok()) return ctx(*s);
  }
  v.bos_token_id = *bos;
  v.eos_token_id = *eos;
  v.add_bos_token = *add_bos;
  v.add_eos_token = *add_eos;
  v.chat_template = std::move(tmpl).value();
  if (f.has_key("tokenizer.ggml.padding_token_id")) {
    auto r = f.get_u32("tokenizer.ggml.padding_token_id");
    if (!r.ok()) return ctx(r.status());
    v.padding_token_id = *r;
  }
  auto t = from_vocab(v);
  if (!t.ok()) return ctx(t.status());
  return t;
}

}  // namespace tandem
