"""Build objects from ``_target_`` dictionaries without Hydra.

The training entry point and :func:`nvresearch.core.training.load_checkpoint` share this one code path, so a
checkpoint's embedded config rebuilds exactly the objects the run trained. It understands the subset of Hydra's
instantiate syntax our configs use: ``_target_``, ``_partial_``, ``_args_`` and nested dicts/lists.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping, Sequence
from typing import Any

_RESERVED = {"_target_", "_partial_", "_args_", "_recursive_", "_convert_"}


def locate(path: str) -> Any:
    """Import ``"package.module.Attr.sub"`` and return the object it names."""
    if not isinstance(path, str) or not path or path.startswith(".") or ".." in path:
        raise ValueError(f"invalid import path {path!r}")
    parts = path.split(".")
    obj: Any = None
    n_module = 0
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        try:
            obj = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:  # the module exists but one of its own imports is missing: report that
                raise
            break
        n_module = i
    if n_module == 0:
        raise ImportError(f"cannot import {path!r}: no module named {parts[0]!r}")
    for attr in parts[n_module:]:
        if not hasattr(obj, attr):
            raise ImportError(f"cannot import {path!r}: {'.'.join(parts[:n_module])!r} has no attribute {attr!r}")
        obj = getattr(obj, attr)
    return obj


def _to_plain(node: Any) -> Any:
    """OmegaConf containers become plain dicts/lists (resolved) so the builder sees one kind of tree."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf  # only present when Hydra is installed
    except ImportError:  # pragma: no cover - omegaconf is a dependency of the training extra
        return node
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node


def instantiate(config: Any, *args: Any, allowed_prefixes: Sequence[str] | None = None, **overrides: Any) -> Any:
    """Recursively build the object described by ``config``.

    Args:
        config: a mapping with ``_target_`` (an import path), optional ``_partial_: true`` (return a
            ``functools.partial`` instead of calling) and ``_args_`` (positional arguments); other keys are keyword
            arguments, built recursively. Lists and plain mappings are walked; other values pass through.
        *args: extra positional arguments appended after ``_args_`` for the top-level call.
        allowed_prefixes: when given, every ``_target_`` must start with one of these prefixes, otherwise a
            ``PermissionError`` is raised before anything is imported (used for configs read from checkpoints).
        **overrides: keyword arguments that replace or extend the top-level config's.
    """
    config = _to_plain(config)
    if not isinstance(config, Mapping) or "_target_" not in config:
        raise ValueError(f"instantiate() needs a mapping with a '_target_' key, got {type(config).__name__}")
    return _build(config, allowed_prefixes, args, overrides)


def _build(node: Any, allowed: Sequence[str] | None, extra_args: tuple = (), overrides: Mapping | None = None) -> Any:
    if isinstance(node, Mapping):
        if "_target_" not in node:
            return {k: _build(v, allowed) for k, v in node.items()}
        target = node["_target_"]
        if allowed is not None and not any(str(target).startswith(p) for p in allowed):
            raise PermissionError(
                f"refusing to build {target!r}: only targets under {list(allowed)} may be built from this config"
            )
        fn = locate(target)
        args = [_build(a, allowed) for a in node.get("_args_", [])] + list(extra_args)
        kwargs = {k: _build(v, allowed) for k, v in node.items() if k not in _RESERVED}
        kwargs.update(overrides or {})
        if node.get("_partial_", False):
            return functools.partial(fn, *args, **kwargs)
        return fn(*args, **kwargs)
    if isinstance(node, (list, tuple)):
        return [_build(v, allowed) for v in node]
    return node
