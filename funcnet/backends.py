"""Backend settings: which lowering funcnet's convolutions get (torch's ``torch.backends`` in spirit).

``F.conv*`` and ``F.conv_transpose*`` (and so every ``nn.Conv*``) can lower either to XLA's
convolution (``lax.conv_general_dilated``) or to an equivalent formulation built from strided
slices, matrix multiplications and pads (see ``funcnet.nn.functional.conv`` for the rule and
the measurements behind it). The choice:

- ``"auto"`` (default): the rule measured per backend and shape — on CPU the matmul
  formulations where XLA:CPU's convolution is slow; XLA's convolution on GPU/TPU (cuDNN).
- ``"xla"``: always ``lax.conv_general_dilated``.
- ``"matmul"``: always the slice/matmul formulations.

Set it with ``set_conv_impl(...)``, temporarily with ``with conv_impl("xla"): ...``, or
with the environment variable ``FUNCNET_CONV_IMPL=auto|xla|matmul`` (read when a convolution
is traced; an explicit ``set_conv_impl`` wins). The choice is made when a function is traced:
a ``jax.jit`` function already compiled keeps the lowering it was traced with.
``funcnet.nn.functional.conv_lowering(...)`` says which lowering a given shape gets.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

CONV_IMPLS = ("auto", "xla", "matmul")
ENV_VAR = "FUNCNET_CONV_IMPL"

_conv_impl: str | None = None  # None: the environment variable, else "auto"


def _checked(impl: str, source: str) -> str:
    if impl not in CONV_IMPLS:
        raise ValueError(f"{source}: convolution implementation must be one of {CONV_IMPLS}, got {impl!r}")
    return impl


def get_conv_impl() -> str:
    """The current setting: ``set_conv_impl``'s value, else ``$FUNCNET_CONV_IMPL``, else ``"auto"``."""
    if _conv_impl is not None:
        return _conv_impl
    env = os.environ.get(ENV_VAR, "").strip().lower()
    return _checked(env, f"${ENV_VAR}") if env else "auto"


def set_conv_impl(impl: str | None) -> None:
    """Force ``"xla"`` or ``"matmul"`` convolutions, or ``"auto"``; ``None`` returns to the env var."""
    global _conv_impl
    _conv_impl = None if impl is None else _checked(impl, "set_conv_impl")


@contextlib.contextmanager
def conv_impl(impl: str) -> Iterator[None]:
    """``with conv_impl("xla"): ...`` — the setting inside the block (for tracing), restored after."""
    global _conv_impl
    previous = _conv_impl
    set_conv_impl(impl)
    try:
        yield
    finally:
        _conv_impl = previous
