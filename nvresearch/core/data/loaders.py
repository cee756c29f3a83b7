"""The one way the papers build their data loaders (torch-only)."""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.data import DataLoader, Dataset

from nvresearch.core.data.samplers import EpochSampler


def make_loader(
    dataset: Dataset,
    batch_size: int,
    train: bool,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = True,
    collate_fn: Callable | None = None,
) -> DataLoader:
    """A training loader over :class:`EpochSampler` keys, or a plain in-order evaluation loader.

    Training: the sampler yields ``(epoch, index)`` keys in an order fixed by ``(seed, epoch)``, so augmentation and
    order are a function of the seed alone and a resumed run sees the same stream; the last short batch is dropped
    when ``drop_last`` and the dataset holds at least one full batch. Evaluation: indices in order, nothing dropped.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(dataset)  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochSampler(n, seed=seed) if train else None,
        shuffle=False,
        drop_last=train and drop_last and n >= batch_size,
        num_workers=num_workers,
        persistent_workers=False,
        collate_fn=collate_fn,
    )
