#include "runtime/report_svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

namespace tandem::svg {

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string num(double v, int decimals) {
  if (!std::isfinite(v)) return "0";
  std::string s = fmt::format("{:.{}f}", v, std::max(0, decimals));
  if (s.find('.') != std::string::npos) {
    while (!s.empty() && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
  }
  // Rounding a small negative value leaves "-0".
  return s == "-0" ? std::string("0") : s;
}

Rgb viridis(double t) {
  // viridis at 0, 1/8, ..., 1 (matplotlib _viridis_data, rounded to 8 bits).
  static constexpr std::array<Rgb, 9> stops{{{68, 1, 84},
                                             {71, 44, 122},
                                             {59, 81, 139},
                                             {44, 113, 142},
                                             {33, 144, 141},
                                             {39, 173, 129},
                                             {92, 200, 99},
                                             {170, 220, 50},
                                             {253, 231, 37}}};
  if (!std::isfinite(t)) t = 0;
  t = std::clamp(t, 0.0, 1.0) * 8.0;
  const int i = std::min(7, static_cast<int>(t));
  const double f = t - i;
  auto mix = [f](uint8_t a, uint8_t b) { return static_cast<uint8_t>(std::lround(a + (b - a) * f)); };
  const Rgb a = stops[static_cast<size_t>(i)], b = stops[static_cast<size_t>(i + 1)];
  return {mix(a.r, b.r), mix(a.g, b.g), mix(a.b, b.b)};
}

std::string hex(Rgb c) { return fmt::format("#{:02x}{:02x}{:02x}", c.r, c.g, c.b); }

std::string text_colour_on(Rgb c) {
  auto lin = [](uint8_t v) {
    const double s = v / 255.0;
    return s <= 0.04045 ? s / 12.92 : std::pow((s + 0.055) / 1.055, 2.4);
  };
  const double y = 0.2126 * lin(c.r) + 0.7152 * lin(c.g) + 0.0722 * lin(c.b);  // WCAG relative luminance
  return y > 0.45 ? "#000000" : "#ffffff";
}

std::vector<double> nice_ticks(double lo, double hi, int max_ticks) {
  std::vector<double> out;
  if (!(hi > lo) || max_ticks < 2) {
    out.push_back(lo);
    return out;
  }
  const double raw = (hi - lo) / (max_ticks - 1);
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  double step = p * 10;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * p >= raw * (1 - 1e-9)) {
      step = m * p;
      break;
    }
  }
  const double first = std::ceil(lo / step - 1e-9) * step;
  for (int i = 0;; ++i) {
    const double v = first + i * step;
    if (v > hi + step * 1e-9) break;
    out.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  }
  return out;
}

Document::Document(double width, double height, std::string_view title) {
  out_ = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\">\n<title>{2}</title>\n",
      num(width), num(height), xml_escape(title));
  rect(0, 0, width, height, "#ffffff");
}

void Document::raw(std::string_view xml) { out_ += xml; }

void Document::rect(double x, double y, double w, double h, std::string_view fill, std::string_view extra) {
  out_ += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"{}{}/>\n", num(x), num(y),
                      num(std::max(0.0, w)), num(std::max(0.0, h)), fill, extra.empty() ? "" : " ", extra);
}

void Document::line(double x1, double y1, double x2, double y2, std::string_view stroke, double width,
                    std::string_view extra) {
  out_ += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"{}\"{}{}/>\n",
                      num(x1), num(y1), num(x2), num(y2), stroke, num(width), extra.empty() ? "" : " ", extra);
}

void Document::text(double x, double y, std::string_view text, double size, std::string_view anchor,
                    std::string_view extra) {
  out_ += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"{}\" text-anchor=\"{}\"{}{}>{}</text>\n", num(x), num(y),
                      num(size), anchor, extra.empty() ? "" : " ", extra, xml_escape(text));
}

std::string Document::finish() {
  out_ += "</svg>\n";
  return std::move(out_);
}

}  // namespace tandem::svg
