"""LightningDataModule for segmentation: embedded synthetic scenes or PASCAL VOC 2012 (+ SBD)."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from nvresearch.core.data import MemoryCache, make_loader
from nvresearch.pac.segmentation.data import SegmentationDataset, SyntheticSegmentation, VOCSegmentation

DATASETS = ("synthetic", "voc")


class SegmentationDataModule(pl.LightningDataModule):
    """Train/val/test splits for semantic segmentation.

    Args:
        dataset: ``synthetic`` (embedded, procedural) or ``voc`` (VOC 2012 and SBD under ``root``).
        root: Folder holding ``VOCdevkit/`` and ``benchmark_RELEASE/`` (``voc`` only).
        train_split / val_split / test_split: VOC split names or id files (see
            :class:`~nvresearch.pac.segmentation.data.VOCSegmentation`); the reference trains on ``train11`` and reports
            ``val11_sbd`` (``seg11valid.txt``).
        num_classes: Classes including background (``synthetic`` only; VOC has 21).
        crop: Training crop (449 for VOC).
        test_crop: Evaluation crop (None: whole images, batch size 1 for VOC).
        train_size / val_size / test_size / image_size: Synthetic images per split and their size.
        seed: Seeds the synthetic scenes (disjoint per split) and the training stream.
        cache_synthetic: Keep the synthetic images in memory once rendered (:class:`MemoryCache`), so that each
            is rendered once instead of once per epoch.
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "val",
        num_classes: int = 5,
        crop: int | None = 64,
        test_crop: int | None = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        train_size: int | None = 256,
        val_size: int | None = 32,
        test_size: int | None = 64,
        image_size: int | None = 64,
        seed: int = 0,
        cache_synthetic: bool = True,
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {DATASETS}")
        if dataset == "voc" and not root:
            raise ValueError("dataset 'voc' needs root=<folder holding VOCdevkit/ and benchmark_RELEASE/>")
        self.dataset, self.root = dataset, root
        self.split_names = {"train": train_split, "val": val_split, "test": test_split}
        self.num_classes, self.crop, self.test_crop = int(num_classes), crop, test_crop
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.eval_batch_size = eval_batch_size or (1 if dataset == "voc" and test_crop is None else self.batch_size)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.image_size, self.seed = image_size, int(seed)
        self.cache_synthetic = bool(cache_synthetic)
        self.splits: dict[str, Dataset] = {}

    def _base(self, split: str) -> Dataset:
        if self.dataset == "voc":
            return VOCSegmentation(self.root, self.split_names[split])  # type: ignore[arg-type]
        offset = {"train": 0, "val": 1, "test": 2}[split]
        base = SyntheticSegmentation(
            int(self.sizes[split]), int(self.image_size), self.num_classes, seed=self.seed * 10 + offset
        )
        return MemoryCache(base) if self.cache_synthetic else base

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage, ("train", "val", "test")) if stage else ("train", "val", "test"):
            if split not in self.splits:
                train = split == "train"
                crop = self.crop if train else self.test_crop
                self.splits[split] = SegmentationDataset(self._base(split), crop=crop, train=train, seed=self.seed)

    def _loader(self, split: str) -> DataLoader:
        train = split == "train"
        batch_size = self.batch_size if train else self.eval_batch_size
        return make_loader(self.splits[split], batch_size, train, self.seed, self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
