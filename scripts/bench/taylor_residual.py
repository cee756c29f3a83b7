"""Residual streams in Taylor-FO-BN: the reference's shared skip gate vs the sum over the stream's BNs.

Trains torchvision's ResNet-18 (one-channel 3x3 stem) on the embedded digits, then prunes copies of it to the same
MACs with ``taylor_fo_bn`` (skip gate, the default) and ``taylor_fo_bn_sum``, with the same fine-tuning and BN
re-estimation (``nvresearch.taylor.experiments.pruning_comparison``), and prints the test accuracies per seed.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python scripts/bench/taylor_residual.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse

import torch

from nvresearch.taylor.experiments import evaluate, pruning_comparison, train_digits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--macs", type=float, nargs="+", default=[0.3, 0.1])
    args = p.parse_args()
    torch.set_num_threads(1)
    for seed in args.seeds:
        model = train_digits("resnet18", epochs=args.epochs, lr=0.05, seed=seed)
        print(f"seed {seed}: trained test acc {evaluate(model):.3f}", flush=True)
        for ratio in args.macs:
            res = pruning_comparison(
                model,
                criteria=("taylor_fo_bn", "taylor_fo_bn_sum"),
                macs_ratio=ratio,
                prune_per_step=64,
                frequency=2,
                finetune_steps=10,
                seed=seed,
            )
            cells = ", ".join(f"{k} acc {v['acc']:.3f} (MACs {v['macs_ratio']:.3f})" for k, v in res.items())
            print(f"seed {seed} macs {ratio}: {cells}", flush=True)


if __name__ == "__main__":
    main()
