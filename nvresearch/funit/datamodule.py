"""LightningDataModule for FUNIT: embedded creatures or a list-file dataset (Animal Faces, Birds, Flowers, Foods)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from nvresearch.core.data import make_loader
from nvresearch.funit.data import ListFileDataset, SyntheticCreatures, TranslationPairs

DATASETS = ("synthetic", "list")


def unseen_split(num_species: int, num_unseen: int) -> tuple[list[int], list[int]]:
    """Source and unseen species ids: the unseen ones evenly spaced (so their colours are far apart)."""
    if not 0 < num_unseen < num_species:
        raise ValueError(f"need 0 < num_unseen < num_species, got {num_unseen} and {num_species}")
    step = num_species / num_unseen
    unseen = sorted({int(step * i + step / 2) for i in range(num_unseen)})
    return [c for c in range(num_species) if c not in unseen], unseen


class FUNITDataModule(pl.LightningDataModule):
    """Training pairs (content image, class image) of the source classes, and the few-shot evaluation data.

    Args:
        dataset: ``synthetic`` (embedded creatures) or ``list`` (FUNIT list files under ``root``).
        root / train_list / test_list: ``list`` only: the image root, the source-class list (training) and the
            target-class list (unseen classes, never trained on).
        image_size / resize: crop size and the shorter side before cropping (list data: 128 / 140 as the reference).
        batch_size: content batch = class batch.
        num_species / num_unseen / images_per_class: ``synthetic`` only: species drawn, how many are held out as
            unseen targets, and training images per source species.
        val_size: validation pairs. eval_content: content images (source classes, held out) translated at test.
        unseen_per_class: real images per unseen class used for evaluation (None: all), split into the classifier's
            training images and the pool the K shots are drawn from (``classifier_fraction``).
        num_classes: the number of source classes the discriminator is built for (the model config reads it as
            ``${data.num_classes}``); checked against the data at set-up.
        seed: seeds the synthetic data and the training stream.
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str | None = None,
        train_list: str | None = None,
        test_list: str | None = None,
        image_size: int = 32,
        resize: int | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        num_species: int = 32,
        num_unseen: int = 8,
        images_per_class: int | None = 64,
        val_size: int = 32,
        eval_content: int = 64,
        unseen_per_class: int | None = 64,
        classifier_fraction: float = 0.5,
        num_classes: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {DATASETS}")
        if dataset == "list" and not (root and train_list and test_list):
            raise ValueError("dataset 'list' needs root=<image folder>, train_list=<file> and test_list=<file>")
        self.dataset, self.root, self.train_list, self.test_list = dataset, root, train_list, test_list
        self.image_size = int(image_size)
        self.resize = int(resize) if resize else self.image_size
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.num_species, self.num_unseen, self.images_per_class = int(num_species), int(num_unseen), images_per_class
        self.val_size, self.eval_content = int(val_size), int(eval_content)
        self.unseen_per_class, self.classifier_fraction = unseen_per_class, float(classifier_fraction)
        self.seed = int(seed)
        self.num_classes = num_classes
        self.splits: dict[str, Dataset] = {}
        self._fewshot: dict[str, Any] | None = None

    @property
    def num_source_classes(self) -> int:
        if self.dataset == "synthetic":
            return self.num_species - self.num_unseen
        return len(self._list("train", train=False).classes)

    def _list(self, which: str, train: bool) -> ListFileDataset:
        lst = self.train_list if which == "train" else self.test_list
        return ListFileDataset(str(self.root), str(lst), self.image_size, self.resize, train=train, seed=self.seed)

    def _synthetic(self, classes: list[int], per_class: int, offset: int) -> SyntheticCreatures:
        return SyntheticCreatures(
            classes, per_class, self.image_size, self.num_species, species_seed=self.seed, seed=self.seed * 10 + offset
        )

    def _eval_subset(self, ds: Dataset, n: int, salt: int) -> Dataset:
        g = torch.Generator().manual_seed(self.seed * 31 + salt)
        idx = torch.randperm(len(ds), generator=g)[: min(n, len(ds))].tolist()  # type: ignore[arg-type]
        return Subset(ds, idx)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        if self.num_classes is not None and self.num_classes != self.num_source_classes:
            raise ValueError(
                f"data.num_classes={self.num_classes} but the training data has {self.num_source_classes} source "
                "classes; the discriminator needs one output per source class"
            )
        if self.dataset == "synthetic":
            source, _ = unseen_split(self.num_species, self.num_unseen)
            self.splits["train"] = TranslationPairs(self._synthetic(source, int(self.images_per_class), 0), self.seed)
            per = max(1, -(-max(self.val_size, self.eval_content) // len(source)))
            held_out = self._synthetic(source, per, 1)
            self.splits["val"] = self._eval_subset(TranslationPairs(held_out, self.seed + 1), self.val_size, 1)
            self.splits["test"] = self._eval_subset(held_out, self.eval_content, 2)
        else:
            self.splits["train"] = TranslationPairs(self._list("train", train=True), self.seed)
            eval_view = self._list("train", train=False)
            self.splits["val"] = self._eval_subset(TranslationPairs(eval_view, self.seed + 1), self.val_size, 1)
            self.splits["test"] = self._eval_subset(eval_view, self.eval_content, 2)

    def fewshot_data(self) -> dict[str, Any]:
        """Real images of the unseen target classes: ``classifier_images`` / ``classifier_labels`` to train the
        evaluation classifier, ``shot_pools`` (one ``(N_t, 3, S, S)`` tensor per class) to draw K shots from,
        ``num_classes``, and ``has_pose`` (whether content images carry a ground-truth pose)."""
        if self._fewshot is not None:
            return self._fewshot
        if self.dataset == "synthetic":
            _, unseen = unseen_split(self.num_species, self.num_unseen)
            ds: Any = self._synthetic(unseen, int(self.unseen_per_class or 64), 3)
            images, labels = ds.images, ds.labels
        else:
            ds = self._list("test", train=False)
            labels_all = torch.tensor(ds.labels)
            keep = []
            for c in range(len(ds.classes)):
                idx = (labels_all == c).nonzero().flatten()
                keep.append(idx[: self.unseen_per_class] if self.unseen_per_class else idx)
            order = torch.cat(keep).tolist()
            images = torch.stack([ds[i]["image"] for i in order])
            labels = labels_all[order]
        num_classes = int(labels.max()) + 1
        cls_x, cls_y, pools = [], [], []
        for c in range(num_classes):
            x = images[labels == c]
            n_cls = int(round(self.classifier_fraction * x.shape[0]))
            if n_cls < 1 or n_cls >= x.shape[0]:
                raise ValueError(f"unseen class {c} has {x.shape[0]} images: too few to split for evaluation")
            cls_x.append(x[:n_cls])
            cls_y.append(torch.full((n_cls,), c))
            pools.append(x[n_cls:])
        self._fewshot = {
            "classifier_images": torch.cat(cls_x),
            "classifier_labels": torch.cat(cls_y),
            "shot_pools": pools,
            "num_classes": num_classes,
            "has_pose": self.dataset == "synthetic",
        }
        return self._fewshot

    def _loader(self, split: str) -> DataLoader:
        return make_loader(
            self.splits[split], self.batch_size, split == "train", self.seed, self.num_workers, collate_fn=_collate
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


def _collate(items: list[dict[str, Tensor | int]]) -> dict[str, Tensor]:
    return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}
