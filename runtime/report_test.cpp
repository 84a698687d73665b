// The report's SVGs and HTML: well-formed XML, one heatmap cell per (layer, expert), inline
// and self-contained HTML, and the summary numbers against hand-computed values.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <sstream>

#include "runtime/builtin_corpus.h"
#include "runtime/model_maker.h"
#include "runtime/profiler.h"
#include "runtime/report.h"
#include "runtime/report_svg.h"
#include "support/test_support.h"

namespace tandem {
namespace {

// A minimal XML well-formedness check: one root element, tags balanced and properly nested,
// attributes name="value" (double-quoted, no '<' inside, unique per element), entities among
// the five predefined ones or numeric, no stray '<' or '&' in text. Returns "" when fine, else why.
std::string xml_problem(std::string_view x) {
  std::vector<std::string> stack;
  size_t i = 0, roots = 0;
  auto entity_ok = [&](size_t at) {
    const size_t semi = x.find(';', at);
    if (semi == std::string_view::npos || semi - at > 10) return false;
    const std::string_view e = x.substr(at + 1, semi - at - 1);
    if (e == "amp" || e == "lt" || e == "gt" || e == "quot" || e == "apos") return true;
    if (e.size() >= 2 && e[0] == '#') return e.find_first_not_of("0123456789", 1) == std::string_view::npos;
    return false;
  };
  auto name_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == ':' || c == '.'; };
  while (i < x.size()) {
    if (x[i] == '&') {
      if (!entity_ok(i)) return "bad entity at " + std::to_string(i);
      ++i;
      continue;
    }
    if (x[i] != '<') {
      if (stack.empty() && !std::isspace(static_cast<unsigned char>(x[i]))) return "text outside the root at " + std::to_string(i);
      ++i;
      continue;
    }
    if (x.substr(i, 4) == "<!--") {
      const size_t end = x.find("-->", i);
      if (end == std::string_view::npos) return "unclosed comment";
      i = end + 3;
      continue;
    }
    if (x.substr(i, 2) == "<?") {
      const size_t end = x.find("?>", i);
      if (end == std::string_view::npos) return "unclosed declaration";
      i = end + 2;
      continue;
    }
    const bool closing = i + 1 < x.size() && x[i + 1] == '/';
    size_t j = i + (closing ? 2 : 1);
    const size_t name_start = j;
    while (j < x.size() && name_char(x[j])) ++j;
    const std::string name(x.substr(name_start, j - name_start));
    if (name.empty()) return "tag without a name at " + std::to_string(i);
    if (closing) {
      while (j < x.size() && std::isspace(static_cast<unsigned char>(x[j]))) ++j;
      if (j >= x.size() || x[j] != '>') return "bad closing tag " + name;
      if (stack.empty() || stack.back() != name) return "</" + name + "> does not close <" + (stack.empty() ? "" : stack.back()) + ">";
      stack.pop_back();
      i = j + 1;
      continue;
    }
    std::vector<std::string> attrs;
    bool self_closing = false;
    for (;;) {
      while (j < x.size() && std::isspace(static_cast<unsigned char>(x[j]))) ++j;
      if (j >= x.size()) return "unterminated tag " + name;
      if (x[j] == '>') break;
      if (x.substr(j, 2) == "/>") {
        self_closing = true;
        ++j;
        break;
      }
      const size_t a0 = j;
      while (j < x.size() && name_char(x[j])) ++j;
      if (j == a0 || j + 1 >= x.size() || x[j] != '=' || x[j + 1] != '"') return "bad attribute in <" + name + "> at " + std::to_string(a0);
      const std::string an(x.substr(a0, j - a0));
      if (std::find(attrs.begin(), attrs.end(), an) != attrs.end()) return "repeated attribute " + an + " in <" + name + ">";
      attrs.push_back(an);
      const size_t v0 = j + 2, v1 = x.find('"', v0);
      if (v1 == std::string_view::npos) return "unterminated attribute value";
      for (size_t k = v0; k < v1; ++k) {
        if (x[k] == '<') return "'<' in attribute " + an;
        if (x[k] == '&' && !entity_ok(k)) return "bad entity in attribute " + an;
      }
      j = v1 + 1;
    }
    if (stack.empty()) ++roots;
    if (!self_closing) stack.push_back(name);
    i = j + 1;
  }
  if (!stack.empty()) return "unclosed <" + stack.back() + ">";
  if (roots != 1) return std::to_string(roots) + " root elements";
  return "";
}

size_t count_of(std::string_view hay, std::string_view needle) {
  size_t n = 0;
  for (size_t at = hay.find(needle); at != std::string_view::npos; at = hay.find(needle, at + 1)) ++n;
  return n;
}

// A profile with known numbers: layer l routes token t to experts (t + l) % n and
// (t + l + 1) % n, except that expert l % n serves every token in its first slot from t >= 10.
// Gate counts: expert e's neuron j is active in j of n_ff observations.
Profile known_profile(uint32_t n_layer, uint32_t n_expert, uint32_t n_tokens) {
  ProfileShape sh{n_layer, n_expert, 2, 32, 16};
  ProfileBuilder b("known <model> & co", "abc123", sh);
  for (uint32_t l = 0; l < n_layer; ++l) {
    for (uint32_t t = 0; t < n_tokens; ++t) {
      int32_t a = static_cast<int32_t>(t < 10 ? (t + l) % n_expert : l % n_expert);
      int32_t c = static_cast<int32_t>((t + l + 1) % n_expert);
      if (c == a) c = static_cast<int32_t>((c + 1) % n_expert);
      const int32_t ids[2] = {a, c};
      const float w[2] = {0.7f, 0.3f};
      REQUIRE(b.add_routing(l, t, ids, w).ok());
    }
    std::vector<uint32_t> counts(sh.n_ff_exp);
    for (uint32_t j = 0; j < sh.n_ff_exp; ++j) counts[j] = j;
    for (uint32_t e = 0; e < n_expert; ++e) REQUIRE(b.add_gate_counts(l, e, counts, sh.n_ff_exp).ok());
  }
  return b.finish();
}

}  // namespace

TEST_CASE("xml_problem catches what it should (the checker the report tests rely on)", "[report]") {
  CHECK(xml_problem("<a><b x=\"1\"/>t &amp; u</a>").empty());
  CHECK_FALSE(xml_problem("<a><b></a>").empty());
  CHECK_FALSE(xml_problem("<a x=1></a>").empty());
  CHECK_FALSE(xml_problem("<a>x & y</a>").empty());
  CHECK_FALSE(xml_problem("<a></a><b></b>").empty());
  CHECK_FALSE(xml_problem("<a x=\"1\" x=\"2\"></a>").empty());
  CHECK_FALSE(xml_problem("<a>").empty());
}

TEST_CASE("svg helpers: escaping, numbers, ticks, colours", "[report]") {
  CHECK(svg::xml_escape("a<b & \"c\"") == "a&lt;b &amp; &quot;c&quot;");
  CHECK(svg::num(0.25) == "0.25");
  CHECK(svg::num(3.0) == "3");
  CHECK(svg::num(-0.0001) == "0");
  CHECK(svg::nice_ticks(0, 1, 6) == std::vector<double>{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1});
  const auto t = svg::nice_ticks(0, 64, 11);
  REQUIRE(t.size() >= 2);
  CHECK(t.front() == 0);
  CHECK(t.size() <= 11);
  CHECK(t.back() <= 64);
  CHECK(svg::hex(svg::viridis(0)) == "#440154");
  CHECK(svg::hex(svg::viridis(1)) == "#fde725");
  CHECK(svg::hex(svg::viridis(2)) == "#fde725");
  CHECK(svg::text_colour_on(svg::viridis(0)) == "#ffffff");
  CHECK(svg::text_colour_on(svg::viridis(1)) == "#000000");
}

TEST_CASE("report of a known profile: summary numbers, well-formed SVGs, one cell per (layer, expert)", "[report]") {
  for (auto [nl, ne] : {std::pair<uint32_t, uint32_t>{3, 8}, {1, 5}, {40, 64}}) {
    INFO("n_layer " << nl << " n_expert " << ne);
    const Profile p = known_profile(nl, ne, 100);
    REQUIRE(check_profile_sizes(p).ok());
    const ProfileSummary s = summarize_profile(p);
    REQUIRE(s.layers.size() == nl);
    CHECK(s.c_k == 2);
    CHECK(s.c_2k == std::min<uint32_t>(4, ne));
    CHECK(s.c_half == std::max<uint32_t>(1, ne / 2));
    for (uint32_t l = 0; l < nl; ++l) {
      // Expert l % ne takes slot 1 of tokens 10..99 (90) plus its turns among tokens 0..9.
      REQUIRE(!s.layers[l].top.empty());
      CHECK(s.layers[l].top[0].expert == l % ne);
      CHECK(s.layers[l].top[0].probability == p.activation_probability(l, l % ne));
      CHECK(s.layers[l].top[0].probability >= 0.9);
      double h = 0, total = 0;
      for (const auto& e : p.layers[l].experts) total += static_cast<double>(e.activation_count);
      for (const auto& e : p.layers[l].experts)
        if (e.activation_count) h -= e.activation_count / total * std::log2(e.activation_count / total);
      CHECK(s.layers[l].entropy_bits == Approx(h));
      CHECK(s.layers[l].entropy_bits < std::log2(ne) + 1e-12);
      // Active fraction j/16 for j = 0..15: mean 7.5/16.
      REQUIRE(s.layers[l].mean_gate_activity.has_value());
      CHECK(*s.layers[l].mean_gate_activity == Approx(7.5 / 16));
      CHECK(s.layers[l].hit_k == p.layers[l].lru_hit_rate[s.c_k]);
    }

    const std::string heat = heatmap_svg(p), lru = lru_svg(p), sp = sparsity_svg(p);
    CHECK(xml_problem(heat) == "");
    CHECK(xml_problem(lru) == "");
    CHECK(xml_problem(sp) == "");
    CHECK(count_of(heat, "<rect class=\"cell\"") == size_t{nl} * ne);
    for (uint32_t l = 0; l < nl; ++l)
      for (uint32_t e = 0; e < ne; ++e)
        CHECK(count_of(heat, fmt::format("data-layer=\"{}\" data-expert=\"{}\"", l, e)) == 1);
    CHECK(count_of(lru, "<polyline class=\"layer\"") == nl);
    CHECK(count_of(lru, "<polyline class=\"mean\"") == 1);
    CHECK(count_of(sp, "class=\"box\"") == nl);
    CHECK(heat.find("known &lt;model&gt; &amp; co") != std::string::npos);
  }
}

TEST_CASE("report HTML embeds the SVGs inline and references nothing outside", "[report]") {
  const Profile p = known_profile(4, 8, 60);
  const std::string html = report_html(p);
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(html.find(heatmap_svg(p)) != std::string::npos);
  CHECK(html.find(lru_svg(p)) != std::string::npos);
  CHECK(html.find(sparsity_svg(p)) != std::string::npos);
  CHECK(count_of(html, "<svg ") == 3);
  for (const char* bad : {"<script", "<link", "<img", "<iframe", "src=", "href=", "@import", "url(http"}) {
    INFO(bad);
    CHECK(html.find(bad) == std::string::npos);
  }
  // The document as a whole is well-formed once the doctype is dropped.
  CHECK(xml_problem(std::string_view(html).substr(html.find("<html"))) == "");
  CHECK(html.find("abc123") != std::string::npos);
  CHECK(html.find("<td>3</td>") != std::string::npos);  // a row per layer
}

TEST_CASE("report of a profiled tiny model: files written, no gate data says so", "[report]") {
  test::TempDir dir("report-tiny");
  MakeModelOptions mo;
  mo.preset = "tiny";
  mo.skew = 1.2f;
  REQUIRE(make_model(mo, dir / "m.gguf").ok());
  SessionOptions so;
  so.model_path = dir / "m.gguf";
  so.n_ctx = 128;
  so.n_ubatch = 64;
  so.n_threads = 2;
  auto s = Session::open(so);
  REQUIRE(s.ok());
  ProfileOptions po;
  po.max_tokens = 200;
  auto run = profile_session(**s, builtin_corpus(), po);
  REQUIRE(run.ok());
  REQUIRE(save_profile(run->profile, dir / "p.json").ok());
  auto p = load_profile(dir / "p.json");
  REQUIRE(p.ok());
  REQUIRE(write_report(*p, dir / "out").ok());
  for (const char* f : {"heatmap.svg", "lru.svg", "sparsity.svg", "report.html"}) {
    std::ifstream in(dir / "out" / f);
    REQUIRE(in);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    INFO(f);
    if (std::string_view(f).ends_with(".svg")) CHECK(xml_problem(text) == "");
    if (std::string_view(f) == "heatmap.svg") CHECK(count_of(text, "<rect class=\"cell\"") == 4u * 8u);
  }
  bool gate_seen = false;
  for (const auto& L : p->layers)
    for (const auto& e : L.experts) gate_seen |= e.gate_observations > 0;
  if (!gate_seen) CHECK(sparsity_svg(*p).find("no gate activity recorded") != std::string::npos);

  Profile broken = *p;
  broken.layers.pop_back();
  const Status st = write_report(broken, dir / "bad");
  CHECK(st.code() == ErrorCode::invalid_argument);
  CHECK(st.message().find("layers") != std::string::npos);
}

}  // namespace tandem
