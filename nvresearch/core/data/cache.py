"""Keep the items of a deterministic dataset in memory after their first access (torch-only)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor
from torch.utils.data import Dataset


class MemoryCache(Dataset):
    """Wraps a dataset whose item ``i`` is always the same (a procedural dataset drawn from ``(seed, i)``) and keeps
    each item after it is first built, so a multi-epoch run renders every scene once.

    The cache is per process: with ``num_workers > 0`` each worker fills its own copy, and workers that are not
    persistent start empty every epoch, so it pays in the main process (``num_workers=0``, the CPU default). Items
    must be dicts of tensors; the stored tensors are handed out as they are, so consumers must not modify them in
    place (crop, flip and convert into new tensors, as the papers' sample wrappers do).

    Args:
        base: The deterministic dataset.
        max_items: Keep at most this many items (later ones are rebuilt on every access); ``None`` keeps all.
    """

    def __init__(self, base: Dataset, max_items: int | None = None) -> None:
        if max_items is not None and max_items < 0:
            raise ValueError(f"max_items must be >= 0 or None, got {max_items}")
        self.base = base
        self.max_items = max_items
        self._items: dict[int, Mapping[str, Tensor]] = {}

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Mapping[str, Tensor]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} items")
        index %= n
        item = self._items.get(index)
        if item is None:
            item = self.base[index]
            if self.max_items is None or len(self._items) < self.max_items:
                self._items[index] = item
        return item

    def __getattr__(self, name: str) -> object:
        # attributes of the wrapped dataset (num_scenes, seed, ...) stay reachable
        if name in ("base", "max_items", "_items"):
            raise AttributeError(name)
        return getattr(self.base, name)
