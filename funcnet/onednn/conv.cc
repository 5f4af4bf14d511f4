// funcnet's oneDNN convolutions for XLA:CPU, as XLA FFI custom-call handlers.
//
// Three handlers, one per convolution product (torch's mkldnn_convolution and its two
// backward kernels): forward y = conv(x, w), backward-data dx = conv_bwd_data(dy, w) and
// backward-weights dw = conv_bwd_weights(x, dy). Activations arrive channels-last (NHWC in
// memory; the JAX side transposes and XLA fuses the transposes into their neighbours), so
// oneDNN's NHWC kernels read and write XLA's buffers directly. Weights arrive OIHW and are
// reordered into oneDNN's blocked layout on every call (small next to the activations).
//
// Shapes are logical NCHW / OIHW attributes (x_shape, w_shape, y_shape); any leading
// dimensions of the buffers beyond them are a batch (from jax.vmap) processed one slice at a
// time. Each slice's images are split along N over XLA's intra-op pool, one single-threaded
// oneDNN primitive per part (shim.h says why not OpenMP); primitives are built once per
// geometry and cached.
//
// Built by funcnet/onednn/_build.py against the oneDNN and XLA FFI headers of the installed
// packages; nothing here is part of funcnet's Python import path until that build succeeds.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "shim.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using Tag = memory::format_tag;

namespace {

using funcnet_onednn::Engine;
using funcnet_onednn::UserScratchpad;

enum Kind : int64_t { kForward = 0, kBackwardData = 1, kBackwardWeights = 2 };

// One convolution's geometry, in oneDNN's terms (dilation 0 = none).
struct Geometry {
  memory::dims x, w, y, strides, dilation, pad_l, pad_r;
  int64_t groups = 1;

  memory::dims weight_dims() const {
    if (groups == 1) return w;
    return {groups, w[0] / groups, w[1], w[2], w[3]};
  }
  Tag weight_tag() const { return groups == 1 ? Tag::oihw : Tag::goihw; }
  memory::desc activation(const memory::dims& dims) const {
    return memory::desc(dims, memory::data_type::f32, Tag::nhwc);
  }
  memory::desc weights_any() const { return memory::desc(weight_dims(), memory::data_type::f32, Tag::any); }
  memory::desc weights_user() const { return memory::desc(weight_dims(), memory::data_type::f32, weight_tag()); }
  std::vector<int64_t> Key(int64_t kind) const {
    std::vector<int64_t> key{kind, groups};
    for (const memory::dims* v : {&x, &w, &y, &strides, &dilation, &pad_l, &pad_r}) {
      key.insert(key.end(), v->begin(), v->end());
      key.push_back(-1);
    }
    return key;
  }
};

// A cached primitive with its weight layout (the only argument that may need a reorder).
struct Plan {
  dnnl::primitive primitive;
  memory::desc x, y, user_weights;  // the activations (NHWC) and the caller's weights (OIHW / GOIHW)
  memory::desc weights;  // the primitive's weight layout (forward, backward-data) or diff-weights layout
  memory::desc scratchpad;
  bool reorder_weights = false;  // the weight layout differs from OIHW
  dnnl::reorder weights_reorder;  // OIHW -> weights (forward, backward-data); weights -> OIHW (backward-weights)
};

dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g) {
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, g.activation(g.x),
      g.weights_any(), g.activation(g.y), g.strides, g.dilation, g.pad_l, g.pad_r, UserScratchpad());
}

std::shared_ptr<const Plan> MakePlan(int64_t kind, const Geometry& g) {
  auto plan = std::make_shared<Plan>();
  plan->x = g.activation(g.x), plan->y = g.activation(g.y), plan->user_weights = g.weights_user();
  auto forward = ForwardDesc(g);
  if (kind == kForward) {
    plan->primitive = dnnl::convolution_forward(forward);
    plan->weights = forward.weights_desc();
    plan->scratchpad = forward.scratchpad_desc();
  } else if (kind == kBackwardData) {
    dnnl::convolution_backward_data::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct, g.activation(g.x), g.weights_any(), g.activation(g.y),
        g.strides, g.dilation, g.pad_l, g.pad_r, forward, UserScratchpad());
    plan->primitive = dnnl::convolution_backward_data(pd);
    plan->weights = pd.weights_desc();
    plan->scratchpad = pd.scratchpad_desc();
  } else {
    dnnl::convolution_backward_weights::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct, g.activation(g.x), g.weights_any(), g.activation(g.y),
        g.strides, g.dilation, g.pad_l, g.pad_r, forward, UserScratchpad());
    plan->primitive = dnnl::convolution_backward_weights(pd);
    plan->weights = pd.diff_weights_desc();
    plan->scratchpad = pd.scratchpad_desc();
  }
  plan->reorder_weights = plan->weights != g.weights_user();
  if (plan->reorder_weights) {  // built once: creating a reorder primitive per call cost more than running it
    plan->weights_reorder = kind == kBackwardWeights
                                ? dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), plan->weights, Engine(),
                                                                              g.weights_user()))
                                : dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), g.weights_user(), Engine(),
                                                                              plan->weights));
  }
  return plan;
}

std::shared_ptr<const Plan> GetPlan(int64_t kind, const Geometry& g) {
  static auto* cache = new funcnet_onednn::PlanCache<std::vector<int64_t>, Plan>();
  return cache->Get(g.Key(kind), [&] { return MakePlan(kind, g); });
}

int64_t Product(const memory::dims& dims) {
  int64_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

memory::dims Dims(ffi::Span<const int64_t> span) { return memory::dims(span.begin(), span.end()); }

// Runs one slice: `a` and `b` are the two inputs, `out` the result, in the order of `kind`.
void RunSlice(int64_t kind, const Plan& plan, float* a, float* b, float* out) {
  using funcnet_onednn::Execute;
  void* scratchpad = funcnet_onednn::ScratchData(plan.scratchpad.get_size());
  const memory::desc& user_desc = plan.user_weights;
  float* user_weights = kind == kBackwardWeights ? out : b;
  void* weights = plan.reorder_weights ? funcnet_onednn::ScratchData(plan.weights.get_size(), 1) : user_weights;
  const memory::desc& weights_desc = plan.reorder_weights ? plan.weights : user_desc;
  if (kind != kBackwardWeights && plan.reorder_weights) {
    Execute(plan.weights_reorder, {{DNNL_ARG_FROM, user_desc, user_weights}, {DNNL_ARG_TO, plan.weights, weights}});
  }
  const memory::desc &x = plan.x, &y = plan.y;
  if (kind == kForward) {
    Execute(plan.primitive, {{DNNL_ARG_SRC, x, a}, {DNNL_ARG_WEIGHTS, weights_desc, weights},
                             {DNNL_ARG_DST, y, out}, {DNNL_ARG_SCRATCHPAD, plan.scratchpad, scratchpad}});
  } else if (kind == kBackwardData) {
    Execute(plan.primitive, {{DNNL_ARG_DIFF_DST, y, a}, {DNNL_ARG_WEIGHTS, weights_desc, weights},
                             {DNNL_ARG_DIFF_SRC, x, out}, {DNNL_ARG_SCRATCHPAD, plan.scratchpad, scratchpad}});
  } else {
    Execute(plan.primitive, {{DNNL_ARG_SRC, x, a}, {DNNL_ARG_DIFF_DST, y, b},
                             {DNNL_ARG_DIFF_WEIGHTS, weights_desc, weights},
                             {DNNL_ARG_SCRATCHPAD, plan.scratchpad, scratchpad}});
    if (plan.reorder_weights) {
      Execute(plan.weights_reorder, {{DNNL_ARG_FROM, plan.weights, weights}, {DNNL_ARG_TO, user_desc, user_weights}});
    }
  }
}

// The work of one call: `slices` independent convolutions (a vmap batch), each slice's images
// split into `chunks` parts along N, one item per (slice, part), run on XLA's pool (shim.h).
struct Work {
  int64_t kind = 0, slices = 0, chunks = 0, n = 0;
  Geometry g;
  int64_t size[3] = {0, 0, 0};  // per-slice element counts of (a, b, out)
  float *a = nullptr, *b = nullptr, *out = nullptr;
  std::vector<std::vector<float>> partial;  // backward weights: each part's dW but the first
  std::vector<std::shared_ptr<const Plan>> plans;  // per part, looked up by the caller before the blocks run

  int64_t ChunkStart(int64_t c) const { return n * c / chunks; }

  void FindPlans() {
    funcnet_onednn::SingleThreaded single_threaded;  // primitives are planned for the threads they run on
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      Geometry part = g;
      part.x[0] = part.y[0] = ChunkStart(chunk + 1) - ChunkStart(chunk);
      plans.push_back(GetPlan(kind, part));
    }
  }

  void RunItem(int64_t item) {
    const int64_t slice = item / chunks, chunk = item % chunks;
    const int64_t lo = ChunkStart(chunk);
    const int64_t x_image = Product(g.x) / n, y_image = Product(g.y) / n;
    float* pa = a + slice * size[0];
    float* pb = b + slice * size[1];
    float* po = out + slice * size[2];
    if (kind == kForward) {
      pa += lo * x_image, po += lo * y_image;
    } else if (kind == kBackwardData) {
      pa += lo * y_image, po += lo * x_image;
    } else {
      pa += lo * x_image, pb += lo * y_image;
      if (chunk > 0) po = partial[item].data();
    }
    RunSlice(kind, *plans[chunk], pa, pb, po);
  }
};

template <int64_t kKind>
ffi::Error Convolution(ffi::ThreadPool pool, ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out,
                       ffi::Span<const int64_t> x_shape, ffi::Span<const int64_t> w_shape,
                       ffi::Span<const int64_t> y_shape, ffi::Span<const int64_t> stride,
                       ffi::Span<const int64_t> pad_l, ffi::Span<const int64_t> pad_r,
                       ffi::Span<const int64_t> dilation, int64_t groups) {
  if (a.element_type() != ffi::F32 || b.element_type() != ffi::F32 || out->element_type() != ffi::F32) {
    return ffi::Error::InvalidArgument("funcnet oneDNN convolution: float32 only");
  }
  if (x_shape.size() != 4 || w_shape.size() != 4 || y_shape.size() != 4) {
    return ffi::Error::InvalidArgument("funcnet oneDNN convolution: 2-D convolutions only");
  }
  Work w;
  w.kind = kKind;
  Geometry& g = w.g;
  g.x = Dims(x_shape), g.w = Dims(w_shape), g.y = Dims(y_shape), g.strides = Dims(stride);
  g.pad_l = Dims(pad_l), g.pad_r = Dims(pad_r), g.groups = groups;
  for (auto d : dilation) g.dilation.push_back(d - 1);
  static const int64_t kOrder[3][3] = {{0, 1, 2}, {2, 1, 0}, {0, 2, 1}};  // (a, b, out) as (x, w, y) indices
  const int64_t shape_sizes[3] = {Product(g.x), Product(g.w), Product(g.y)};
  for (int i = 0; i < 3; ++i) w.size[i] = shape_sizes[kOrder[kKind][i]];
  const int64_t count = static_cast<int64_t>(out->element_count());
  w.slices = w.size[2] > 0 ? count / w.size[2] : 0;
  if (w.slices * w.size[2] != count || static_cast<int64_t>(a.element_count()) != w.slices * w.size[0] ||
      static_cast<int64_t>(b.element_count()) != w.slices * w.size[1]) {
    return ffi::Error::InvalidArgument("funcnet oneDNN convolution: buffer sizes do not match the shapes");
  }
  if (w.slices == 0) return ffi::Error::Success();
  w.n = g.x[0];
  const int64_t slice_macs = Product(g.y) * (Product(g.w) / g.w[0]);  // outputs x (C/groups * kh * kw)
  w.chunks = funcnet_onednn::Blocks(pool, slice_macs, w.n);
  w.a = static_cast<float*>(a.untyped_data());
  w.b = static_cast<float*>(b.untyped_data());
  w.out = static_cast<float*>(out->untyped_data());
  if (kKind == kBackwardWeights) {
    w.partial.resize(w.slices * w.chunks);
    for (int64_t item = 0; item < w.slices * w.chunks; ++item) {
      if (item % w.chunks) w.partial[item].resize(w.size[2]);
    }
  }
  try {
    w.FindPlans();
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("funcnet oneDNN convolution: ") + e.what());
  }
  std::string error = funcnet_onednn::RunBlocks(pool, w.slices * w.chunks, [&w](int64_t item) { w.RunItem(item); });
  if (!error.empty()) return ffi::Error::Internal("funcnet oneDNN convolution: " + error);
  if (kKind == kBackwardWeights) {  // dW = the sum of the parts' dW
    for (int64_t slice = 0; slice < w.slices; ++slice) {
      float* target = w.out + slice * w.size[2];
      for (int64_t chunk = 1; chunk < w.chunks; ++chunk) {
        const float* part = w.partial[slice * w.chunks + chunk].data();
        for (int64_t i = 0; i < w.size[2]; ++i) target[i] += part[i];
      }
    }
  }
  return ffi::Error::Success();
}

}  // namespace

#define FUNCNET_CONV_BINDING                                                                     \
  ffi::Ffi::Bind()                                                                               \
      .Ctx<ffi::ThreadPool>()                                                                    \
      .Arg<ffi::AnyBuffer>()                                                                     \
      .Arg<ffi::AnyBuffer>()                                                                     \
      .Ret<ffi::AnyBuffer>()                                                                     \
      .Attr<ffi::Span<const int64_t>>("x_shape")                                                 \
      .Attr<ffi::Span<const int64_t>>("w_shape")                                                 \
      .Attr<ffi::Span<const int64_t>>("y_shape")                                                 \
      .Attr<ffi::Span<const int64_t>>("stride")                                                  \
      .Attr<ffi::Span<const int64_t>>("pad_l")                                                   \
      .Attr<ffi::Span<const int64_t>>("pad_r")                                                   \
      .Attr<ffi::Span<const int64_t>>("dilation")                                                \
      .Attr<int64_t>("groups")

XLA_FFI_DEFINE_HANDLER_SYMBOL(FuncnetOnednnConvForward, Convolution<kForward>, FUNCNET_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(FuncnetOnednnConvBackwardData, Convolution<kBackwardData>, FUNCNET_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(FuncnetOnednnConvBackwardWeights, Convolution<kBackwardWeights>,
                              FUNCNET_CONV_BINDING);

extern "C" const char* FuncnetOnednnVersion() {
  static std::string version = [] {
    const dnnl_version_t* v = dnnl_version();
    return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  }();
  return version.c_str();
}
