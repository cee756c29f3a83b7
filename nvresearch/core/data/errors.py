"""One error type for datasets that are missing or not in the layout a loader expects."""

from __future__ import annotations

from pathlib import Path


class DatasetLayoutError(FileNotFoundError):
    """A dataset root or file is missing or malformed; the message names the path and the expected layout."""


def require_path(path: str | Path, layout: str, what: str = "dataset") -> Path:
    """Return ``path`` as a ``Path`` if it exists, else raise :class:`DatasetLayoutError` describing ``layout``."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetLayoutError(f"{what} not found at '{p}'. Expected layout:\n{layout}")
    return p
