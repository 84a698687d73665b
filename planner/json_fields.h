// Strict JSON field readers shared by the planner's file formats (profile, hardware, plan,
// trace). Internal to planner/: the .cpp files include nlohmann-json privately.
//
// Every reader names the JSON path of what is wrong, prefixed with the display name of the
// file: "hardware.json: cpu.isa[1].read_bandwidth_gbps must be > 0". The first error wins;
// later reads become no-ops, so a parser reads every field and checks `ok()` once.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/status.h"

namespace tandem::planner_json {

using nlohmann::json;

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  // Records an error at `path` (ignored when one is already recorded).
  void fail(const std::string& path, const std::string& what);

  // Parses text; an error names the byte offset.
  bool parse(std::string_view text, json& out);
  // Checks `schema_version` == expected and that the top level is an object.
  bool check_header(const json& root, int expected_version);

  // A field of an object; nullptr (and an error) when missing or `j` is not an object.
  const json* field(const json& j, const char* key, const std::string& path);
  bool is_object(const json* j, const std::string& path);
  bool is_array(const json* j, const std::string& path, size_t expected_size = SIZE_MAX);

  std::string str(const json& obj, const char* key, const std::string& path);
  bool boolean(const json& obj, const char* key, const std::string& path);
  // Unsigned integer in [lo, hi].
  uint64_t u64(const json& obj, const char* key, const std::string& path, uint64_t lo = 0,
               uint64_t hi = UINT64_MAX);
  uint64_t u64_value(const json& v, const std::string& path, uint64_t lo = 0, uint64_t hi = UINT64_MAX);
  // Number in [lo, hi]; `positive` additionally requires > 0 ("must be > 0").
  double num(const json& obj, const char* key, const std::string& path, double lo, double hi);
  double positive(const json& obj, const char* key, const std::string& path);
  double num_value(const json& v, const std::string& path, double lo, double hi);
  // Rejects keys not in `known` (catches typos such as "upload_gpbs").
  void only_keys(const json& obj, const std::string& path, std::initializer_list<const char*> known);

 private:
  std::string file_;
  Status status_;
};

inline std::string sub(const std::string& path, const char* key) {
  return path.empty() ? std::string(key) : path + "." + key;
}
inline std::string at(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

}  // namespace tandem::planner_json
