#include "planner/json_fields.h"

#include <cmath>

namespace tandem::planner_json {

void Reader::fail(const std::string& path, const std::string& what) {
  if (!status_.ok()) return;
  status_ = make_error(ErrorCode::invalid_file, "{}: {} {}", file_, path, what);
}

bool Reader::parse(std::string_view text, json& out) {
  // Parse without exceptions: nlohmann reports a discarded value on error, so the position
  // comes from a second, exception-free pass through the SAX error callback.
  struct Sax : nlohmann::json_sax<json> {
    std::string message;
    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return true; }
    bool start_object(std::size_t) override { return true; }
    bool key(string_t&) override { return true; }
    bool end_object() override { return true; }
    bool start_array(std::size_t) override { return true; }
    bool end_array() override { return true; }
    bool parse_error(std::size_t position, const std::string&,
                     const nlohmann::detail::exception& ex) override {
      message = "byte offset " + std::to_string(position) + ": " + ex.what();
      return false;
    }
  };
  out = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!out.is_discarded()) return true;
  Sax sax;
  json::sax_parse(text, &sax, nlohmann::detail::input_format_t::json, /*strict=*/true);
  if (status_.ok()) {
    status_ = make_error(ErrorCode::invalid_file, "{}: not valid JSON ({})", file_,
                         sax.message.empty() ? std::string("parse error") : sax.message);
  }
  return false;
}

bool Reader::check_header(const json& root, int expected_version) {
  if (!root.is_object()) {
    fail("(top level)", "must be an object");
    return false;
  }
  const json* v = field(root, "schema_version", "");
  if (!v) return false;
  if (!v->is_number_integer()) {
    fail("schema_version", "must be an integer");
    return false;
  }
  if (v->get<int64_t>() != expected_version) {
    status_ = make_error(ErrorCode::unsupported, "{}: schema_version {} is not supported (expected {})",
                         file_, v->dump(), expected_version);
    return false;
  }
  return true;
}

const json* Reader::field(const json& j, const char* key, const std::string& path) {
  if (!ok()) return nullptr;
  if (!j.is_object()) {
    fail(path.empty() ? std::string("(top level)") : path, "must be an object");
    return nullptr;
  }
  auto it = j.find(key);
  if (it == j.end()) {
    fail(sub(path, key), "is missing");
    return nullptr;
  }
  return &*it;
}

bool Reader::is_object(const json* j, const std::string& path) {
  if (!j || !ok()) return false;
  if (!j->is_object()) {
    fail(path, "must be an object");
    return false;
  }
  return true;
}

bool Reader::is_array(const json* j, const std::string& path, size_t expected_size) {
  if (!j || !ok()) return false;
  if (!j->is_array()) {
    fail(path, "must be an array");
    return false;
  }
  if (expected_size != SIZE_MAX && j->size() != expected_size) {
    fail(path, "must have " + std::to_string(expected_size) + " elements, has " +
                   std::to_string(j->size()));
    return false;
  }
  return true;
}

std::string Reader::str(const json& obj, const char* key, const std::string& path) {
  const json* v = field(obj, key, path);
  if (!v) return {};
  if (!v->is_string()) {
    fail(sub(path, key), "must be a string");
    return {};
  }
  return v->get<std::string>();
}

bool Reader::boolean(const json& obj, const char* key, const std::string& path) {
  const json* v = field(obj, key, path);
  if (!v) return false;
  if (!v->is_boolean()) {
    fail(sub(path, key), "must be true or false");
    return false;
  }
  return v->get<bool>();
}

uint64_t Reader::u64_value(const json& v, const std::string& path, uint64_t lo, uint64_t hi) {
  if (!ok()) return lo;
  if (!v.is_number_integer() || (v.is_number_integer() && !v.is_number_unsigned() && v.get<int64_t>() < 0)) {
    fail(path, "must be a non-negative integer");
    return lo;
  }
  const uint64_t x = v.get<uint64_t>();
  if (x < lo || x > hi) {
    fail(path, fmt::format("must be in [{}, {}], is {}", lo, hi, x));
    return lo;
  }
  return x;
}

uint64_t Reader::u64(const json& obj, const char* key, const std::string& path, uint64_t lo,
                     uint64_t hi) {
  const json* v = field(obj, key, path);
  if (!v) return lo;
  return u64_value(*v, sub(path, key), lo, hi);
}

double Reader::num_value(const json& v, const std::string& path, double lo, double hi) {
  if (!ok()) return lo;
  if (!v.is_number()) {
    fail(path, "must be a number");
    return lo;
  }
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) {
    fail(path, fmt::format("must be in [{}, {}], is {}", lo, hi, x));
    return lo;
  }
  return x;
}

double Reader::num(const json& obj, const char* key, const std::string& path, double lo, double hi) {
  const json* v = field(obj, key, path);
  if (!v) return lo;
  return num_value(*v, sub(path, key), lo, hi);
}

double Reader::positive(const json& obj, const char* key, const std::string& path) {
  const json* v = field(obj, key, path);
  if (!v || !ok()) return 1.0;
  if (!v->is_number()) {
    fail(sub(path, key), "must be a number");
    return 1.0;
  }
  const double x = v->get<double>();
  if (!std::isfinite(x) || x <= 0) {
    fail(sub(path, key), "must be > 0");
    return 1.0;
  }
  return x;
}

void Reader::only_keys(const json& obj, const std::string& path,
                       std::initializer_list<const char*> known) {
  if (!ok() || !obj.is_object()) return;
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    bool found = false;
    for (const char* k : known) found = found || it.key() == k;
    if (!found) {
      fail(sub(path, it.key().c_str()), "is not a known field");
      return;
    }
  }
}

}  // namespace tandem::planner_json
