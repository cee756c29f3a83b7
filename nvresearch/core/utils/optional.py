"""Import optional heavy dependencies lazily, with an error that says what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

_PIP_NAMES = {"cv2": "opencv-python-headless", "kornia": "kornia", "scipy": "scipy", "h5py": "h5py"}


def optional_import(module: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise an ``ImportError`` naming the pip package that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        pip_name = _PIP_NAMES.get(module.split(".")[0], module.split(".")[0])
        why = f" (needed for {purpose})" if purpose else ""
        raise ImportError(f"{module!r} is not installed{why}: pip install {pip_name}") from err
