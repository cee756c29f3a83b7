"""SplitDataModule: per-stage splits made once, seeded training order, in-order evaluation, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from nvresearch.core.data import split_epoch_key
from nvresearch.core.training import SplitDataModule, dataset_component


class _Numbers(Dataset):
    def __init__(self, n: int, offset: int) -> None:
        self.n, self.offset = n, offset

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: int | tuple[int, int]) -> torch.Tensor:
        _, index = split_epoch_key(key)
        return torch.tensor(self.offset + index)


class _Toy(SplitDataModule):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.made: list[str] = []

    def make_split(self, split: str) -> Dataset:
        self.made.append(split)
        return _Numbers({"train": 20, "val": 7, "test": 5}[split], {"train": 0, "val": 100, "test": 200}[split])


def _order(loader) -> list[int]:
    return torch.cat(list(loader)).tolist()


@pytest.mark.parametrize(
    ("stage", "splits"),
    [
        ("fit", ["train", "val"]),
        ("validate", ["val"]),
        ("test", ["test"]),
        ("predict", ["test"]),
        (None, ["train", "val", "test"]),
    ],
)
def test_a_stage_builds_only_its_splits_once(stage, splits):
    dm = _Toy()
    dm.setup(stage)
    dm.setup(stage)
    assert dm.made == splits and sorted(dm.splits) == sorted(splits)


def test_a_later_stage_reuses_the_splits_already_made():
    dm = _Toy()
    dm.setup("fit")
    dm.setup("validate")
    dm.setup("test")
    assert dm.made == ["train", "val", "test"]


def test_training_order_follows_the_seed_and_the_epoch():
    a, b, c = _Toy(batch_size=4, seed=0), _Toy(batch_size=4, seed=0), _Toy(batch_size=4, seed=1)
    for dm in (a, b, c):
        dm.setup("fit")
    order_a, order_b, order_c = (_order(dm.train_dataloader()) for dm in (a, b, c))
    assert order_a == order_b and order_a != order_c
    assert sorted(order_a) == list(range(20)) and order_a != list(range(20))
    loader = a.train_dataloader()
    loader.sampler.set_epoch(1)
    assert _order(loader) != order_a


def test_eval_loaders_are_in_order_with_the_eval_batch_size():
    dm = _Toy(batch_size=4, eval_batch_size=3, seed=5)
    dm.setup(None)
    val = dm.val_dataloader()
    assert [len(b) for b in val] == [3, 3, 1]  # nothing dropped
    assert _order(val) == list(range(100, 107)) and _order(dm.test_dataloader()) == list(range(200, 205))
    assert [len(b) for b in dm.train_dataloader()] == [4] * 5


def test_drop_last_and_default_eval_batch_size():
    dm = _Toy(batch_size=6, drop_last=False)
    assert [len(b) for b in dm.train_dataloader()] == [6, 6, 6, 2]
    assert dm.batch_size_for("val") == 6
    assert [len(b) for b in _Toy(batch_size=6).train_dataloader()] == [6, 6, 6]


def test_bad_split_or_stage_errors_clearly():
    dm = _Toy()
    with pytest.raises(ValueError, match=r"_Toy: unknown split 'tset'; expected one of \('train', 'val', 'test'\)"):
        dm.loader("tset")
    with pytest.raises(ValueError, match="unknown stage 'tune'"):
        dm.setup("tune")
    assert dm.made == []


def test_a_subclass_may_add_splits_to_a_stage():
    class _Two(_Toy):
        STAGE_SPLITS = {**SplitDataModule.STAGE_SPLITS, "test": ("meta_train", "test")}

        def make_split(self, split: str) -> Dataset:
            return super().make_split("train" if split == "meta_train" else split)

    dm = _Two()
    dm.setup("test")
    assert list(dm.splits) == ["meta_train", "test"] and "meta_train" in dm.split_names


def test_make_split_is_required():
    with pytest.raises(NotImplementedError, match="make_split"):
        SplitDataModule().setup("fit")


def test_dataset_component_rejects_a_dataset_name():
    with pytest.raises(TypeError, match="Owner: data.dataset must be a dataset component.*got 'synthetic'"):
        dataset_component("synthetic", "Owner")
    assert dataset_component(len, "Owner") is len
