"""VInterpDataModule: training pairs (source windows, target triplets) and the target domain's evaluation windows."""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.data import Dataset

from nvresearch.core.training import SplitDataModule, dataset_component

__all__ = ["VInterpDataModule"]


class VInterpDataModule(SplitDataModule):
    """Splits of a vinterp run, made by a dataset component.

    Args:
        dataset: called as ``dataset(split=split)`` it returns the split's dataset, e.g.
            :func:`~nvresearch.vinterp.data.sprite_world_split` as a ``_partial_`` config (``train``: items
            ``{"source": window, "target": triplet}``; ``val`` / ``test``: evaluation windows).
        batch_size / eval_batch_size / num_workers / seed / drop_last: see
            :class:`~nvresearch.core.training.SplitDataModule`.
    """

    def __init__(
        self,
        dataset: Callable[..., Dataset],
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, seed, drop_last)
        self.dataset = dataset_component(dataset, type(self).__name__)

    def make_split(self, split: str) -> Dataset:
        return self.dataset(split=split)
