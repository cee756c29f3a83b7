"""LightningDataModule for joint upsampling: depth (synthetic scenes, NYU Depth v2) and flow (synthetic, Sintel)."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from nvresearch.core.data import MemoryCache, make_loader
from nvresearch.pac.upsampling.data import JointUpsamplingDataset, NYUDepthV2, SintelFlow, SyntheticFlow, SyntheticRGBD

DATASETS = ("synthetic", "nyu", "synthetic_flow", "sintel")
_FLOW = ("synthetic_flow", "sintel")


class JointUpsamplingDataModule(pl.LightningDataModule):
    """Train/val/test splits for joint upsampling by ``factor``.

    Args:
        dataset: ``synthetic`` (embedded RGB-D scenes), ``nyu`` (NYU Depth v2 labelled subset), ``synthetic_flow``
            (embedded optical-flow scenes) or ``sintel`` (MPI Sintel, first frames and forward flow).
        root: folder holding ``nyu_depth_v2_labeled.mat`` (``nyu``) or the extracted ``MPI-Sintel-complete``
            (``sintel``).
        sintel_pass: ``clean``, ``final`` or ``albedo`` (``sintel`` only).
        split_file: optional ``Sintel_train_val.txt`` (``sintel`` only; default: the reference's split rule).
        factor: upsampling factor (a power of two).
        crop: training crop size (a multiple of ``factor``); evaluation uses whole images.
        lowres_mode: how the LR input is made from the HR depth (``center``: point subsampling, the NYU protocol).
        eval_border / metric_scale: the evaluation protocol of this data; the model config reads them
            (``${data.eval_border}``), so they are accepted here and not used by the data module itself.
        train_size / val_size / test_size / scene_height / scene_width: synthetic scenes per split and their size.
        val_ratio: NYU only, the fraction of the 1000 training images held out for validation.
        seed: seeds the synthetic scenes (train, val and test use disjoint seeds) and the training stream.
        cache_synthetic: keep the synthetic scenes in memory once rendered (:class:`MemoryCache`; about 0.25 MB a
            128x128 scene), so that each is rendered once instead of once per epoch.
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str | None = None,
        factor: int = 8,
        crop: int | None = 64,
        batch_size: int = 8,
        num_workers: int = 0,
        lowres_mode: str = "center",
        eval_border: int = 0,
        metric_scale: float = 1.0,
        train_size: int | None = 512,
        val_size: int | None = 16,
        test_size: int | None = 64,
        scene_height: int | None = 128,
        scene_width: int | None = 128,
        val_ratio: float = 0.0,
        seed: int = 0,
        sintel_pass: str = "clean",
        split_file: str | None = None,
        cache_synthetic: bool = True,
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {DATASETS}")
        if dataset == "nyu" and not root:
            raise ValueError("dataset 'nyu' needs root=<folder holding nyu_depth_v2_labeled.mat>")
        if dataset == "sintel" and not root:
            raise ValueError("dataset 'sintel' needs root=<the extracted MPI-Sintel-complete folder>")
        self.sintel_pass, self.split_file = sintel_pass, split_file
        self.dataset, self.root, self.factor, self.crop = dataset, root, int(factor), crop
        self.batch_size, self.num_workers, self.lowres_mode = int(batch_size), int(num_workers), lowres_mode
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.scene_hw = (scene_height, scene_width)
        self.val_ratio, self.seed = float(val_ratio), int(seed)
        self.cache_synthetic = bool(cache_synthetic)
        self.splits: dict[str, Dataset] = {}

    def _base(self, split: str) -> Dataset:
        if self.dataset == "nyu":
            if split == "val" and self.val_ratio <= 0:
                raise ValueError("NYU validation needs val_ratio > 0 (a held-out part of the 1000 training images)")
            return NYUDepthV2(self.root, split=split, val_ratio=self.val_ratio)
        if self.dataset == "sintel":  # the reference validates and tests on the same 133 pairs
            return SintelFlow(self.root, "train" if split == "train" else "val", self.sintel_pass, self.split_file)
        h, w = self.scene_hw
        offset = {"train": 0, "val": 1, "test": 2}[split]  # disjoint scene seeds per split
        scenes = SyntheticFlow if self.dataset == "synthetic_flow" else SyntheticRGBD
        base = scenes(int(self.sizes[split]), height=int(h), width=int(w), seed=self.seed * 10 + offset)
        return MemoryCache(base) if self.cache_synthetic else base

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage, ("train", "val", "test")) if stage else ("train", "val", "test"):
            if split in self.splits:
                continue
            train = split == "train"
            self.splits[split] = JointUpsamplingDataset(
                self._base(split),
                factor=self.factor,
                crop=self.crop if train else None,
                train=train,
                lowres_mode=self.lowres_mode,
                seed=self.seed,
                target_key="flow" if self.dataset in _FLOW else "depth",
                eval_full_size=self.dataset == "sintel",
            )

    def _loader(self, split: str) -> DataLoader:
        train = split == "train"
        batch_size = self.batch_size if train else 1 if self.dataset in ("nyu", "sintel") else self.batch_size
        return make_loader(self.splits[split], batch_size, train, self.seed, self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
