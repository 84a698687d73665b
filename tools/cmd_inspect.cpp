// `tandem inspect [FILE | -m FILE] [--json] [--kv] [--no-tensors]`: what a GGUF file holds and
// how Tandem understands it — hyperparameters, per-layer attention layout, gating, down layout,
// tied output, tokenizer summary, tensor table and a size breakdown. Any GGUF file can be
// inspected; the model section needs general.architecture = smallthinker (else its error is
// printed and the exit code is 1).
#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "command.h"
#include "core/dtype.h"
#include "runtime/gguf_file.h"
#include "runtime/model.h"

namespace tandem::tools {
namespace {

struct InspectOptions {
  std::string path;
  std::string model;
  bool json = false;
  bool kv = false;
  bool no_tensors = false;
};

std::string human_bytes(uint64_t b) {
  if (b >= (uint64_t{1} << 30))
    return fmt::format("{} B ({:.2f} GiB)", b, static_cast<double>(b) / (1 << 30));
  if (b >= (uint64_t{1} << 20))
    return fmt::format("{} B ({:.2f} MiB)", b, static_cast<double>(b) / (1 << 20));
  if (b >= (uint64_t{1} << 10))
    return fmt::format("{} B ({:.2f} KiB)", b, static_cast<double>(b) / (1 << 10));
  return fmt::format("{} B", b);
}

template <class... A>
void add_line(std::string& out, fmt::format_string<A...> f, A&&... a) {
  out += fmt::format(f, std::forward<A>(a)...);
  out += '\n';
}

std::string shape_str(const GgufTensorInfo& t) {
  std::string s = "[";
  for (uint32_t i = 0; i < t.n_dims; ++i) s += fmt::format("{}{}", i ? ", " : "", t.ne[i]);
  return s + "]";
}

// One line per metadata value; long arrays show their first elements.
std::string value_str(const GgufValue& v) {
  return std::visit(
      [&](const auto& x) -> std::string {
        using X = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<X, std::string>) {
          return x.size() > 80 ? fmt::format("\"{}...\" ({} bytes)", x.substr(0, 60), x.size())
                               : fmt::format("\"{}\"", x);
        } else if constexpr (std::is_arithmetic_v<X>) {
          if constexpr (std::is_same_v<X, uint8_t> || std::is_same_v<X, int8_t>)
            return fmt::format("{}", int(x));
          else
            return fmt::format("{}", x);
        } else {
          std::string s = fmt::format("[{} x {}]", x.size(), gguf_type_name(v.array_type));
          for (size_t i = 0; i < x.size() && i < 5; ++i) {
            if constexpr (std::is_same_v<typename X::value_type, std::string>)
              s += fmt::format(" \"{}\"", x[i]);
            else if constexpr (std::is_same_v<typename X::value_type, bool>)
              s += x[i] ? " true" : " false";
            else
              s += fmt::format(" {}", +x[i]);
          }
          return x.size() > 5 ? s + " ..." : s;
        }
      },
      v.value);
}

// Groups layers by (attention kind, rope): "all 32 layers: full causal + RoPE" or
// "layers 0,4,8,..(13): full causal + NoPE; layers 1,2,3,..(39): SWA 4096 + RoPE".
std::string attention_layout(const ModelShape& s) {
  std::vector<std::pair<std::string, std::vector<uint32_t>>> groups;
  for (uint32_t il = 0; il < s.n_layer; ++il) {
    const std::string kind = fmt::format(
        "{} + {}", s.is_swa(il) ? fmt::format("SWA {}", s.n_swa) : std::string("full causal"),
        s.use_rope(il) ? "RoPE" : "NoPE");
    auto it =
        std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == kind; });
    if (it == groups.end()) it = groups.insert(groups.end(), {kind, {}});
    it->second.push_back(il);
  }
  if (groups.size() == 1) return fmt::format("all {} layers: {}", s.n_layer, groups[0].first);
  std::string out;
  for (const auto& [kind, layers] : groups) {
    std::string list;
    for (size_t i = 0; i < layers.size() && i < 3; ++i)
      list += fmt::format("{}{}", i ? "," : "", layers[i]);
    if (layers.size() > 3) list += fmt::format(",..({})", layers.size());
    out += fmt::format("{}layers {}: {}", out.empty() ? "" : "; ", list, kind);
  }
  return out;
}

const char* gating_name(ExpertGating g) {
  switch (g) {
    case ExpertGating::none:
      return "none";
    case ExpertGating::softmax:
      return "softmax";
    case ExpertGating::sigmoid:
      return "sigmoid";
  }
  return "?";
}

enum class Part { embeddings, attention, norms, router, experts, output, other };
constexpr const char* k_part_names[] = {"embeddings", "attention", "norms", "router",
                                        "experts",    "output",    "other"};

Part classify(const std::string& name) {
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (name == "token_embd.weight") return Part::embeddings;
  if (name == "output.weight") return Part::output;
  if (has("_norm")) return Part::norms;
  if (has("ffn_gate_inp")) return Part::router;
  if (has("_exps")) return Part::experts;
  if (has("attn_")) return Part::attention;
  return Part::other;
}

// Tokenizer keys read straight from the file (tokenizer.ggml.*, spec §3.5).
nlohmann::json tokenizer_summary(const GgufFile& f) {
  nlohmann::json j;
  if (auto m = f.get_string("tokenizer.ggml.model"); m.ok()) j["model"] = *m;
  if (auto p = f.get_string("tokenizer.ggml.pre"); p.ok()) j["pre"] = *p;
  if (const GgufKv* t = f.find_kv("tokenizer.ggml.tokens")) j["n_tokens"] = t->value.array_size();
  if (const GgufKv* m = f.find_kv("tokenizer.ggml.merges")) j["n_merges"] = m->value.array_size();
  for (const char* id : {"bos", "eos", "eot", "padding", "unknown"}) {
    if (auto v = f.get_u32(fmt::format("tokenizer.ggml.{}_token_id", id)); v.ok())
      j[fmt::format("{}_id", id)] = *v;
  }
  if (auto b = f.get_bool("tokenizer.ggml.add_bos_token"); b.ok()) j["add_bos"] = *b;
  j["has_chat_template"] = f.has_key("tokenizer.chat_template");
  return j;
}

int run_inspect(const InspectOptions& o) {
  std::string path = !o.model.empty() ? o.model : !o.path.empty() ? o.path : default_model_path();
  auto opened = GgufFile::open(path);
  if (!opened.ok()) return report_error(opened.status());
  const GgufFile& f = *opened;
  auto model = Model::load(path);  // a second mapping of the same file: cheap, and keeps f usable

  nlohmann::json j;
  j["file"] = path;
  j["file_size"] = f.file_size();
  j["gguf_version"] = f.version();
  j["alignment"] = f.alignment();
  j["data_offset"] = f.data_offset();
  j["n_kv"] = f.kvs().size();
  j["n_tensors"] = f.tensors().size();
  if (auto a = f.get_string("general.architecture"); a.ok()) j["architecture"] = *a;
  if (auto n = f.get_string("general.name"); n.ok()) j["name"] = *n;
  if (auto ft = f.get_u32("general.file_type"); ft.ok()) j["file_type"] = *ft;

  std::array<uint64_t, 7> part_bytes{};
  for (const auto& t : f.tensors()) part_bytes[static_cast<size_t>(classify(t.name))] += t.nbytes;
  uint64_t total = 0;
  for (auto b : part_bytes) total += b;
  nlohmann::json sizes;
  for (size_t i = 0; i < part_bytes.size(); ++i) sizes[k_part_names[i]] = part_bytes[i];
  sizes["total"] = total;

  if (model.ok()) {
    const ModelShape& s = model->shape();
    j["content_hash"] = model->content_hash();
    j["hparams"] = {{"n_vocab", s.n_vocab},
                    {"n_ctx_train", s.n_ctx_train},
                    {"n_embd", s.n_embd},
                    {"n_layer", s.n_layer},
                    {"n_head", s.n_head},
                    {"n_head_kv", s.n_head_kv},
                    {"n_embd_head_k", s.n_embd_head_k},
                    {"n_embd_head_v", s.n_embd_head_v},
                    {"n_rot", s.n_rot},
                    {"n_expert", s.n_expert},
                    {"n_expert_used", s.n_expert_used},
                    {"n_ff_exp", s.n_ff_exp},
                    {"rms_norm_eps", s.rms_norm_eps},
                    {"rope_freq_base", s.rope_freq_base},
                    {"rope_freq_base_swa", s.rope_freq_base_swa},
                    {"swa", s.swa},
                    {"n_swa", s.n_swa},
                    {"swa_pattern", s.swa_pattern}};
    j["attention_layout"] = attention_layout(s);
    j["gating"] = gating_name(s.gating);
    j["gating_from_file"] = s.gating_from_file;
    j["down_layout"] = s.down_layout == DownLayout::transposed ? "transposed" : "standard";
    j["tied_output"] = s.tied_output;
    // One expert of one layer = its slab of gate, up and down (nb[2] of each *_exps tensor).
    const auto& l0 = model->weights().layers.at(0);
    const uint64_t per_expert =
        l0.ffn_gate_exps.nb[2] + l0.ffn_up_exps.nb[2] + l0.ffn_down_exps.nb[2];
    sizes["expert_per_layer"] = per_expert;
  } else {
    j["model_error"] = model.status().message();
  }
  j["tokenizer"] = tokenizer_summary(f);
  j["sizes"] = sizes;
  if (!o.no_tensors) {
    nlohmann::json ts = nlohmann::json::array();
    for (const auto& t : f.tensors()) {
      std::vector<int64_t> shape(t.ne.begin(), t.ne.begin() + t.n_dims);
      ts.push_back({{"name", t.name},
                    {"dtype", dtype_name(t.dtype)},
                    {"shape", shape},
                    {"bytes", t.nbytes},
                    {"offset", t.file_offset}});
    }
    j["tensors"] = ts;
  }
  if (o.kv) {
    nlohmann::json kvs = nlohmann::json::object();
    for (const auto& kv : f.kvs()) kvs[kv.key] = value_str(kv.value);
    j["metadata"] = kvs;
  }

  if (o.json) {
    std::printf("%s\n", j.dump(2).c_str());
    return model.ok() ? 0 : report_error(model.status());
  }

  std::string out;
  add_line(out, "file:          {} ({})", path, human_bytes(f.file_size()));
  add_line(out, "gguf:          version {}, alignment {}, {} keys, {} tensors, data at byte {}",
           f.version(), f.alignment(), f.kvs().size(), f.tensors().size(), f.data_offset());
  add_line(out, "architecture:  {}", j.value("architecture", std::string("(none)")));
  add_line(out, "name:          {}", j.value("name", std::string("(none)")));
  if (model.ok()) {
    const ModelShape& s = model->shape();
    add_line(out, "content hash:  {}", model->content_hash());
    add_line(out, "hyperparameters:");
    add_line(out, "  n_vocab {}  n_ctx_train {}  n_embd {}  n_layer {}", s.n_vocab, s.n_ctx_train,
             s.n_embd, s.n_layer);
    add_line(out, "  n_head {}  n_head_kv {} (gqa {})  head_dim k {} v {}  n_rot {}", s.n_head,
             s.n_head_kv, s.n_gqa(), s.n_embd_head_k, s.n_embd_head_v, s.n_rot);
    add_line(out, "  n_expert {}  n_expert_used {}  n_ff_exp {}", s.n_expert, s.n_expert_used,
             s.n_ff_exp);
    add_line(out, "  rms_norm_eps {:g}  rope_freq_base {:g}  rope_freq_base_swa {:g}",
             s.rms_norm_eps, s.rope_freq_base, s.rope_freq_base_swa);
    add_line(out, "  attention:   {}", attention_layout(s));
    add_line(out, "  gating:      {} ({})", gating_name(s.gating),
             s.gating_from_file ? "from the file" : "assumed: expert_gating_func is missing");
    add_line(out, "  down layout: {}",
             s.down_layout == DownLayout::transposed
                 ? "transposed [n_embd, n_ff_exp, n_expert] (PowerInfer)"
                 : "standard [n_ff_exp, n_embd, n_expert]");
    add_line(out, "  output:      {}",
             s.tied_output ? "tied (token_embd.weight)" : "separate output.weight");
  } else {
    add_line(out, "model:         not loadable: {}", model.status().message());
  }
  const auto& tk = j["tokenizer"];
  auto tk_val = [&](const char* k) {
    if (!tk.contains(k)) return std::string("-");
    return tk[k].is_string() ? tk[k].get<std::string>() : tk[k].dump();
  };
  add_line(
      out,
      "tokenizer:     model {}  pre {}  tokens {}  merges {}  bos {}  eos {}  chat template {}",
      tk_val("model"), tk_val("pre"), tk_val("n_tokens"), tk_val("n_merges"), tk_val("bos_id"),
      tk_val("eos_id"), tk["has_chat_template"].get<bool>() ? "yes" : "no");
  if (o.kv) {
    add_line(out, "metadata:");
    for (const auto& kv : f.kvs()) add_line(out, "  {:<48} {}", kv.key, value_str(kv.value));
  }
  if (!o.no_tensors) {
    add_line(out, "tensors:");
    add_line(out, "  {:<36} {:>6} {:>22} {:>14} {:>14}", "name", "dtype", "shape", "bytes",
             "offset");
    for (const auto& t : f.tensors()) {
      add_line(out, "  {:<36} {:>6} {:>22} {:>14} {:>14}", t.name, dtype_name(t.dtype),
               shape_str(t), t.nbytes, t.file_offset);
    }
  }
  add_line(out, "sizes:");
  for (size_t i = 0; i < part_bytes.size(); ++i) {
    if (part_bytes[i] == 0 && i == static_cast<size_t>(Part::other)) continue;
    add_line(out, "  {:<18} {}", k_part_names[i], human_bytes(part_bytes[i]));
  }
  if (sizes.contains("expert_per_layer")) {
    add_line(out, "  {:<18} {}", "one expert/layer",
             human_bytes(sizes["expert_per_layer"].get<uint64_t>()));
  }
  add_line(out, "  {:<18} {}", "total", human_bytes(total));
  std::fputs(out.c_str(), stdout);
  return model.ok() ? 0 : report_error(model.status());
}

CommandRegistration reg{
    "inspect", "Print what a GGUF model file holds and how Tandem understands it", 60,
    [](CLI::App& sub) {
      auto o = std::make_shared<InspectOptions>();
      sub.add_option("file", o->path,
                     "GGUF file (default: -m, else $TANDEM_MODEL or models/default.gguf)");
      sub.add_option("-m,--model", o->model, "GGUF file (same as the positional FILE)");
      sub.add_flag("--json", o->json, "Machine-readable output");
      sub.add_flag("--kv", o->kv, "Also list every metadata key and value");
      sub.add_flag("--no-tensors", o->no_tensors, "Leave out the tensor table");
      return [o] { return run_inspect(*o); };
    }};

}  // namespace
}  // namespace tandem::tools
