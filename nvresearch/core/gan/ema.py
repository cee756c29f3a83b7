"""Exponential moving average of generator weights (Karras et al. 2018; FUNIT's ``gen_test``)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_copy(model: nn.Module) -> nn.Module:
    """A frozen deep copy of ``model`` to hold the average (take it right after initialisation)."""
    avg = copy.deepcopy(model)
    for p in avg.parameters():
        p.requires_grad_(False)
    return avg


@torch.no_grad()
def ema_update(average: nn.Module, model: nn.Module, decay: float = 0.999, buffers: bool = False) -> None:
    """``average <- decay * average + (1 - decay) * model`` for every parameter.

    Args:
        decay: weight of the old average (FUNIT: 0.999).
        buffers: also copy buffers (running statistics) from ``model``; FUNIT averages parameters only.
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay must lie in [0, 1], got {decay}")
    avg_params, params = dict(average.named_parameters()), dict(model.named_parameters())
    if avg_params.keys() != params.keys():
        raise ValueError("EMA model and model have different parameters")
    for name, p in params.items():
        avg_params[name].lerp_(p.detach().to(avg_params[name].dtype), 1.0 - decay)
    if buffers:
        avg_buffers = dict(average.named_buffers())
        for name, b in model.named_buffers():
            avg_buffers[name].copy_(b)
