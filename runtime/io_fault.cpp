#include "runtime/io_fault.h"

#include <algorithm>

namespace tandem {

IoFaultRule IoFaultRule::fail_request(uint64_t index, int err, uint32_t n) {
  IoFaultRule r;
  r.request_index = index;
  r.kind = IoFaultKind::fail;
  r.error = err;
  r.times = n;
  return r;
}

IoFaultRule IoFaultRule::fail_offset(uint64_t off, int err, uint32_t n) {
  IoFaultRule r;
  r.offset = off;
  r.kind = IoFaultKind::fail;
  r.error = err;
  r.times = n;
  return r;
}

IoFaultRule IoFaultRule::short_request(uint64_t index, uint64_t bytes, uint32_t n) {
  IoFaultRule r;
  r.request_index = index;
  r.kind = IoFaultKind::short_read;
  r.short_bytes = bytes;
  r.times = n;
  return r;
}

IoFaultRule IoFaultRule::delay_request(uint64_t index, uint32_t ms, uint32_t n) {
  IoFaultRule r;
  r.request_index = index;
  r.kind = IoFaultKind::delay;
  r.delay_ms = ms;
  r.times = n;
  return r;
}

void IoFaultInjector::add(const IoFaultRule& rule) {
  std::lock_guard lock(mu_);
  rules_.push_back(Live{rule, 0});
}

void IoFaultInjector::clear() {
  std::lock_guard lock(mu_);
  rules_.clear();
}

IoFaultAction IoFaultInjector::on_attempt(uint64_t index, uint64_t offset, uint64_t length) {
  IoFaultAction action;
  std::lock_guard lock(mu_);
  for (Live& live : rules_) {
    const IoFaultRule& r = live.rule;
    if (r.times != 0 && live.used >= r.times) continue;
    if (r.request_index && *r.request_index != index) continue;
    if (r.offset && (*r.offset < offset || *r.offset - offset >= length)) continue;
    ++live.used;
    switch (r.kind) {
      case IoFaultKind::fail:
        action.error = r.error > 0 ? r.error : EIO;
        break;
      case IoFaultKind::short_read:
        action.short_bytes = action.short_bytes ? std::min(*action.short_bytes, r.short_bytes)
                                                : r.short_bytes;
        break;
      case IoFaultKind::delay:
        action.delay_ms += r.delay_ms;
        break;
    }
  }
  if (action.any()) ++n_injected_;
  return action;
}

uint64_t IoFaultInjector::n_injected() const {
  std::lock_guard lock(mu_);
  return n_injected_;
}

void IoFaultInjector::refuse_o_direct(bool refuse) {
  std::lock_guard lock(mu_);
  refuse_o_direct_ = refuse;
}

bool IoFaultInjector::o_direct_refused() const {
  std::lock_guard lock(mu_);
  return refuse_o_direct_;
}

void IoFaultInjector::refuse_io_uring(bool refuse) {
  std::lock_guard lock(mu_);
  refuse_io_uring_ = refuse;
}

bool IoFaultInjector::io_uring_refused() const {
  std::lock_guard lock(mu_);
  return refuse_io_uring_;
}

}  // namespace tandem
