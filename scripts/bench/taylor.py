"""Speed of the Taylor-pruning engine on torchvision ResNet-50 (issue 4, "Speed").

    python scripts/bench/taylor.py [--threads 2] [--batch 8] [--repeats 5] [--device cpu|cuda] [--size 224]

Prints (median over ``--repeats`` after one warm-up):
1. the extra time per training step that accumulating Taylor-FO-BN costs (forward + backward + SGD step, with and
   without ``criterion.accumulate()``; goal: at most 10 % of the step);
2. the time of one pruning step (rank all 11,456 channels globally, remove 100, recount MACs; the reference engine
   spends about 245 ms per step looping in Python over its 11,392 units; goal: a tenth of that);
3. CPU inference time of ResNet-50 before and after channel surgery to 60 % of its MACs (goal: at least 1.4x
   faster; the reference's masked network gains nothing), plus the masked network for comparison.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision
from torch import nn

from nvresearch.core.pruning import DependencyGraph, Pruner, PruneTarget, TaylorFOBN, remove_channels


def _time(fn, repeats: int, sync) -> list[float]:  # noqa: ANN001
    fn()
    sync()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--infer-batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--keep-macs", type=float, default=0.6)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    model = torchvision.models.resnet50().to(dev)
    x = torch.randn(args.batch, 3, args.size, args.size, device=dev)
    y = torch.randint(0, 1000, (args.batch,), device=dev)
    graph = DependencyGraph(model, x[:1])
    crit = TaylorFOBN(graph)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    print(f"torch {torch.__version__}, device {dev}, threads {args.threads}, batch {args.batch}, {args.size}px")
    print(f"ResNet-50: {len(graph.groups)} channel groups, {graph.num_channels} prunable channels")

    def step(accumulate: bool) -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        if accumulate:
            crit.accumulate()
        opt.step()

    def accumulate_only() -> None:
        crit.accumulate()

    model.train()
    plain = _time(lambda: step(False), args.repeats, sync)
    with_acc = _time(lambda: step(True), args.repeats, sync)
    acc_only = _time(accumulate_only, max(args.repeats, 20), sync)
    p, w, a = statistics.median(plain), statistics.median(with_acc), statistics.median(acc_only)
    print(
        f"1. training step {p:.1f} ms; with accumulate {w:.1f} ms; "
        f"accumulate alone {a:.2f} ms ({100 * a / p:.3f} % of the step)"
    )

    pruner = Pruner(graph, crit, PruneTarget(channels=10**9), prune_per_step=100, frequency=30)

    def prune_step() -> None:
        crit.accumulate()
        pruner.prune_step()

    steps = _time(prune_step, args.repeats, sync)
    s = statistics.median(steps)
    print(
        f"2. one pruning step (100 of {graph.num_channels} channels, global ranking, MAC recount): {s:.1f} ms "
        f"(reference about 245 ms)"
    )
    pruner.detach()

    # 3. surgery to keep_macs of the MACs, ranking by Taylor-FO-BN on a few minibatches
    graph = DependencyGraph(model, x[:1])
    crit = TaylorFOBN(graph)
    for _ in range(2):
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        crit.accumulate()
    pruner = Pruner(graph, crit, PruneTarget(macs_ratio=args.keep_macs), prune_per_step=graph.num_channels)
    pruner.prune_step()
    full_macs, full_params = pruner.full_macs, pruner.full_params
    macs, params = pruner.count()
    pruner.detach()
    model.eval()
    pruned = remove_channels(graph).eval()
    xi = torch.randn(args.infer_batch, 3, args.size, args.size, device=dev)
    # interleaved runs, best of ``repeats``: robust to other jobs on a shared machine
    times: dict[str, list[float]] = {"full": [], "masked": [], "surgery": []}
    with torch.inference_mode():
        model(xi), pruned(xi)
        for _ in range(args.repeats):
            for name, fn in (("full", lambda: model(xi)), ("surgery", lambda: pruned(xi))):
                times[name] += _time(fn, 1, sync)[:1]
            with graph.masked():
                times["masked"] += _time(lambda: model(xi), 1, sync)[:1]
    t_full, t_masked, t_pruned = (min(times[k]) for k in ("full", "masked", "surgery"))
    print(
        f"3. pruned to {macs / 1e9:.3f} / {full_macs / 1e9:.3f} GMACs ({100 * macs / full_macs:.1f} %), "
        f"{params / 1e6:.2f} / {full_params / 1e6:.2f} M params"
    )
    print(
        f"   inference batch {args.infer_batch} (best of {args.repeats}): full {t_full:.1f} ms, masked {t_masked:.1f} "
        f"ms, surgery {t_pruned:.1f} ms -> {t_full / t_pruned:.2f}x faster"
    )


if __name__ == "__main__":
    main()
