// What funcnet's oneDNN handlers (conv.cc, matmul.cc) share: the engine, running a primitive
// without allocating (Execute), and running a call's independent blocks of work on XLA's own
// intra-op thread pool.
//
// Why not oneDNN's own threading: this oneDNN is built with GNU OpenMP, and a process has one
// libgomp (torch bundles one with the same soname, so both libraries share it). OpenMP teams
// started from XLA's threads become extra "managed threads" of that runtime, which then makes
// every OpenMP barrier in the process sleep instead of spin: torch's CPU ops in the same process
// ran 33% slower. So each block runs single-threaded oneDNN (no team), and the blocks spread
// over XLA's pool, which also keeps XLA's thread count (--threads, XLA_FLAGS) the one limit.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

#if DNNL_CPU_THREADING_RUNTIME == DNNL_RUNTIME_OMP
#include <omp.h>
#endif

namespace funcnet_onednn {

inline dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Per-call scratchpad memory: a primitive may then run on several threads at once (XLA runs
// independent custom calls concurrently).
inline dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// This thread's scratch memory of `size` bytes, 64-byte aligned (kept and grown per thread:
// allocating a primitive's scratchpad per call cost ~5-10 us a block inside XLA's threads).
// `slot` tells apart buffers one block uses at the same time: 0 for primitives' scratchpads, 1
// for reordered weights. The pointer is valid until this thread asks for the same slot again.
inline void* ScratchData(size_t size, int slot = 0) {
  struct Buffer {
    std::unique_ptr<char[]> data;
    size_t capacity = 0;
  };
  thread_local Buffer buffers[2];
  Buffer& buffer = buffers[slot];
  if (size > buffer.capacity) {
    buffer.data.reset(new char[size + 64]);
    buffer.capacity = size;
  }
  return reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(buffer.data.get()) + 63) & ~uintptr_t{63});
}

// Plans (primitives and their layouts) built once per key and shared by all threads. A plan is
// built outside the lock (creating a primitive JIT-compiles kernels); if two threads build the
// same one, the first stored wins. Instances are never destroyed (no teardown order at exit).
template <typename Key, typename Plan>
class PlanCache {
 public:
  template <typename Make>
  std::shared_ptr<const Plan> Get(const Key& key, Make make) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = plans_.find(key);
      if (it != plans_.end()) return it->second;
    }
    std::shared_ptr<const Plan> plan = make();
    std::lock_guard<std::mutex> lock(mutex_);
    return plans_.emplace(key, std::move(plan)).first->second;
  }

 private:
  std::mutex mutex_;
  std::map<Key, std::shared_ptr<const Plan>> plans_;
};

// This thread's stream (a stream is not thread-safe; creating one per call costs microseconds).
inline dnnl::stream& Stream() {
  thread_local dnnl::stream stream(Engine());
  return stream;
}

// One argument of a primitive: its oneDNN id (DNNL_ARG_*), layout and data.
struct Arg {
  int id;
  const dnnl::memory::desc& desc;
  void* data;
};

// Runs `primitive` with `args` on this thread's stream. Each thread keeps one memory object per
// (primitive, argument) and only moves its data pointer: creating dnnl::memory objects (and the
// C++ API's argument containers) per call cost 5-20 us a block inside XLA's threads, where their
// small allocations contend for funcnet.host_memory's single malloc arena (0.2 us in a program
// alone). A primitive's arguments keep their ids and layouts from call to call (plans are fixed).
inline void Execute(const dnnl::primitive& primitive, std::initializer_list<Arg> args) {
  constexpr size_t kMaxArgs = 8;
  thread_local std::map<std::pair<dnnl_primitive_t, int>, dnnl::memory> memories;
  if (args.size() > kMaxArgs) throw std::invalid_argument("funcnet oneDNN: too many primitive arguments");
  dnnl_exec_arg_t c_args[kMaxArgs];
  int count = 0;
  for (const Arg& arg : args) {
    const auto key = std::make_pair(primitive.get(), arg.id);
    auto it = memories.find(key);
    if (it == memories.end()) {
      it = memories.emplace(key, dnnl::memory(arg.desc, Engine(), arg.data)).first;
    } else {
      it->second.set_data_handle(arg.data);
    }
    c_args[count++] = {arg.id, it->second.get()};
  }
  dnnl::stream& stream = Stream();
  dnnl::error::wrap_c_api(dnnl_primitive_execute(primitive.get(), stream.get(), count, c_args),
                          "could not execute a primitive");
  stream.wait();
}

// oneDNN single-threaded on this thread for the guard's lifetime; the thread's OpenMP setting
// (shared with torch when the thread is Python's) is restored afterwards.
class SingleThreaded {
 public:
#if DNNL_CPU_THREADING_RUNTIME == DNNL_RUNTIME_OMP
  SingleThreaded() : previous_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~SingleThreaded() { omp_set_num_threads(previous_); }

 private:
  int previous_;
#endif
};

inline void Pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// How many blocks to cut a call of `macs` multiply-adds into (at most `max_blocks`): one per
// thread of XLA's pool, but none smaller than 4M multiply-adds. Handing a block to the pool costs
// ~40 us on a 2-core x86 (waking a thread), the time single-threaded oneDNN takes for ~3M; in a
// chain of float32 products, splitting gained 11% at 17M and lost 3x at 1M.
inline int64_t Blocks(xla::ffi::ThreadPool& pool, int64_t macs, int64_t max_blocks) {
  constexpr int64_t kMinBlockMacs = int64_t{1} << 22;
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  return std::max<int64_t>(1, std::min({threads, max_blocks, macs / kMinBlockMacs}));
}

// The shared state of one call's blocks: items are claimed from a counter by everyone alike, so
// the call never waits for a helper that has not started (such a helper later finds nothing).
struct BlockRun {
  std::function<void(int64_t)> run;
  int64_t items = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::mutex mutex;
  std::condition_variable finished;
  std::string error;

  void Drain() {
    SingleThreaded single_threaded;
    for (int64_t item = next++; item < items; item = next++) {
      try {
        run(item);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mutex);
        if (error.empty()) error = e.what();
      }
      if (++done == items) {
        std::lock_guard<std::mutex> lock(mutex);
        finished.notify_all();
      }
    }
  }
};

// Runs run(0), ..., run(items - 1) on the calling thread and up to threads - 1 tasks of XLA's
// pool. (Helper threads of funcnet's own, spinning or not, made a small ViT's step 1.2x slower:
// XLA runs independent thunks concurrently on its pool, and a third busy thread on two cores
// stalls whichever block it shares a core with.) Returns the first error message, or "" when
// every item succeeded.
inline std::string RunBlocks(xla::ffi::ThreadPool& pool, int64_t items, std::function<void(int64_t)> run) {
  auto state = std::make_shared<BlockRun>();
  state->run = std::move(run);
  state->items = items;
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t helpers = std::min<int64_t>(items, threads) - 1;
  for (int64_t i = 0; i < helpers; ++i) pool.Schedule([state] { state->Drain(); });
  state->Drain();
  // The other blocks end within microseconds of this one: spin for them (up to ~1 ms) before
  // sleeping, since waking a thread that sleeps on the condition costs ~20-30 us.
  for (int spin = 0; spin < 20000 && state->done.load(std::memory_order_acquire) != state->items; ++spin) {
    Pause();
  }
  std::unique_lock<std::mutex> lock(state->mutex);
  state->finished.wait(lock, [&] { return state->done.load() == state->items; });
  return state->error;
}

}  // namespace funcnet_onednn
