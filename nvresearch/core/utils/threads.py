"""Temporarily change torch's intra-op thread count (torch-only)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads, then restore the previous count (also on error).

    Small-tensor work (tiny MLPs and convolutions) gains nothing from a second thread; on a shared host the idle
    thread spin-waits and costs several times the CPU.
    """
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
