// Small helpers for hand-written SVG charts (runtime/report.h): XML escaping, the viridis
// colour map, "nice" axis ticks and an SVG document builder. Output is plain SVG 1.1 with
// inline attributes only (no CSS files, fonts, scripts or external references), so that the
// charts can be embedded in a self-contained HTML page.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::svg {

// &, <, >, " and ' as entities (safe in text and in double-quoted attributes).
std::string xml_escape(std::string_view text);

// Shortest readable form of a number: fixed with up to `decimals` decimals, trailing zeros
// dropped ("0.25", "1", "12.5").
std::string num(double v, int decimals = 2);

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};
// Matplotlib's viridis (perceptually uniform, colour-blind safe) at t in [0,1] (clamped),
// linearly interpolated between 9 stops of the published table.
Rgb viridis(double t);
std::string hex(Rgb c);  // "#rrggbb"
// Black or white, whichever reads better on `background` (relative luminance > 0.45 -> black).
std::string text_colour_on(Rgb background);

// Tick values covering [lo, hi] with a step of 1, 2 or 5 times a power of ten, at most
// `max_ticks` of them (at least 2 when hi > lo); first >= lo, last <= hi.
std::vector<double> nice_ticks(double lo, double hi, int max_ticks);

// An SVG document being written. Coordinates in px, y down. Text uses the generic
// "sans-serif" family (no font files).
class Document {
 public:
  Document(double width, double height, std::string_view title);
  void raw(std::string_view xml);  // caller-formed, well-formed XML
  void rect(double x, double y, double w, double h, std::string_view fill, std::string_view extra = {});
  void line(double x1, double y1, double x2, double y2, std::string_view stroke, double width = 1,
            std::string_view extra = {});
  // anchor: "start", "middle" or "end"; text is escaped here.
  void text(double x, double y, std::string_view text, double size = 12, std::string_view anchor = "start",
            std::string_view extra = {});
  std::string finish();  // closes the root element; the document is then empty

 private:
  std::string out_;
};

}  // namespace tandem::svg
