"""The one LightningDataModule shape: a paper says how a split's dataset is made; loaders and seeding live here."""

from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from nvresearch.core.data import make_loader


def dataset_component(dataset: object, owner: str) -> Callable[..., object]:
    """Check that ``dataset`` is a callable dataset component (a ``_partial_`` config), not a name or a mapping.

    Raises:
        TypeError: naming ``owner`` and what it got (e.g. a config written before datasets became components).
    """
    if not callable(dataset):
        raise TypeError(
            f"{owner}: data.dataset must be a dataset component (a config node with _target_ and _partial_: true), "
            f"got {dataset!r}; configs written before datasets became components name it as a string"
        )
    return dataset


class SplitDataModule(pl.LightningDataModule):
    """Train/val/test splits made on demand, once, and served through :func:`~nvresearch.core.data.make_loader`.

    A subclass implements :meth:`make_split` (and may override :meth:`batch_size_for` or :meth:`collate_fn`). Each
    Lightning stage builds only the splits it uses (``fit``: train and val, ``validate``: val, ``test`` and
    ``predict``: test; ``None``: all), and a split is built once and cached in :attr:`splits`. The training loader
    draws its order from :class:`~nvresearch.core.data.EpochSampler` seeded by ``seed`` (so a resumed run sees the
    same stream); evaluation loaders read in order.

    Args:
        batch_size: training batch size.
        eval_batch_size: validation and test batch size (None: ``batch_size``).
        num_workers: loader worker processes.
        seed: seeds the training order (and, by convention, the subclass's data).
        drop_last: drop the last short training batch.
    """

    #: the splits each Lightning stage needs, in build order; a subclass may add its own split names.
    STAGE_SPLITS: dict[str, tuple[str, ...]] = {
        "fit": ("train", "val"),
        "validate": ("val",),
        "test": ("test",),
        "predict": ("test",),
    }

    def __init__(
        self,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__()
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size) if eval_batch_size else self.batch_size
        self.num_workers, self.seed, self.drop_last = int(num_workers), int(seed), bool(drop_last)
        self.splits: dict[str, Dataset] = {}

    @property
    def split_names(self) -> tuple[str, ...]:
        """Every split this data module can build, in the order of :attr:`STAGE_SPLITS`."""
        return tuple(dict.fromkeys(s for splits in self.STAGE_SPLITS.values() for s in splits))

    def make_split(self, split: str) -> Dataset:
        """Build the dataset of ``split`` (one of :attr:`split_names`); called at most once per split."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_split(split)")

    def batch_size_for(self, split: str) -> int:
        """The loader batch size of ``split``: ``batch_size`` for training, ``eval_batch_size`` otherwise."""
        return self.batch_size if split == "train" else self.eval_batch_size

    def collate_fn(self, split: str) -> Callable | None:
        """The loader's ``collate_fn`` for ``split`` (None: PyTorch's default)."""
        return None

    def get_split(self, split: str) -> Dataset:
        """The dataset of ``split``, built on first use."""
        if split not in self.split_names:
            raise ValueError(f"{type(self).__name__}: unknown split {split!r}; expected one of {self.split_names}")
        if split not in self.splits:
            self.splits[split] = self.make_split(split)
        return self.splits[split]

    def setup(self, stage: str | None = None) -> None:
        if stage is not None and stage not in self.STAGE_SPLITS:
            raise ValueError(
                f"{type(self).__name__}: unknown stage {stage!r}; expected one of {list(self.STAGE_SPLITS)}"
            )
        for split in self.STAGE_SPLITS[stage] if stage else self.split_names:
            self.get_split(split)

    def loader(self, split: str) -> DataLoader:
        """The loader of ``split``: shuffled by the seeded epoch sampler for ``train``, in order otherwise."""
        train = split == "train"
        return make_loader(
            self.get_split(split),
            self.batch_size_for(split),
            train,
            self.seed,
            self.num_workers,
            self.drop_last,
            collate_fn=self.collate_fn(split),
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        return self.loader("test")

    def predict_dataloader(self) -> DataLoader | list[DataLoader]:
        return self.loader("test")
