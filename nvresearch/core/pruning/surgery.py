"""Channel surgery: physically remove pruned channels (the users' top request).

The reference only multiplies gates by zero, so a "pruned" network keeps its size and speed (NVlabs/Taylor_pruning
issue #3). :func:`remove_channels` returns an ordinary module of the same classes with smaller weight tensors, whose
outputs equal the masked network's (:meth:`DependencyGraph.masked`). It can be saved with ``torch.save(model)`` and
reloaded with ``torch.load(path, weights_only=False)``, or rebuilt from a state dict with :func:`shrink_to_state_dict`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from nvresearch.core.pruning.graph import DependencyGraph, strip_pruning_hooks

__all__ = ["remove_channels", "shrink_to_state_dict"]


def _param(t: torch.Tensor, like: nn.Parameter) -> nn.Parameter:
    return nn.Parameter(t.detach().clone().contiguous(), requires_grad=like.requires_grad)


def _slice_module(module: nn.Module, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None) -> None:
    """Keep rows ``out_idx`` and input columns ``in_idx`` of one conv/linear/BN, in place."""
    if isinstance(module, nn.Conv2d):
        depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
        w = module.weight
        if depthwise:
            idx = out_idx if out_idx is not None else in_idx
            if idx is None:
                return
            module.weight = _param(w[idx.to(w.device)], w)
            if module.bias is not None:
                module.bias = _param(module.bias[idx.to(w.device)], module.bias)
            module.in_channels = module.out_channels = module.groups = int(idx.numel())
            return
        if out_idx is not None:
            w = w[out_idx.to(w.device)]
            if module.bias is not None:
                module.bias = _param(module.bias[out_idx.to(w.device)], module.bias)
            module.out_channels = int(out_idx.numel())
        if in_idx is not None:
            if module.groups != 1:
                raise ValueError("cannot remove input channels of a grouped convolution")
            w = w[:, in_idx.to(w.device)]
            module.in_channels = int(in_idx.numel())
        module.weight = _param(w, module.weight)
    elif isinstance(module, nn.Linear):
        w = module.weight
        if out_idx is not None:
            w = w[out_idx.to(w.device)]
            if module.bias is not None:
                module.bias = _param(module.bias[out_idx.to(w.device)], module.bias)
            module.out_features = int(out_idx.numel())
        if in_idx is not None:
            w = w[:, in_idx.to(w.device)]
            module.in_features = int(in_idx.numel())
        module.weight = _param(w, module.weight)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if out_idx is None:
            return
        idx = out_idx.to(module.running_mean.device if module.running_mean is not None else "cpu")
        if module.affine:
            module.weight = _param(module.weight[idx], module.weight)
            module.bias = _param(module.bias[idx], module.bias)
        if module.running_mean is not None:
            module.running_mean = module.running_mean[idx].clone()
            module.running_var = module.running_var[idx].clone()
        module.num_features = int(idx.numel())
    else:  # pragma: no cover - the graph only records these three kinds
        raise TypeError(f"cannot slice {type(module).__name__}")


def remove_channels(graph: DependencyGraph, model: nn.Module | None = None, inplace: bool = False) -> nn.Module:
    """Physically remove the channels that ``graph``'s keep masks drop.

    Args:
        graph: The dependency graph of the network, with keep masks set (:meth:`DependencyGraph.set_keep`).
        model: The network to shrink (same module names as the traced one; default: the traced model itself).
        inplace: Modify ``model`` instead of a deep copy.

    Returns:
        The smaller network: the same module classes, with sliced weights, biases and BN statistics and updated
        ``in_channels``/``out_channels``/``groups``/``num_features``/``in_features``/``out_features``.
    """
    target = model if model is not None else graph.model
    if not inplace:
        target = copy.deepcopy(target)
        strip_pruning_hooks(target)
    modules = dict(target.named_modules())
    with torch.no_grad():
        for name, idx in graph.kept_indices().items():
            module = modules[name]
            full_out = _size(module, "out")
            full_in = _size(module, "in")
            out_idx = idx.get("out")
            in_idx = idx.get("in")
            out_idx = None if out_idx is None or out_idx.numel() == full_out else out_idx
            in_idx = None if in_idx is None or in_idx.numel() == full_in else in_idx
            if out_idx is not None or in_idx is not None:
                _slice_module(module, out_idx, in_idx)
    return target


def _size(module: nn.Module, which: str) -> int:
    if isinstance(module, nn.Conv2d):
        return module.out_channels if which == "out" else module.in_channels
    if isinstance(module, nn.Linear):
        return module.out_features if which == "out" else module.in_features
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return module.num_features
    return -1


def shrink_to_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Resize a freshly built full-size ``model`` to the shapes of a pruned ``state_dict`` and load it.

    Lets a pruned network be stored as an ordinary (safe, ``weights_only``) state dict: rebuild the architecture
    from its config, then call this. Only conv/linear/BN shapes may differ.
    """
    with torch.no_grad():
        for name, module in model.named_modules():
            weight = state_dict.get(f"{name}.weight" if name else "weight")
            if weight is None or not isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)):
                continue
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.weight = nn.Parameter(torch.empty_like(weight))
                module.bias = nn.Parameter(torch.empty_like(weight))
                module.running_mean = torch.empty_like(weight)
                module.running_var = torch.empty_like(weight)
                module.num_features = int(weight.shape[0])
                continue
            module.weight = nn.Parameter(torch.empty_like(weight))
            if module.bias is not None:
                module.bias = nn.Parameter(torch.empty(weight.shape[0], dtype=weight.dtype))
            if isinstance(module, nn.Linear):
                module.out_features, module.in_features = int(weight.shape[0]), int(weight.shape[1])
            else:
                depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
                module.out_channels = int(weight.shape[0])
                if depthwise:
                    module.in_channels = module.groups = int(weight.shape[0])
                else:
                    module.in_channels = int(weight.shape[1]) * module.groups
    model.load_state_dict(state_dict)
    return model
