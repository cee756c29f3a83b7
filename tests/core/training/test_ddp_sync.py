"""Data parallelism at unit level: two gloo processes (forked from the test) against one process on the same data.

* :meth:`GANModule.sync_gradients` keeps the replicas of a manually optimised network identical and equal to one
  process training on the whole global batch;
* the evaluation reduction (:func:`shard_keep_mask` for metric objects, :func:`unshard` for gathered items) gives
  the one-process value although ``DistributedSampler`` pads the shards with repeated items;
* the Taylor pruning callback's window is averaged over the processes, so every process masks the same channels.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DistributedSampler
from torchmetrics import MeanMetric

from nvresearch.core.training.gan import GANModule
from nvresearch.core.training.module import shard_keep_mask, unshard

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, fn: Callable[[int], object], port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        torch.save(fn(rank), Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _run_two_ranks(fn: Callable[[int], object], tmp_path: Path) -> list[object]:
    """Run ``fn(rank)`` in two forked processes joined by a gloo group; returns their results."""
    mp.start_processes(_worker, args=(fn, _free_port(), str(tmp_path)), nprocs=WORLD, start_method="fork")
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


# ---------------------------------------------------------------------------------------------- GAN gradients
def _nets() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    gen = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))
    disc = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    return gen, disc


def _train_gan(rank: int | None) -> dict[str, torch.Tensor]:
    """Three alternating D / G steps; ``rank`` None: one process on the global batch, else this rank's half."""
    gen, disc = _nets()
    opt_g, opt_d = (torch.optim.Adam(m.parameters(), lr=0.05) for m in (gen, disc))
    g = torch.Generator().manual_seed(1)
    z, real = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g) + 1
    if rank is not None:
        z, real = z[rank::WORLD], real[rank::WORLD]
    module = GANModule()
    for _ in range(3):
        opt_d.zero_grad(set_to_none=True)
        (disc(gen(z).detach()).mean() - disc(real).mean()).backward()
        module.sync_gradients(disc.parameters())
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        (-disc(gen(z)).mean()).backward()
        module.sync_gradients(gen.parameters())
        opt_g.step()
    return {**{f"g.{k}": v for k, v in gen.state_dict().items()}, **{f"d.{k}": v for k, v in disc.state_dict().items()}}


def _partial_gradients(rank: int) -> dict[str, torch.Tensor | None]:
    """A parameter with a gradient on rank 0 only, and one with a gradient nowhere."""
    used, unused = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    if rank == 0:
        used.grad = torch.tensor([2.0, 4.0])
    GANModule().sync_gradients([used, unused])
    return {"used": used.grad, "unused": unused.grad}


def test_gan_gradient_sync_keeps_replicas_identical_and_equal_to_one_process(tmp_path):
    r0, r1 = _run_two_ranks(_train_gan, tmp_path)
    single = _train_gan(None)
    for key in r0:
        assert torch.equal(r0[key], r1[key]), f"replicas differ at {key}"
        torch.testing.assert_close(r0[key], single[key], atol=1e-5, rtol=1e-4, msg=f"DDP != one process at {key}")
    assert not torch.equal(r0["g.2.bias"], _nets()[0][2].bias.detach())  # it trained


def test_gan_gradient_sync_of_parameters_unused_on_some_processes(tmp_path):
    for res in _run_two_ranks(_partial_gradients, tmp_path):
        torch.testing.assert_close(res["used"], torch.tensor([1.0, 2.0]))  # averaged with rank 1's zero
        assert res["unused"] is None  # the optimiser skips it, as in one process


# ---------------------------------------------------------------------------------------------- evaluation
_VALUES = torch.tensor([0.5, 3.0, 1.0, 7.0, 2.0])  # five items over two ranks: the sampler repeats item 0


def _shard(rank: int) -> torch.Tensor:
    sampler = DistributedSampler(range(len(_VALUES)), num_replicas=WORLD, rank=rank, shuffle=False)
    return torch.tensor(list(sampler))


def _eval_reduction(rank: int) -> dict[str, torch.Tensor]:
    idx = _shard(rank)
    values = _VALUES[idx]
    masked, naive = MeanMetric(), MeanMetric()
    keep = shard_keep_mask(torch.arange(len(idx)), rank, WORLD, len(_VALUES))
    masked.update(values[keep])
    naive.update(values)
    parts = [torch.empty_like(values) for _ in range(WORLD)]
    dist.all_gather(parts, values)
    gathered = torch.stack(parts)
    return {"masked": masked.compute(), "naive": naive.compute(), "items": unshard(gathered, len(_VALUES))}


def test_eval_reduction_leaves_out_sampler_padding(tmp_path):
    results = _run_two_ranks(_eval_reduction, tmp_path)
    for res in results:
        torch.testing.assert_close(res["masked"], _VALUES.mean())  # one process's per-item mean
        torch.testing.assert_close(res["items"], _VALUES)  # every item once, in the dataset's order
        assert not torch.isclose(res["naive"], _VALUES.mean())  # the padded duplicate would have counted


# ---------------------------------------------------------------------------------------------- Taylor pruning
def _prune_once(rank: int) -> list[torch.Tensor]:
    from nvresearch.taylor.callback import TaylorPruning

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.Conv2d(6, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3))
    module = nn.Module()
    module.net = net
    module.example_input_array = torch.zeros(2, 1, 6, 6)
    cb = TaylorPruning(criterion="taylor_fo_bn", prune_per_step=3, frequency=1, max_steps=1, momentum=0.0)
    cb._build(module)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(10 + rank)  # each rank its own shard: local gate gradients differ
    for _ in range(2):
        x, y = torch.randn(4, 1, 6, 6, generator=g), torch.randint(0, 3, (4,), generator=g)
        net.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        cb.pruner.after_backward()
    return cb.pruner.graph.keep_masks()


def test_taylor_pruning_masks_the_same_channels_in_every_process(tmp_path):
    r0, r1 = _run_two_ranks(_prune_once, tmp_path)
    assert sum(int((~k).sum()) for k in r0) == 3
    for a, b in zip(r0, r1, strict=True):
        assert torch.equal(a, b), (a, b)


@pytest.mark.parametrize("world", [1, 3])
def test_shard_keep_mask_counts_every_item_once(world):
    total = 7
    kept = []
    for rank in range(world):
        idx = torch.tensor(list(DistributedSampler(range(total), num_replicas=world, rank=rank, shuffle=True)))
        kept += idx[shard_keep_mask(torch.arange(len(idx)), rank, world, total)].tolist()
    assert sorted(kept) == list(range(total))
