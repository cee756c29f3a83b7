"""LightningDataModule for FAZE: DT-ED pairs for training, per-person samples for validation and stage 2."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from nvresearch.core.data import DatasetLayoutError, make_loader
from nvresearch.faze.data import FazeH5, PairDataset, SampleDataset, ensure_eye_strip_world, load_split

DATASETS = ("synthetic", "gazecapture", "mpiigaze")


class FazeDataModule(pl.LightningDataModule):
    """Stage-1 pairs and stage-2 per-person samples from preprocessed FAZE HDF5 files (spec C).

    Training uses ``train`` persons of the split with at least ``min_samples`` samples (pairs, spec A.6);
    validation the first ``val_persons`` ``val`` persons (their last ``val_samples`` samples). The test stage has two
    loaders: 0, every sample of the meta-training persons (``train`` persons with more than
    ``stage2_min_samples``), whose gaze codes stage 2 learns from; 1, the test persons (``test`` persons of the split,
    or every person of ``test_h5`` for MPIIGaze) with more than ``stage2_min_samples`` samples, in sample order.

    Args:
        dataset: ``synthetic`` (the embedded eye-strip world, written on first use under ``cache_dir``),
            ``gazecapture`` or ``mpiigaze`` (train on GazeCapture, test on MPIIGaze).
        root: folder of the real files.
        h5_file / split_file / test_h5_file: file names under ``root`` (``GazeCapture.h5``,
            ``gazecapture_split.json``, ``MPIIGaze.h5``).
        batch_size / eval_batch_size / num_workers: loaders.
        min_samples: training persons need at least this many samples (400).
        stage2_min_samples: meta-training and test persons need more than this many (1000).
        test_last: the evaluation protocol's test samples per person (500); the model config reads it
            (``${data.test_last}``); it is accepted here and not used by the data module itself.
        val_persons / val_samples: validation subset.
        equalize: histogram equalisation of luma (the reference preprocessing).
        synthetic: parameters of :func:`~nvresearch.faze.data.write_eye_strip_world` for ``synthetic``.
        cache_dir: where the synthetic world is written (default: ``<tempdir>/nvresearch_faze``), once per
            parameter set.
        seed: pair sampling and the training order.
        in_memory: keep the HDF5 arrays in memory (:class:`~nvresearch.faze.data.FazeH5`); default: for the
            embedded world only (the real files are tens of GB).
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str | None = None,
        h5_file: str = "GazeCapture.h5",
        split_file: str = "gazecapture_split.json",
        test_h5_file: str | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        min_samples: int = 400,
        stage2_min_samples: int = 1000,
        test_last: int = 500,
        val_persons: int = 50,
        val_samples: int = 500,
        equalize: bool = True,
        synthetic: Mapping[str, Any] | None = None,
        cache_dir: str | None = None,
        seed: int = 0,
        in_memory: bool | None = None,
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {DATASETS}")
        if dataset != "synthetic" and not root:
            raise ValueError(f"dataset {dataset!r} needs root=<folder holding {h5_file} and {split_file}>")
        if dataset == "mpiigaze" and not test_h5_file:
            raise ValueError("dataset 'mpiigaze' needs test_h5_file (e.g. MPIIGaze.h5)")
        self.dataset, self.root = dataset, root
        self.h5_file, self.split_file, self.test_h5_file = h5_file, split_file, test_h5_file
        self.batch_size, self.eval_batch_size, self.num_workers = int(batch_size), int(eval_batch_size), num_workers
        self.min_samples, self.stage2_min_samples = int(min_samples), int(stage2_min_samples)
        self.val_persons, self.val_samples = int(val_persons), int(val_samples)
        self.equalize = equalize
        self.synthetic = dict(synthetic or {})
        self.cache_dir = cache_dir
        self.seed = int(seed)
        self.in_memory = dataset == "synthetic" if in_memory is None else bool(in_memory)
        self.splits: dict[str, Dataset] = {}
        self._files: tuple[FazeH5, dict[str, list[str]], FazeH5 | None] | None = None

    def files(self) -> tuple[FazeH5, dict[str, list[str]], FazeH5 | None]:
        """``(train/val/test file, person split, separate test file or None)``, opened once."""
        if self._files is None:
            if self.dataset == "synthetic":
                cache = self.cache_dir or str(Path(tempfile.gettempdir()) / "nvresearch_faze")
                params = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in self.synthetic.items()}
                h5_path, split_path = ensure_eye_strip_world(cache, **params)
            else:
                root = Path(self.root)
                if not root.is_dir():
                    raise DatasetLayoutError(
                        f"no FAZE data folder at '{root}'; expected {self.h5_file} and {self.split_file} in it"
                    )
                h5_path, split_path = root / self.h5_file, root / self.split_file
            test_h5 = None
            if self.dataset == "mpiigaze":
                test_h5 = FazeH5(Path(self.root) / self.test_h5_file, in_memory=self.in_memory)
            self._files = (FazeH5(h5_path, in_memory=self.in_memory), load_split(split_path), test_h5)
        return self._files

    def image_size(self) -> tuple[int, int]:
        h5 = self.files()[0]
        assert h5.image_size is not None
        return h5.image_size

    def _stage2(self) -> list[SampleDataset]:
        h5, split, test_h5 = self.files()
        more = self.stage2_min_samples + 1  # "more than 1000" (spec A.7)
        train = SampleDataset(h5, split["train"], min_samples=more, equalize=self.equalize)
        if test_h5 is not None:
            test = SampleDataset(test_h5, None, min_samples=more, equalize=self.equalize)
        else:
            test = SampleDataset(h5, split["test"], min_samples=more, equalize=self.equalize)
        for name, ds in (("meta-training", train), ("test", test)):
            if len(ds) == 0:
                raise DatasetLayoutError(f"no {name} person has more than {self.stage2_min_samples} samples")
        return [train, test]

    def setup(self, stage: str | None = None) -> None:
        h5, split, _ = self.files()
        if stage in (None, "fit") and "train" not in self.splits:
            self.splits["train"] = PairDataset(h5, split["train"], self.min_samples, self.seed, self.equalize)
        if stage in (None, "fit", "validate") and "val" not in self.splits:
            persons = split["val"][: self.val_persons]
            self.splits["val"] = SampleDataset(h5, persons, 2, self.val_samples, self.equalize)
        if stage in (None, "test", "predict") and "test" not in self.splits:
            self.splits["meta_train"], self.splits["test"] = self._stage2()

    def _eval_loader(self, ds: Dataset) -> DataLoader:
        return make_loader(ds, self.eval_batch_size, False, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return make_loader(self.splits["train"], self.batch_size, True, self.seed, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.splits["val"])

    def test_dataloader(self) -> Sequence[DataLoader]:
        return [self._eval_loader(self.splits["meta_train"]), self._eval_loader(self.splits["test"])]

    def person_names(self, which: str) -> list[str]:
        """Person ids of the ``meta_train`` or ``test`` loader, in the order of their ``person`` indices."""
        return list(self.splits[which].persons)
