"""SCOPSDataModule: the training, validation and test images of a SCOPS run, made by a dataset component."""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.data import Dataset

from nvresearch.core.training import SplitDataModule, dataset_component

__all__ = ["SCOPSDataModule"]


class SCOPSDataModule(SplitDataModule):
    """Splits of a SCOPS run.

    Args:
        dataset: called as ``dataset(split=split)`` it returns the split's dataset, e.g.
            :func:`~nvresearch.scops.data.part_objects_split` (the embedded world) or
            :func:`~nvresearch.scops.data.celeba_split` as a ``_partial_`` config. Items carry ``image`` and
            ``saliency``; ``labels`` (part ground truth) and ``landmarks`` are evaluated where present.
        batch_size / eval_batch_size / num_workers / seed / drop_last: see
            :class:`~nvresearch.core.training.SplitDataModule` (official batch size 6).
    """

    def __init__(
        self,
        dataset: Callable[..., Dataset],
        batch_size: int = 6,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, seed, drop_last)
        self.dataset = dataset_component(dataset, type(self).__name__)

    def make_split(self, split: str) -> Dataset:
        return self.dataset(split=split)
