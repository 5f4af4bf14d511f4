// funcnet's column sums for XLA:CPU, as an XLA FFI custom-call handler (no oneDNN involved; it
// lives in the same shim library).
//
// out[c] = sum over r of x[r, c], x a row-major float32 [rows, cols] buffer. XLA:CPU reduces the
// leading axis of such an array at 1/6 of torch's speed (a [1040, 576] bias gradient: 120-136 us
// against torch's 17-23 us); here each thread streams whole rows of its column block through
// vectorised adds.
#include <algorithm>
#include <cstdint>
#include <string>

#include "shim.h"

namespace ffi = xla::ffi;

namespace {

// Sums columns [c0, c1) of all rows into out[c0:c1]: eight rows at a time in float32, each such
// partial sum added into a double accumulator (the float32 error of an 8-term sum, not of a
// rows-long chain). Compiled for AVX-512, AVX2 and plain x86-64, chosen when the library loads
// (the shim is built for any x86-64, not for the building machine).
#if defined(__x86_64__)
__attribute__((optimize("O3"), target_clones("avx512f", "avx2", "default")))
#endif
void SumColumnBlock(const float* x, int64_t rows, int64_t cols, int64_t c0, int64_t c1, float* out) {
  constexpr int64_t kChunk = 8;
  // Columns in tiles whose accumulators live on the stack: no allocation per call (small
  // allocations in XLA's threads contend for funcnet.host_memory's single malloc arena).
  constexpr int64_t kTile = 512;
  double a[kTile];
  float p[kTile];
  for (int64_t t0 = c0; t0 < c1; t0 += kTile) {
    const int64_t width = std::min(kTile, c1 - t0);
    for (int64_t c = 0; c < width; ++c) a[c] = 0.0;
    for (int64_t r0 = 0; r0 < rows; r0 += kChunk) {
      const int64_t r1 = std::min(rows, r0 + kChunk);
      const float* first = x + r0 * cols + t0;
      for (int64_t c = 0; c < width; ++c) p[c] = first[c];
      for (int64_t r = r0 + 1; r < r1; ++r) {
        const float* row = x + r * cols + t0;
        for (int64_t c = 0; c < width; ++c) p[c] += row[c];
      }
      for (int64_t c = 0; c < width; ++c) a[c] += p[c];
    }
    for (int64_t c = 0; c < width; ++c) out[t0 + c] = static_cast<float>(a[c]);
  }
}

ffi::Error ColumnSums(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> out, int64_t rows,
                      int64_t cols) {
  if (x.element_type() != ffi::F32 || out->element_type() != ffi::F32) {
    return ffi::Error::InvalidArgument("funcnet column sums: float32 only");
  }
  if (static_cast<int64_t>(x.element_count()) != rows * cols ||
      static_cast<int64_t>(out->element_count()) != cols) {
    return ffi::Error::InvalidArgument("funcnet column sums: buffer sizes do not match the shapes");
  }
  const auto* px = static_cast<const float*>(x.untyped_data());
  float* po = static_cast<float*>(out->untyped_data());
  if (cols == 0) return ffi::Error::Success();
  // A block per pool thread once each has 256K elements to add (the ViT's [1040, 576] and
  // [1040, 768] bias gradients split in two: its step 0.995x the time with blocks from 1M), and
  // no block narrower than 64 columns (blocks then never share a cache line of the output).
  constexpr int64_t kMinBlockElements = int64_t{1} << 18;
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t blocks = std::max<int64_t>(1, std::min({threads, rows * cols / kMinBlockElements, cols / 64}));
  std::string error = funcnet_onednn::RunBlocks(pool, blocks, [&](int64_t item) {
    SumColumnBlock(px, rows, cols, cols * item / blocks, cols * (item + 1) / blocks, po);
  });
  if (!error.empty()) return ffi::Error::Internal("funcnet column sums: " + error);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(FuncnetColumnSums, ColumnSums,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("rows")
                                  .Attr<int64_t>("cols"));
