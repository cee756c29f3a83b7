"""LightningDataModule for FUNIT: embedded creatures or a list-file dataset (Animal Faces, Birds, Flowers, Foods)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from nvresearch.core.training import SplitDataModule, dataset_component
from nvresearch.funit.data import TranslationPairs, unseen_split

__all__ = ["FUNITDataModule", "unseen_split"]


class FUNITDataModule(SplitDataModule):
    """Training pairs (content image, class image) of the source classes, and the few-shot evaluation data.

    Args:
        dataset: the dataset component: called as ``dataset(part, count)`` it returns the ``train`` images of the
            source classes, their unaugmented ``eval`` images (at least ``count``) or the ``unseen`` target classes
            (at most ``count`` per class), e.g. ``SyntheticCreatures.for_part`` or ``ListFileDataset.for_part`` as a
            ``_partial_`` config. Items are dicts with ``image`` and ``label`` (and ``pose`` for the creatures).
        batch_size: content batch = class batch (validation and test use the same).
        val_size: validation pairs. eval_content: content images (source classes, held out) translated at test.
        unseen_per_class: real images per unseen class used for evaluation (None: all), split into the classifier's
            training images and the pool the K shots are drawn from (``classifier_fraction``).
        num_classes: the number of source classes the discriminator is built for (the model config reads it as
            ``${data.num_classes}``); checked against the data at set-up.
        num_workers / seed: see :class:`~nvresearch.core.training.SplitDataModule`; ``seed`` also seeds the pairing
            and the evaluation subsets.
    """

    def __init__(
        self,
        dataset: Callable[..., Dataset],
        batch_size: int = 16,
        num_workers: int = 0,
        val_size: int = 32,
        eval_content: int = 64,
        unseen_per_class: int | None = 64,
        classifier_fraction: float = 0.5,
        num_classes: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, None, num_workers, seed)
        self.dataset = dataset_component(dataset, type(self).__name__)
        self.val_size, self.eval_content = int(val_size), int(eval_content)
        self.unseen_per_class, self.classifier_fraction = unseen_per_class, float(classifier_fraction)
        self.num_classes = num_classes
        self._parts: dict[str, Any] = {}
        self._fewshot: dict[str, Any] | None = None

    def _part(self, part: str) -> Any:
        """The dataset's ``part``, made once (validation and test share the ``eval`` images)."""
        if part not in self._parts:
            count = self.unseen_per_class if part == "unseen" else max(self.val_size, self.eval_content)
            ds = self.dataset(part, count)
            if part != "unseen" and self.num_classes is not None and self.num_classes != len(ds.classes):
                raise ValueError(
                    f"data.num_classes={self.num_classes} but the training data has {len(ds.classes)} source "
                    "classes; the discriminator needs one output per source class"
                )
            self._parts[part] = ds
        return self._parts[part]

    @property
    def num_source_classes(self) -> int:
        return len(self._part("eval").classes)

    def _eval_subset(self, ds: Dataset, n: int, salt: int) -> Dataset:
        g = torch.Generator().manual_seed(self.seed * 31 + salt)
        idx = torch.randperm(len(ds), generator=g)[: min(n, len(ds))].tolist()  # type: ignore[arg-type]
        return Subset(ds, idx)

    def make_split(self, split: str) -> Dataset:
        if split == "train":
            return TranslationPairs(self._part("train"), self.seed)
        if split == "val":
            return self._eval_subset(TranslationPairs(self._part("eval"), self.seed + 1), self.val_size, 1)
        return self._eval_subset(self._part("eval"), self.eval_content, 2)

    def collate_fn(self, split: str) -> Callable:
        return _collate

    def fewshot_data(self) -> dict[str, Any]:
        """Real images of the unseen target classes: ``classifier_images`` / ``classifier_labels`` to train the
        evaluation classifier, ``shot_pools`` (one ``(N_t, 3, S, S)`` tensor per class) to draw K shots from,
        ``num_classes``, and ``has_pose`` (whether content images carry a ground-truth pose)."""
        if self._fewshot is not None:
            return self._fewshot
        ds = self._part("unseen")
        labels_all = torch.as_tensor(ds.labels)
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
            "has_pose": "pose" in ds[0],
        }
        return self._fewshot


def _collate(items: list[dict[str, Tensor | int]]) -> dict[str, Tensor]:
    return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}
