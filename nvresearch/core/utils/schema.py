"""Check a composed config against the signatures of the classes it names, before anything is built.

A value of the wrong type (``data.batch_size=abc``) would otherwise fail deep inside a constructor, or after the
model summary inside Lightning. :func:`check_config` walks every ``_target_`` node, compares each argument with the
target's type annotations and raises one :class:`ConfigError` that names the full key, the expected type and the
value. Torch-free and Hydra-free: it takes a plain mapping or an OmegaConf ``DictConfig``.
"""

from __future__ import annotations

import collections.abc as cabc
import enum
import inspect
import os
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import PurePath
from typing import Any

from nvresearch.core.utils.instantiate import locate

__all__ = ["ConfigError", "check_config", "config_problems"]

_RESERVED = {"_target_", "_partial_", "_args_", "_recursive_", "_convert_"}
_CANNOT_JUDGE = object()  # the annotation says nothing a config value could be checked against


class ConfigError(ValueError):
    """A config entry that cannot work: wrong type, unknown key, missing ``_target_``. The message names the key."""


def check_config(config: Any) -> None:
    """Raise :class:`ConfigError` for the first entry whose value does not fit its target's signature.

    Args:
        config: the composed config (a mapping or ``DictConfig``). Interpolations (``${...}``) are not judged where
            they are used but where their value is written; ``???`` (missing) values are skipped.

    Raises:
        ConfigError: ``"<key>: expected <type>, got <value>"`` or ``"<key>: unknown key for <target> (...)"``.
    """
    problems = config_problems(config)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more)


def config_problems(config: Any) -> list[str]:
    """All problems :func:`check_config` would report, one line each, in config order."""
    return list(_walk(_to_plain(config), ""))


def _to_plain(node: Any) -> Any:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf comes with the training extra
        return node
    if isinstance(node, (DictConfig, ListConfig)):
        # Unresolved: an interpolation stays a "${...}" string and is judged at its source, not at each use.
        return OmegaConf.to_container(node, resolve=False)
    return node


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _walk(node: Any, key: str) -> Iterator[str]:
    if isinstance(node, Mapping):
        if "_target_" in node:
            yield from _check_target(node, key)
        for k, v in node.items():
            if k not in _RESERVED:
                yield from _walk(v, _join(key, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{key}[{i}]")


def _signature(target: str) -> tuple[inspect.Signature, dict[str, Any]] | None:
    try:
        fn = locate(target)
    except (ImportError, ValueError):
        return None  # instantiate() reports an unknown target with its own clear message
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no introspectable signature
        return None
    # A class's arguments may be declared on __new__ (a factory) or __init__; the signature picks the right one.
    hints: dict[str, Any] = {}
    for part in (fn.__new__, fn.__init__) if inspect.isclass(fn) else (fn,):
        try:
            hints.update(typing.get_type_hints(part))
        except Exception:  # noqa: BLE001, S112 - unresolvable forward references: judge nothing rather than guess
            continue
    return sig, hints


def _check_target(node: Mapping[str, Any], key: str) -> Iterator[str]:
    target = node["_target_"]
    found = _signature(str(target))
    if found is None:
        return
    sig, hints = found
    params = sig.parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = {
        n for n, p in params.items() if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }
    for name, value in node.items():
        if name in _RESERVED:
            continue
        full = _join(key, name)
        if name not in named:
            if not var_kw:
                yield f"{full}: unknown key for {target} (it takes: {', '.join(sorted(named)) or 'no arguments'})"
            continue
        if name not in hints or _skip_value(value):
            continue
        if _matches(value, hints[name]) is False:
            yield f"{full}: expected {_type_name(hints[name])}, got {value!r}"


def _skip_value(value: Any) -> bool:
    """Values judged elsewhere: nested ``_target_`` nodes, interpolations, missing (``???``)."""
    if isinstance(value, Mapping) and "_target_" in value:
        return True
    return isinstance(value, str) and ("${" in value or value == "???")


def _matches(value: Any, hint: Any) -> bool | object:
    """True/False when the annotation can judge the value, ``_CANNOT_JUDGE`` otherwise."""
    if hint is Any or hint is object or isinstance(hint, (typing.TypeVar, str)):
        return _CANNOT_JUDGE
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        return _matches(value, args[0])
    if origin is typing.Union or origin is types.UnionType:
        results = [_matches(value, a) for a in args]
        if any(r is True for r in results):
            return True
        return _CANNOT_JUDGE if any(r is _CANNOT_JUDGE for r in results) else False
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin is not None:
        return _matches_generic(value, origin, args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if not isinstance(hint, type):
        return _CANNOT_JUDGE
    if issubclass(hint, (PurePath, os.PathLike)):
        return isinstance(value, (str, PurePath))
    if issubclass(hint, enum.Enum):
        return any(value in (m.value, m.name) for m in hint)
    if hint in (list, tuple, cabc.Sequence):
        return isinstance(value, (list, tuple))
    if hint in (dict, cabc.Mapping):
        return isinstance(value, Mapping)
    if isinstance(value, (bool, int, float, str, type(None), list, Mapping)):
        # A config holds only primitives: a primitive for a class annotation fits only if it is an instance (rare);
        # classes that are callables (functions, partials) were filtered out above.
        return True if isinstance(value, hint) else (_CANNOT_JUDGE if _is_callable_hint(hint) else False)
    return _CANNOT_JUDGE


def _is_callable_hint(hint: type) -> bool:
    return hint is cabc.Callable or issubclass(hint, cabc.Callable)  # type: ignore[arg-type]


def _matches_generic(value: Any, origin: Any, args: tuple[Any, ...]) -> bool | object:
    if origin is cabc.Callable or origin is type:
        return _CANNOT_JUDGE
    if origin in (list, cabc.Sequence, cabc.MutableSequence, set, frozenset, cabc.Set, cabc.Iterable, cabc.Collection):
        if not isinstance(value, (list, tuple)):
            return False if origin is not cabc.Iterable else _CANNOT_JUDGE
        return _all_match(value, args[0] if args else Any)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return _all_match(value, args[0])
        if args and len(args) != len(value):
            return False
        results = [_matches(v, a) for v, a in zip(value, args, strict=False)]
        return False if any(r is False for r in results) else True
    if origin in (dict, cabc.Mapping, cabc.MutableMapping):
        if not isinstance(value, Mapping):
            return False
        return _all_match(list(value.values()), args[1] if len(args) == 2 else Any)
    return _CANNOT_JUDGE


def _all_match(values: Any, hint: Any) -> bool | object:
    results = [_matches(v, hint) for v in values if not _skip_value(v)]
    return False if any(r is False for r in results) else True


def _type_name(hint: Any) -> str:
    if hint is type(None) or hint is None:
        return "None"
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join('...' if a is Ellipsis else _type_name(a) for a in args)}]" if args else name
    return getattr(hint, "__name__", str(hint))
