"""The training stream under data parallelism: each process a disjoint part of one global, seeded order."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from nvresearch.core.data import EpochSampler, make_loader


class Keys(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:
        return torch.tensor(key)


def _batches(sampler: EpochSampler, batch_size: int, epoch: int) -> list[list[tuple[int, int]]]:
    sampler.set_epoch(epoch)
    loader = DataLoader(Keys(sampler.length), batch_size=batch_size, sampler=sampler, drop_last=True)
    return [[tuple(k) for k in b.tolist()] for b in loader]


@pytest.mark.parametrize(("n", "world", "batch"), [(20, 2, 3), (23, 2, 4), (17, 3, 2)])
def test_global_batches_equal_one_process_with_world_times_the_batch(n, world, batch):
    for epoch in (0, 3):
        single = _batches(EpochSampler(n, seed=5), world * batch, epoch)
        shards = [_batches(EpochSampler(n, seed=5, num_replicas=world, rank=r), batch, epoch) for r in range(world)]
        assert all(len(s) == len(single) for s in shards)  # every process runs the same number of steps
        for step, keys in enumerate(single):
            together = [k for s in shards for k in s[step]]
            assert sorted(together) == sorted(keys)  # the same samples, augmentation keys (epoch, index) included
            assert len(set(together)) == len(together)  # disjoint parts


def test_epoch_sampler_is_left_in_place_by_lightning_and_follows_the_epoch():
    loader = make_loader(Keys(10), 2, train=True, seed=1)
    # Lightning wraps any sampler that is not a DistributedSampler (re-shuffling it, hiding the epoch from it)
    assert isinstance(loader.sampler, DistributedSampler) and isinstance(loader.sampler, EpochSampler)
    s = EpochSampler(10, seed=1, num_replicas=2, rank=1)
    assert len(s) == 5 and (s.num_replicas, s.rank) == (2, 1)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first and all(epoch == 1 for epoch, _ in s)


def test_epoch_sampler_errors():
    with pytest.raises(ValueError, match="num_replicas and rank"):
        EpochSampler(4, num_replicas=2)
    with pytest.raises(ValueError, match="rank must be"):
        EpochSampler(4, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="cannot be shared by 3"):
        list(EpochSampler(2, num_replicas=3, rank=0))
