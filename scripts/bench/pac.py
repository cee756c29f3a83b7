"""Time and memory of the PAC implementation paths beside the torch convolution of the same shape.

    python scripts/bench/pac.py [--threads 2] [--repeats 9] [--device cpu|cuda] [--no-peak] [--compile] [--shapes k5]
                                [--forms fused_rows fused_cols] [--thread-time]

For each case: forward+backward time (median and minimum over ``--repeats`` runs after two warm-ups, ms; the paths
of a case run in turn within each repeat, so that the machine's drift hits all alike), the ratio to the torch layer
of the same shape, the bytes autograd saves for backward (unique storages, counted with
``torch.autograd.graph.saved_tensors_hooks``; a layer's own input counts too), and the peak memory of one
forward+backward (CUDA: ``max_memory_allocated`` above the start; CPU: resident-set growth sampled every 0.2 ms,
each case in a fresh subprocess with large buffers returned to the system when freed; an estimate).

Paths: ``default`` is what the modules run (CPU: the rows form with the Gaussian kernel computed inside the convolution
from 32 channels, the cols form for narrower layers on large images), ``kernel`` the general path (kernel from
``compute_kernel``, then the correlation the dispatcher picks for a given kernel), ``taploop`` the same with the
tap-loop correlation chosen by ``pac_form('taploop')`` (what a strided ``PacConv2d`` runs), ``reference`` is
``native_impl=True`` (plain autograd on ``F.unfold``; what the tests compare against); ``compiled`` (with ``--compile``)
is the default path under ``torch.compile``; ``--forms`` adds the layer run with the guidance under ``pac_form(form)``
for each form named (``-`` where the form does not apply). On CUDA two larger cases are added (a GPU is idle at the
issue's CPU shapes). The narrow cases (8 and 16 channels, 3 guidance channels; the transposed one as in the tiny joint
upsampling network) are the papers' small CPU models' widths (issue 14). ``--thread-time`` times with the thread's CPU
time instead of the wall clock (with one thread: less sensitive to other jobs on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import torch
from torch import nn

from nvresearch.core.layers.pac import FORMS, PacConv2d, PacConvTranspose2d, pac_form

# name -> (layer kind, batch, C_in, C_out, k, stride, in size, guidance channels)
SHAPES = {
    "k5 B4 32->32 64x64 guide8": ("conv", 4, 32, 32, 5, 1, 64, 8),
    "k3 B8 64->64 32x32 guide8": ("conv", 8, 64, 64, 3, 1, 32, 8),
    "k5 B1 32->32 256x256 guide8": ("conv", 1, 32, 32, 5, 1, 256, 8),
    "T k5 s2 B4 32->32 32->64 guide16": ("transposed", 4, 32, 32, 5, 2, 32, 16),
    "k5 B1 16->16 256x256 guide3": ("conv", 1, 16, 16, 5, 1, 256, 3),
    "k3 B1 16->16 256x256 guide3": ("conv", 1, 16, 16, 3, 1, 256, 3),
    "k5 B1 8->8 256x256 guide3": ("conv", 1, 8, 8, 5, 1, 256, 3),
    "k3 B1 8->8 256x256 guide3": ("conv", 1, 8, 8, 3, 1, 256, 3),
    "T k5 s2 B1 16->16 128->256 guide8": ("transposed", 1, 16, 16, 5, 2, 128, 8),
}
CUDA_SHAPES = {
    "k5 B16 64->64 128x128 guide8": ("conv", 16, 64, 64, 5, 1, 128, 8),
    "T k5 s2 B16 64->64 64->128 guide8": ("transposed", 16, 64, 64, 5, 2, 64, 8),
}
PATHS = ("torch", "default", "kernel", "taploop", "reference")


def build(shape: str, path: str, device: str) -> Callable[[], torch.Tensor]:
    kind, b, cin, cout, k, s, n, nf = {**SHAPES, **CUDA_SHAPES}[shape]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b, cin, n, n, generator=gen).to(device).requires_grad_()
    if kind == "conv":
        f = torch.randn(b, nf, n, n, generator=gen).to(device).requires_grad_()
        args = dict(padding=k // 2)
        torch_layer, pac_cls = nn.Conv2d(cin, cout, k, **args), PacConv2d
    else:
        f = torch.randn(b, nf, n * s, n * s, generator=gen).to(device).requires_grad_()
        args = dict(stride=s, padding=k // 2, output_padding=s - 1)
        torch_layer, pac_cls = nn.ConvTranspose2d(cin, cout, k, **args), PacConvTranspose2d
    if path == "torch":
        layer = torch_layer.to(device)
        return lambda: layer(x)
    layer = pac_cls(cin, cout, k, native_impl=path == "reference", **args).to(device)
    if path == "compiled":
        compiled = torch.compile(layer)
        return lambda: compiled(x, f)
    if path == "kernel":
        return lambda: layer(x, None, kernel=layer.compute_kernel(f)[0])
    if path == "taploop":

        def run() -> torch.Tensor:
            with pac_form("taploop"):
                return layer(x, None, kernel=layer.compute_kernel(f)[0])

        return run
    if path in FORMS:  # the layer with its guidance, under one form

        def run_form() -> torch.Tensor:
            with pac_form(path):
                return layer(x, f)

        return run_form
    return lambda: layer(x, f)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_ms(
    fns: dict[str, Callable[[], torch.Tensor]],
    repeats: int,
    device: str,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, tuple[float, float]]:
    """(median, minimum) ms of forward+backward of each path; the paths run in turn within each repeat."""
    for fn in fns.values():
        for _ in range(2):
            fn().sum().backward()
    times: dict[str, list[float]] = {path: [] for path in fns}
    for _ in range(repeats):
        for path, fn in fns.items():
            _sync(device)
            t0 = clock()
            fn().sum().backward()
            _sync(device)
            times[path].append((clock() - t0) * 1e3)
    return {path: (statistics.median(t), min(t)) for path, t in times.items()}


def saved_bytes(fn: Callable[[], torch.Tensor]) -> int:
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(storages.values())


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def peak_bytes(shape: str, path: str, device: str) -> int:
    """Peak memory of the first forward+backward above what the inputs and parameters hold."""
    fn = build(shape, path, device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        fn().sum().backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - start
    # CPU: sample the resident set size while the step runs (the parent sets MALLOC_MMAP_THRESHOLD_ so that freed
    # buffers leave the resident set at once instead of staying in malloc's cache).
    start, peak, done = _rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.0002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    fn().sum().backward()
    done.set()
    thread.join()
    return max(peak[0], _rss()) - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-peak", action="store_true", help="skip the peak-memory column (one subprocess per row)")
    parser.add_argument("--skip-reference", action="store_true", help="skip the slow reference path")
    parser.add_argument("--compile", action="store_true", help="add the default path under torch.compile")
    parser.add_argument("--shapes", nargs="*", default=None, help="only the cases whose name contains one of these")
    parser.add_argument("--forms", nargs="*", default=(), help="also run the layer under pac_form(form) for these")
    parser.add_argument("--thread-time", action="store_true", help="time with the thread's CPU time (one thread)")
    parser.add_argument("--peak-of", nargs=2, metavar=("SHAPE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.peak_of:
        print(json.dumps(peak_bytes(*args.peak_of, args.device)))
        return

    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {args.threads} threads"
    print(f"torch {torch.__version__}, {name}, forward+backward, {args.repeats} repeats")
    header = ("case", "path", "median ms", "min ms", "x torch", "saved MB", "peak MB")
    print(f"{header[0]:34s} {header[1]:10s} " + " ".join(f"{h:>9s}" for h in header[2:]))
    shapes = [*SHAPES, *(CUDA_SHAPES if args.device == "cuda" else ())]
    if args.shapes:
        shapes = [s for s in shapes if any(part in s for part in args.shapes)]
    unknown = [form for form in args.forms if form not in FORMS]
    if unknown:
        parser.error(f"unknown forms {unknown}; the forms are {FORMS}")
    clock = time.thread_time if args.thread_time else time.perf_counter
    for shape in shapes:
        paths = [*PATHS, *args.forms, *(("compiled",) if args.compile else ())]
        fns = {}
        for path in paths:
            if path == "reference" and args.skip_reference:
                continue
            fns[path] = build(shape, path, args.device)
            try:
                fns[path]()
            except ValueError:  # a form that does not apply to this case
                print(f"{shape:34s} {path:10s} {'-':>9s}", flush=True)
                del fns[path]
        timings = time_ms(fns, args.repeats, args.device, clock)
        base = timings["torch"][0]
        for path, fn in fns.items():
            med, best = timings[path]
            saved = saved_bytes(fn) / 2**20
            peak = "-"
            if args.no_peak or path == "compiled":
                pass
            elif args.device == "cuda":  # the CUDA allocator counts exactly in-process
                del fn
                peak = f"{peak_bytes(shape, path, args.device) / 2**20:.1f}"
            else:
                cmd = [sys.executable, __file__, "--threads", str(args.threads), "--device", args.device]
                env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
                out = subprocess.run(
                    [*cmd, "--peak-of", shape, path], capture_output=True, text=True, check=True, env=env
                )
                peak = f"{json.loads(out.stdout.strip().splitlines()[-1]) / 2**20:.1f}"
            digits = 3 if args.device == "cuda" else 1
            cols = f"{med:9.{digits}f} {best:9.{digits}f} {med / base:9.2f} {saved:9.1f} {peak:>9s}"
            print(f"{shape:34s} {path:10s} {cols}", flush=True)


if __name__ == "__main__":
    main()
