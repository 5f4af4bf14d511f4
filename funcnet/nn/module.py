"""``Module``: a torch-style model declaration whose ``init``/``apply`` are pure functions.

A funcnet module is configuration only. Submodules are attributes, parameters
and buffers are declared with :class:`~funcnet.nn.Parameter` /
:class:`~funcnet.nn.Buffer`, and ``forward`` is written as in torch::

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            return self.fc2(F.relu(self.fc1(x)))

    net = Net()
    params, buffers = net.init(jax.random.key(0))   # nested dicts: {'fc1': {'weight', 'bias'}, ...}
    logits = net.apply(params, x)                    # eval mode: output only
    logits, buffers = net.apply(params, x, buffers=buffers, key=k, train=True)

Differences from torch, all deliberate:
  * ``init``/``apply`` replace stored tensors; ``apply`` is safe under ``jit``,
    ``grad``, ``vmap``, ``lax.scan`` and ``pmap``.
  * train/eval is the ``train=`` argument of ``apply``, not ``model.train()``.
  * randomness comes from ``key=``; every call site gets its own stream.
  * in train mode ``apply`` returns ``(output, new_buffers)``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.nn import _context, _rng
from funcnet.nn.parameter import Buffer, Parameter


class Variables(NamedTuple):
    """What ``Module.init`` returns: trainable ``params`` and non-trainable ``buffers``."""

    params: dict
    buffers: dict


class MissingKeysError(KeyError, ValueError):
    """Trees given as a model's variables lack some of its keys (a ``KeyError``, as a missing name,
    and a ``ValueError``, as a wrong value); the message names them."""

    __str__ = Exception.__str__  # the message as written, not KeyError's repr of it


def as_variables(model: Module, variables: Any, buffers: Any = None, *, where: str = "variables") -> Variables:
    """``variables`` of ``model`` as :class:`Variables`, or a clear error: the one rule of every
    function that takes "the variables" (``state_dict``, ``interop.to_torch``, ``save_safetensors``,
    ``load_state_dict(into=...)``, ``load_backbone``, ``quantize_dynamic``, ``TrainState.create``).

    Accepted: ``Variables`` (what ``init`` returns); a ``(params, buffers)`` tuple or list; anything
    with a ``.variables`` property (a ``TrainState``); two trees ``variables, buffers`` given
    separately; params alone only if the model has no (persistent) buffers. Every declared parameter
    and buffer must be in the trees: a tree of another model, or params without buffers, raises
    instead of giving fewer keys. One explicitly empty tree (``state_dict(grads, {})``) means "none
    of this kind" and is not checked (both empty is an error for a model with parameters and buffers).

    Raises:
        TypeError: ``variables`` is not one of the accepted kinds (the message says what it was).
        MissingKeysError: (a ``KeyError`` and ``ValueError``) keys of ``model`` missing from the
            trees (the first few are named).
    """
    name = where
    expected = (
        "expected Variables(params, buffers) (what model.init returns), a (params, buffers) tuple, "
        "a TrainState (or state.variables)"
    )
    if buffers is not None:
        params = variables
    elif isinstance(variables, Variables):
        params, buffers = variables
    elif isinstance(getattr(type(variables), "variables", None), property):  # TrainState and alikes
        params, buffers = variables.variables
    elif isinstance(variables, (tuple, list)):
        if len(variables) != 2 or not all(isinstance(t, dict) for t in variables):
            kinds = ", ".join(type(t).__name__ for t in variables)
            raise TypeError(f"{name}: got a {type(variables).__name__} of {len(variables)} ({kinds}); {expected}")
        params, buffers = variables
    elif isinstance(variables, dict):
        if set(variables) == {"params", "buffers"} and "params" not in dict(model.named_children()):
            raise TypeError(
                f"{name}: got a dict with keys 'params' and 'buffers'; {expected}: "
                f"Variables(d['params'], d['buffers'])"
            )
        params, buffers = variables, None
    else:
        raise TypeError(f"{name}: got a {type(variables).__name__}; {expected}, or params alone for a "
                        f"model without buffers")
    for kind, tree in (("params", params), ("buffers", buffers)):
        if tree is not None and not isinstance(tree, dict):
            raise TypeError(f"{name}: {kind} must be a nested dict, got a {type(tree).__name__}; {expected}")
    persistent = [n for n, spec in model.named_buffer_specs() if spec.persistent]
    if buffers is None:
        if persistent:
            raise TypeError(
                f"{name}: got params alone, but {type(model).__name__} has {len(persistent)} buffer(s) "
                f"({', '.join(persistent[:3])}{', ...' if len(persistent) > 3 else ''}); {expected}"
            )
        buffers = {}
    lacking = []
    param_names = [n for n, _ in model.named_parameter_specs()]
    for tree, names in ((params, param_names), (buffers, persistent)):
        # One explicitly empty tree means "none of this kind". Both empty is an error only when the
        # model has both kinds (where it lacks one, that tree is complete and the other is the marker).
        if tree or (not (params or buffers) and param_names and persistent):
            lacking += [n for n in names if not _has(tree, n)]
    if lacking:
        raise MissingKeysError(
            f"{name}: the given trees lack {len(lacking)} of {type(model).__name__}'s keys "
            f"({', '.join(lacking[:5])}{', ...' if len(lacking) > 5 else ''}): variables of another model, "
            f"or a part of them? {expected}"
        )
    return Variables(params, buffers)


def _has(tree: dict, dotted: str) -> bool:
    *path, leaf = dotted.split(".")
    return leaf in _context._lookup(tree, tuple(path))


class IncompatibleKeys(NamedTuple):
    """torch's ``_IncompatibleKeys``: keys the model wanted but did not get, and extras."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class ShapeError(ValueError):
    """An input of the wrong shape; the message names the module path."""


def _add_indent(text: str, spaces: int) -> str:
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor; torch stays an optional import
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class Module:
    """Base class of every funcnet layer and model (``torch.nn.Module``).

    Subclasses call ``super().__init__()`` first, then assign submodules,
    :class:`Parameter` and :class:`Buffer` declarations as attributes, and
    define ``forward``. Inside ``forward`` a declared parameter reads as the
    array passed to ``apply``; ``self.training`` is the ``train=`` flag.
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})

    # -- declaration -----------------------------------------------------------------
    def _registry(self, name: str) -> dict:
        try:
            return object.__getattribute__(self, name)
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__}.__init__ must call super().__init__() before "
                f"assigning parameters or submodules"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, (Parameter, Module)):
            params, buffers, modules = (
                self._registry("_parameters"),
                self._registry("_buffers"),
                self._registry("_modules"),
            )
            target = buffers if isinstance(value, Buffer) else params if isinstance(value, Parameter) else modules
            for registry in (params, buffers, modules):
                if registry is not target:  # re-assigning keeps the name's place (torch's state_dict order)
                    registry.pop(name, None)
            if isinstance(value, Buffer):
                buffers[name] = value
            elif isinstance(value, Parameter):
                params[name] = value
            else:
                modules[name] = value
            if isinstance(value, Parameter) and not value.where:
                value.where = f"{type(self).__name__}.{name}"  # named in DeclarationError messages
            self.__dict__.pop(name, None)
            return
        buffers = self.__dict__.get("_buffers", {})
        if name in buffers:
            ctx = _context.current()
            if ctx is None:
                raise AttributeError(
                    f"{type(self).__name__}.{name} is a buffer: outside apply it has no value; "
                    f"declare a new Buffer(...) to change its shape"
                )
            ctx.set_buffer(self, name, value)
            return
        if name in self.__dict__.get("_modules", {}) or name in self.__dict__.get("_parameters", {}):
            self.__dict__["_modules"].pop(name, None)
            self.__dict__["_parameters"].pop(name, None)
        object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: declared params, buffers and submodules.
        d = self.__dict__
        if name in d.get("_modules", ()):
            return d["_modules"][name]
        if name in d.get("_parameters", ()) or name in d.get("_buffers", ()):
            ctx = _context.current()
            if ctx is None:
                # Outside apply a declared array reads as its declaration, the metadata torch's
                # __init__ code inspects (shape, dtype, nn.init.*_ targets, weight tying).
                return d["_parameters"][name] if name in d["_parameters"] else d["_buffers"][name]
            if name in d["_parameters"]:
                return ctx.param(self, name)
            return ctx.buffer(self, name)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def get_parameter(self, target: str) -> Parameter:
        """torch's ``get_parameter``: the declaration at dotted ``target`` (``"fc1.weight"``).

        Assigning it to another module ties the two (one array, trained once, saved under
        both names): ``self.dec.weight = self.emb.get_parameter("weight")``, torch's
        ``self.dec.weight = self.emb.weight``."""
        return self._get_declaration(target, "_parameters", "parameter")

    def get_buffer(self, target: str) -> Buffer:
        """torch's ``get_buffer``: the buffer declaration at dotted ``target``."""
        return self._get_declaration(target, "_buffers", "buffer")

    def _get_declaration(self, target: str, registry: str, kind: str) -> Any:
        *module_path, name = target.split(".")
        module: Module = self
        for part in module_path:
            children = module._registry("_modules")
            if part not in children:
                raise AttributeError(f"{type(module).__name__} has no attribute `{part}` (looking up {target!r})")
            module = children[part]
        declarations = module._registry(registry)
        if name not in declarations:
            raise AttributeError(f"`{name}` is not a {kind} of {type(module).__name__} (looking up {target!r})")
        return declarations[name]

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """torch's ``register_parameter``; ``None`` declares that there is none: the attribute
        then reads ``None`` (torch's ``m.bias is None`` for a layer without bias)."""
        if param is None:
            self._registry("_parameters").pop(name, None)
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    def register_buffer(self, name: str, buffer: Any, persistent: bool = True) -> None:
        """torch's ``register_buffer``; ``persistent=False`` keeps it out of ``state_dict``.

        ``buffer`` is a declaration, or an array (jax, numpy, torch): the buffer then starts
        as that value (torch's ``register_buffer("index", tensor)``); ``None`` reads as None."""
        if buffer is None:
            self._registry("_buffers").pop(name, None)
            object.__setattr__(self, name, None)
            return
        if not isinstance(buffer, Buffer):
            buffer = Buffer(buffer) if not isinstance(buffer, Parameter) else Buffer(buffer.shape, buffer.init,
                                                                                     buffer.dtype)
        buffer.persistent = persistent
        setattr(self, name, buffer)

    def add_module(self, name: str, module: Module | None) -> None:
        if module is None:
            self._registry("_modules").pop(name, None)
        else:
            setattr(self, name, module)

    # -- inside apply ----------------------------------------------------------------
    @property
    def training(self) -> bool:
        """The ``train=`` flag of the running ``apply`` (torch's ``self.training``), False
        inside the submodules named by ``apply(..., eval_modules=...)``."""
        ctx = _context.current()
        if ctx is None:
            raise RuntimeError(
                "training is a call argument in funcnet: pass train=True/False to apply"
            )
        return ctx.is_training(self)

    @property
    def path(self) -> str:
        """This module's path from the root of the running ``apply``, e.g. ``'Net.fc2'``."""
        ctx = _context.current()
        if ctx is None:
            return type(self).__name__
        return ctx.display_path(ctx.path_of(self))

    def make_rng(self) -> jax.Array:
        """A fresh PRNG key for this call site, derived from the ``key`` given to apply."""
        ctx = _context.current()
        if ctx is None:
            raise RuntimeError("make_rng is only available inside apply")
        return ctx.make_rng(self)

    def shape_error(self, expected: str, actual: Any) -> ShapeError:
        """A :class:`ShapeError` naming this module's path, expected and actual shapes."""
        return ShapeError(
            f"{self.path} ({type(self).__name__}): expected input of shape {expected}, "
            f"got {tuple(actual)}"
        )

    def train(self, mode: bool = True):
        raise TypeError(
            "funcnet modules hold no mode: pass train=True (or False) to apply, "
            "e.g. model.apply(params, x, buffers=buffers, key=key, train=True)"
        )

    def eval(self):
        raise TypeError("funcnet modules hold no mode: apply(..., train=False) is eval mode")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ctx = _context.current()
        if ctx is None:
            raise RuntimeError(
                f"a funcnet module is not called directly: use "
                f"{type(self).__name__}.apply(params, *inputs) (see Module.apply)"
            )
        ctx.stack.append(self)
        try:
            return self.forward(*args, **kwargs)
        finally:
            ctx.stack.pop()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    # -- the tree --------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        yield from self._registry("_modules").items()

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Every module with its dotted path, root first (torch order, shared ones once)."""
        seen: set[int] = set()

        def walk(module: Module, path: str):
            if id(module) in seen:
                return
            seen.add(id(module))
            yield path, module
            for name, child in module.named_children():
                yield from walk(child, f"{path}.{name}" if path else name)

        yield from walk(self, prefix)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def _declarations(self) -> Iterator[tuple[tuple[str, ...], str, Parameter]]:
        """(module path, name, declaration) in torch ``state_dict`` order: params, buffers, children."""

        def walk(module: Module, path: tuple[str, ...]):
            yield from ((path, n, p) for n, p in module._registry("_parameters").items())
            yield from ((path, n, b) for n, b in module._registry("_buffers").items())
            for name, child in module.named_children():
                yield from walk(child, (*path, name))

        yield from walk(self, ())

    def _aliases(self) -> dict[tuple[tuple[str, ...], str], tuple[tuple[str, ...], str]]:
        """``(path, name) -> (path, name)`` of its first occurrence, for every declaration that is
        reached a second time: through a module shared under two names, or one ``Parameter``
        assigned to two modules (weight tying, torch's ``decoder.weight = encoder.weight``).

        As in torch, such a tensor exists once (one array, trained once) and appears under every
        name in ``state_dict``."""
        first: dict[int, tuple[tuple[str, ...], str]] = {}
        aliases = {}
        for path, name, spec in self._declarations():
            if id(spec) in first:
                aliases[(path, name)] = first[id(spec)]
            else:
                first[id(spec)] = (path, name)
        return aliases

    def _unique_declarations(self) -> Iterator[tuple[tuple[str, ...], str, Parameter]]:
        aliases = self._aliases()
        return ((path, name, spec) for path, name, spec in self._declarations() if (path, name) not in aliases)

    def named_parameter_specs(self) -> Iterator[tuple[str, Parameter]]:
        """Dotted names and declarations of the trainable parameters (no arrays needed; a
        shared parameter once, under its first name, as torch's ``named_parameters``)."""
        for path, name, spec in self._unique_declarations():
            if not isinstance(spec, Buffer):
                yield ".".join((*path, name)), spec

    def named_buffer_specs(self) -> Iterator[tuple[str, Buffer]]:
        for path, name, spec in self._unique_declarations():
            if isinstance(spec, Buffer):
                yield ".".join((*path, name)), spec

    # -- init / apply ----------------------------------------------------------------
    def init(self, key: jax.Array) -> Variables:
        """Create the parameters and buffers with torch's default initialisation.

        Each array's key is derived from ``key`` and ``crc32(dotted name)``, so adding a
        layer does not change the others' values. The draws run on the host with
        numpy (no compilation: building a model costs milliseconds); under
        ``jax.jit`` or ``vmap`` the same draws run through a callback, so the
        values are identical.

        Returns:
            ``Variables(params, buffers)``: nested dicts keyed by attribute name.
        """
        params: dict = {}
        buffers: dict = {}
        for path, name, spec in self._unique_declarations():  # a shared declaration gets one array
            dotted = ".".join((*path, name))
            value = spec.create(_rng.derive_key(key, _context.path_hash(dotted)))
            _context._assign(buffers if isinstance(spec, Buffer) else params, path, name, value)
        return Variables(params, buffers)

    def _module_paths(self) -> dict[int, tuple[str, ...]]:
        paths: dict[int, tuple[str, ...]] = {}
        for dotted, module in self.named_modules():
            paths[id(module)] = tuple(dotted.split(".")) if dotted else ()
        return paths

    def apply(
        self,
        params: dict | Variables,
        *args: Any,
        buffers: dict | None = None,
        key: jax.Array | None = None,
        train: bool = False,
        compute_dtype: Any = None,
        eval_modules: tuple[str, ...] = (),
        _root_name: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``forward`` as a pure function of the given arrays.

        Args:
            params: the parameter tree (or the whole ``Variables`` from ``init``).
            *args, **kwargs: the inputs of ``forward``.
            buffers: the buffer tree (BatchNorm statistics, ...), if the model has any.
            key: PRNG key for dropout and other randomness; needed only in train mode. A
                zero-argument function returning a key is also accepted: it is called only
                if some module asks for randomness (so a model without dropout traces no
                key arithmetic).
            train: torch's ``model.train()`` / ``model.eval()``, as an argument.
            compute_dtype: e.g. ``jnp.bfloat16``: floating parameters and inputs are
                cast to it for the computation while they stay stored in their own dtype.
            eval_modules: dotted paths of submodules that run in eval mode even when
                ``train=True`` — torch's ``model.backbone.eval()`` inside a training step
                (a frozen backbone's BatchNorm then uses, and keeps, its running statistics).

        Returns:
            ``output`` when ``train=False``; ``(output, new_buffers)`` when ``train=True``.
        """
        if isinstance(params, Variables):
            params, buffers = params.params, params.buffers if buffers is None else buffers
        if compute_dtype is not None:
            args, kwargs = jax.tree.map(
                lambda a: a.astype(compute_dtype)
                if hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating)
                else a,
                (args, kwargs),
            )
        ctx = _context.ApplyContext(
            root_name=_root_name or self._name_within(_context.current()),
            paths=self._module_paths(),
            aliases=self._aliases(),
            params=params,
            buffers=buffers,
            key=key,
            train=bool(train),
            compute_dtype=compute_dtype,
            eval_paths=tuple(tuple(p.split(".")) for p in ((eval_modules,) if isinstance(eval_modules, str)
                                                            else eval_modules)),
        )
        with _context.activate(ctx):
            out = self(*args, **kwargs)
        if train:
            return out, ctx.merged_buffers()
        return out

    def _name_within(self, outer: Any) -> str:
        """The name paths start from: the class name, or, for a submodule applied from inside
        a running apply (a layer of a Transformer stack), its full path there — so an error
        says ``TransformerEncoder.layers.1.self_attn``, not ``TransformerEncoderLayer.self_attn``."""
        if outer is not None and id(self) in outer.paths:
            return outer.display_path(outer.path_of(self))
        return type(self).__name__

    # -- state_dict ------------------------------------------------------------------
    def state_dict(self, variables: Any, buffers: dict | None = None) -> OrderedDict:
        """Flat ``{dotted name: array}`` in torch's ``state_dict`` order and naming.

        ``variables``: ``Variables`` (from ``init``), a ``(params, buffers)`` pair, a
        ``TrainState``, or the params with ``buffers`` as second argument (see
        :func:`as_variables`: anything else, or trees lacking some of the model's keys, raises).
        An explicitly empty tree flattens only the other kind (``state_dict(grads, {})``).
        Non-persistent buffers are left out, as in torch.
        """
        params, buffers = as_variables(self, variables, buffers, where=f"{type(self).__name__}.state_dict")
        out: OrderedDict = OrderedDict()
        aliases = self._aliases()
        for path, name, spec in self._declarations():
            if isinstance(spec, Buffer) and not spec.persistent:
                continue
            tree = buffers if isinstance(spec, Buffer) else params
            source_path, source_name = aliases.get((path, name), (path, name))  # shared: the one array
            node = _context._lookup(tree, source_path)
            if source_name in node:
                out[".".join((*path, name))] = node[source_name]
        return out

    def load_state_dict(
        self,
        state_dict: dict,
        strict: bool = True,
        into: Variables | None = None,
    ) -> tuple[Variables, IncompatibleKeys]:
        """Build ``Variables`` from a flat state dict (funcnet's, torch's, numpy's).

        As in torch: missing and unexpected keys are collected and raise under
        ``strict=True``; a shape mismatch raises even with ``strict=False``;
        values are cast to each declaration's dtype. Entries the state dict
        lacks are taken from ``into`` (e.g. a fresh ``init``); without ``into``
        a missing key is an error even when not strict.

        Returns:
            ``(Variables(params, buffers), IncompatibleKeys(missing, unexpected))``.
        """
        expected = [
            (path, name, spec)
            for path, name, spec in self._declarations()
            if not (isinstance(spec, Buffer) and not spec.persistent)
        ]
        names = {".".join((*p, n)) for p, n, _ in expected}
        missing = [".".join((*p, n)) for p, n, _ in expected if ".".join((*p, n)) not in state_dict]
        unexpected = [k for k in state_dict if k not in names]
        errors = []
        for path, name, spec in expected:
            dotted = ".".join((*path, name))
            if dotted in state_dict:
                shape = tuple(np.shape(state_dict[dotted]))
                if shape != spec.shape and not (spec.shape == () and shape == (1,)):
                    errors.append(
                        f"size mismatch for {dotted}: copying a param with shape {shape} from "
                        f"checkpoint, the shape in current model is {spec.shape}."
                    )
        if strict:
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ". ")
            if unexpected:
                errors.insert(
                    1 if missing else 0,
                    "Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ". ",
                )
        if errors:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(errors)
            )
        if missing and into is None:
            raise RuntimeError(
                f"load_state_dict for {type(self).__name__}: {len(missing)} key(s) missing "
                f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}) and no "
                f"into=model.init(key) to take them from"
            )
        if into is not None:
            into = as_variables(self, into, where=f"{type(self).__name__}.load_state_dict(into=...)")
        aliases = self._aliases()
        state_dict = self._resolve_shared(state_dict, aliases)
        params: dict = {}
        buffers: dict = {}
        for path, name, spec in self._declarations():
            if (path, name) in aliases:
                continue  # a shared declaration: loaded once, under its first name
            dotted = ".".join((*path, name))
            target = buffers if isinstance(spec, Buffer) else params
            if dotted in state_dict:
                value = _rng.to_array(_to_numpy(state_dict[dotted]).reshape(spec.shape), spec.dtype)
            elif into is not None:
                source = into.buffers if isinstance(spec, Buffer) else into.params
                node = _context._lookup(source, path)
                if name not in node:
                    continue
                value = node[name]
            else:
                continue
            _context._assign(target, path, name, value)
        return Variables(params, buffers), IncompatibleKeys(missing, unexpected)

    def _resolve_shared(self, state_dict: dict, aliases: dict) -> dict:
        """Fold every shared declaration's entries into its first name. torch writes one tensor
        under each name; if a file holds different values under two names of one tensor, loading
        it would silently keep only one of them, so that is an error naming both keys."""
        if not aliases:
            return state_dict
        resolved = dict(state_dict)
        for (path, name), (first_path, first_name) in aliases.items():
            alias, first = ".".join((*path, name)), ".".join((*first_path, first_name))
            if alias not in state_dict:
                continue
            if first not in resolved:
                resolved[first] = state_dict[alias]
            elif not np.array_equal(_to_numpy(resolved[first]), _to_numpy(state_dict[alias])):
                raise RuntimeError(
                    f"Error(s) in loading state_dict for {type(self).__name__}: \"{alias}\" and "
                    f"\"{first}\" name one shared tensor in this model but hold different values"
                )
        return resolved

    # -- printing --------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The text inside the parentheses of ``repr`` (torch's ``extra_repr``)."""
        return ""

    def __repr__(self) -> str:
        lines = [line for line in self.extra_repr().split("\n") if line]
        for name, child in self.named_children():
            lines.append(f"({name}): " + _add_indent(repr(child), 2))
        main = type(self).__name__ + "("
        if lines:
            if len(lines) == 1 and not list(self.named_children()):
                main += lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"

    def summary(self) -> str:
        """A table of parameter counts and bytes per module, with totals.

        Counted from the declarations, so no arrays are needed.
        """
        from funcnet.nn.summary import summarize

        return summarize(self)

    def num_parameters(self) -> int:
        return sum(spec.numel() for _, spec in self.named_parameter_specs())

    # Modules are configuration: identity equality and hashing make them usable as
    # static arguments of jax.jit and as closure constants.
    __hash__ = object.__hash__
