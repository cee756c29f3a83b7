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
    when ``drop_last`` and the dataset holds at least one full batch. Under DDP each process gets its share of the
    same global order (see :class:`EpochSampler`), so the global batch is ``world_size x batch_size``.
    Evaluation: indices in order, nothing dropped; under DDP Lightning shards it with a ``DistributedSampler``,
    whose padding the modules leave out of their metrics (``NVModule.eval_keep_mask`` / ``gather_eval``).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(dataset)  # type: ignore[arg-type]
    sampler = EpochSampler(n, seed=seed) if train else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        # this process's share (all of it in one process), so that a small dataset still yields a batch under DDP
        drop_last=sampler is not None and drop_last and len(sampler) >= batch_size,
        num_workers=num_workers,
        persistent_workers=False,
        collate_fn=collate_fn,
    )
