// ChunkRunner: how cpu/ kernels spread work over threads without knowing the threading
// library. Work is cut into a fixed number of chunks chosen by the caller (never from the
// thread count), and results are combined in chunk order, so a computation gives
// bit-identical results on any number of threads.
//
// ThreadPool owns a oneTBB task_arena of N threads (the calling thread included); TBB stays
// out of this header so code that only needs SerialRunner builds without it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

namespace tandem::cpu {

class ChunkRunner {
 public:
  virtual ~ChunkRunner() = default;
  // Calls fn(c) once for every c in [0, n_chunks), in any order and possibly concurrently;
  // returns when all calls have returned. fn must not throw.
  virtual void parallel_for(int64_t n_chunks, const std::function<void(int64_t)>& fn) const = 0;
  virtual int n_threads() const = 0;
};

class SerialRunner final : public ChunkRunner {
 public:
  void parallel_for(int64_t n_chunks, const std::function<void(int64_t)>& fn) const override {
    for (int64_t c = 0; c < n_chunks; ++c) fn(c);
  }
  int n_threads() const override { return 1; }
};

class ThreadPool final : public ChunkRunner {
 public:
  // n_threads < 1 is treated as 1.
  explicit ThreadPool(int n_threads);
  ~ThreadPool() override;
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void parallel_for(int64_t n_chunks, const std::function<void(int64_t)>& fn) const override;
  int n_threads() const override { return n_threads_; }

 private:
  struct Impl;
  int n_threads_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::cpu
