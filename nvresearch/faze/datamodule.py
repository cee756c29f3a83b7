"""LightningDataModule for FAZE: DT-ED pairs for training, per-person samples for validation and stage 2."""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.data import DataLoader, Dataset

from nvresearch.core.data import DatasetLayoutError
from nvresearch.core.training import SplitDataModule, dataset_component
from nvresearch.faze.data import FazeFiles, PairDataset, SampleDataset


class FazeDataModule(SplitDataModule):
    """Stage-1 pairs and stage-2 per-person samples from preprocessed FAZE HDF5 files (official preprocessing).

    Training uses ``train`` persons of the split with at least ``min_samples`` samples (pairs, official ``data.py``);
    validation the first ``val_persons`` ``val`` persons (their last ``val_samples`` samples). The test stage has three
    loaders: 0, every sample of the meta-training persons (``train`` persons with more than
    ``stage2_min_samples``), whose gaze codes stage 2 learns from; 1, the test persons (``test`` persons of the split,
    or every person of the separate test file, e.g. MPIIGaze) with more than ``stage2_min_samples`` samples, in
    sample order; 2, the validation persons, on which stage 2 chooses each initialisation's personalisation step
    size (persons that neither stage 2 nor the test has seen).

    Args:
        dataset: the dataset component: called once with no argument it returns the opened
            :class:`~nvresearch.faze.data.FazeFiles` (``eye_strip_files`` for the embedded world, ``faze_files``
            for GazeCapture / MPIIGaze, as a ``_partial_`` config); the splits are person lists of those files.
        batch_size / eval_batch_size / num_workers / seed: see :class:`~nvresearch.core.training.SplitDataModule`;
            ``seed`` also seeds the pair sampling.
        min_samples: training persons need at least this many samples (400).
        stage2_min_samples: meta-training and test persons need more than this many (1000).
        test_last: the evaluation protocol's test samples per person (500); the model config reads it
            (``${data.test_last}``); it is accepted here and not used by the data module itself.
        val_persons / val_samples: validation subset.
        equalize: histogram equalisation of luma (the reference preprocessing).
    """

    STAGE_SPLITS = {
        **SplitDataModule.STAGE_SPLITS,
        "test": ("meta_train", "test", "val"),
        "predict": ("meta_train", "test", "val"),
    }

    def __init__(
        self,
        dataset: Callable[[], FazeFiles],
        batch_size: int = 64,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        min_samples: int = 400,
        stage2_min_samples: int = 1000,
        test_last: int = 500,
        val_persons: int = 50,
        val_samples: int = 500,
        equalize: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, seed)
        self.dataset = dataset_component(dataset, type(self).__name__)
        self.min_samples, self.stage2_min_samples = int(min_samples), int(stage2_min_samples)
        self.test_last = int(test_last)
        self.val_persons, self.val_samples = int(val_persons), int(val_samples)
        self.equalize = equalize
        self._files: FazeFiles | None = None

    def files(self) -> FazeFiles:
        """``(train/val/test file, person split, separate test file or None)``, opened once."""
        if self._files is None:
            self._files = self.dataset()
        return self._files

    def image_size(self) -> tuple[int, int]:
        h5 = self.files().h5
        assert h5.image_size is not None
        return h5.image_size

    def make_split(self, split: str) -> Dataset:
        h5, persons, test_h5 = self.files()
        if split == "train":
            return PairDataset(h5, persons["train"], self.min_samples, self.seed, self.equalize)
        if split == "val":
            return SampleDataset(h5, persons["val"][: self.val_persons], 2, self.val_samples, self.equalize)
        more = self.stage2_min_samples + 1  # "more than 1000" (official ``2_meta_learning.py``)
        if split == "meta_train":
            ds, name = SampleDataset(h5, persons["train"], min_samples=more, equalize=self.equalize), "meta-training"
        elif test_h5 is not None:
            ds, name = SampleDataset(test_h5, None, min_samples=more, equalize=self.equalize), "test"
        else:
            ds, name = SampleDataset(h5, persons["test"], min_samples=more, equalize=self.equalize), "test"
        if len(ds) == 0:
            raise DatasetLayoutError(f"no {name} person has more than {self.stage2_min_samples} samples")
        return ds

    def test_dataloader(self) -> list[DataLoader]:
        return [self.loader("meta_train"), self.loader("test"), self.loader("val")]

    def predict_dataloader(self) -> list[DataLoader]:
        return self.test_dataloader()

    def person_names(self, which: str) -> list[str]:
        """Person ids of the ``meta_train``, ``test`` or ``val`` loader, in the order of their ``person`` indices."""
        return list(self.splits[which].persons)  # type: ignore[attr-defined]
