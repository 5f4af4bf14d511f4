"""Convolutions: torch.nn.functional's ``conv1d/2d/3d`` and ``conv_transpose1d/2d/3d``.

Layouts are torch's: inputs ``[N, C, *spatial]`` (or unbatched ``[C, *spatial]``),
weights ``[out, in/groups, *k]`` for convolutions and ``[in, out/groups, *k]`` for
transposed convolutions. Hyper-parameters (stride, padding, ...) are Python ints/tuples:
static under ``jit``.

Lowerings (``conv_lowering`` says which one a shape gets; ``funcnet.backends`` forces one):

- ``"xla"``: one ``lax.conv_general_dilated`` (transposed: of the stride-dilated input with
  the flipped kernel). cuDNN on GPU — the default on every backend but CPU.
- ``"onednn"`` (CPU, float32, 2-D): oneDNN's convolution kernels, the ones behind torch's CPU
  ``conv2d``, as three JAX primitives (``funcnet.onednn``: forward, input and weight gradients,
  differentiable to any order). Needs oneDNN installed (``pip install 'funcnet[onednn]'``) and a
  C++ compiler for its small XLA FFI shim; without them the rule below picks ``"xla"`` there.
- ``"patches"``: im2col from strided slices + one (per-group batched) matmul. Its autodiff
  backward is matmuls plus pads/adds (col2im), never an XLA convolution. Patchify convolutions
  (stride = kernel, ``groups == 1``) build the same patches by a reshape and one transpose into
  channels-last rows (a ViT's patch embedding: 65 fusions fewer a step, whole step 0.997×).
- ``"pointwise"`` (1×1 kernels, ``groups == 1``): one channels-last ``[N·S, C]·[C, O]`` matmul
  between explicit transposes; its autodiff weight gradient is a plain matmul too. On CPU in
  float32 with oneDNN available the products are oneDNN's (``funcnet.onednn.matmul``).
- ``"depthwise"`` (``groups == C_in``, one input channel per group): a sum of shifted,
  per-channel-scaled copies of the input, which XLA fuses into one elementwise loop; its
  custom VJP is the same kind of loop (dX: the flipped kernel over the stride-dilated dY) and,
  for dW, one variadic reduction with an accumulator per kernel element (one pass over dY;
  2.5–4.5× faster than one sum per element).
- ``"col2im"`` (transposed): one matmul, then each kernel offset's column placed by an
  interior-padded ``lax.pad`` and summed: no multiplications by inserted zeros.

The CPU rule (``impl="auto"``), measured on a shared 2-core x86 (jax 0.10.2; forward +
backward of every conv shape in ResNet-18/50, MobileNetV2, EfficientNet-B0 at batch 16,
3×64×64, ``benchmarks/conv_layers.py --impls xla matmul --no-torch``; time with the
matmul formulation / time with XLA's convolution, medians of per-round ratios):

==========================================  =========================  ===============
shape family                                 patches-or-other / XLA     rule picks
==========================================  =========================  ===============
depthwise 3×3 (every size)                   0.02–0.30 (XLA: C_in       depthwise (3×3 on
                                             tiny convolutions)         4×4–8×8 maps: onednn)
depthwise 5×5, 7×7 (EfficientNet, ConvNeXt)  (whole models, below)      onednn (else depthwise)
grouped 3×3, 32 groups (ResNeXt-like)        0.003–0.02                 onednn (else patches)
transposed 2×2…4×4, stride 2                 0.2–1.0                    col2im
1×1 (pointwise, any stride)                  0.33–1.0 (median ≈ 0.67)   pointwise (onednn
                                                                         from 8×8 outputs)
3×3, outputs 2×2 (512→512, 256→512/2 ...)    0.03–0.06 (XLA 0.4–2 s)    patches
3×3, outputs 4×4 (256→256, 256→256/2)        0.86–0.96 (Eigen, below)   patches
patchify (stride = kernel: ViT, ConvNeXt)    0.67–0.93 (vs XLA, oneDNN) patches
3×3, outputs ≥ 8×8 (64→64 at 16×16 ...)      1.2–1.7                    onednn (else xla)
stem 7×7/2, 3 channels at 64×64              3.6                        onednn (else xla)
==========================================  =========================  ===============

So on CPU: transposed → col2im; depthwise → depthwise (3×3 kernels on 4×4 to 8×8 maps: oneDNN
when available, per layer 0.78–0.96× torch's time against 1.05–1.28×, whole MobileNetV2 step
1.007×; 5×5 kernels and larger: oneDNN at every size, whole ConvNeXt-Tiny / EfficientNet-B0 steps
0.68× / 0.95×, because XLA recomputes the fused multiply-adds in each consumer); 1×1 → oneDNN from
8×8 outputs when available, else pointwise (channels-last patches: whole ResNet-50 / MobileNetV2 /
ResNet-18 train steps 0.80–0.95 / 0.95–0.97 / 0.98–1.01× the time with the NC* patches,
``benchmarks/variant_ab.py``); grouped → oneDNN when available (ResNeXt-50 / RegNetY-400MF steps
0.83× / 0.82×), else patches; other kernels → patches when the output has at most 16 positions per
image (4×4) or the windows do not overlap (stride = kernel), else oneDNN when available, else XLA.

oneDNN against XLA's convolution (Eigen's), measured on a 2-core x86 with AVX-512 (1 Dec 2026):
per layer (``conv_layers.py --impls auto onednn``), the ResNet 3×3 layers that now take oneDNN run
at 0.44–0.72× torch's time (Eigen's: 0.99–1.22×), the stems at 0.61–0.64× (one run; per-layer
ratios move by up to 2× between runs, ``benchmarks/RESULTS.md``). Whole train
steps with oneDNN against without (``variant_ab.py --switch conv._CPU_ONEDNN``): ResNet-18 0.84,
ResNet-50 0.95, seed CNN 0.88, MobileNetV2 0.99. The 1×1 layers with outputs of 8×8 or more take
oneDNN too: per layer 0.49–0.76× torch's time, where ``pointwise`` read 0.59–1.71× (its per-layer
time swings with the system timed just before); whole steps are unchanged by it (ResNet-50 0.996,
MobileNetV2 0.993). On smaller maps ``pointwise`` stays (0.14–0.85× against oneDNN's 0.59–1.16×).

The table was measured with XLA's default CPU kernels, YNNPACK's single-threaded convolutions.
funcnet's compiled steps now compile with ``funcnet.backends.compiler_options()``, which moves XLA's
convolutions to Eigen's multi-threaded ones (1.2–2.5× faster per layer). XLA's convolution for the
1×1 shapes instead of the pointwise lowering, whole train steps re-timed that way: ResNet-50 1.15×
the time, MobileNetV2 0.95× and 1.03× in two runs (``benchmarks/variant_ab.py --switch
conv._POINTWISE_LOWERING``), so the rule stands. The 4×4 outputs moved to patches against Eigen:
per layer 0.86–0.96× the time (``conv_layers.py --impls xla matmul --no-torch --match 4×4``), the
ResNet-18 step 0.95–0.99× and the ResNet-50 step 1.00×.

Differences from torch: mixed input/weight dtypes are promoted (torch raises); the
precision is JAX's default for float32 convolutions and matmuls (exact on CPU; on GPUs XLA
may use TF32, as torch's cuDNN does by default — set ``jax_default_matmul_precision`` to
``'highest'`` for full float32).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnet import backends, onednn
from funcnet.nn.functional.matmul import matmul

IntOrTuple = int | Sequence[int]

_SPATIAL = {1: "H", 2: "HW", 3: "DHW"}


def _dimension_numbers(n: int) -> tuple[str, str, str]:
    s = _SPATIAL[n]
    return ("NC" + s, "OI" + s, "NC" + s)


def _ntuple(value: Any, n: int, name: str) -> tuple[int, ...]:
    """torch's ``_single/_pair/_triple`` plus its expansion of a 1-element list."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * n
    values = tuple(int(v) for v in value)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(f"{name} must be an int or a sequence of {n} ints, got {value!r}")
    return values


def _batched(input: jax.Array, n: int, name: str) -> tuple[jax.Array, bool]:
    """Add the batch dim to an unbatched ``[C, *spatial]`` input, as torch does."""
    if input.ndim == n + 2:
        return input, True
    if input.ndim == n + 1:
        return input[None], False
    raise ValueError(
        f"{name}: expected {n + 1}D (unbatched) or {n + 2}D (batched) input, "
        f"but got input of shape {tuple(input.shape)}"
    )


def _common_dtype(*arrays: jax.Array | None) -> Any:
    return jnp.result_type(*(a for a in arrays if a is not None))


def _check_output_size(name: str, in_size: Sequence[int], pads: Sequence[tuple[int, int]],
                       kernel: Sequence[int], dilation: Sequence[int]) -> None:
    padded = [i + lo + hi for i, (lo, hi) in zip(in_size, pads, strict=True)]
    effective = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
    if any(p < e for p, e in zip(padded, effective, strict=True)):
        raise ValueError(
            f"{name}: calculated padded input size per channel: {tuple(padded)}. Kernel size "
            f"(dilated): {tuple(effective)}. Kernel size can't be greater than actual input size"
        )


def _conv_padding(padding: str | IntOrTuple, n: int, stride: tuple[int, ...], kernel: Sequence[int],
                  dilation: tuple[int, ...]) -> list[tuple[int, int]]:
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * n
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
            return [(t // 2, t - t // 2) for t in totals]  # torch puts the extra on the right
        raise ValueError(f"Invalid padding string {padding!r}, should be one of {{'valid', 'same'}}")
    return [(p, p) for p in _ntuple(padding, n, "padding")]


def _xla_conv(n: int, x: jax.Array, weight: jax.Array, pads: Any, window_strides: tuple[int, ...],
              lhs_dilation: tuple[int, ...], rhs_dilation: tuple[int, ...], groups: int) -> jax.Array:
    """XLA's convolution (NC*-layout, grouped): cuDNN on GPU, XLA:CPU's own algorithm on CPU."""
    return lax.conv_general_dilated(
        x, weight, window_strides=window_strides, padding=pads, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=_dimension_numbers(n), feature_group_count=groups,
    )


def _shifted_windows(x: jax.Array, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
                     out: Sequence[int]) -> list[jax.Array]:
    """One strided slice ``[N, C, *out]`` of the padded input ``x`` per kernel offset (row-major):
    slice ``k`` holds, for every output position, the input the kernel's element ``k`` sees."""
    windows = []
    for offset in itertools.product(*(range(k) for k in kernel)):
        start = [o * d for o, d in zip(offset, dilation, strict=True)]
        limit = [b + (o - 1) * s + 1 for b, o, s in zip(start, out, stride, strict=True)]
        windows.append(lax.slice(x, [0, 0, *start], [*x.shape[:2], *limit], [1, 1, *stride]))
    return windows


def _out_size(in_size: Sequence[int], pads: Sequence[tuple[int, int]], kernel: Sequence[int],
              stride: Sequence[int], dilation: Sequence[int]) -> list[int]:
    return [(i + lo + hi - d * (k - 1) - 1) // s + 1
            for i, (lo, hi), k, s, d in zip(in_size, pads, kernel, stride, dilation, strict=True)]


def _patches_conv(n: int, x: jax.Array, weight: jax.Array, pads: Any, stride: tuple[int, ...],
                  dilation: tuple[int, ...], groups: int) -> jax.Array:
    """Convolution as im2col + one (per-group batched) matmul: the shifted windows stacked into
    patches ``[N, G, C/G, K, *out]`` contracted with the weight ``[G, O/G, C/G, K]``.

    Built from pads, strided slices and ``einsum`` only, so autodiff's backward is matmuls too
    (dW = patchesᵀ·dY, dX = col2im of W·dY as pads and adds), never an XLA convolution."""
    kernel = weight.shape[2:]
    out = _out_size(x.shape[2:], pads, kernel, stride, dilation)
    x = lax.pad(x, np.zeros((), x.dtype), [(0, 0, 0), (0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads])
    if groups == 1 and _PATCHIFY_AS_RESHAPE and _non_overlapping(kernel, stride, dilation):
        return _patchify_conv(x, weight, out)
    batch, channels = x.shape[:2]
    k = math.prod(kernel)
    if k == 1:
        patches = _shifted_windows(x, kernel, stride, dilation, out)[0][:, :, None]
    else:
        patches = jnp.stack(_shifted_windows(x, kernel, stride, dilation, out), axis=2)
    patches = patches.reshape((batch, groups, channels // groups, k, *out))
    w = weight.reshape((groups, weight.shape[0] // groups, channels // groups, k))
    spatial = "xyz"[:n]
    y = jnp.einsum(f"ngck{spatial},gock->ngo{spatial}", patches, w)
    return y.reshape((batch, weight.shape[0], *out))


# False: patchify convolutions take the strided-slice im2col of _patches_conv, for an A/B.
_PATCHIFY_AS_RESHAPE = True


def _patchify_conv(x: jax.Array, weight: jax.Array, out: Sequence[int]) -> jax.Array:
    """``_patches_conv`` where the stride equals the kernel (groups 1, no dilation; a ViT's patch
    embedding), on the padded input ``x`` with ``out`` positions: every input element lies in at
    most one patch, so im2col is a reshape and one transpose to channels-last rows ``[N·out, C·k]``,
    and the convolution one ``[N·out, C·k]·[C·k, O]`` product, transposed back to ``[N, O, *out]``
    (a ViT's next step transposes it to tokens again, and XLA cancels the pair)."""
    n, kernel = len(out), weight.shape[2:]
    # the input beyond the last whole patch is ignored, as torch ignores it
    x = lax.slice(x, [0] * x.ndim, [*x.shape[:2], *(o * k for o, k in zip(out, kernel, strict=True))])
    batch, channels = x.shape[:2]
    x = x.reshape((batch, channels, *itertools.chain.from_iterable(zip(out, kernel, strict=True))))
    # [N, C, o1, k1, o2, k2, ...] -> [N, o1, o2, ..., C, k1, k2, ...]
    rows = jnp.transpose(x, (0, *range(2, 2 * n + 2, 2), 1, *range(3, 2 * n + 2, 2)))
    rows = rows.reshape(batch * math.prod(out), channels * math.prod(kernel))
    y = matmul(rows, weight.reshape(weight.shape[0], -1), transpose_b=True)  # [N·out, O]
    return jnp.transpose(y.reshape(batch, *out, weight.shape[0]), (0, n + 1, *range(1, n + 1)))


# The pointwise product ``rows · w2dᵀ`` on oneDNN's kernels (CPU, float32, when available), at any
# size: per layer 0.60-0.88x the time of XLA's dot (forward + backward, 1x1 convolutions of
# MobileNetV2 / EfficientNet-B0 / DenseNet-121 on 2x2-8x8 maps); whole train steps MobileNetV2
# 0.974-0.986x, EfficientNet-B0 0.984x, ResNet-50 1.000x, DenseNet-121 0.982-1.007x. (``linear``
# keeps its own size threshold: its small products lost in the seed MLP's step.) False: XLA's dot,
# for an in-process A/B (benchmarks/variant_ab.py).
_CPU_ONEDNN_POINTWISE_PRODUCT = True


def _pointwise_product(rows: jax.Array, w2d: jax.Array) -> jax.Array:
    """``rows [M, C] · w2d [O, C]ᵀ`` → ``[M, O]``: ``matmul``'s kernel choice without its size floor."""
    if _CPU_ONEDNN_POINTWISE_PRODUCT:
        return matmul(rows, w2d, transpose_b=True, min_macs=0)
    return jnp.matmul(rows, w2d.T)


def _pointwise_conv(n: int, x: jax.Array, weight: jax.Array, pads: Any, stride: Sequence[int]) -> jax.Array:
    """1×1 convolution (``groups == 1``) as one ``[N·S, C]·[C, O]`` matmul in channels-last order:
    x ``[N, C, *S]`` → ``[N, O, *out]``.

    The transposes in and out are explicit, so autodiff's weight gradient is a plain
    ``[N·S, O]ᵀ·[N·S, C]`` product; contracting ``(N, *S)`` of the NC* arrays directly made XLA:CPU
    build that operand in a transposing copy into which it fused (and recomputed) the preceding
    BatchNorm/ReLU/residual chain. ResNet-50's train step: 0.80–0.95× the time of ``"patches"``."""
    x = lax.pad(x, np.zeros((), x.dtype), [(0, 0, 0), (0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads])
    if any(s != 1 for s in stride):
        x = lax.slice(x, [0] * x.ndim, x.shape, [1, 1, *stride])
    batch, channels, *out = x.shape
    rows = jnp.transpose(x, (0, *range(2, n + 2), 1)).reshape(-1, channels)  # [N·S, C]
    y = _pointwise_product(rows, weight.reshape(weight.shape[0], channels))  # [N·S, O]
    return jnp.transpose(y.reshape(batch, *out, weight.shape[0]), (0, n + 1, *range(1, n + 1)))


def _depthwise_sum(x: jax.Array, weight: jax.Array, pads: Any, stride: Sequence[int],
                   dilation: Sequence[int]) -> jax.Array:
    """``Σ_k window_k(x) · w[:, k]``: x ``[N, C, *S]``, weight ``[C·m, 1, *k]`` → ``[N, C·m, *out]``."""
    n = x.ndim - 2
    kernel = weight.shape[2:]
    out = _out_size(x.shape[2:], pads, kernel, stride, dilation)
    x = lax.pad(x, np.zeros((), x.dtype), [(0, 0, 0), (0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads])
    batch, channels = x.shape[:2]
    multiplier = weight.shape[0] // channels
    w = weight.reshape((channels, multiplier, math.prod(kernel)) + (1,) * n)
    y = None
    for i, window in enumerate(_shifted_windows(x, kernel, stride, dilation, out)):
        term = window[:, :, None] * w[None, :, :, i]
        y = term if y is None else y + term
    return y.reshape((batch, weight.shape[0], *out))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _depthwise_conv(x: jax.Array, weight: jax.Array, pads: Any, stride: tuple[int, ...],
                    dilation: tuple[int, ...]) -> jax.Array:
    """Depthwise convolution (``groups == C_in``, weight ``[C_in·m, 1, *k]``) as a sum of
    shifted, per-channel-scaled copies of the input: elementwise multiply-adds that XLA fuses
    into one loop, where a grouped convolution would be C_in tiny ones. The backward is the
    same kind of loop (custom VJP): dX is the depthwise correlation of the stride-dilated dY
    with the flipped kernel, dW one variadic reduction (``_depthwise_weight_grad``)."""
    return _depthwise_sum(x, weight, pads, stride, dilation)


def _depthwise_fwd(x, weight, pads, stride, dilation):
    return _depthwise_sum(x, weight, pads, stride, dilation), (x, weight)


def _depthwise_bwd(pads, stride, dilation, residuals, g):
    x, weight = residuals
    n = x.ndim - 2
    kernel = weight.shape[2:]
    batch, channels = x.shape[:2]
    multiplier = weight.shape[0] // channels
    out = g.shape[2:]
    # dX: dY placed every `stride` (interior padding), padded so that a stride-1 correlation
    # with the flipped kernel lands exactly on the unpadded input positions.
    config = [(0, 0, 0), (0, 0, 0)]
    for (lo, _hi), size, o, s, d, k in zip(pads, x.shape[2:], out, stride, dilation, kernel, strict=True):
        config.append((d * (k - 1) - lo, size + lo - (o - 1) * s - 1, s - 1))
    gd = lax.pad(g, np.zeros((), g.dtype), config)  # [N, C·m, S + d(k−1)]
    flipped = jnp.flip(weight, axis=tuple(range(2, n + 2)))
    w = flipped.reshape((channels, multiplier, math.prod(kernel)) + (1,) * n)
    gd = gd.reshape((batch, channels, multiplier, *gd.shape[2:]))
    dx = None
    for i, offset in enumerate(itertools.product(*(range(k) for k in kernel))):
        start = [0, 0, 0] + [o * d for o, d in zip(offset, dilation, strict=True)]
        limit = [batch, channels, multiplier] + [b + size for b, size in zip(start[3:], x.shape[2:], strict=True)]
        term = jnp.sum(lax.slice(gd, start, limit) * w[None, :, :, i], axis=2)
        dx = term if dx is None else dx + term
    dw = _depthwise_weight_gradient(x, g, pads, kernel, stride, dilation)
    return dx.astype(x.dtype), dw.astype(weight.dtype)


_depthwise_conv.defvjp(_depthwise_fwd, _depthwise_bwd)


def _depthwise_weight_gradient(x: jax.Array, g: jax.Array, pads: Any, kernel: Sequence[int], stride: Sequence[int],
                               dilation: Sequence[int]) -> jax.Array:
    """The weight gradient ``[C·m, 1, *kernel]`` of a depthwise convolution of ``x`` ``[N, C, *S]``
    (unpadded) for ``g`` = dY ``[N, C·m, *out]``, summed in float32 or wider (bf16/f16 products
    in float32, as torch): ``dW[c·m + j, 0, k] = Σ_{n, out} window_k(x)[n, c] · dY[n, c·m + j]``.
    Also the weight gradient of oneDNN's depthwise convolutions with large kernels
    (``funcnet.onednn.conv``)."""
    batch, channels = x.shape[:2]
    xp = lax.pad(x, np.zeros((), x.dtype), [(0, 0, 0), (0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads])
    g5 = g.reshape((batch, channels, g.shape[1] // channels, *g.shape[2:]))
    accumulate = jnp.promote_types(g.dtype, jnp.float32)
    weight_grad = _depthwise_weight_grad if _DEPTHWISE_ONE_REDUCTION else _depthwise_weight_grad_by_sums
    dw = weight_grad(xp.astype(accumulate), g5.astype(accumulate), tuple(kernel), tuple(stride), tuple(dilation))
    return dw.reshape((g.shape[1], 1, *kernel))


def _weight_grad_products(xp: jax.Array, g5: jax.Array, kernel: Sequence[int], stride: Sequence[int],
                          dilation: Sequence[int]) -> list[jax.Array]:
    """``window_k(xp)[:, :, None] · g5`` for each kernel offset ``k``: xp ``[N, C, *S_padded]``,
    g5 ``[N, C, m, *out]`` → K arrays ``[N, C, m, *out]``."""
    return [win[:, :, None] * g5 for win in _shifted_windows(xp, kernel, stride, dilation, g5.shape[3:])]


def _depthwise_weight_grad_by_sums(xp: jax.Array, g5: jax.Array, kernel: Sequence[int], stride: Sequence[int],
                                   dilation: Sequence[int]) -> jax.Array:
    """The depthwise weight gradient ``[C, m, K]`` as K separate sums (differentiable reference)."""
    axes = (0, *range(3, g5.ndim))
    return jnp.stack([jnp.sum(p, axis=axes) for p in _weight_grad_products(xp, g5, kernel, stride, dilation)], -1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _depthwise_weight_grad(xp: jax.Array, g5: jax.Array, kernel: tuple[int, ...], stride: tuple[int, ...],
                           dilation: tuple[int, ...]) -> jax.Array:
    """The depthwise weight gradient ``[C, m, K]``: ``Σ_{n, out} window_k(xp)[n, c] · g5[n, c, j]`` for
    every kernel offset ``k``, as ONE variadic reduction with K accumulators. XLA:CPU fuses the
    slices and products into it: one pass over dY. As K separate sums (``_by_sums``) each pass
    re-read dY and a window of x, and XLA:CPU's reduction library materialised every window:
    2.5-4.5x slower (3x3 depthwise at batch 16 of MobileNetV2/EfficientNet's shapes).

    Its own VJP is the reference's autodiff (pads, slices, products), so second derivatives
    through a depthwise convolution keep working (``lax.reduce`` with a custom reducer has no
    differentiation rule)."""
    products = _weight_grad_products(xp, g5, kernel, stride, dilation)
    zeros = tuple(np.zeros((), p.dtype) for p in products)
    axes = (0, *range(3, g5.ndim))
    sums = lax.reduce(tuple(products), zeros, lambda a, b: tuple(u + v for u, v in zip(a, b, strict=True)), axes)
    return jnp.stack(sums, -1)


def _depthwise_weight_grad_fwd(xp, g5, kernel, stride, dilation):
    return _depthwise_weight_grad(xp, g5, kernel, stride, dilation), (xp, g5)


def _depthwise_weight_grad_bwd(kernel, stride, dilation, residuals, ct):
    _, vjp = jax.vjp(lambda a, b: _depthwise_weight_grad_by_sums(a, b, kernel, stride, dilation), *residuals)
    return vjp(ct)


_depthwise_weight_grad.defvjp(_depthwise_weight_grad_fwd, _depthwise_weight_grad_bwd)


def _col2im_conv_transpose(n: int, x: jax.Array, weight: jax.Array, padding: tuple[int, ...],
                           output_padding: tuple[int, ...], stride: tuple[int, ...],
                           dilation: tuple[int, ...], groups: int) -> jax.Array:
    """Transposed convolution as one (per-group batched) matmul + col2im: every input position
    times the weight gives a ``K``-element column ``[N, C_out, K, *in]``; column element ``k``
    of input position ``i`` lands on output ``i·s + k·d − p`` — one interior-padded (stride
    − 1 zeros between elements) placement per kernel offset, summed. No stride-dilated input,
    so no multiplications by inserted zeros."""
    batch, c_in = x.shape[:2]
    kernel = weight.shape[2:]
    in_size = x.shape[2:]
    out_per_group = weight.shape[1]
    k = math.prod(kernel)
    xg = x.reshape((batch, groups, c_in // groups, *in_size))
    w = weight.reshape((groups, c_in // groups, out_per_group, k))
    spatial = "xyz"[:n]
    cols = jnp.einsum(f"ngc{spatial},gcok->ngok{spatial}", xg, w)
    cols = cols.reshape((batch, groups * out_per_group, k, *in_size))
    out = [(i - 1) * s - 2 * p + d * (kk - 1) + op + 1
           for i, s, p, d, kk, op in zip(in_size, stride, padding, dilation, kernel, output_padding, strict=True)]
    y = None
    zero = np.zeros((), cols.dtype)
    for idx, offset in enumerate(itertools.product(*(range(kk) for kk in kernel))):
        config = [(0, 0, 0), (0, 0, 0)]
        for o, i, s, p, d, size in zip(offset, in_size, stride, padding, dilation, out, strict=True):
            lo = o * d - p
            config.append((lo, size - lo - ((i - 1) * s + 1), s - 1))
        placed = lax.pad(cols[:, :, idx], zero, config)
        y = placed if y is None else y + placed
    return y


# False: the depthwise weight gradient is K separate sums instead of one variadic reduction, for an
# in-process A/B (benchmarks/variant_ab.py); read when a convolution is differentiated.
_DEPTHWISE_ONE_REDUCTION = True

# False: 1x1 convolutions take the NC* "patches" lowering instead, for an in-process A/B of the two
# (benchmarks/variant_ab.py); read when a convolution is traced.
_POINTWISE_LOWERING = True

# XLA:CPU's dense convolution with a spatial kernel is fast on large maps and 10-300x slow on
# tiny ones (2x2 outputs); at 4x4 outputs patches win by 4-14% on Eigen (see the module docstring).
_CPU_PATCHES_UP_TO_POSITIONS = 16

# The dense 2-D convolutions left to XLA above (outputs larger than 4x4) go to oneDNN when it is
# available (see the module docstring). False: XLA's, for an in-process A/B.
_CPU_ONEDNN = True
# 1x1 convolutions with outputs of 8x8 and more go to oneDNN too: per layer 0.49-0.76x torch's time
# where "pointwise" measured 0.59-1.71x (its per-layer times swing with the neighbouring system);
# on smaller maps "pointwise" is faster (0.14-0.85x against oneDNN's 0.59-1.16x).
_CPU_ONEDNN_POINTWISE = True
_CPU_ONEDNN_POINTWISE_FROM_POSITIONS = 64
# 3x3 depthwise convolutions on maps of 4x4 to 8x8 go to oneDNN (its direct depthwise kernels):
# per layer 0.78-0.96x torch's time where "depthwise" measured 1.05-1.28x (MobileNetV2's and
# EfficientNet-B0's 192- to 576-channel layers). On 2x2 maps and at 16x16 and above, "depthwise" is
# as fast or faster (0.19-0.63x against oneDNN's 0.61-1.29x).
_CPU_ONEDNN_DEPTHWISE = True
_CPU_ONEDNN_DEPTHWISE_INPUT_POSITIONS = (16, 64)
# Depthwise kernels of 5x5 and more (EfficientNet, MnasNet, ConvNeXt's 7x7) go to oneDNN at every
# map size, with the weight gradient as XLA's reduction (funcnet.onednn.conv). Alone, "depthwise" is
# fast (7x7: 0.24-0.56x torch's time per layer), but in a model XLA fuses its 25-49 multiply-adds
# into every consumer of the output and computes them again in each (ConvNeXt's LayerNorm: 4
# fusions per block); oneDNN's result is computed once. Train steps: ConvNeXt-Tiny 0.68x the time
# (7x7), EfficientNet-B0 0.94-0.95x and MnasNet 0.96x (5x5); for 3x3 kernels at every size
# MobileNetV2 took 1.03x, so they keep the map-size rule above.
_CPU_ONEDNN_DEPTHWISE_FROM_TAPS = 25
# Grouped convolutions (ResNeXt's 32 groups, RegNet's group widths) go to oneDNN at every map size,
# where "patches" ran a batched matmul per group: ResNeXt-50 and RegNetY-400MF train steps 0.83x and
# 0.82x the time (oneDNN only from 8x8 outputs: ResNeXt-50 1.04x the time of every size).
_CPU_ONEDNN_GROUPED = True


def conv_lowering(input_shape: Sequence[int], weight_shape: Sequence[int], stride: IntOrTuple = 1,
                  padding: str | IntOrTuple = 0, dilation: IntOrTuple = 1, groups: int = 1,
                  transposed: bool = False, backend: str | None = None, impl: str | None = None,
                  dtype: Any = jnp.float32) -> str:
    """Which lowering ``F.conv{n}d`` (``transposed=True``: ``F.conv_transpose{n}d``) gets for
    these shapes and hyper-parameters: ``"xla"`` (``lax.conv_general_dilated``), ``"onednn"``
    (oneDNN's kernels, ``funcnet.onednn``), ``"patches"`` (im2col + matmul), ``"pointwise"``
    (1×1, channels-last matmul), ``"depthwise"`` (shifted multiply-adds) or ``"col2im"``
    (matmul + col2im, transposed only).

    ``input_shape`` is batched ``[N, C, *spatial]``; ``backend`` defaults to
    ``jax.default_backend()``, ``impl`` to ``funcnet.backends.get_conv_impl()``; ``dtype`` is the
    computation's (oneDNN takes float32 only). Asking about a shape the rule would give to oneDNN
    builds and loads funcnet's oneDNN shim (once per process, see ``funcnet.onednn``).
    """
    n = len(weight_shape) - 2
    impl = backends.get_conv_impl() if impl is None else backends._checked(impl, "conv_lowering")
    if impl == "xla":
        return "xla"
    if impl == "auto" and (backend or jax.default_backend()) != "cpu":
        return "xla"  # cuDNN / the TPU convolution units: the fast path there
    if impl == "onednn" and not transposed and n == 2 and jnp.dtype(dtype) == jnp.float32:
        if (backend or jax.default_backend()) != "cpu":
            raise RuntimeError(f"conv_lowering: the convolution implementation is forced to 'onednn', which runs "
                               f"on CPU only, but the backend is {backend or jax.default_backend()!r}")
        if not onednn.available():
            raise RuntimeError(f"conv_lowering: the convolution implementation is forced to 'onednn', but oneDNN "
                               f"is {onednn.status()}")
        return "onednn"
    if transposed:
        return "col2im"

    def onednn_may_run() -> bool:  # asked only where a rule would pick oneDNN (it builds the shim)
        return impl == "auto" and n == 2 and jnp.dtype(dtype) == jnp.float32 and onednn.available()

    if groups > 1 and weight_shape[1] == 1:
        small_map = (_CPU_ONEDNN_DEPTHWISE_INPUT_POSITIONS[0] <= math.prod(input_shape[2:])
                     <= _CPU_ONEDNN_DEPTHWISE_INPUT_POSITIONS[1])
        large_kernel = math.prod(weight_shape[2:]) >= _CPU_ONEDNN_DEPTHWISE_FROM_TAPS
        if _CPU_ONEDNN_DEPTHWISE and (large_kernel or (tuple(weight_shape[2:]) == (3, 3) and small_map)) \
                and onednn_may_run():
            return "onednn"
        return "depthwise"
    stride_t, dilation_t = _ntuple(stride, n, "stride"), _ntuple(dilation, n, "dilation")
    if isinstance(padding, str) or isinstance(padding, (int, np.integer)) or not isinstance(padding[0], tuple):
        pads = _conv_padding(padding, n, stride_t, weight_shape[2:], dilation_t)
    else:
        pads = list(padding)  # already (lo, hi) pairs
    positions = math.prod(_out_size(input_shape[2:], pads, weight_shape[2:], stride_t, dilation_t))
    to_onednn = _CPU_ONEDNN and groups == 1 and onednn_may_run()
    if groups == 1 and all(k == 1 for k in weight_shape[2:]) and _POINTWISE_LOWERING:
        if to_onednn and _CPU_ONEDNN_POINTWISE and positions >= _CPU_ONEDNN_POINTWISE_FROM_POSITIONS:
            return "onednn"
        return "pointwise"
    if groups > 1 and _CPU_ONEDNN_GROUPED and onednn_may_run():
        return "onednn"
    if impl == "matmul" or groups > 1:
        return "patches"
    if positions <= _CPU_PATCHES_UP_TO_POSITIONS or _non_overlapping(weight_shape[2:], stride_t, dilation_t):
        return "patches"
    return "onednn" if to_onednn else "xla"


def _non_overlapping(kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]) -> bool:
    """Patchify convolutions (ViT patch embeddings, ConvNeXt stems and downsamplers): stride equal
    to the kernel, so im2col is a reshape. Patches + matmul there: 0.67-0.93x the time of both
    XLA's and oneDNN's convolution (4 shapes, see the module docstring)."""
    return all(s == k for s, k in zip(stride, kernel)) and all(d == 1 for d in dilation) and math.prod(kernel) > 1


def _conv_with_bias(n: int, x: jax.Array, weight: jax.Array, bias: jax.Array | None, batched: bool,
                    pads: Any, stride: tuple[int, ...], dilation: tuple[int, ...], groups: int) -> jax.Array:
    """The forward convolution in the lowering ``conv_lowering`` picks, plus the bias over the
    channel axis; drops the batch axis again for unbatched input."""
    dtype = _common_dtype(x, weight, bias)
    x, weight = x.astype(dtype), weight.astype(dtype)
    lowering = conv_lowering(x.shape, weight.shape, stride, pads, dilation, groups, dtype=dtype)
    if lowering == "onednn":
        y = onednn.conv2d(x, weight, stride, pads, dilation, groups)
    elif lowering == "patches":
        y = _patches_conv(n, x, weight, pads, stride, dilation, groups)
    elif lowering == "pointwise":
        y = _pointwise_conv(n, x, weight, pads, stride)
    elif lowering == "depthwise":
        y = _depthwise_conv(x, weight, tuple(tuple(p) for p in pads), stride, dilation)
    else:
        y = _xla_conv(n, x, weight, pads, stride, (1,) * n, dilation, groups)
    return _add_bias(n, y, bias, dtype, batched)


def _add_bias(n: int, y: jax.Array, bias: jax.Array | None, dtype: Any, batched: bool) -> jax.Array:
    if bias is not None:
        y = y + bias.astype(dtype).reshape((1, -1) + (1,) * n)
    return y if batched else y[0]


def _convnd(n: int, name: str, input: jax.Array, weight: jax.Array, bias: jax.Array | None,
            stride: IntOrTuple, padding: str | IntOrTuple, dilation: IntOrTuple, groups: int) -> jax.Array:
    x, batched = _batched(input, n, name)
    if weight.ndim != n + 2:
        raise ValueError(
            f"{name}: expected a {n + 2}D weight [out, in/groups, *k], got {tuple(weight.shape)}"
        )
    out_channels, in_per_group = weight.shape[:2]
    if groups < 1 or out_channels % groups:
        raise ValueError(f"{name}: groups={groups} must be positive and divide out_channels={out_channels}")
    if x.shape[1] != in_per_group * groups:
        raise ValueError(
            f"{name}: given groups={groups}, weight of size {list(weight.shape)}, expected "
            f"input{list(input.shape)} to have {in_per_group * groups} channels, but got "
            f"{x.shape[1]} channels instead"
        )
    stride_t = _ntuple(stride, n, "stride")
    dilation_t = _ntuple(dilation, n, "dilation")
    kernel = weight.shape[2:]
    pads = _conv_padding(padding, n, stride_t, kernel, dilation_t)
    _check_output_size(name, x.shape[2:], pads, kernel, dilation_t)
    return _conv_with_bias(n, x, weight, bias, batched, pads, stride_t, dilation_t, groups)


def conv1d(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None, stride: IntOrTuple = 1,
           padding: str | IntOrTuple = 0, dilation: IntOrTuple = 1, groups: int = 1) -> jax.Array:
    """``torch.nn.functional.conv1d``: input ``[N, C_in, L]`` or ``[C_in, L]``, weight
    ``[C_out, C_in/groups, k]``, bias ``[C_out]`` → ``[N, C_out, L_out]`` (or ``[C_out, L_out]``).

    ``padding`` is an int/tuple or ``'valid'``/``'same'`` ('same' puts the odd extra
    padding on the right, as torch; it requires stride 1).
    """
    return _convnd(1, "conv1d", input, weight, bias, stride, padding, dilation, groups)


def conv2d(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None, stride: IntOrTuple = 1,
           padding: str | IntOrTuple = 0, dilation: IntOrTuple = 1, groups: int = 1) -> jax.Array:
    """``torch.nn.functional.conv2d``: input ``[N, C_in, H, W]`` or ``[C_in, H, W]``, weight
    ``[C_out, C_in/groups, kh, kw]`` (OIHW), bias ``[C_out]`` → ``[N, C_out, H_out, W_out]``.

    ``H_out = ⌊(H + 2·p − d·(k−1) − 1)/s⌋ + 1``; ``padding`` may be ``'valid'``/``'same'``.
    """
    return _convnd(2, "conv2d", input, weight, bias, stride, padding, dilation, groups)


def conv3d(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None, stride: IntOrTuple = 1,
           padding: str | IntOrTuple = 0, dilation: IntOrTuple = 1, groups: int = 1) -> jax.Array:
    """``torch.nn.functional.conv3d``: input ``[N, C_in, D, H, W]`` or ``[C_in, D, H, W]``,
    weight ``[C_out, C_in/groups, kd, kh, kw]``, bias ``[C_out]``."""
    return _convnd(3, "conv3d", input, weight, bias, stride, padding, dilation, groups)


def _conv_transposend(n: int, name: str, input: jax.Array, weight: jax.Array, bias: jax.Array | None,
                      stride: IntOrTuple, padding: IntOrTuple, output_padding: IntOrTuple, groups: int,
                      dilation: IntOrTuple) -> jax.Array:
    x, batched = _batched(input, n, name)
    if weight.ndim != n + 2:
        raise ValueError(
            f"{name}: expected a {n + 2}D weight [in, out/groups, *k], got {tuple(weight.shape)}"
        )
    in_channels, out_per_group = weight.shape[:2]
    kernel = weight.shape[2:]
    if groups < 1 or in_channels % groups:
        raise ValueError(f"{name}: groups={groups} must be positive and divide in_channels={in_channels}")
    if x.shape[1] != in_channels:
        raise ValueError(
            f"{name}: given transposed=1, weight of size {list(weight.shape)}, expected "
            f"input{list(input.shape)} to have {in_channels} channels, but got {x.shape[1]} "
            f"channels instead"
        )
    stride_t = _ntuple(stride, n, "stride")
    padding_t = _ntuple(padding, n, "padding")
    out_pad_t = _ntuple(output_padding, n, "output_padding")
    dilation_t = _ntuple(dilation, n, "dilation")
    for op, s, d in zip(out_pad_t, stride_t, dilation_t, strict=True):
        if op >= s and op >= d:
            raise ValueError(
                f"{name}: output padding must be smaller than either stride or dilation, "
                f"but got output_padding={out_pad_t}, stride={stride_t}, dilation={dilation_t}"
            )
    out_size = [
        (i - 1) * s - 2 * p + d * (k - 1) + op + 1
        for i, s, p, d, k, op in zip(
            x.shape[2:], stride_t, padding_t, dilation_t, kernel, out_pad_t, strict=True
        )
    ]
    if any(o <= 0 for o in out_size):
        raise ValueError(f"{name}: output size {tuple(out_size)} is too small for input {tuple(input.shape)}")
    dtype = _common_dtype(x, weight, bias)
    x, weight = x.astype(dtype), weight.astype(dtype)
    lowering = conv_lowering(x.shape, weight.shape, stride_t, padding_t, dilation_t, groups, transposed=True)
    if lowering == "col2im":
        y = _col2im_conv_transpose(n, x, weight, padding_t, out_pad_t, stride_t, dilation_t, groups)
        return _add_bias(n, y, bias, dtype, batched)
    # XLA: the convolution of the stride-dilated input with the spatially flipped kernel
    # whose in/out axes are swapped within each group.
    w = weight.reshape((groups, in_channels // groups, out_per_group) + tuple(kernel))
    w = jnp.swapaxes(w, 1, 2).reshape((groups * out_per_group, in_channels // groups) + tuple(kernel))
    w = jnp.flip(w, axis=tuple(range(2, n + 2)))
    pads = [
        (d * (k - 1) - p, d * (k - 1) - p + op)
        for k, d, p, op in zip(kernel, dilation_t, padding_t, out_pad_t, strict=True)
    ]
    y = _xla_conv(n, x, w, pads, (1,) * n, stride_t, dilation_t, groups)
    return _add_bias(n, y, bias, dtype, batched)


def conv_transpose1d(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None,
                     stride: IntOrTuple = 1, padding: IntOrTuple = 0, output_padding: IntOrTuple = 0,
                     groups: int = 1, dilation: IntOrTuple = 1) -> jax.Array:
    """``torch.nn.functional.conv_transpose1d``: input ``[N, C_in, L]`` or ``[C_in, L]``,
    weight ``[C_in, C_out/groups, k]`` (torch's transposed layout), bias ``[C_out]``.

    ``L_out = (L − 1)·s − 2·p + d·(k − 1) + output_padding + 1``.
    """
    return _conv_transposend(1, "conv_transpose1d", input, weight, bias, stride, padding,
                             output_padding, groups, dilation)


def conv_transpose2d(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None,
                     stride: IntOrTuple = 1, padding: IntOrTuple = 0, output_padding: IntOrTuple = 0,
                     groups: int = 1, dilation: IntOrTuple = 1) -> jax.Array:
    """``torch.nn.functional.conv_transpose2d``: input ``[N, C_in, H, W]`` or ``[C_in, H, W]``,
    weight ``[C_in, C_out/groups, kh, kw]``, bias ``[C_out]``.

    ``H_out = (H − 1)·s − 2·p + d·(k − 1) + output_padding + 1``.
    """
    return _conv_transposend(2, "conv_transpose2d", input, weight, bias, stride, padding,
                             output_padding, groups, dilation)


def conv_transpose3d(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None,
                     stride: IntOrTuple = 1, padding: IntOrTuple = 0, output_padding: IntOrTuple = 0,
                     groups: int = 1, dilation: IntOrTuple = 1) -> jax.Array:
    """``torch.nn.functional.conv_transpose3d``: input ``[N, C_in, D, H, W]`` or unbatched,
    weight ``[C_in, C_out/groups, kd, kh, kw]``, bias ``[C_out]``."""
    return _conv_transposend(3, "conv_transpose3d", input, weight, bias, stride, padding,
                             output_padding, groups, dilation)
