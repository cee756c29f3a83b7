"""Samplers whose order depends only on (seed, epoch), so a resumed run sees exactly the batches it would have."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` keys in an order fixed by ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every training epoch. Datasets that accept these keys (see
    :func:`split_epoch_key`) can seed their per-sample augmentation from ``(seed, epoch, index)``; the whole
    training stream is then a function of the seed alone, independent of the global RNG, of the number of
    data workers and of whether the run was interrupted and resumed.
    """

    def __init__(self, length: int, seed: int = 0, shuffle: bool = True) -> None:
        if length <= 0:
            raise ValueError(f"EpochSampler needs a non-empty dataset, got length {length}")
        self.length = int(length)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = range(self.length)
        epoch = self.epoch
        return iter([(epoch, i) for i in order])


def split_epoch_key(key: int | tuple[int, int], default_epoch: int = 0) -> tuple[int, int]:
    """Turn a dataset key into ``(epoch, index)``; plain integer keys get ``default_epoch``."""
    if isinstance(key, tuple):
        epoch, index = key
        return int(epoch), int(index)
    return int(default_epoch), int(key)
