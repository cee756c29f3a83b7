"""Paper Table 1: rank correlation of pruning criteria with the oracle (true loss change of removing each unit).

    python scripts/reproduce/taylor/correlation.py --small            # CPU, embedded digits (DigitsCNN and LeNet-3)
    python scripts/reproduce/taylor/correlation.py --data DIR [--arch lenet|resnet18] [--device cuda] [--epochs N]
                                                                       # CIFAR-10 pickles under DIR

Trains the network, accumulates every criterion over the same minibatches as the oracle (eval-mode BN, one window,
no momentum), and prints Spearman / Kendall over all units pooled, and without units dead in both.
The paper reports > 0.93 for Taylor FO on ImageNet; the official LeNet and code on the same digits give 0.989.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from nvresearch.core.pruning import DependencyGraph, make_criterion, oracle_importance, rank_correlation
from nvresearch.core.utils.report import print_table
from nvresearch.taylor.experiments import correlation_study, evaluate, train_digits

PAPER = {"taylor_fo_bn": "> 0.93 (ImageNet, abstract); LeNet on digits with the official code: 0.989"}


def _print(title: str, result: dict[str, dict[str, float]]) -> None:
    rows = [
        [
            name,
            result[name]["spearman"],
            result[name]["kendall"],
            result[f"{name}/alive"]["spearman"],
            result[name]["n"],
        ]
        + [PAPER.get(name)]
        for name in [k for k in result if "/" not in k]
    ]
    print_table(title, ["criterion", "Spearman", "Kendall", "alive rho", "n", "paper"], rows, precision=3)


def small(n_batches: int) -> None:
    for arch, size, crits in (
        (
            "cnn",
            8,
            ("taylor_fo_bn", "taylor_fo_fg", "taylor_so", "taylor_fo_weight", "weight_magnitude", "random"),
        ),
        ("lenet", 28, ("taylor_fo_bn", "taylor_fo_fg", "taylor_fo_weight", "weight_magnitude", "random")),
    ):
        t = time.time()
        model = train_digits(arch, epochs=15)
        acc = evaluate(model, size=size)
        result = correlation_study(model, size=size, criteria=crits, n_batches=n_batches)
        _print(f"{arch} on digits (test accuracy {acc:.3f}; {n_batches} x 100 images; {time.time() - t:.0f} s)", result)


def full(data: str, arch: str, device: str, epochs: int, n_batches: int) -> None:
    from nvresearch.taylor.data import Cifar10
    from nvresearch.taylor.models import LeNet3, torchvision_classifier

    train = Cifar10(data, train=True, augment=True)
    dev = torch.device(device)
    torch.manual_seed(0)
    model = (LeNet3(3, 10, 32) if arch == "lenet" else torchvision_classifier(arch, 10, cifar_stem=True)).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01 if arch == "lenet" else 0.05, momentum=0.9)
    loader = torch.utils.data.DataLoader(train, batch_size=128, shuffle=True, num_workers=4, drop_last=True)
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x.to(dev)), y.to(dev)).backward()
            opt.step()
    model.eval()
    batches = [(x.to(dev), y.to(dev)) for _, (x, y) in zip(range(n_batches), loader)]
    graph = DependencyGraph(model, batches[0][0][:1])

    def loss_fn(m: nn.Module, b: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return nn.functional.cross_entropy(m(b[0]), b[1])

    oracle = oracle_importance(graph, batches, loss_fn)
    result = {}
    for name in ("taylor_fo_bn", "taylor_fo_fg", "taylor_fo_weight", "weight_magnitude", "random"):
        crit = make_criterion(name, graph, **({"momentum": 0.0} if name.startswith("taylor") else {}))
        if crit.needs_data:
            for b in batches:
                model.zero_grad()
                loss_fn(model, b).backward()
                crit.accumulate()
        scores = crit.scores()
        crit.remove()
        result[name] = rank_correlation(scores, oracle)
        result[f"{name}/alive"] = rank_correlation(scores, oracle, exclude_zero=True)
    _print(f"{arch} on CIFAR-10 ({epochs} epochs, {n_batches} x 128 images)", result)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="embedded digits on CPU")
    ap.add_argument("--data", help="folder holding cifar-10-batches-py")
    ap.add_argument("--arch", default="lenet", choices=("lenet", "resnet18"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batches", type=int, default=8)
    args = ap.parse_args()
    if args.small:
        small(args.batches)
    elif args.data:
        full(args.data, args.arch, args.device, args.epochs, args.batches)
    else:
        ap.error("pass --small or --data DIR")


if __name__ == "__main__":
    main()
