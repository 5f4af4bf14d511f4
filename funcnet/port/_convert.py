"""The source converter: torch model code → funcnet code, on LibCST's concrete syntax tree.

LibCST keeps every comment, blank line and bracket of the input; only the nodes rewritten change.
What is rewritten (see ``funcnet/port/__init__.py`` for the list a user reads):

- torch imports → funcnet imports binding the same names (``import torch.nn as nn`` →
  ``import funcnet.nn as nn``; ``from torch import Tensor`` → ``from jax import Array as Tensor``);
- ``torch.X`` / ``nn.X`` / ``F.X`` names → ``funcnet.X`` when funcnet has them, else the helper of
  the same name in :mod:`funcnet.port.ops` (``tm``), else flagged;
- tensor methods that a ``jax.Array`` lacks or means differently → ``tm.method(x, ...)``;
- in-place methods and item assignment on a local name → a functional update rebound to the name.

Anything else torch-specific is flagged: a ``# funcnet.port: ...`` comment above the statement,
and ``file:line: ...`` on stderr. Flagged code is left as it was, so it fails loudly if run.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import types
from typing import Any

import libcst as cst
from libcst.metadata import PositionProvider

from funcnet.port import ops as _ops


@dataclasses.dataclass(frozen=True)
class Flag:
    """One construct the converter did not convert (or converted under a stated assumption)."""

    line: int
    message: str


class PortSyntaxError(SyntaxError):
    """The input is not valid Python: names the file and line."""


# torch names whose funcnet spelling is not funcnet.<same path>.
_DTYPES = {
    "float32": "float32", "float": "float32", "float16": "float16", "half": "float16", "bfloat16": "bfloat16",
    "float64": "float64", "double": "float64", "int8": "int8", "int16": "int16", "short": "int16",
    "int32": "int32", "int": "int32", "int64": "int64", "long": "int64", "uint8": "uint8", "bool": "bool_",
    "complex64": "complex64", "complex128": "complex128",
}
_SPECIAL: dict[str, tuple[str, str | None]] = {  # torch path -> (expression, needed import)
    "torch.Tensor": ("jax.Array", "jax"),
    "torch.Size": ("tuple", None),
    "torch.from_numpy": ("jnp.asarray", "jnp"),
    "torch.as_tensor": ("jnp.asarray", "jnp"),
    "torch.device": ("tm.device", "tm"),
    "torch.is_tensor": ("tm.is_tensor", "tm"),
    **{f"torch.{k}": (f"jnp.{v}", "jnp") for k, v in _DTYPES.items()},
}
# torch names that have no faithful funcnet form: flagged with the reason.
_UNSUPPORTED = {
    "torch.no_grad": "torch.no_grad(): gradients flow only where jax.grad asks; use jax.lax.stop_gradient on values",
    "torch.enable_grad": "torch.enable_grad(): no global autograd mode in JAX",
    "torch.inference_mode": "torch.inference_mode(): no global autograd mode in JAX (use apply(..., train=False))",
    "torch.set_grad_enabled": "torch.set_grad_enabled(): no global autograd mode in JAX",
    "torch.cuda": "torch.cuda: JAX chooses devices (jax.devices(), jax.device_put)",
    "torch.backends": "torch.backends: no JAX equivalent",
    "torch.autograd": "torch.autograd: use jax.grad / jax.vjp / jax.custom_vjp",
    "torch.distributed": "torch.distributed: see funcnet.distributed / funcnet.parallel",
    "torch.compile": "torch.compile: use jax.jit",
}
_RANDOM = {"rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like", "normal",
           "bernoulli", "multinomial", "poisson"}
_RANDOM_INPLACE = {"normal_", "uniform_", "bernoulli_", "random_", "exponential_", "geometric_", "cauchy_",
                   "log_normal_"}
# Draws funcnet.port.random makes from the call site's key (in a forward pass, not in __init__).
_RANDOM_DRAWN = {"rand", "randn", "randint", "randperm", "rand_like", "randn_like", "bernoulli"}
_RANDOM_DRAWN_INPLACE = {"bernoulli_", "uniform_", "normal_"}
# Fresh tensors that torch code fills in place to declare a parameter: torch.empty(...).normal_(...)
_DROPOUTS = {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"}
_CREATION = {"empty", "zeros", "ones", "Tensor", "FloatTensor"}
_FILL_AS_INIT = {"normal_": "normal", "uniform_": "uniform", "zero_": None, "fill_": None}

# Tensor methods rewritten to tm.<name>(receiver, ...): a jax.Array lacks them or means something else.
_METHODS = {
    "size", "dim", "ndimension", "numel", "nelement", "view", "view_as", "expand", "expand_as", "permute",
    "transpose", "unsqueeze", "squeeze", "flatten", "chunk", "split", "unbind", "narrow", "repeat", "flip",
    "roll", "gather", "to", "cuda", "cpu", "type_as", "float", "double", "half", "long", "int", "bool", "clone",
    "detach", "new_zeros", "new_ones", "new_empty", "new_full", "new_tensor", "sum", "mean", "prod", "std", "var",
    "max", "min", "amax", "amin", "argmax", "argmin", "all", "any", "cumsum", "cumprod", "norm", "sort",
    "softmax", "log_softmax", "masked_fill", "matmul", "mm", "bmm", "clamp", "clip", "clamp_min", "clamp_max",
    "add", "sub", "mul", "div", "pow", "exp", "log", "log2", "sqrt", "rsqrt", "abs", "neg", "sign", "floor",
    "ceil", "sigmoid", "tanh", "relu", "round", "eq", "ne", "lt", "le", "gt", "ge", "numpy", "t", "unflatten",
    "movedim", "index_select", "topk", "nonzero",
}
# In-place methods with a functional form: `x.add_(y)` → `x = tm.add_(x, y)`; `x[i].add_(y)` → tm.at.
_INPLACE = {"add_", "sub_", "mul_", "div_", "zero_", "fill_", "copy_", "clamp_"}
_AT_OF_INPLACE = {"add_": "add", "sub_": "subtract", "mul_": "multiply", "div_": "divide", "copy_": "set",
                  "fill_": "set"}
_AUG_TO_AT = {"+=": "add", "-=": "subtract", "*=": "multiply", "/=": "divide", "//=": "floor_divide",
              "**=": "power"}
# Methods and attributes that only make sense on torch tensors: flagged.
_FLAG_METHODS = {
    "backward": "x.backward(): use jax.grad / jax.value_and_grad over a loss function",
    "requires_grad_": "requires_grad_(): freeze with funcnet.optim.freeze / trainable= instead",
    "retain_grad": "retain_grad(): no autograd graph in JAX",
    "register_hook": "register_hook(): no autograd hooks in JAX (use jax.custom_vjp)",
    "type": "x.type(dtype): write tm.to(x, dtype) (x.astype)",
    "pin_memory": "pin_memory(): not needed in JAX",
    "share_memory_": "share_memory_(): not needed in JAX",
    "storage": "storage(): arrays have no storage object in JAX",
    "data_ptr": "data_ptr(): arrays have no storage object in JAX",
}
_FLAG_ATTRS = {
    "grad": "x.grad: gradients are values returned by jax.grad, not attributes",
    "is_cuda": "x.is_cuda: JAX chooses devices (x.devices())",
    "grad_fn": "x.grad_fn: no autograd graph in JAX",
}
_NOT_RECEIVERS = (cst.SimpleString, cst.FormattedString, cst.ConcatenatedString, cst.List, cst.Dict,
                  cst.Set, cst.Tuple, cst.Integer, cst.Float, cst.ListComp, cst.DictComp, cst.SetComp)
_IMPORTS = {"tm": "import funcnet.port.ops as {}", "jnp": "import jax.numpy as {}", "jax": "import {}",
            "funcnet": "import {}"}


@functools.lru_cache(maxsize=1024)
def _parse_expression(code: str) -> cst.BaseExpression:
    return cst.parse_expression(code)  # nodes are immutable: one parse per spelling


def _dotted(node: cst.BaseExpression) -> list[str] | None:
    """``a.b.c`` → ``["a", "b", "c"]``; None for anything that is not a plain dotted name."""
    parts = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    if isinstance(node, cst.Name):
        return [node.value, *reversed(parts)]
    return None


def _module_dotted(node: cst.BaseExpression | None) -> str:
    if node is None:
        return ""
    return ".".join(_dotted(node) or [])


@functools.cache
def _resolve(path: str) -> tuple[bool, Any]:
    """Whether funcnet has ``path`` (``funcnet.nn.init.trunc_normal_``), importing subpackages as needed."""
    parts = path.split(".")
    try:
        obj: Any = importlib.import_module(parts[0])
    except ImportError:
        return False, None
    for i, part in enumerate(parts[1:], start=1):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            if not isinstance(obj, types.ModuleType):
                return False, None
            try:
                obj = importlib.import_module(".".join(parts[: i + 1]))
            except ImportError:
                return False, None
    return True, obj


def _funcnet_path(torch_path: str) -> str:
    return "funcnet" + torch_path[len("torch"):]


def _arg(value: cst.BaseExpression, keyword: str | None = None) -> cst.Arg:
    if keyword is None:
        return cst.Arg(value=value)
    return cst.Arg(value=value, keyword=cst.Name(keyword), equal=cst.AssignEqual(
        whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")))


def _last_comma_free(args: list[cst.Arg]) -> list[cst.Arg]:
    """Drop a trailing comma on the last argument (we may append after it)."""
    if args and args[-1].comma is not cst.MaybeSentinel.DEFAULT:
        args = [*args[:-1], args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)]
    return args


class _Converter(cst.CSTTransformer):

    def __init__(self, bindings: dict[str, str], names_in_use: set[str], filename: str):
        super().__init__()
        self.bindings = bindings  # local name -> torch path ("nn" -> "torch.nn")
        self.filename = filename
        self.flags: list[Flag] = []
        self._pending: list[list[str]] = []  # flag messages of the statements being visited
        self.needed: set[str] = set()
        self.alias = {}
        for name in _IMPORTS:
            alias = name
            while alias in names_in_use and alias not in bindings.values():
                alias += "_"
            self.alias[name] = alias
        self._analysis: Any = None
        self.imported: set[str] = set()
        self._wrapper: Any = None
        self._positions: Any = None

    def _parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self._analysis.parent.get(id(node))

    # ---- bookkeeping -------------------------------------------------------------------------
    def flag(self, node: cst.CSTNode, message: str) -> None:
        if self._positions is None:  # resolved on the first flag only: most of a clean file's cost
            self._positions = self._wrapper.resolve(PositionProvider)
        line = self._positions[node].start.line
        self.flags.append(Flag(line, message))
        if self._pending:
            self._pending[-1].append(message)

    def use(self, what: str) -> str:
        self.needed.add(what)
        return self.alias[what]

    def expr(self, code: str) -> cst.BaseExpression:
        head, _, rest = code.partition(".")
        if head in self.alias:
            code = self.use(head) + ("." + rest if rest else "")
        return _parse_expression(code)

    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            self._pending.append([])
        return super().on_visit(node)

    def on_leave(self, original_node: cst.CSTNode, updated_node: Any) -> Any:
        result = super().on_leave(original_node, updated_node)
        if isinstance(original_node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            messages = self._pending.pop()
            if messages and isinstance(result, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
                comments = [cst.EmptyLine(comment=cst.Comment(f"# funcnet.port: {m}")) for m in dict.fromkeys(messages)]
                result = result.with_changes(leading_lines=[*result.leading_lines, *comments])
        return result

    def _torch_path(self, node: cst.BaseExpression) -> str | None:
        """The torch path a dotted expression names (``nn.init.normal_`` → ``torch.nn.init.normal_``)."""
        parts = _dotted(node)
        if not parts or parts[0] not in self.bindings:
            return None
        return ".".join([self.bindings[parts[0]], *parts[1:]])

    def _is_outermost_chain(self, node: cst.CSTNode) -> bool:
        parent = self._parent(node)
        return not (isinstance(parent, cst.Attribute) and parent.value is node)

    # ---- imports -----------------------------------------------------------------------------
    def leave_Import(self, original_node: cst.Import, updated_node: cst.Import) -> Any:
        names = []
        changed = False
        for alias in updated_node.names:
            path = _module_dotted(alias.name)
            if path != "torch" and not path.startswith("torch."):
                names.append(alias)
                continue
            changed = True
            target = _funcnet_path(path)
            found, obj = _resolve(target)
            if alias.asname is None:  # `import torch.fx` binds `torch`, now `funcnet`
                names.append(alias.with_changes(name=cst.Name("funcnet")))
                if path != "torch" and not found:
                    self.flag(original_node, f"{path}: funcnet has no {target}")
            elif found and isinstance(obj, types.ModuleType):
                names.append(alias.with_changes(name=cst.parse_expression(target)))
            else:
                self.flag(original_node, f"import {path}: funcnet has no module {target}")
                names.append(alias)
        if not changed:
            return updated_node
        return updated_node.with_changes(names=_fix_last_comma(names))

    def leave_ImportFrom(self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom) -> Any:
        if updated_node.relative or updated_node.module is None:
            return updated_node
        path = _module_dotted(updated_node.module)
        if path != "torch" and not path.startswith("torch."):
            return updated_node
        if isinstance(updated_node.names, cst.ImportStar):
            self.flag(original_node, f"from {path} import *: list the names")
            return updated_node
        plain, special = [], []
        for alias in updated_node.names:
            name = alias.name.value
            full = f"{path}.{name}"
            bound = alias.asname.name.value if alias.asname else name
            if full in _SPECIAL:
                code, need = _SPECIAL[full]
                special.append(_import_binding(self, code, bound, need))
            elif _resolve(_funcnet_path(full))[0]:
                plain.append(alias)
            elif path == "torch" and hasattr(_ops, name):
                special.append(f"from funcnet.port.ops import {name}" + (f" as {bound}" if bound != name else ""))
            else:
                self.flag(original_node, f"from {path} import {name}: funcnet has no {_funcnet_path(full)}")
                plain.append(alias)
        lines = []
        if plain:
            lines.append(updated_node.with_changes(module=cst.parse_expression(_funcnet_path(path)),
                                                   names=_fix_last_comma(plain)))
        for code in special:
            lines.append(cst.parse_statement(code).body[0])
        if len(lines) == 1:
            return lines[0]
        return cst.FlattenSentinel(lines) if lines else cst.RemoveFromParent()

    def leave_SimpleStatementLine(self, original_node: cst.SimpleStatementLine,
                                  updated_node: cst.SimpleStatementLine) -> Any:
        # `from torch import nn, Tensor` may have become two small statements: one line each.
        body = []
        for stmt in updated_node.body:
            body.append(stmt)
        if len(body) > 1 and any(isinstance(s, (cst.Import, cst.ImportFrom)) for s in body):
            lines = [updated_node.with_changes(body=[s.with_changes(semicolon=cst.MaybeSentinel.DEFAULT)],
                                               leading_lines=updated_node.leading_lines if i == 0 else [])
                     for i, s in enumerate(body)]
            return cst.FlattenSentinel(lines)
        return updated_node

    # ---- names -------------------------------------------------------------------------------
    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> Any:
        if original_node.value == "torch" and self.bindings.get("torch") == "torch" \
                and not self._in_import(original_node):
            parent = self._parent(original_node)
            if not (isinstance(parent, cst.Attribute) and parent.attr is original_node):
                return updated_node.with_changes(value="funcnet")
        return updated_node

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> Any:
        path = self._torch_path(original_node)
        if path is not None:
            if self._in_import(original_node) or not self._is_outermost_chain(original_node):
                return updated_node
            return self._rewrite_torch_name(original_node, updated_node, path)
        attr = original_node.attr.value
        if attr in _FLAG_ATTRS and not self._is_call_func(original_node):
            self.flag(original_node, _FLAG_ATTRS[attr])
        elif attr == "requires_grad" and not self._is_call_func(original_node):
            if self._in_target(original_node):
                self.flag(original_node, "x.requires_grad = ...: no autograd flags in JAX (freeze with "
                                         "funcnet.optim.freeze / trainable=)")
                return updated_node
            self.flag(original_node, "x.requires_grad reads True for every array (JAX differentiates what jax.grad "
                                     "asks for): check that both branches compute the same values")
            return cst.Call(func=self.expr("tm.requires_grad"), args=[_arg(updated_node.value)])
        elif attr == "device" and not self._is_call_func(original_node) and not self._in_target(original_node) \
                and not self._receiver_is_module(original_node.value):
            return cst.Call(func=self.expr("tm.device_of"), args=[_arg(updated_node.value)])
        elif attr == "data" and not self._is_call_func(original_node) and not self._in_target(original_node):
            if self._is_receiver_of(original_node, _RANDOM_INPLACE | set(_FILL_AS_INIT)):
                return updated_node  # m.weight.data.normal_(...): handled by the call
            return cst.Call(func=self.expr("tm.data"), args=[_arg(updated_node.value)])
        return updated_node

    def _receiver_is_module(self, node: cst.CSTNode) -> bool:
        parts = _dotted(node)
        return bool(parts) and (parts[0] in self.imported or parts[0] in self.bindings)

    def _in_import(self, node: cst.CSTNode) -> bool:
        while node is not None:
            if isinstance(node, (cst.Import, cst.ImportFrom)):
                return True
            node = self._parent(node)
        return False

    def _in_target(self, node: cst.CSTNode) -> bool:
        parent = self._parent(node)
        return isinstance(parent, (cst.AssignTarget, cst.AugAssign)) and getattr(parent, "target", None) is node

    def _is_call_func(self, node: cst.CSTNode) -> bool:
        parent = self._parent(node)
        return isinstance(parent, cst.Call) and parent.func is node

    def _is_receiver_of(self, node: cst.CSTNode, methods: set[str]) -> bool:
        parent = self._parent(node)
        return isinstance(parent, cst.Attribute) and parent.value is node and parent.attr.value in methods

    def _rewrite_torch_name(self, node: cst.Attribute, updated: cst.Attribute, path: str) -> Any:
        parts = path.split(".")
        for i in range(2, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in _UNSUPPORTED:
                self.flag(node, _UNSUPPORTED[prefix])
                return updated
            if prefix in _SPECIAL:
                code, _ = _SPECIAL[prefix]
                return self.expr(".".join([code, *parts[i:]]))
        if len(parts) == 2 and parts[1] in _RANDOM:
            if parts[1] in _RANDOM_DRAWN and self._function_name(node) != "__init__":
                return self.expr(f"tm.{parts[1]}")  # drawn from the call site's key (funcnet.port.random)
            self.flag(node, f"{path}(): random numbers need an explicit key: jax.random.* with a key "
                            "(inside a module: self.make_rng())")
            return updated
        if path == "torch.manual_seed":
            self.flag(node, "torch.manual_seed returns a jax.random key here and seeds nothing global: pass the key")
        found, _ = _resolve(_funcnet_path(path))
        if found:
            return updated
        if len(parts) == 2 and hasattr(_ops, parts[1]) and not parts[1].startswith("_"):
            return self.expr(f"tm.{parts[1]}")
        self.flag(node, f"{path}: funcnet has no {_funcnet_path(path)}")
        return updated

    # ---- calls -------------------------------------------------------------------------------
    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> Any:
        func = original_node.func
        if not isinstance(func, cst.Attribute):
            return updated_node
        method = func.attr.value
        receiver = func.value
        if self._torch_path(func) is not None or self._torch_path(receiver) is not None:
            return self._torch_call(original_node, updated_node)
        if isinstance(receiver, _NOT_RECEIVERS) or (
                isinstance(receiver, cst.Name) and receiver.value in ("self", "cls")):
            return updated_node
        if isinstance(receiver, cst.Call) and isinstance(receiver.func, cst.Name) and receiver.func.value == "super":
            return updated_node
        parts = _dotted(receiver)
        if parts and parts[0] in self.imported:  # math.sqrt(...), np.random.normal(...): a module's function
            return updated_node
        new_receiver = updated_node.func.value
        if method == "contiguous" and not original_node.args:
            return new_receiver
        if method in _FLAG_METHODS:
            self.flag(original_node, _FLAG_METHODS[method])
            return updated_node
        if method in _RANDOM_INPLACE or method in _INPLACE:
            return self._inplace_call(original_node, updated_node, method)
        if method in _METHODS:
            receiver_arg = _arg(new_receiver)
            if updated_node.args:
                receiver_arg = receiver_arg.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
            return cst.Call(func=self.expr(f"tm.{method}"), args=[receiver_arg, *updated_node.args],
                            lpar=updated_node.lpar, rpar=updated_node.rpar,
                            whitespace_before_args=updated_node.whitespace_before_args)
        if method == "item" and self._in_forward(original_node):
            return updated_node  # works on concrete arrays; under jit, JAX raises a clear error
        return updated_node

    def _in_forward(self, node: cst.CSTNode) -> bool:
        return self._function_name(node) == "forward"

    def _function_name(self, node: cst.CSTNode) -> str | None:
        while node is not None:
            if isinstance(node, cst.FunctionDef):
                return node.name.value
            node = self._parent(node)
        return None

    def _draws_at_call_site(self, node: cst.CSTNode, method: str) -> bool:
        """``x.bernoulli_(p)`` and the like outside ``__init__``: a draw from the call site's key
        (``tm.bernoulli_``); in ``__init__`` a parameter's initialiser is meant (flagged)."""
        return method in _RANDOM_DRAWN_INPLACE and self._function_name(node) != "__init__"

    def _torch_call(self, original: cst.Call, updated: cst.Call) -> Any:
        """``nn.Parameter(torch.empty(n, m).normal_(std=s))`` → ``nn.Parameter((n, m), init=...)``."""
        path = self._torch_path(original.func)
        if any(a.keyword is not None and a.keyword.value == "device" for a in original.args):
            # torch.zeros(n, device=x.device), nn.Linear(a, b, device=d): JAX places arrays itself
            kept = [new for old, new in zip(original.args, updated.args)
                    if not (old.keyword is not None and old.keyword.value == "device")]
            updated = updated.with_changes(args=_last_comma_free(kept))
        if path is not None and path.split(".")[-1] in _DROPOUTS and path.rsplit(".", 1)[0] in (
                "torch", "torch.nn.functional") and not any(a.keyword and a.keyword.value == "key"
                                                            for a in original.args):
            updated = self._dropout_key(original, updated, path)
        if path is not None and path.startswith("torch.optim.") and path.count(".") == 2 and any(
                a.keyword is None for a in original.args):
            self.flag(original, f"{path}(params, ...): funcnet optimizers take no params (an optax "
                                "transformation: opt.init(params), opt.update(grads, state, params))")
        if path == "torch.nn.Parameter" and original.args:
            init = self._fresh_fill(original.args[0].value, updated.args[0].value)
            if init is not None:
                shape, init_expr, extra = init
                args = [_arg(shape), _arg(init_expr, "init"), *extra, *updated.args[1:]]
                return updated.with_changes(args=_last_comma_free(args))
        return updated

    def _dropout_key(self, original: cst.Call, updated: cst.Call, path: str) -> cst.Call:
        """``F.dropout(x, p, training=self.training)`` in a module method gets the call site's key."""
        function = self._parent(original)
        while function is not None and not isinstance(function, cst.FunctionDef):
            function = self._parent(function)
        params = function.params.params if function is not None else ()
        positional = [a for a in original.args if a.keyword is None]
        training = [a for a in original.args if a.keyword and a.keyword.value == "training"] or positional[2:3]
        prob = [a for a in original.args if a.keyword and a.keyword.value == "p"] or positional[1:2]
        simple = all(isinstance(a.value, (cst.Name, cst.Attribute, cst.Integer, cst.Float)) for a in training + prob)
        if not simple:
            self.flag(original, f"{path}(): pass key=<jax.random key> when training (inside a module: "
                                "key=self.make_rng())")
            return updated
        # A module method draws its own key; a free function (torchvision's stochastic depth, Swin's
        # attention) the key of the module that calls it (funcnet.port.random.call_site_key).
        in_method = bool(params) and params[0].name.value == "self"
        # A key only when a mask is drawn: train mode with p > 0 (apply needs no key otherwise).
        conditions = [_code(a.value) for a in training] + [f"{_code(a.value)} > 0" for a in prob]
        code = ("self.make_rng()" if in_method else f"{_code(self.expr('tm.call_site_key'))}()") + (
            f" if {' and '.join(conditions)} else None" if conditions else "")
        key = _arg(cst.parse_expression(code), "key")
        return updated.with_changes(args=[*_last_comma_free(list(updated.args)), key])

    def _is_fresh_fill(self, original: cst.BaseExpression) -> bool:
        """``torch.empty(*shape[, dtype=]).normal_(...)`` (or zeros/ones, uniform_/zero_/fill_)."""
        if not (isinstance(original, cst.Call) and isinstance(original.func, cst.Attribute)):
            return False
        inner = original.func.value
        if original.func.attr.value not in _FILL_AS_INIT or not isinstance(inner, cst.Call):
            return False
        path = self._torch_path(inner.func)
        if path is None or len(path.split(".")) != 2 or path.split(".")[-1] not in _CREATION:
            return False
        if any(a.star for a in inner.args) or any(a.keyword and a.keyword.value not in ("dtype", "device",
                                                                                        "requires_grad")
                                                   for a in inner.args):
            return False
        return any(a.keyword is None for a in inner.args)

    def _fresh_fill(self, original: cst.BaseExpression, updated: cst.BaseExpression) -> Any:
        """Match ``torch.empty(*shape).normal_(...)``: returns (shape, initialiser, extra args)."""
        if not self._is_fresh_fill(original):
            return None
        method = original.func.attr.value
        extra = [_arg(a.value, "dtype") for a in updated.func.value.args if a.keyword and a.keyword.value == "dtype"]
        shape_args = [a for a in updated.func.value.args if a.keyword is None]
        if len(shape_args) == 1:
            shape = shape_args[0].value
        else:
            shape = cst.Tuple([cst.Element(a.value) for a in shape_args])
        fill_args = [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in updated.args]
        nn_init = f"{self.use('funcnet')}.nn.init"
        if method == "zero_":
            return shape, cst.Float("0.0"), extra
        if method == "fill_":
            return shape, fill_args[0].value, extra
        return shape, cst.Call(func=cst.parse_expression(f"{nn_init}.{_FILL_AS_INIT[method]}"),
                               args=_fix_last_comma(fill_args)), extra

    def _inplace_call(self, original: cst.Call, updated: cst.Call, method: str) -> Any:
        """In-place methods are rewritten at the statement level; anywhere else they are flagged."""
        parent = self._parent(original)
        if isinstance(parent, cst.Expr):
            return updated  # leave_Expr decides
        if isinstance(parent, cst.Arg) and self._is_fresh_fill(original):
            grand = self._parent(parent)
            if isinstance(grand, cst.Call) and self._torch_path(grand.func) == "torch.nn.Parameter" \
                    and grand.args and grand.args[0] is parent:
                return updated  # nn.Parameter(torch.empty(...).normal_(...)): _torch_call converts it
        if self._draws_at_call_site(original, method) and self._receiver_rebound_or_fresh(original):
            if isinstance(original.func.value, cst.Name):
                self._check_alias(original, original.func.value.value)
            return cst.Call(func=self.expr(f"tm.{method}"), args=[_arg(updated.func.value), *updated.args])
        if method in _RANDOM_INPLACE:
            self.flag(original, f".{method}(): random numbers need an explicit key (jax.random with a key); "
                                "to initialise a parameter, give its declaration an initialiser")
        else:
            self.flag(original, f".{method}() used as a value: in-place updates convert only as statements")
        return updated

    def _receiver_rebound_or_fresh(self, call: cst.Call) -> bool:
        """``x = x.bernoulli_(p)`` (the receiver rebound to the result) or ``torch.empty(n).bernoulli_(p)``
        (a tensor no other name sees): the functional draw means what torch's in-place one does."""
        receiver = call.func.value
        if isinstance(receiver, cst.Call):  # torch.empty(n), not a view such as torch.flatten(x)
            path = self._torch_path(receiver.func)
            return path is not None and len(path.split(".")) == 2 and path.split(".")[-1] not in _VIEW_FUNCS
        assign = self._parent(call)
        return (isinstance(receiver, cst.Name) and isinstance(assign, cst.Assign) and assign.value is call
                and len(assign.targets) == 1 and isinstance(assign.targets[0].target, cst.Name)
                and assign.targets[0].target.value == receiver.value)

    def leave_Expr(self, original_node: cst.Expr, updated_node: cst.Expr) -> Any:
        call = original_node.value
        if not (isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute)):
            return updated_node
        method = call.func.attr.value
        if method not in _INPLACE and method not in _RANDOM_INPLACE:
            return updated_node
        if self._torch_path(call.func) is not None:
            return updated_node
        new_call = updated_node.value
        receiver_o, receiver = call.func.value, new_call.func.value
        data_stripped = False
        if isinstance(receiver_o, cst.Attribute) and receiver_o.attr.value == "data":
            receiver_o, receiver, data_stripped = receiver_o.value, receiver.value, True
        args = list(new_call.args)
        local = isinstance(receiver_o, cst.Name) and self._analysis.is_local(call, receiver_o.value) or (
            isinstance(receiver_o, cst.Subscript) and isinstance(receiver_o.value, cst.Name)
            and self._analysis.is_local(call, receiver_o.value.value))
        if isinstance(receiver_o, cst.Name) and not data_stripped and local and (
                method in _INPLACE or self._draws_at_call_site(call, method)):
            value = cst.Call(func=self.expr(f"tm.{method}"), args=[_arg(receiver), *args])
            self._check_alias(call, receiver_o.value)
            return cst.Assign(targets=[cst.AssignTarget(cst.Name(receiver_o.value))], value=value)
        if isinstance(receiver_o, cst.Subscript) and isinstance(receiver_o.value, cst.Name) and not data_stripped \
                and local:
            if method in _AT_OF_INPLACE or method == "zero_":
                op = _AT_OF_INPLACE.get(method, "set")
                value_args = args if method != "zero_" else [_arg(cst.Integer("0"))]
                name = receiver_o.value.value
                self._check_alias(call, name)
                return cst.Assign(targets=[cst.AssignTarget(cst.Name(name))],
                                  value=self._at(receiver.value, receiver.slice, op, value_args[0].value))
        if isinstance(receiver_o, cst.Subscript) and (method in _AT_OF_INPLACE or method == "zero_"):
            # self.qkv.bias[a:b].data.zero_() in __init__: cannot rebind, so in place (declarations, lists)
            op = _AT_OF_INPLACE.get(method, "set")
            value_args = args if method != "zero_" else [_arg(cst.Integer("0"))]
            return updated_node.with_changes(
                value=self._at(receiver.value, receiver.slice, op, value_args[0].value, inplace=True))
        if isinstance(receiver_o, cst.Attribute) and method in _FILL_AS_INIT:
            # `m.weight.data.normal_(0, 0.01)` in __init__: the declaration's initialiser (torch.nn.init)
            init = {"normal_": "normal_", "uniform_": "uniform_", "zero_": "zeros_", "fill_": "constant_"}[method]
            func = cst.parse_expression(f"{self.use('funcnet')}.nn.init.{init}")
            return updated_node.with_changes(value=cst.Call(func=func, args=[_arg(receiver), *args]))
        if method in _RANDOM_INPLACE:
            self.flag(call, f".{method}(): random numbers need an explicit key (jax.random with a key); "
                            "to initialise a parameter, give its declaration an initialiser")
        else:
            self.flag(call, f".{method}() on {type(receiver_o).__name__.lower()}: in place on a shared tensor "
                            "(assign the new value instead)")
        return updated_node

    def _at(self, target: cst.BaseExpression, index: Any, op: str, value: cst.BaseExpression,
            inplace: bool = False) -> cst.Call:
        extra = [_arg(cst.Name("True"), "inplace")] if inplace else []
        at = cst.Call(func=self.expr("tm.at"), args=[_arg(target), *extra])
        return cst.Call(func=cst.Attribute(value=cst.Subscript(value=at, slice=index), attr=cst.Name(op)),
                        args=[_arg(value)])

    # ---- item assignment ---------------------------------------------------------------------
    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign) -> Any:
        if len(original_node.targets) != 1:
            return updated_node
        target = original_node.targets[0].target
        if not isinstance(target, cst.Subscript):
            if isinstance(target, cst.Attribute) and target.attr.value == "data":
                self.flag(original_node, "x.data = ...: assign the new array to the name instead")
            return updated_node
        if not isinstance(target.value, cst.Name):
            return updated_node  # self.cache[k] = v and the like: a container, leave it
        name = target.value.value
        if not self._maybe_tensor(original_node, name):
            return updated_node
        self._check_alias(original_node, name)
        new_target = updated_node.targets[0].target
        return cst.Assign(targets=[cst.AssignTarget(cst.Name(name))],
                          value=self._at(new_target.value, new_target.slice, "set", updated_node.value))

    def leave_AugAssign(self, original_node: cst.AugAssign, updated_node: cst.AugAssign) -> Any:
        target = original_node.target
        if not (isinstance(target, cst.Subscript) and isinstance(target.value, cst.Name)):
            return updated_node
        op = _AUG_TO_AT.get(original_node.operator._get_token() if hasattr(original_node.operator, "_get_token")
                            else _aug_token(original_node.operator))
        name = target.value.value
        if op is None or not self._maybe_tensor(original_node, name):
            return updated_node
        self._check_alias(original_node, name)
        new_target = updated_node.target
        return cst.Assign(targets=[cst.AssignTarget(cst.Name(name))],
                          value=self._at(new_target.value, new_target.slice, op, updated_node.value))

    def _maybe_tensor(self, node: cst.CSTNode, name: str) -> bool:
        """Whether ``name[i] = v`` is converted: not on a clear container (plain Python), and only where
        ``name`` can be rebound (a global/closure tensor updated in place is flagged instead)."""
        if not self._analysis.maybe_tensor(node, name):
            return False
        if not self._analysis.is_local(node, name):
            self.flag(node, f"in-place update of '{name}', which this function does not bind: "
                            "return the new value (x = x.at[i].set(v)) instead")
            return False
        return True

    def _check_alias(self, node: cst.CSTNode, name: str) -> None:
        if self._analysis is not None and self._analysis.is_unaliased(node, name):
            return
        self.flag(node, f"in-place update of '{name}' became a new value bound to '{name}': "
                        "check that no other name (a view, a caller's argument) must see the change")


def _aug_token(op: cst.BaseAugOp) -> str:
    return {cst.AddAssign: "+=", cst.SubtractAssign: "-=", cst.MultiplyAssign: "*=", cst.DivideAssign: "/=",
            cst.FloorDivideAssign: "//=", cst.PowerAssign: "**="}.get(type(op), "")


def _fix_last_comma(names: list) -> list:
    if not names:
        return names
    last = names[-1]
    return [*names[:-1], last.with_changes(comma=cst.MaybeSentinel.DEFAULT)]


def _import_binding(conv: _Converter, code: str, bound: str, need: str | None) -> str:
    """An import statement binding ``bound`` to ``code`` (``jax.Array`` → ``from jax import Array as Tensor``)."""
    module, _, name = code.rpartition(".")
    if not module:  # a builtin such as tuple
        return f"{bound} = {name}"
    module = {"tm": "funcnet.port.ops", "jnp": "jax.numpy"}.get(module, module)
    return f"from {module} import {name}" + (f" as {bound}" if bound != name else "")


def _collect_bindings(module: cst.Module) -> tuple[dict[str, str], set[str], set[str]]:
    """Names bound to torch modules/objects by the file's imports, every name used in the file, and
    every name an import binds (``math``, ``np``: receivers that are modules, not tensors)."""
    bindings: dict[str, str] = {}
    names: set[str] = set()
    imported: set[str] = set()

    class Collect(cst.CSTVisitor):
        def visit_Name(self, node: cst.Name) -> None:
            names.add(node.value)

        def visit_Import(self, node: cst.Import) -> None:
            for alias in node.names:
                imported.add(alias.asname.name.value if alias.asname else _module_dotted(alias.name).split(".")[0])
                path = _module_dotted(alias.name)
                if path == "torch" or path.startswith("torch."):
                    if alias.asname is not None:
                        bindings[alias.asname.name.value] = path
                    else:
                        bindings["torch"] = "torch"

        def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
            if not isinstance(node.names, cst.ImportStar):
                imported.update(a.asname.name.value if a.asname else a.name.value for a in node.names)
            if node.relative or node.module is None or isinstance(node.names, cst.ImportStar):
                return
            path = _module_dotted(node.module)
            if path == "torch" or path.startswith("torch."):
                for alias in node.names:
                    bound = alias.asname.name.value if alias.asname else alias.name.value
                    bindings[bound] = f"{path}.{alias.name.value}"

    module.visit(Collect())
    return bindings, names, imported


# Torch functions and methods whose result may share storage with an argument / the receiver.
_VIEW_FUNCS = {"transpose", "permute", "reshape", "flatten", "squeeze", "unsqueeze", "narrow", "select", "chunk",
               "split", "unbind", "meshgrid", "broadcast_to", "swapaxes", "movedim", "as_strided", "diagonal", "t",
               "detach", "view_as_real", "view_as_complex", "unflatten", "tensor_split", "atleast_1d", "atleast_2d"}
_VIEW_METHODS = _VIEW_FUNCS | {"view", "view_as", "expand", "expand_as", "contiguous", "to", "type_as", "float",
                               "double", "half", "long", "int", "bool", "type", "cpu", "cuda", "data", "T", "mT",
                               "requires_grad_", "clamp_", "add_", "sub_", "mul_", "div_", "zero_", "fill_",
                               "bernoulli_", "uniform_", "normal_"}
_FRESH_METHODS = {"clone", "copy", "new_zeros", "new_ones", "new_full", "new_empty", "new_tensor", "tolist", "sum",
                  "mean", "std", "var", "prod", "max", "min", "amax", "amin", "argmax", "argmin", "exp", "log", "log2",
                  "sqrt", "rsqrt", "abs", "neg", "sign", "sigmoid", "tanh", "relu", "softmax", "log_softmax",
                  "matmul", "mm", "bmm", "add", "sub", "mul", "div", "pow", "masked_fill", "repeat", "cumsum",
                  "cumprod", "norm", "clamp", "round", "floor", "ceil", "eq", "ne", "lt", "le", "gt", "ge", "item",
                  "all", "any", "sort", "flip", "roll", "gather", "numel", "size", "dim", "nelement", "ndimension"}
_META = {"shape", "dtype", "ndim", "device", "size", "dim", "numel", "nelement", "ndimension", "is_contiguous"}
_CONTAINER_CALLS = {"dict", "list", "set", "tuple", "OrderedDict", "defaultdict", "Counter", "deque", "sorted"}
_CONTAINER_METHODS = {"keys", "items", "values", "append", "extend", "insert", "pop", "popitem", "update", "get",
                      "setdefault", "remove", "clear", "index", "count"}
_CONTAINER_TYPES = ("list", "dict", "List", "Dict", "Sequence", "Mapping", "MutableMapping", "OrderedDict", "tuple",
                    "Tuple", "set", "Set")


class _Aliasing:
    """Which item assignments / in-place calls can become a rebinding with torch's exact meaning.

    torch mutates the tensor object; the converted code binds a new array to the same name. That is
    the same program when no other name can see the tensor: the name's latest binding before the
    update is a fresh tensor (a creation function, arithmetic, ``.clone()``, a view of itself while
    it was unshared), and between that binding and the update (and anywhere in a loop around the
    update) the name is used only for metadata, arithmetic or other item updates. Anything else is
    converted and flagged for a person to check."""

    def __init__(self, module: cst.Module, torch_path: Any):
        self.torch_path = torch_path
        self.parent: dict[int, cst.CSTNode] = {}
        self.order: dict[int, int] = {}
        self.end: dict[int, int] = {}
        self.names_by_value: dict[str, list[cst.Name]] = {}
        counter = [0]
        parent, order, end, names = self.parent, self.order, self.end, self.names_by_value

        class Walk(cst.CSTVisitor):
            def on_visit(self, node: cst.CSTNode) -> bool:
                order[id(node)] = counter[0]
                counter[0] += 1
                if isinstance(node, cst.Name):
                    names.setdefault(node.value, []).append(node)
                for child in node.children:
                    parent[id(child)] = node
                return True

            def on_leave(self, node: cst.CSTNode) -> None:
                end[id(node)] = counter[0]

        module.visit(Walk())
        self.module = module

    # ---- structure ---------------------------------------------------------------------------
    def _up(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self.parent.get(id(node))

    def _scope(self, node: cst.CSTNode) -> cst.CSTNode:
        cur = self._up(node)
        while cur is not None and not isinstance(cur, (cst.FunctionDef, cst.Lambda)):
            cur = self._up(cur)
        return cur if cur is not None else self.module

    def _contains(self, outer: cst.CSTNode, node: cst.CSTNode) -> bool:
        return self.order[id(outer)] <= self.order[id(node)] < self.end[id(outer)]

    def _statement(self, node: cst.CSTNode) -> cst.CSTNode:
        cur = node
        while cur is not None and not isinstance(cur, (cst.BaseSmallStatement, cst.BaseCompoundStatement)):
            cur = self._up(cur)
        return cur if cur is not None else node

    def _names(self, scope: cst.CSTNode, name: str) -> list[cst.Name]:
        """The Name nodes spelling ``name`` whose scope is ``scope``, in source order."""
        return [n for n in self.names_by_value.get(name, []) if self._scope(n) is scope]

    def _bindings(self, scope: cst.CSTNode, name: str) -> list[tuple[cst.CSTNode, Any]]:
        """(binding node, value or a kind string) in source order; item updates are not bindings."""
        out = []
        for n in self._names(scope, name):
            p = self._up(n)
            if isinstance(p, cst.AssignTarget) and p.target is n:
                out.append((n, self._up(p).value))
            elif isinstance(p, cst.AnnAssign) and p.target is n:
                out.append((n, p.value if p.value is not None else "annotated"))
            elif isinstance(p, cst.Param) and p.name is n:
                out.append((n, p))
            elif isinstance(p, (cst.Element, cst.Tuple, cst.List, cst.StarredElement, cst.For, cst.AsName,
                                cst.CompFor, cst.Global, cst.Nonlocal)) and not self._is_load(n):
                out.append((n, "unknown"))
        return out

    def _is_load(self, n: cst.Name) -> bool:
        p = self._up(n)
        if isinstance(p, cst.AssignTarget) and p.target is n:
            return False
        if isinstance(p, (cst.Element, cst.StarredElement)):  # inside a tuple target?
            cur = p
            while isinstance(cur, (cst.Element, cst.StarredElement, cst.Tuple, cst.List)):
                cur = self._up(cur)
            return not (isinstance(cur, (cst.AssignTarget, cst.For, cst.CompFor)))
        if isinstance(p, (cst.For, cst.CompFor)) and p.target is n:
            return False
        if isinstance(p, cst.AsName) or isinstance(p, cst.Param):
            return False
        return True

    # ---- questions ---------------------------------------------------------------------------
    def is_local(self, node: cst.CSTNode, name: str) -> bool:
        """Whether ``name`` can be rebound where ``node`` is: a module-level name at module level, or a
        name the enclosing function binds itself (rebinding a global or closure name would make it local)."""
        scope = self._scope(node)
        if scope is self.module:
            return True
        if any(isinstance(self._up(n), (cst.Global, cst.NameItem)) for n in self._names(scope, name)):
            return False
        return bool(self._bindings(scope, name))

    def maybe_tensor(self, node: cst.CSTNode, name: str) -> bool:
        """False when every binding of ``name`` in its scope is clearly a Python container."""
        scope = self._scope(node)
        if not self.is_local(node, name):
            scope = self.module
        if self._used_as_container(scope, name):
            return False
        bindings = self._bindings(scope, name)
        if not bindings:
            return True
        return not all(self._is_container(value) for _, value in bindings)

    def _used_as_container(self, scope: cst.CSTNode, name: str) -> bool:
        """``name.keys()``, ``name.append(v)``, ``del name[k]``...: methods and statements no tensor has."""
        for use in self._names(scope, name):
            p = self._up(use)
            if isinstance(p, cst.Attribute) and p.value is use and p.attr.value in _CONTAINER_METHODS:
                return True
            if isinstance(p, cst.Subscript) and isinstance(self._up(p), cst.Del):
                return True
        return False

    def _is_container(self, value: Any) -> bool:
        if isinstance(value, cst.Param):
            if value.star == "**":
                return True
            ann = value.annotation
            return ann is not None and "Tensor" not in _code(ann.annotation) and any(
                t in _code(ann.annotation) for t in _CONTAINER_TYPES)
        if isinstance(value, (cst.List, cst.Dict, cst.Set, cst.ListComp, cst.DictComp, cst.SetComp, cst.Tuple)):
            return True
        if isinstance(value, cst.Call):
            parts = _dotted(value.func)
            if parts and parts[-1] in _CONTAINER_CALLS and self.torch_path(value.func) is None:
                return True
            if isinstance(value.func, cst.Attribute) and value.func.attr.value == "copy":
                return True  # torch tensors have no .copy(): a list's or dict's
        return False

    def is_unaliased(self, node: cst.CSTNode, name: str) -> bool:
        stmt = self._statement(node)
        scope = self._scope(stmt)
        before = [(b, v) for b, v in self._bindings(scope, name) if self.order[id(b)] < self.order[id(stmt)]]
        if not before:
            return False
        binding, value = before[-1]
        if not self._fresh(value, name, binding):
            return False
        start, stop = self.order[id(binding)], self.order[id(stmt)]
        loops = [loop for loop in self._loops(stmt, scope) if not self._contains(loop, binding)]
        binding_stmt = self._statement(binding)
        for use in self._names(scope, name):
            if not self._is_load(use) or self._contains(stmt, use) or self._contains(binding_stmt, use):
                continue
            pos = self.order[id(use)]
            in_loop = any(self._contains(loop, use) for loop in loops)
            if (start < pos < stop or in_loop) and not self._safe_use(use, name):
                return False
        return True

    def _loops(self, node: cst.CSTNode, scope: cst.CSTNode) -> list[cst.CSTNode]:
        out, cur = [], self._up(node)
        while cur is not None and cur is not scope:
            if isinstance(cur, (cst.For, cst.While)):
                out.append(cur)
            cur = self._up(cur)
        return out

    def _fresh(self, value: Any, name: str, binding: cst.CSTNode) -> bool:
        if isinstance(value, (cst.BinaryOperation, cst.UnaryOperation, cst.Comparison, cst.List, cst.Dict,
                              cst.ListComp, cst.DictComp, cst.Integer, cst.Float)):
            return True
        if isinstance(value, cst.Call):
            path = self.torch_path(value.func)
            if path is not None:
                return path.split(".")[-1] not in _VIEW_FUNCS and len(path.split(".")) == 2
            if isinstance(value.func, cst.Attribute):
                method = value.func.attr.value
                if method in _FRESH_METHODS:
                    return True
                if method in _VIEW_METHODS:
                    return self._fresh_view_of(value.func.value, name, binding)
            return False
        if isinstance(value, cst.Subscript):
            return self._fresh_view_of(value.value, name, binding)
        if isinstance(value, cst.Attribute) and value.attr.value in ("data", "T", "mT"):
            return self._fresh_view_of(value.value, name, binding)
        return False

    def _fresh_view_of(self, base: cst.BaseExpression, name: str, binding: cst.CSTNode) -> bool:
        """A view of ``base`` is unshared when base is itself fresh, or is ``name`` being rebound while unshared."""
        if isinstance(base, cst.Name):
            return base.value == name and self.is_unaliased(binding, name)
        return self._fresh(base, name, binding)

    def _safe_use(self, use: cst.Name, name: str) -> bool:
        cur: cst.CSTNode = use
        while True:
            p = self._up(cur)
            if isinstance(p, cst.Attribute) and p.value is cur:
                attr = p.attr.value
                call = self._up(p)
                called = isinstance(call, cst.Call) and call.func is p
                if attr in _META or (called and attr in _FRESH_METHODS):
                    return True
                if attr in _VIEW_METHODS:
                    cur = call if called else p
                    continue
                return False
            if isinstance(p, cst.Subscript) and p.value is cur:
                q = self._up(p)
                if isinstance(q, (cst.AssignTarget, cst.AugAssign)) and getattr(q, "target", None) is p:
                    return True  # another item update of the same tensor
                cur = p
                continue
            if isinstance(p, (cst.BinaryOperation, cst.UnaryOperation, cst.Comparison, cst.ComparisonTarget,
                              cst.BooleanOperation, cst.Expr)):
                return True
            if isinstance(p, cst.Arg):
                call = self._up(p)
                path = self.torch_path(call.func) if isinstance(call, cst.Call) else None
                return path is not None and len(path.split(".")) == 2 and path.split(".")[-1] not in _VIEW_FUNCS
            if isinstance(p, (cst.Element, cst.List, cst.Tuple)):
                cur = p
                continue
            return False


def _code(node: cst.CSTNode) -> str:
    return cst.Module(body=[]).code_for_node(node)


def _is_import_line(stmt: cst.CSTNode) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and all(
        isinstance(s, (cst.Import, cst.ImportFrom)) for s in stmt.body)


def _is_docstring(stmt: cst.CSTNode) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and isinstance(
        stmt.body[0], cst.Expr) and isinstance(stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString))


def _insert_imports(module: cst.Module, lines: list[str], after_converted: int | None) -> cst.Module:
    if not lines:
        return module
    body = list(module.body)
    if after_converted is not None:
        at = after_converted + 1
    else:
        at = 0
        for i, stmt in enumerate(body):
            if (i == 0 and _is_docstring(stmt)) or _is_import_line(stmt):
                at = i + 1
            else:
                break
    new = [cst.parse_statement(line) for line in lines]
    return module.with_changes(body=[*body[:at], *new, *body[at:]])


def convert_module(source: str, filename: str = "<string>") -> tuple[str, list[Flag]]:
    """Convert ``source``; returns the new source and the flags (line numbers of the input)."""
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as e:
        raise PortSyntaxError(f"{filename}:{e.raw_line}:{e.raw_column}: syntax error: {e.message}") from None
    bindings, names, imported = _collect_bindings(module)
    wrapper = cst.MetadataWrapper(module, unsafe_skip_copy=True)  # the tree was just parsed: no copy
    conv = _Converter(bindings, names, filename)
    conv.imported = imported
    conv._analysis = _Aliasing(wrapper.module, conv._torch_path)
    conv._wrapper = wrapper
    converted_lines: list[int] = []
    for i, stmt in enumerate(wrapper.module.body):
        if _is_import_line(stmt) and any(
                _module_dotted(a.name).split(".")[0] == "torch" for s in stmt.body if isinstance(s, cst.Import)
                for a in s.names) or _is_import_line(stmt) and any(
                isinstance(s, cst.ImportFrom) and not s.relative and
                _module_dotted(s.module).split(".")[0] == "torch" for s in stmt.body):
            converted_lines.append(i)
    new_module = wrapper.module.visit(conv)
    bound = _bound_by_imports(new_module)
    lines = []
    for what in ("funcnet", "jax", "jnp", "tm"):
        if what in conv.needed and conv.alias[what] not in bound:
            lines.append(_IMPORTS[what].format(conv.alias[what]))
    after = None
    if converted_lines:
        after = _position_after(wrapper.module, new_module, converted_lines[-1])
    new_module = _insert_imports(new_module, lines, after)
    return new_module.code, sorted(conv.flags, key=lambda f: f.line)


def _position_after(old: cst.Module, new: cst.Module, index: int) -> int:
    """Index in ``new``'s body of the statement that was ``old.body[index]`` (imports may have split)."""
    extra = 0
    for i in range(index + 1):
        stmt = old.body[i]
        if _is_import_line(stmt):
            extra += _split_count(stmt) - 1
    return index + extra


def _split_count(stmt: cst.SimpleStatementLine) -> int:
    n = 0
    for s in stmt.body:
        if isinstance(s, cst.ImportFrom) and not s.relative and s.module is not None and \
                _module_dotted(s.module).split(".")[0] == "torch" and not isinstance(s.names, cst.ImportStar):
            path = _module_dotted(s.module)
            special = sum(1 for a in s.names if f"{path}.{a.name.value}" in _SPECIAL or (
                path == "torch" and not _resolve(_funcnet_path(f"{path}.{a.name.value}"))[0]
                and hasattr(_ops, a.name.value)))
            plain = len(s.names) - special
            n += special + (1 if plain else 0)
        else:
            n += 1
    return n


def _bound_by_imports(module: cst.Module) -> set[str]:
    bound = set()
    for stmt in module.body:
        if not _is_import_line(stmt):
            continue
        for s in stmt.body:
            if isinstance(s, cst.Import):
                for a in s.names:
                    bound.add(a.asname.name.value if a.asname else _module_dotted(a.name).split(".")[0])
            elif not isinstance(s.names, cst.ImportStar):
                for a in s.names:
                    bound.add(a.asname.name.value if a.asname else a.name.value)
    return bound
