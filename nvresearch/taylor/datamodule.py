"""LightningDataModule for the Taylor-pruning experiments: digits (embedded), MNIST, CIFAR-10 or ImageNet."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from nvresearch.core.data import make_loader
from nvresearch.taylor.data import Cifar10, Digits, MnistIdx, image_folder

DATASETS = ("digits", "mnist", "cifar10", "imagenet")


class ClassificationDataModule(pl.LightningDataModule):
    """Train/val/test splits of one classification dataset.

    Args:
        dataset: ``digits`` (embedded: scikit-learn's digits), ``mnist`` (idx files), ``cifar10`` (pickles) or
            ``imagenet`` (ImageFolder ``train``/``val``).
        root: Dataset folder (not used for ``digits``).
        image_size: Digits: side after resizing (8 = native, 28 for LeNet); ImageNet: crop size (224).
        augment: CIFAR-10 random crop + flip (the reference's ``--augment``); digits: 1-pixel shifts + flips.
        train_size / val_size: Digits split sizes (the rest is the test split).
        seed: Seeds the split, the training order and the augmentation.

    The real datasets have no separate validation split in the reference: MNIST/CIFAR-10 validate on their test
    set, ImageNet on ``val``.
    """

    def __init__(
        self,
        dataset: str = "digits",
        root: str | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        image_size: int = 8,
        augment: bool = False,
        train_size: int = 1200,
        val_size: int = 200,
        drop_last: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {DATASETS}")
        if dataset != "digits" and not root:
            raise ValueError(f"dataset {dataset!r} needs root=<folder> (paths.data_dir=...)")
        self.dataset, self.root = dataset, root
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.image_size, self.augment = int(image_size), bool(augment)
        self.train_size, self.val_size, self.drop_last, self.seed = int(train_size), int(val_size), drop_last, int(seed)
        self.splits: dict[str, Dataset] = {}

    def _make(self, split: str) -> Dataset:
        train = split == "train"
        if self.dataset == "digits":
            return Digits(split, self.image_size, self.train_size, self.val_size, self.seed, self.augment and train)
        if self.dataset == "mnist":
            return MnistIdx(self.root, train=train)
        if self.dataset == "cifar10":
            return Cifar10(self.root, train=train, augment=self.augment and train, seed=self.seed)
        return image_folder(self.root, "train" if train else "val", seed=self.seed, image_size=self.image_size)

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage or "", None)
        for split in wanted or ("train", "val", "test"):
            if split not in self.splits:
                self.splits[split] = self._make(split)

    def _loader(self, split: str) -> DataLoader:
        return make_loader(
            self.splits[split], self.batch_size, split == "train", self.seed, self.num_workers, self.drop_last
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
