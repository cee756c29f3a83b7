"""MAC and parameter counting in the Taylor-pruning convention (Molchanov et al., CVPR 2019; official
``utils/group_lasso_optimizer.py``).

The paper's "GFLOPs" are multiply-accumulates (MACs). Per ``Conv2d`` the reference counts
``out * (in / groups) * k_h * k_w * H_out * W_out`` plus a small BatchNorm term ``3 * H_out * W_out``; per ``Linear``
it counts ``in * out``. Biases cost nothing. With these rules torchvision's ResNet-18/34/50/101 at 224x224 give
1.814 / 3.664 / 4.089 / 7.802 GMACs, the paper's baseline figures.

Unlike the reference, this counter is purely shape-based: it never inspects or modifies weights or gradients (the
reference counts only "alive" channels by weight and gradient norms, and zeroes dead filters as a side effect of
``step_after``). A physically pruned model is counted by its actual shapes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["count_macs_and_params"]


def count_macs_and_params(
    model: nn.Module,
    input_shape: Sequence[int],
    bn_term: bool = True,
    device: torch.device | str | None = None,
) -> tuple[int, int]:
    """Count the MACs of one forward pass and the model's parameters, in the convention above.

    Runs one forward pass on zeros under ``torch.no_grad()`` with temporary forward hooks on every ``Conv2d`` and
    ``Linear``; the hooks are removed and the train/eval mode restored before returning, even on error.

    Args:
        model: Any module whose forward takes a single tensor.
        input_shape: Full input shape including the batch dimension, e.g. ``(1, 3, 224, 224)``. MACs are reported
            per sample, i.e. divided by the batch size.
        bn_term: Add the reference's ``3 * H_out * W_out`` per convolution (accounts for the BatchNorm after it).
            Set ``False`` for plain conv/linear MACs.
        device: Device of the dummy input; defaults to the device of the model's first parameter (CPU if none).

    Returns:
        ``(macs, params)``: MACs per sample, and the number of unique parameter elements of ``model``
        (all parameters, including biases and BatchNorm affine parameters).

    Shape:
        - Input: ``input_shape``, e.g. ``(B, C, H, W)``.
    """
    if len(input_shape) < 2:
        raise ValueError(f"input_shape must include a batch dimension, got {tuple(input_shape)}")
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    batch = int(input_shape[0])
    total = [0]

    def conv_hook(module: nn.Conv2d, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        h_out, w_out = int(out.shape[-2]), int(out.shape[-1])
        k_h, k_w = module.kernel_size
        per_position = module.out_channels * (module.in_channels // module.groups) * k_h * k_w
        total[0] += per_position * h_out * w_out + (3 * h_out * w_out if bn_term else 0)

    def linear_hook(module: nn.Linear, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        # Extra leading dims (tokens) multiply the cost; the batch dim is divided out below.
        rows = out.numel() // (out.shape[-1] * batch) if out.dim() > 1 else 1
        total[0] += module.in_features * module.out_features * rows

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()  # no BatchNorm running-stat updates from the dummy pass
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        with torch.no_grad():
            model(torch.zeros(tuple(input_shape), dtype=dtype, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return total[0], params
