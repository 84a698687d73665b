#include "cpu/thread_pool.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>
#include <tbb/task_arena.h>

#include <algorithm>

namespace tandem::cpu {

struct ThreadPool::Impl {
  explicit Impl(int n) : arena(n) {}
  // task_arena::execute is logically const for callers: it only schedules work.
  mutable tbb::task_arena arena;
};

ThreadPool::ThreadPool(int n_threads)
    : n_threads_(std::max(1, n_threads)), impl_(std::make_unique<Impl>(n_threads_)) {}

ThreadPool::~ThreadPool() = default;

void ThreadPool::parallel_for(int64_t n_chunks, const std::function<void(int64_t)>& fn) const {
  if (n_chunks <= 0) return;
  if (n_threads_ == 1 || n_chunks == 1) {
    for (int64_t c = 0; c < n_chunks; ++c) fn(c);
    return;
  }
  impl_->arena.execute([&] {
    // One task per chunk: chunks are coarse (tens of microseconds), and simple_partitioner
    // keeps the caller's chunk boundaries.
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, n_chunks, 1),
                      [&](const tbb::blocked_range<int64_t>& r) {
                        for (int64_t c = r.begin(); c < r.end(); ++c) fn(c);
                      },
                      tbb::simple_partitioner());
  });
}

}  // namespace tandem::cpu
