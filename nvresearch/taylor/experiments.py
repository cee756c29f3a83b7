"""The paper's two small-scale experiments on the embedded digits, as plain functions (no Lightning).

Used by the ``slow`` claim tests and by ``scripts/reproduce/taylor/ --small``:

- :func:`correlation_study`: rank correlation of each criterion with the oracle on a trained network (Table 1);
- :func:`pruning_comparison`: prune the same trained network with several criteria to the same MACs, with the same
  fine-tuning, and compare test accuracy (Table 3 / Fig. 3 at CPU scale).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from nvresearch.core.pruning import DependencyGraph, PruneTarget, make_criterion, oracle_importance, prune
from nvresearch.core.pruning.oracle import rank_correlation
from nvresearch.taylor.data import Digits
from nvresearch.taylor.models import DigitsCNN, LeNet3, torchvision_classifier

__all__ = [
    "correlation_study",
    "digits_batches",
    "evaluate",
    "pruning_comparison",
    "recalibrate_batchnorm",
    "train_digits",
]


def digits_batches(split: str, batch_size: int, size: int = 8, seed: int = 0, shuffle_seed: int | None = None) -> list:
    """Minibatches ``[(x, y), ...]`` of a digits split (shuffled by ``shuffle_seed`` when given)."""
    ds = Digits(split, size=size, seed=seed)
    x, y = ds.images, ds.labels
    if shuffle_seed is not None:
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(shuffle_seed))
        x, y = x[perm], y[perm]
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y) - batch_size + 1, batch_size)]


def build(arch: str) -> tuple[nn.Module, int]:
    """``("cnn" | "lenet" | "resnet18") -> (network, input side)``.

    ``resnet18`` is torchvision's ResNet-18 with a one-channel 3x3 stride-1 stem and no max-pooling, on the 8x8
    digits: a residual network whose stage streams are pruning groups (the skip-gate criterion's CPU setting).
    """
    if arch == "cnn":
        return DigitsCNN(), 8
    if arch == "lenet":
        return LeNet3(in_channels=1, num_classes=10, input_size=28), 28
    if arch == "resnet18":
        model = torchvision_classifier("resnet18", num_classes=10, cifar_stem=True)
        model.conv1 = nn.Conv2d(1, 64, 3, padding=1, bias=False)
        return model, 8
    raise ValueError(f"unknown arch {arch!r}")


def train_digits(
    arch: str = "cnn", epochs: int = 15, lr: float = 0.05, batch_size: int = 64, seed: int = 0
) -> nn.Module:
    """Train a digits network with SGD (momentum 0.9) from a seeded initialisation."""
    torch.manual_seed(seed)
    model, size = build(arch)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for epoch in range(epochs):
        for x, y in digits_batches("train", batch_size, size, shuffle_seed=seed * 1000 + epoch):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def evaluate(model: nn.Module, split: str = "test", size: int = 8) -> float:
    """Top-1 accuracy on a digits split (eval mode)."""
    was = model.training
    model.eval()
    ds = Digits(split, size=size)
    acc = float((model(ds.images).argmax(1) == ds.labels).float().mean())
    model.train(was)
    return acc


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Re-estimate every BatchNorm's running mean/variance on ``batches`` (cumulative average), weights untouched."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    was = model.training
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for x, _ in batches:
        model(x)
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    model.train(was)


def _loss(m: nn.Module, b: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return nn.functional.cross_entropy(m(b[0]), b[1])


def correlation_study(
    model: nn.Module,
    size: int = 8,
    criteria: Sequence[str] = ("taylor_fo_bn", "taylor_fo_weight", "weight_magnitude", "random"),
    n_batches: int = 8,
    batch_size: int = 100,
) -> dict[str, dict[str, float]]:
    """Spearman/Kendall of each criterion with the oracle, all channels pooled (paper Table 1).

    The criteria accumulate over ``n_batches`` training minibatches (no momentum: one window), the oracle uses the
    same minibatches; the network is in eval mode for both (fixed BN statistics), so the oracle is deterministic.
    Results include ``"<name>/alive"``: the correlation without channels that are 0 in both (dead units inflate it).
    """
    batches = digits_batches("train", batch_size, size, shuffle_seed=12345)[:n_batches]
    model.eval()
    graph = DependencyGraph(model, batches[0][0])
    oracle = oracle_importance(graph, batches, _loss)
    out: dict[str, dict[str, float]] = {}
    for name in criteria:
        kwargs: dict[str, Any] = {"momentum": 0.0} if name.startswith("taylor") else {}
        crit = make_criterion(name, graph, **kwargs)
        if crit.needs_data:
            for b in batches:
                model.zero_grad()
                loss = _loss(model, b)
                if name == "taylor_so":
                    crit.accumulate(loss)
                else:
                    loss.backward()
                    crit.accumulate()
        scores = crit.scores()
        crit.remove()
        out[name] = rank_correlation(scores, oracle)
        out[f"{name}/alive"] = rank_correlation(scores, oracle, exclude_zero=True)
    model.zero_grad()
    return out


def pruning_comparison(
    model: nn.Module,
    criteria: Sequence[str] = ("taylor_fo_bn", "weight_magnitude", "random"),
    macs_ratio: float = 0.3,
    size: int = 8,
    prune_per_step: int = 8,
    frequency: int = 5,
    finetune_steps: int = 40,
    lr: float = 0.01,
    batch_size: int = 64,
    seed: int = 0,
    recalibrate_bn: bool = True,
) -> dict[str, dict[str, float]]:
    """Prune copies of one trained network with each criterion to ``macs_ratio`` of its MACs, same fine-tuning.

    Every copy sees the same minibatches and SGD settings (lr, momentum 0.9) while pruning and for
    ``finetune_steps`` minibatches after the target is reached. Returns per criterion the test accuracy of the
    physically pruned network, its MACs ratio and parameter ratio. With ``recalibrate_bn`` the BatchNorm running
    statistics of each pruned network are re-estimated on the training minibatches before testing (the same for every
    criterion; otherwise the few fine-tuning steps leave them stale and the comparison noisy).
    """
    batches = digits_batches("train", batch_size, size, shuffle_seed=seed + 777)
    full_macs, full_params = DependencyGraph(model, batches[0][0]).count()
    out: dict[str, dict[str, float]] = {}
    for name in criteria:
        net = copy.deepcopy(model).train()
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)

        def factory(graph: DependencyGraph, name: str = name) -> Any:
            return make_criterion(name, graph, **({"seed": seed} if name == "random" else {}))

        pruned, pruner = prune(
            net,
            batches,
            factory,
            PruneTarget(macs_ratio=macs_ratio),
            optimizer=opt,
            prune_per_step=prune_per_step,
            frequency=frequency,
            finetune_steps=finetune_steps,
            max_epochs=50,
        )
        if recalibrate_bn:
            recalibrate_batchnorm(pruned, batches)
        macs, params = DependencyGraph(pruned.eval(), batches[0][0]).count()
        out[name] = {
            "acc": evaluate(pruned, "test", size),
            "macs_ratio": macs / full_macs,
            "params_ratio": params / full_params,
            "removed": float(pruner.removed),
        }
    return out
