"""``assert_close``: ``torch.testing.assert_close`` over JAX, NumPy and torch pytrees.

The decision and the message follow torch 2.13 (``torch/testing/_comparison.py``): default
tolerances per dtype (the loosest of the two inputs), ``torch.isclose``'s closeness rule computed in
the promoted dtype, and the message facts "Mismatched elements: k / n (p%)", "Greatest absolute
difference: d at index i (up to atol allowed)", the same for the relative difference, and
"The failure occurred for item [path]" naming the pytree leaf.

Where funcnet differs from torch, on purpose:
- any two array-likes compare with each other, whatever their framework (``jax.Array``,
  ``np.ndarray``, ``torch.Tensor``): parity tests compare a JAX output with a torch one. Their
  dtypes are compared by name (``jnp.float32`` equals ``torch.float32``); torch instead refuses a
  tensor against an ndarray.
- a Python number compared with an array is broadcast against it and compared in the array's
  dtype (``assert_close(loss, 0.5)``); ``check_dtype`` ignores the number. torch raises TypeError.
- pytree nodes that are neither sequences nor mappings (registered dataclasses, ...) are
  compared child by child when both sides are the same kind of node.
torch is never imported here: tensors are recognised by their type's module.
"""

from __future__ import annotations

import cmath
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["assert_close", "default_tolerances"]

# torch.testing._comparison._DTYPE_PRECISIONS: dtype name -> (rtol, atol). Other dtypes: exact.
_DTYPE_PRECISIONS = {
    "float16": (0.001, 1e-5),
    "bfloat16": (0.016, 1e-5),
    "float32": (1.3e-6, 1e-5),
    "float64": (1e-7, 1e-7),
    "complex32": (0.001, 1e-5),
    "complex64": (1.3e-6, 1e-5),
    "complex128": (1e-7, 1e-7),
}
# Python numbers stand for these dtypes (torch's NumberPair._TYPE_TO_DTYPE).
_NUMBER_DTYPES = {int: "int64", float: "float64", complex: "complex128"}


def default_tolerances(*dtypes: Any) -> tuple[float, float]:
    """``(rtol, atol)`` torch uses for inputs of these dtypes: the loosest of them (0, 0 for ints)."""
    pairs = [_DTYPE_PRECISIONS.get(np.dtype(d).name, (0.0, 0.0)) for d in dtypes]
    return max(p[0] for p in pairs), max(p[1] for p in pairs)


class _Mismatch(Exception):
    def __init__(self, kind: type[Exception], msg: str, path: tuple):
        super().__init__(msg)
        self.kind, self.msg, self.path = kind, msg, path


def _is_torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _is_array(x: Any) -> bool:
    """Arrays, and NumPy scalars of extension dtypes (``ml_dtypes.bfloat16(1)``) as 0-d arrays."""
    return (isinstance(x, (np.ndarray, jax.Array)) or _is_torch_tensor(x)
            or (isinstance(x, np.generic) and not isinstance(x, (np.number, np.bool_))))


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, complex, np.number)) and not isinstance(x, (bool, np.bool_))


def _to_numpy(x: Any) -> np.ndarray:
    if _is_torch_tensor(x):
        from funcnet.interop.torch import tensor_to_numpy

        if x.is_sparse or x.layout != sys.modules["torch"].strided:
            x = x.to_dense()
        return tensor_to_numpy(x)
    return np.asarray(x)


def _torch_promote(a: np.dtype, b: np.dtype) -> np.dtype:
    """``torch.promote_types`` (after torch's uint16/32/64 -> int64 rule), on numpy dtypes."""
    a, b = (np.dtype("int64") if d.kind == "u" and d.itemsize > 1 else d for d in (a, b))
    if a == b:
        return a
    return np.dtype(jnp.promote_types(a, b))


def _path_str(path: tuple) -> str:
    return "".join(f".{p.name}" if isinstance(p, jax.tree_util.GetAttrKey) else str([p]) for p in path)


def _make_mismatch_msg(*, identifier: str, extra: str | None, abs_diff: float, abs_idx: tuple | None,
                       atol: float, rel_diff: float, rel_idx: tuple | None, rtol: float) -> str:
    """torch's ``_make_mismatch_msg`` text."""
    equality = rtol == 0 and atol == 0

    def diff_msg(kind: str, diff: float, idx: tuple | None, tol: float) -> str:
        if idx is None:
            text = f"{kind.title()} difference: {diff}"
        else:
            text = f"Greatest {kind} difference: {diff} at index {idx}"
        return text + ("" if equality else f" (up to {tol} allowed)") + "\n"

    msg = f"{identifier} are not {'equal' if equality else 'close'}!\n\n"
    if extra:
        msg += f"{extra.strip()}\n"
    msg += diff_msg("absolute", abs_diff, abs_idx, atol) + diff_msg("relative", rel_diff, rel_idx, rtol)
    return msg.strip()


def _scalar_mismatch_msg(actual: Any, expected: Any, rtol: float, atol: float) -> str:
    abs_diff = abs(actual - expected)
    rel_diff = float("inf") if expected == 0 else abs_diff / abs(expected)
    return _make_mismatch_msg(identifier="Scalars", extra=f"Expected {expected} but got {actual}.",
                              abs_diff=abs_diff, abs_idx=None, atol=atol, rel_diff=rel_diff, rel_idx=None, rtol=rtol)


def _isclose(a: np.ndarray, e: np.ndarray, rtol: float, atol: float, equal_nan: bool) -> np.ndarray:
    """``torch.isclose`` (ATen's formula, evaluated in the arrays' common dtype)."""
    close = a == e
    inexact = a.dtype.kind in "fcV" or a.dtype.name == "bfloat16"
    if equal_nan and inexact:
        close |= np.isnan(a) & np.isnan(e)
    if rtol == 0 and atol == 0:
        return close
    if not inexact:  # torch: an integer tensor times a float tolerance computes in floating point
        a, e = a.astype(np.float64), e.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        allowed = atol + np.abs(rtol * e)
        actual_error = np.abs(a - e)
        close |= np.isfinite(actual_error) & (actual_error <= allowed)
    return close


def _tensor_mismatch_msg(a: np.ndarray, e: np.ndarray, matches: np.ndarray, rtol: float, atol: float) -> str:
    """torch's ``make_tensor_mismatch_msg``: mismatch count, greatest differences and their index."""
    n = matches.size
    mismatched = n - int(matches.sum())
    extra = f"Mismatched elements: {mismatched} / {n} ({mismatched / n:.1%})"
    a, e, m = a.reshape(-1), e.reshape(-1), matches.reshape(-1)
    if a.dtype.kind not in "fc" and a.dtype.name != "bfloat16":
        a, e = a.astype(np.int64), e.astype(np.int64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        abs_diff = np.abs(a - e)
        abs_diff[m] = 0
        if abs_diff.dtype.kind in "iu":  # torch: int64 / int64 is true division in the default float32
            rel_diff = abs_diff.astype(np.float32) / np.abs(e).astype(np.float32)
        else:
            rel_diff = abs_diff / np.abs(e)
        rel_diff[m] = 0

    def unravel(flat: int) -> tuple:
        return tuple(int(i) for i in np.unravel_index(flat, matches.shape))

    abs_idx, rel_idx = int(np.argmax(abs_diff)), int(np.argmax(rel_diff))
    return _make_mismatch_msg(identifier="Tensor-likes", extra=extra, abs_diff=abs_diff[abs_idx].item(),
                              abs_idx=unravel(abs_idx), atol=atol, rel_diff=rel_diff[rel_idx].item(),
                              rel_idx=unravel(rel_idx), rtol=rtol)


def _compare_arrays(actual: Any, expected: Any, path: tuple, rtol: float | None, atol: float | None,
                    equal_nan: bool, check_dtype: bool) -> None:
    a_weak, e_weak = _is_number(actual), _is_number(expected)  # a Python number against an array
    a = np.asarray(actual) if a_weak else _to_numpy(actual)
    e = np.asarray(expected) if e_weak else _to_numpy(expected)
    if a_weak or e_weak:
        weak, strong = (a, e) if a_weak else (e, a)
        weak = np.broadcast_to(weak.astype(np.result_type(strong.dtype, weak.item())), strong.shape)
        a, e = (weak, strong) if a_weak else (strong, weak)
    if a.shape != e.shape:
        raise _Mismatch(AssertionError, f"The values for attribute 'shape' do not match: {a.shape} != {e.shape}.", path)
    if check_dtype and a.dtype != e.dtype:
        raise _Mismatch(AssertionError, f"The values for attribute 'dtype' do not match: {a.dtype} != {e.dtype}.", path)
    if rtol is None:
        rtol, atol = default_tolerances(*[x.dtype for x, weak in ((a, a_weak), (e, e_weak)) if not weak])
    dtype = _torch_promote(a.dtype, e.dtype)
    a, e = a.astype(dtype), e.astype(dtype)
    matches = _isclose(a, e, rtol, atol, equal_nan)
    if matches.all():
        return
    if a.shape == ():
        raise _Mismatch(AssertionError, _scalar_mismatch_msg(a.item(), e.item(), rtol, atol), path)
    raise _Mismatch(AssertionError, _tensor_mismatch_msg(a, e, matches, rtol, atol), path)


def _compare_numbers(actual: Any, expected: Any, path: tuple, rtol: float | None, atol: float | None,
                     equal_nan: bool, check_dtype: bool) -> None:
    """torch's ``NumberPair``: Python numbers (and NumPy scalars, as Python numbers)."""
    actual, expected = (x.item() if isinstance(x, np.number) else x for x in (actual, expected))
    if rtol is None:
        rtol, atol = default_tolerances(_NUMBER_DTYPES[type(actual)], _NUMBER_DTYPES[type(expected)])
    if check_dtype and type(actual) is not type(expected):
        raise _Mismatch(AssertionError, f"The (d)types do not match: {type(actual)} != {type(expected)}.", path)
    if actual == expected:
        return
    if equal_nan and cmath.isnan(actual) and cmath.isnan(expected):
        return
    abs_diff = abs(actual - expected)
    if cmath.isfinite(abs_diff) and abs_diff <= atol + rtol * abs(expected):
        return
    raise _Mismatch(AssertionError, _scalar_mismatch_msg(actual, expected, rtol, atol), path)


def _pytree_children(x: Any) -> tuple[Any, list] | None:
    """``(node type, [(key, child), ...])`` of a registered JAX pytree node, or None for a leaf."""
    children, treedef = jax.tree_util.tree_flatten_with_path(x, is_leaf=lambda y: y is not x)
    if treedef.num_nodes == 1:
        return None
    return treedef.node_data(), [(path[0], child) for path, child in children]


def _compare(actual: Any, expected: Any, path: tuple, **options: Any) -> None:
    if isinstance(actual, Sequence) and isinstance(expected, Sequence) and not (
        isinstance(actual, (str, bytes)) or isinstance(expected, (str, bytes))
    ):
        if len(actual) != len(expected):
            raise _Mismatch(AssertionError,
                            f"The length of the sequences mismatch: {len(actual)} != {len(expected)}", path)
        for i, (a, e) in enumerate(zip(actual, expected)):
            _compare(a, e, (*path, i), **options)
        return
    if isinstance(actual, Mapping) and isinstance(expected, Mapping):
        a_keys, e_keys = set(actual), set(expected)
        if a_keys != e_keys:
            raise _Mismatch(AssertionError, (
                "The keys of the mappings do not match:\n"
                f"Missing keys in the actual mapping: {sorted(e_keys - a_keys, key=str)}\n"
                f"Additional keys in the actual mapping: {sorted(a_keys - e_keys, key=str)}"), path)
        try:
            keys = sorted(a_keys)
        except TypeError:
            keys = list(actual)
        for k in keys:
            _compare(actual[k], expected[k], (*path, k), **options)
        return
    if actual is None or expected is None:
        if not (actual is None and expected is None):
            raise _Mismatch(AssertionError, f"None mismatch: {actual} is not {expected}", path)
        return
    if isinstance(actual, (bool, np.bool_)) and isinstance(expected, (bool, np.bool_)):
        if bool(actual) != bool(expected):
            raise _Mismatch(AssertionError, f"Booleans mismatch: {actual} is not {expected}", path)
        return
    if _is_number(actual) and _is_number(expected):
        _compare_numbers(actual, expected, path, **options)
        return
    if (_is_array(actual) or _is_number(actual)) and (_is_array(expected) or _is_number(expected)):
        _compare_arrays(actual, expected, path, **options)
        return
    a_node, e_node = _pytree_children(actual), _pytree_children(expected)
    if a_node is not None and e_node is not None and type(actual) is type(expected):
        a_children, e_children = a_node[1], e_node[1]
        if [k for k, _ in a_children] != [k for k, _ in e_children]:
            raise _Mismatch(AssertionError, f"The pytree nodes differ: {[k for k, _ in a_children]} != "
                            f"{[k for k, _ in e_children]}", path)
        for (k, a), (_, e) in zip(a_children, e_children):
            _compare(a, e, (*path, k), **options)
        return
    raise _Mismatch(TypeError, f"No comparison pair was able to handle inputs of type {type(actual)} "
                    f"and {type(expected)}.", path)


def assert_close(
    actual: Any,
    expected: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    equal_nan: bool = False,
    check_dtype: bool = True,
    msg: str | Callable[[str], str] | None = None,
) -> None:
    """Assert that ``actual`` and ``expected`` are close: ``torch.testing.assert_close`` for pytrees.

    Leaves are ``jax.Array``, ``np.ndarray``, ``torch.Tensor``, Python/NumPy numbers, bools or None,
    inside nested dicts, lists, tuples, NamedTuples or registered pytree nodes. Each pair of
    leaves is close when ``|actual - expected| <= atol + rtol * |expected|`` elementwise (infinities
    must be equal; NaNs only with ``equal_nan``), after promoting both to a common dtype.

    Args:
        actual, expected: the pytrees; the structures must match (sequence lengths, mapping keys).
        rtol, atol: both or neither. If omitted, torch's default for the dtypes: float16 (1e-3, 1e-5),
            bfloat16 (1.6e-2, 1e-5), float32 (1.3e-6, 1e-5), float64 (1e-7, 1e-7), complex likewise;
            integers and bools are compared exactly. The loosest of the two leaves' dtypes wins.
        equal_nan: NaN equals NaN.
        check_dtype: the two leaves' dtypes must be equal, by name across frameworks
            (``jnp.float32`` equals ``torch.float32`` and ``np.float32``).
        msg: replaces the generated message; a callable receives the generated one.

    Raises:
        AssertionError: on a mismatch, with torch's facts (mismatched elements and share, greatest
            absolute and relative difference with their index) and the pytree path of the leaf.
        TypeError: for leaves that cannot be compared (e.g. a string against an array).
        ValueError: when only one of ``rtol``/``atol`` is given.
    """
    if (rtol is None) != (atol is None):
        raise ValueError(f"Both 'rtol' and 'atol' must be either specified or omitted, "
                         f"but got no {'rtol' if rtol is None else 'atol'}.")
    try:
        _compare(actual, expected, (), rtol=rtol, atol=atol, equal_nan=equal_nan, check_dtype=check_dtype)
    except _Mismatch as mismatch:
        text = mismatch.msg
        if mismatch.path:
            text += f"\n\nThe failure occurred for item {_path_str(mismatch.path)}"
        if isinstance(msg, str):
            text = msg
        elif callable(msg):
            text = msg(text)
        raise mismatch.kind(text) from None
