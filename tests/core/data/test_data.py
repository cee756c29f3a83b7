"""core.data: the shared loader builder."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from nvresearch.core.data import MemoryCache, make_loader, split_epoch_key


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


class _Counting(Dataset):
    """Item i is ``{"x": tensor([i])}``; counts how often each item is built."""

    def __init__(self, n: int) -> None:
        self.n, self.builds = n, [0] * n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        self.builds[i] += 1
        return {"x": torch.tensor([i])}


def test_memory_cache_builds_each_item_once_and_returns_the_same_items() -> None:
    base = _Counting(5)
    cache = MemoryCache(base)
    assert len(cache) == 5 and cache.n == 5  # the wrapped dataset's attributes stay reachable
    for _ in range(3):
        assert [int(cache[i]["x"]) for i in range(5)] == [0, 1, 2, 3, 4]
    assert base.builds == [1] * 5
    assert cache[-1] is cache[4]
    with pytest.raises(IndexError, match="out of range"):
        cache[5]


def test_memory_cache_keeps_at_most_max_items() -> None:
    base = _Counting(4)
    cache = MemoryCache(base, max_items=2)
    for _ in range(3):
        assert [int(cache[i]["x"]) for i in range(4)] == [0, 1, 2, 3]
    assert base.builds == [1, 1, 3, 3]
    with pytest.raises(ValueError, match="max_items"):
        MemoryCache(base, max_items=-1)
