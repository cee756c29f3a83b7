"""nvresearch: ten NVIDIA computer-vision papers from 2019 on current PyTorch.

Importing this package is cheap: it imports nothing heavy. Paper subpackages load on first access
(``nvresearch.pac``), or import them directly (``from nvresearch.pac import PacConv2d``).
"""

from __future__ import annotations

import importlib
from typing import Any

from nvresearch._version import __version__ as __version__

PAPERS: tuple[str, ...] = (
    "pac",
    "funit",
    "taylor",
    "faze",
    "vinterp",
    "scops",
    "dgnet",
)
"""Slugs of the papers that are implemented (each is a subpackage ``nvresearch.<slug>``)."""

_SUBPACKAGES = {"core", *PAPERS}


def __getattr__(name: str) -> Any:  # PEP 562: lazy subpackages
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
