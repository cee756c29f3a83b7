"""Samplers whose order depends only on (seed, epoch), so a resumed run sees exactly the batches it would have."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler


class EpochSampler(DistributedSampler):
    """Yields ``(epoch, index)`` keys in an order fixed by ``(seed, epoch)``, sharded over the processes of a run.

    Lightning calls :meth:`set_epoch` before every training epoch. Datasets that accept these keys (see
    :func:`split_epoch_key`) can seed their per-sample augmentation from ``(seed, epoch, index)``; the whole
    training stream is then a function of the seed alone, independent of the global RNG, of the number of
    data workers and of whether the run was interrupted and resumed.

    Under data parallelism (``torch.distributed`` initialised when the loader is iterated, or ``num_replicas`` /
    ``rank`` given) every process draws the same global order and takes every ``num_replicas``-th key from
    position ``rank``, after the order is cut to a multiple of ``num_replicas`` (so all processes run the same number
    of steps). Batch ``k`` of the ``W`` processes together is then exactly batch ``k`` of one process whose batch is
    ``W`` times larger, augmentation included. It subclasses :class:`~torch.utils.data.DistributedSampler` only so
    that Lightning leaves it in place instead of wrapping it in a sampler of its own, which would re-shuffle the
    order and hide the epoch from it.

    Args:
        length: Dataset size.
        seed: Seed of the order.
        shuffle: Shuffle (else the natural order).
        num_replicas / rank: The data-parallel group; ``None``: read from ``torch.distributed`` (1 and 0 without it).
    """

    def __init__(
        self, length: int, seed: int = 0, shuffle: bool = True, num_replicas: int | None = None, rank: int | None = None
    ) -> None:
        # DistributedSampler.__init__ is not called: it requires an initialised process group at construction,
        # whereas data modules build their loaders before or after it exists.
        if length <= 0:
            raise ValueError(f"EpochSampler needs a non-empty dataset, got length {length}")
        if (num_replicas is None) != (rank is None):
            raise ValueError(f"give both num_replicas and rank or neither, got {num_replicas} and {rank}")
        if num_replicas is not None and not 0 <= int(rank) < int(num_replicas):  # type: ignore[arg-type]
            raise ValueError(f"rank must be in [0, num_replicas={num_replicas}), got {rank}")
        self.length = int(length)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0
        self.drop_last = True
        self._replicas = None if num_replicas is None else (int(num_replicas), int(rank))  # type: ignore[arg-type]

    @property
    def replicas(self) -> tuple[int, int]:
        """``(num_replicas, rank)`` of the sharding in effect now."""
        if self._replicas is not None:
            return self._replicas
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
        return 1, 0

    @property
    def num_replicas(self) -> int:  # type: ignore[override]
        return self.replicas[0]

    @property
    def rank(self) -> int:  # type: ignore[override]
        return self.replicas[1]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length // self.num_replicas

    def __iter__(self) -> Iterator[tuple[int, int]]:
        world, rank = self.replicas
        if self.length < world:
            raise ValueError(f"EpochSampler: {self.length} items cannot be shared by {world} processes")
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        order = order[: len(self) * world][rank::world]
        epoch = self.epoch
        return iter([(epoch, i) for i in order])


def split_epoch_key(key: int | tuple[int, int], default_epoch: int = 0) -> tuple[int, int]:
    """Turn a dataset key into ``(epoch, index)``; plain integer keys get ``default_epoch``."""
    if isinstance(key, tuple):
        epoch, index = key
        return int(epoch), int(index)
    return int(default_epoch), int(key)


_SPLIT_OFFSETS = {"train": 0, "val": 1, "test": 2}


def split_seed(seed: int, split: str) -> int:
    """The seed of one split of a procedural dataset: ``seed * 10 + 0/1/2`` for train/val/test (disjoint draws)."""
    if split not in _SPLIT_OFFSETS:
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    return int(seed) * 10 + _SPLIT_OFFSETS[split]
