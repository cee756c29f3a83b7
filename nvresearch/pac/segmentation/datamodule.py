"""LightningDataModule for segmentation: embedded synthetic scenes or PASCAL VOC 2012 (+ SBD)."""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.data import Dataset

from nvresearch.core.training import SplitDataModule, dataset_component
from nvresearch.pac.segmentation.data import SegmentationDataset


class SegmentationDataModule(SplitDataModule):
    """Train/val/test splits for semantic segmentation.

    Args:
        dataset: the dataset component: called as ``dataset(split=...)`` it returns that split's images and labels,
            e.g. ``SyntheticSegmentation.for_split`` or ``VOCSegmentation.for_split`` as a ``_partial_`` config.
        num_classes: classes including background; the model config reads it (``${data.num_classes}``), so it is
            accepted here and not used by the data module itself.
        crop: training crop (449 for VOC).
        test_crop: evaluation crop (None: whole images; then VOC needs ``eval_batch_size: 1``).
        batch_size / eval_batch_size / num_workers / seed: see :class:`~nvresearch.core.training.SplitDataModule`;
            ``seed`` also seeds the training crops.
    """

    def __init__(
        self,
        dataset: Callable[..., Dataset],
        num_classes: int = 5,
        crop: int | None = 64,
        test_crop: int | None = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, seed)
        self.dataset = dataset_component(dataset, type(self).__name__)
        self.num_classes, self.crop, self.test_crop = int(num_classes), crop, test_crop

    def make_split(self, split: str) -> Dataset:
        train = split == "train"
        crop = self.crop if train else self.test_crop
        return SegmentationDataset(self.dataset(split=split), crop=crop, train=train, seed=self.seed)
