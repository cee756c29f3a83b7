"""Training glue shared by every paper: the LightningModule base, checkpoints, the run loop.

The package's names are resolved on first use, so that the torch-only modules inside it (``checkpoint`` and
``errors``: reading a checkpoint safely, the user-error types) can be imported by the paper packages' user commands
without importing Lightning; ``module``, ``datamodule``, ``run`` and ``callbacks`` do import it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "CheckpointError": "checkpoint",
    "load_checkpoint": "checkpoint",
    "read_checkpoint": "checkpoint",
    "SplitDataModule": "datamodule",
    "dataset_component": "datamodule",
    "NVModule": "module",
    "NonFiniteLossError": "module",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # PEP 562: import the submodule that defines ``name`` only when it is asked for
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
