"""Time PAC layers against the torch convolution of the same shape (forward + backward), and memory saved for backward.

    python scripts/bench/pac.py [--threads 2] [--repeats 9]

Prints the median and minimum over ``--repeats`` runs after two warm-ups, in milliseconds, and the bytes autograd
saves for backward (unique storages, counted with ``torch.autograd.graph.saved_tensors_hooks``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from nvresearch.core.layers.pac import PacConv2d, PacConvTranspose2d


def _time(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[float, float]:
    for _ in range(2):
        fn().sum().backward()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn().sum().backward()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def _saved_bytes(fn: Callable[[], torch.Tensor]) -> int:
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(storages.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cases = []
    # PacConv2d 32->32, k5, B=4, 64x64, 8 guidance channels
    x = torch.randn(4, 32, 64, 64, requires_grad=True)
    f = torch.randn(4, 8, 64, 64, requires_grad=True)
    pac = PacConv2d(32, 32, 5, padding=2)
    conv = nn.Conv2d(32, 32, 5, padding=2)
    cases += [("PacConv2d 32->32 k5, B4 64x64, guide 8", lambda: pac(x, f)), ("nn.Conv2d same shape", lambda: conv(x))]
    # PacConv2d 64->64, k3, B=8, 32x32
    x3 = torch.randn(8, 64, 32, 32, requires_grad=True)
    f3 = torch.randn(8, 8, 32, 32, requires_grad=True)
    pac3 = PacConv2d(64, 64, 3, padding=1)
    conv3 = nn.Conv2d(64, 64, 3, padding=1)
    cases += [
        ("PacConv2d 64->64 k3, B8 32x32, guide 8", lambda: pac3(x3, f3)),
        ("nn.Conv2d same shape", lambda: conv3(x3)),
    ]
    # transposed, stride 2: 32x32 -> 64x64, guidance at output size
    xt = torch.randn(4, 32, 32, 32, requires_grad=True)
    ft = torch.randn(4, 16, 64, 64, requires_grad=True)
    pact = PacConvTranspose2d(32, 32, 5, stride=2, padding=2, output_padding=1)
    convt = nn.ConvTranspose2d(32, 32, 5, stride=2, padding=2, output_padding=1)
    cases += [
        ("PacConvTranspose2d 32->32 k5 s2, 32->64, guide 16", lambda: pact(xt, ft)),
        ("nn.ConvTranspose2d same shape", lambda: convt(xt)),
    ]

    print(f"torch {torch.__version__}, {args.threads} threads, forward+backward, {args.repeats} repeats")
    print(f"{'case':52s} {'median ms':>10s} {'min ms':>8s} {'saved MB':>9s}")
    for name, fn in cases:
        med, best = _time(fn, args.repeats)
        print(f"{name:52s} {med:10.1f} {best:8.1f} {_saved_bytes(fn) / 2**20:9.1f}")


if __name__ == "__main__":
    main()
