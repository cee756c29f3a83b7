"""Paper Table 3 / Fig. 3: accuracy vs remaining FLOPs after Taylor-FO-BN pruning with fine-tuning.

    python scripts/reproduce/taylor/resnet_pruning.py --small                      # CPU, digits: criteria compared
    python scripts/reproduce/taylor/resnet_pruning.py --data DIR --weights DIR [--rows resnet50_prune72 ...]
                                                    # ImageNet (ImageFolder under DIR/imagenet), GPU, 25 epochs a row

Full mode runs ``python -m nvresearch.train experiment=taylor/imagenet_<row>`` for each row (pretrained torchvision
weights ``resnet50-19c8e357.pth`` / ``resnet101-5d3b4d8f.pth`` from ``--weights``) and prints GMACs and top-1 error
beside the paper's. ``--small`` prunes one trained DigitsCNN to several MAC budgets with Taylor-FO-BN, weight
magnitude and random, the same fine-tuning for each, and prints test accuracy beside the MACs kept.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from nvresearch.core.utils.report import print_table

# row -> (paper GFLOPs, paper top-1 error %), read off the official figure images/resnet_result.png (72 % row quoted)
PAPER = {
    "resnet50_prune91": (3.27, 23.6),
    "resnet50_prune81": (2.66, 24.5),
    "resnet50_prune72": (2.25, 25.5),
    "resnet50_prune56": (1.34, 28.3),
    "resnet101_prune75": (4.70, 22.65),
    "resnet101_prune55": (2.85, 24.1),
    "resnet101_prune50": (2.47, 24.6),
    "resnet101_prune40": (1.76, 25.8),
    "resnet34_prune82": (2.83, 27.2),
}
WEIGHTS = {
    "resnet50": "resnet50-19c8e357.pth",
    "resnet101": "resnet101-5d3b4d8f.pth",
    "resnet34": "resnet34-b627a593.pth",
}


def small(seeds: list[int]) -> None:
    from nvresearch.taylor.experiments import evaluate, pruning_comparison, train_digits

    budgets = (0.5, 0.2, 0.1, 0.05)
    for seed in seeds:
        t = time.time()
        model = train_digits("cnn", epochs=15, seed=seed)
        rows: list[list[object]] = [[seed, 100.0, evaluate(model), None, None]]  # unpruned
        for r in budgets:
            res = pruning_comparison(
                model, macs_ratio=r, prune_per_step=16, frequency=2, finetune_steps=10, lr=0.01, seed=seed
            )
            kept = 100 * res["taylor_fo_bn"]["macs_ratio"]
            rows.append([seed, kept, res["taylor_fo_bn"]["acc"], res["weight_magnitude"]["acc"], res["random"]["acc"]])
        title = f"DigitsCNN test accuracy, pruned to MAC budgets (seed {seed}, row 1 unpruned; {time.time() - t:.0f} s)"
        print_table(title, ["seed", "MACs kept %", "Taylor-FO-BN", "weight", "random"], rows, precision=[0, 1, 3, 3, 3])


def full(data: str, weights: str, rows: list[str], extra: list[str]) -> None:
    table = []
    for row in rows:
        arch = row.split("_")[0]
        cmd = [
            sys.executable,
            "-m",
            "nvresearch.train",
            f"experiment=taylor/imagenet_{row}",
            f"paths.data_dir={data}",
            f"model.net.weights_path={Path(weights) / WEIGHTS[arch]}",
            *extra,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        folder = next(line.split("run folder ")[1].strip() for line in out.splitlines() if "run folder" in line)
        metrics = json.loads((Path(folder) / "metrics.json").read_text())["metrics"]
        gmacs, err = metrics["test/macs"] / 1e9, 100 * (1 - metrics["test/acc"])
        p_gmacs, p_err = PAPER.get(row, (None, None))
        table.append([row, gmacs, p_gmacs, err, p_err])
        print(f"{row}: {gmacs:.2f} GMACs, top-1 error {err:.2f} %", flush=True)  # runs take days: one line per row
    print_table(
        "ResNet pruning on ImageNet: ours beside the paper's", ["row", "GMACs", "paper", "top-1 err %", "paper"], table
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--data", help="paths.data_dir (holding imagenet/{train,val})")
    ap.add_argument("--weights", help="folder with the torchvision checkpoints")
    ap.add_argument("--rows", nargs="+", default=list(PAPER))
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = ap.parse_args()
    if args.small:
        small(args.seeds)
    elif args.data and args.weights:
        full(args.data, args.weights, args.rows, args.overrides)
    else:
        ap.error("pass --small, or --data DIR --weights DIR")


if __name__ == "__main__":
    main()
