"""core.data: the shared loader builder."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from nvresearch.core.data import make_loader, split_epoch_key


class Keys(Dataset):
    """Returns the (epoch, index) key it is asked for, as a tensor."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: object) -> torch.Tensor:
        epoch, index = split_epoch_key(key)
        return torch.tensor([epoch, index])


def _epoch(loader, epoch: int) -> list[list[int]]:
    loader.sampler.set_epoch(epoch)
    return [b.tolist() for b in loader]


def test_train_loader_order_is_a_function_of_seed_and_epoch() -> None:
    a = _epoch(make_loader(Keys(10), 4, train=True, seed=3), 1)
    b = _epoch(make_loader(Keys(10), 4, train=True, seed=3), 1)
    assert a == b
    assert len(a) == 2  # 10 samples, batch 4: the short last batch is dropped
    assert all(row[0] == 1 for batch in a for row in batch)  # keys carry the epoch
    indices = [row[1] for batch in a for row in batch]
    assert len(set(indices)) == 8 and indices != sorted(indices)
    assert _epoch(make_loader(Keys(10), 4, train=True, seed=3), 2) != a
    assert _epoch(make_loader(Keys(10), 4, train=True, seed=4), 1) != a


def test_drop_last_only_when_a_full_batch_exists_and_eval_is_in_order() -> None:
    assert len(list(make_loader(Keys(3), 4, train=True))) == 1  # smaller than a batch: keep it
    assert len(list(make_loader(Keys(10), 4, train=True, drop_last=False))) == 3
    ev = [b.tolist() for b in make_loader(Keys(5), 2, train=False)]
    assert [row[1] for batch in ev for row in batch] == [0, 1, 2, 3, 4]


def test_bad_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(Keys(5), 0, train=True)
