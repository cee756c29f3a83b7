"""LightningDataModule for the Taylor-pruning experiments: digits (embedded), MNIST, CIFAR-10 or ImageNet."""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.data import Dataset

from nvresearch.core.training import SplitDataModule, dataset_component


class ClassificationDataModule(SplitDataModule):
    """Train/val/test splits of one classification dataset.

    Args:
        dataset: the dataset component: called as ``dataset(split=...)`` it returns that split, e.g.
            ``Digits.for_split`` (embedded: scikit-learn's digits), ``MnistIdx.for_split``, ``Cifar10.for_split``
            or ``image_folder_split`` (ImageNet) as a ``_partial_`` config. The real datasets have no separate
            validation split in the reference: MNIST/CIFAR-10 validate on their test set, ImageNet on ``val``.
        batch_size / num_workers / drop_last / seed: see :class:`~nvresearch.core.training.SplitDataModule`
            (one batch size for every split, as the reference).
    """

    def __init__(
        self,
        dataset: Callable[..., Dataset],
        batch_size: int = 64,
        num_workers: int = 0,
        drop_last: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, None, num_workers, seed, drop_last)
        self.dataset = dataset_component(dataset, type(self).__name__)

    def make_split(self, split: str) -> Dataset:
        return self.dataset(split=split)
