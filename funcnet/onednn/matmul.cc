// funcnet's oneDNN matrix products for XLA:CPU, as an XLA FFI custom-call handler.
//
// out[b] = op(a[b]) @ op(b[b]) for every batch index b, with op = identity or transpose (the
// transposes are strides, never copies), float32, row-major buffers: a is [batch, M, K] (or
// [batch, K, M] when transpose_a), b is [batch, K, N] (or [batch, N, K] when transpose_b), out
// is [batch, M, N]. The work is split over XLA's intra-op pool into blocks of whole batch
// entries or, for few entries, of output rows (of output columns when a has fewer rows than b
// has columns: each block then reads its slice of b, not all of b), each run by single-threaded
// oneDNN (the same scheme as conv.cc, for the same reason: no OpenMP team).
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>

#include "shim.h"

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

using funcnet_onednn::Engine;

// One block: `batch` entries, `rows` output rows and `cols` output columns of each, in the full
// problem's strides.
struct Block {
  int64_t batch, rows, cols, m, k, n;
  bool ta, tb;
  bool operator<(const Block& o) const {
    return std::tie(batch, rows, cols, m, k, n, ta, tb) <
           std::tie(o.batch, o.rows, o.cols, o.m, o.k, o.n, o.ta, o.tb);
  }
};

struct MatmulPlan {
  dnnl::matmul primitive;
  memory::desc a, b, c, scratchpad;
};

std::shared_ptr<const MatmulPlan> MakeMatmulPlan(const Block& blk) {
  auto plan = std::make_shared<MatmulPlan>();
  const auto f32 = memory::data_type::f32;
  // Strides of the full problem: a block is a view of the whole buffers.
  plan->a = memory::desc({blk.batch, blk.rows, blk.k}, f32,
                         blk.ta ? memory::dims{blk.m * blk.k, 1, blk.m} : memory::dims{blk.m * blk.k, blk.k, 1});
  plan->b = memory::desc({blk.batch, blk.k, blk.cols}, f32,
                         blk.tb ? memory::dims{blk.k * blk.n, 1, blk.k} : memory::dims{blk.k * blk.n, blk.n, 1});
  plan->c = memory::desc({blk.batch, blk.rows, blk.cols}, f32, memory::dims{blk.m * blk.n, blk.n, 1});
  dnnl::matmul::primitive_desc pd(Engine(), plan->a, plan->b, plan->c, funcnet_onednn::UserScratchpad());
  plan->primitive = dnnl::matmul(pd);
  plan->scratchpad = pd.scratchpad_desc();
  return plan;
}

std::shared_ptr<const MatmulPlan> GetMatmulPlan(const Block& blk) {
  static auto* cache = new funcnet_onednn::PlanCache<Block, MatmulPlan>();
  return cache->Get(blk, [&] { return MakeMatmulPlan(blk); });
}

// Runs one block: output rows [r0, r0 + rows) and columns [c0, c0 + cols) of batch entries
// [b0, b0 + batch).
void RunBlock(const Block& blk, int64_t b0, int64_t r0, int64_t c0, const float* a, const float* b, float* c) {
  if (blk.batch == 0 || blk.rows == 0 || blk.cols == 0) return;
  auto plan = GetMatmulPlan(blk);
  const int64_t m = blk.m, k = blk.k, n = blk.n;
  auto* pa = const_cast<float*>(a + b0 * m * k + (blk.ta ? r0 : r0 * k));
  auto* pb = const_cast<float*>(b + b0 * k * n + (blk.tb ? c0 * k : c0));
  float* pc = c + b0 * m * n + r0 * n + c0;
  funcnet_onednn::Execute(plan->primitive, {{DNNL_ARG_SRC, plan->a, pa},
                                            {DNNL_ARG_WEIGHTS, plan->b, pb},
                                            {DNNL_ARG_DST, plan->c, pc},
                                            {DNNL_ARG_SCRATCHPAD, plan->scratchpad,
                                             funcnet_onednn::ScratchData(plan->scratchpad.get_size())}});
}

ffi::Error Matmul(ffi::ThreadPool pool, ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out,
                  int64_t batch, int64_t m, int64_t k, int64_t n, bool transpose_a, bool transpose_b) {
  if (a.element_type() != ffi::F32 || b.element_type() != ffi::F32 || out->element_type() != ffi::F32) {
    return ffi::Error::InvalidArgument("funcnet oneDNN matmul: float32 only");
  }
  if (static_cast<int64_t>(a.element_count()) != batch * m * k ||
      static_cast<int64_t>(b.element_count()) != batch * k * n ||
      static_cast<int64_t>(out->element_count()) != batch * m * n) {
    return ffi::Error::InvalidArgument("funcnet oneDNN matmul: buffer sizes do not match the shapes");
  }
  float* c = static_cast<float*>(out->untyped_data());
  if (batch * m * n == 0) return ffi::Error::Success();
  if (k == 0) {
    std::fill_n(c, batch * m * n, 0.0f);
    return ffi::Error::Success();
  }
  const auto* pa = static_cast<const float*>(a.untyped_data());
  const auto* pb = static_cast<const float*>(b.untyped_data());
  // Few entries: blocks of rows, or of columns when a is the skinny operand (VGG's classifier: 16
  // rows against 4096-25088 columns, where each row block read all of a 400 MB weight; AlexNet's /
  // VGG-11's / ConvNeXt-Tiny's train steps 0.83x / 0.88x / 0.97x the time, the ViT's unchanged).
  const bool split_cols = m < n;
  const int64_t blocks = funcnet_onednn::Blocks(pool, batch * m * k * n, batch * (split_cols ? n : m));
  const bool split = batch < blocks;  // few entries: blocks of rows or columns; else blocks of entries
  const int64_t items = split ? std::min(blocks, split_cols ? n : m) : blocks;
  std::string error = funcnet_onednn::RunBlocks(pool, items, [&](int64_t item) {
    if (split && split_cols) {
      const int64_t c0 = n * item / items;
      RunBlock({batch, m, n * (item + 1) / items - c0, m, k, n, transpose_a, transpose_b}, 0, 0, c0, pa, pb, c);
    } else if (split) {
      const int64_t r0 = m * item / items;
      RunBlock({batch, m * (item + 1) / items - r0, n, m, k, n, transpose_a, transpose_b}, 0, r0, 0, pa, pb, c);
    } else {
      const int64_t b0 = batch * item / items;
      RunBlock({batch * (item + 1) / items - b0, m, n, m, k, n, transpose_a, transpose_b}, b0, 0, 0, pa, pb, c);
    }
  });
  if (!error.empty()) return ffi::Error::Internal("funcnet oneDNN matmul: " + error);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(FuncnetOnednnMatmul, Matmul,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("batch")
                                  .Attr<int64_t>("m")
                                  .Attr<int64_t>("k")
                                  .Attr<int64_t>("n")
                                  .Attr<bool>("transpose_a")
                                  .Attr<bool>("transpose_b"));
