"""DGNetDataModule: the training pairs and the query + gallery sets of a DG-Net run, made by a dataset component."""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.data import Dataset

from nvresearch.core.training import SplitDataModule, dataset_component

__all__ = ["DGNetDataModule"]


class DGNetDataModule(SplitDataModule):
    """Splits of a DG-Net run.

    Args:
        dataset: called as ``dataset(split=split)`` it returns the split's dataset, e.g.
            :func:`~nvresearch.dgnet.data.persons_split` (the embedded world) or
            :func:`~nvresearch.dgnet.data.reid_split` (Market-1501, Duke, MSMT17) as a ``_partial_`` config:
            ``train`` items ``{"image", "label", "positive"}``, ``val`` / ``test`` query then gallery items
            ``{"image", "label", "camera", "is_query"}``.
        batch_size: training batch size; each batch is cut into the two halves ``x_a`` and ``x_b`` (official: two
            loaders of 8 each, so ``batch_size: 16``). Must be even.
        eval_batch_size / num_workers / seed / drop_last: see :class:`~nvresearch.core.training.SplitDataModule`.
    """

    def __init__(
        self,
        dataset: Callable[..., Dataset],
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        if batch_size < 2 or batch_size % 2:
            raise ValueError(f"data.batch_size must be even (two halves x_a, x_b), got {batch_size}")
        super().__init__(batch_size, eval_batch_size, num_workers, seed, drop_last)
        self.dataset = dataset_component(dataset, type(self).__name__)

    def make_split(self, split: str) -> Dataset:
        return self.dataset(split=split)
