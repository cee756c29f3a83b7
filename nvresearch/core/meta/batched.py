"""Many independent adaptations at once: ``torch.func.vmap`` over tasks of equal support size.

Few-shot evaluation fine-tunes one copy of a small model per (person, repeat) pair (FAZE: 1000 SGD steps for
each test person and each of 10 calibration draws). Looping over copies is slow; here the parameters carry
a leading task dimension and each SGD step is one vectorised ``grad`` call. Each task's update depends only on its
own support set, so the result equals running :func:`adapt` on every task separately. :func:`batched_meta_loss` does
the same for meta-training: the textbook MAML objective of a meta-batch of equal-size tasks in one vectorised pass,
equal to :meth:`~nvresearch.core.meta.MAML.meta_loss` (``mode='textbook'``) on those tasks, value and gradient.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from nvresearch.core.meta.maml import LossFn, _check_lr, _check_steps, inner_loop

__all__ = ["adapt", "batched_adapt", "batched_forward", "batched_meta_loss", "stack_params"]


def adapt(
    model: nn.Module,
    support: tuple[Any, Tensor],
    loss_fn: LossFn,
    steps: int,
    lr: float,
    inner_params: Sequence[str] | None = None,
) -> nn.Module:
    """Return a copy of ``model`` fine-tuned on ``support`` with ``steps`` full-batch SGD steps (test-time adaptation).

    Equivalent to ``torch.optim.SGD(lr)`` on a deep copy; ``inner_params`` (names or dotted prefixes) restricts the
    adapted parameters. The original model is not modified and the copy carries no graph.

    Shape:
        support x: ``(K, *)`` (or a tuple of such tensors), y: ``(K, *)``.
    """
    _check_steps(steps)
    _check_lr(lr)
    adapted = copy.deepcopy(model)
    params = dict(adapted.named_parameters())
    names = [n for n in params if inner_params is None or any(n == p or n.startswith(p + ".") for p in inner_params)]
    if not names:
        raise ValueError(f"inner_params {list(inner_params or [])} match no parameter of the model")
    current = {n: params[n].detach() for n in names}
    for _ in range(steps):
        current = {n: t.detach() for n, t in inner_loop(adapted, current, support, loss_fn, 1, lr, True).items()}
    with torch.no_grad():
        for n, t in current.items():
            params[n].copy_(t)
    return adapted


def stack_params(model: nn.Module, num_tasks: int, names: Sequence[str] | None = None) -> dict[str, Tensor]:
    """``num_tasks`` detached copies of the model's parameters, stacked along a new leading dimension.

    Shape:
        each returned tensor: ``(num_tasks, *param.shape)``.
    """
    params = dict(model.named_parameters())
    names = list(params) if names is None else list(names)
    return {n: params[n].detach().unsqueeze(0).repeat(num_tasks, *([1] * params[n].dim())) for n in names}


def batched_forward(model: nn.Module, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """Evaluate ``model`` with task-stacked ``params`` on task-stacked inputs.

    Shape:
        params: each ``(T, *param.shape)``; x: ``(T, N, *)``; returns ``(T, N, *out)``.
    """
    return vmap(lambda p, xx: functional_call(model, p, (xx,)))(dict(params), x)


def batched_adapt(
    model: nn.Module,
    support_x: Tensor,
    support_y: Tensor,
    loss_fn: LossFn,
    steps: int,
    lr: float,
    params: Mapping[str, Tensor] | None = None,
    step_scales: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Full-batch SGD on ``T`` tasks at once; row ``t`` of the result is :func:`adapt` on task ``t`` alone.

    Args:
        model: the module (its own parameters are the starting point unless ``params`` is given).
        support_x / support_y: stacked support sets of ``T`` tasks of equal size ``K``.
        loss_fn: ``loss_fn(prediction, y) -> scalar`` for one task (vmapped over the tasks).
        steps: SGD steps (>= 0).
        lr: step size (> 0).
        params: optional task-stacked starting parameters ``(T, *shape)`` (e.g. from :func:`stack_params`).
        step_scales: optional per-element step multipliers by parameter name (Meta-SGD, Li et al. 2017: each
            element moves by ``lr * scale * grad``); None is plain SGD.

    Returns:
        Adapted parameters, name -> ``(T, *shape)``, without graph.

    Shape:
        support_x: ``(T, K, *)``; support_y: ``(T, K, *)``.
    """
    _check_steps(steps)
    _check_lr(lr)
    if support_x.shape[:2] != support_y.shape[:2]:
        raise ValueError(f"support_x {tuple(support_x.shape)} and support_y {tuple(support_y.shape)} differ in (T, K)")
    current = dict(params) if params is not None else stack_params(model, support_x.shape[0])
    current = {n: t.detach() for n, t in current.items()}

    forward = vmap(lambda p, x: functional_call(model, p, (x,)))
    per_task_loss = vmap(loss_fn)
    names = list(current)
    for _ in range(steps):
        with torch.enable_grad():
            leaves = {n: current[n].requires_grad_(True) for n in names}
            # The tasks are independent, so the gradient of the summed loss w.r.t. the stacked parameters holds
            # every task's own gradient in its row (cheaper than a vmapped grad).
            total = per_task_loss(forward(leaves, support_x), support_y).sum()
            grads = torch.autograd.grad(total, [leaves[n] for n in names])
        if step_scales is None:
            current = {n: (current[n] - lr * g).detach() for n, g in zip(names, grads)}
        else:
            current = {n: (current[n] - lr * step_scales[n] * g).detach() for n, g in zip(names, grads)}
    return current


def batched_meta_loss(
    model: nn.Module,
    support_x: Tensor,
    support_y: Tensor,
    query_x: Tensor,
    query_y: Tensor,
    loss_fn: LossFn,
    steps: int,
    lr: float,
    first_order: bool = False,
) -> Tensor:
    """Textbook MAML objective of ``T`` tasks of equal sizes in one vectorised pass (MAML Eq. 1-2).

    Every task starts from the model's own parameters, takes ``steps`` full-batch SGD steps on its support set and
    is scored on its query set; the result is the mean query loss over the tasks, differentiable w.r.t. the model's
    parameters (through the inner loop when ``first_order`` is False; FOMAML treats the support gradients as
    constants). Equal to ``MAML(model, loss_fn, steps, lr, first_order, mode='textbook').meta_loss(tasks)`` for a
    model without buffers, at a fraction of the cost for small models.

    Args:
        model: the meta-model (all its parameters are adapted).
        support_x / support_y / query_x / query_y: task-stacked sets.
        loss_fn: ``loss_fn(prediction, y) -> scalar`` for one task (vmapped over the tasks).
        steps: inner SGD steps (>= 0).
        lr: inner step size (> 0).
        first_order: FOMAML.

    Shape:
        support_x: ``(T, K, *)``, support_y: ``(T, K, *)``; query_x: ``(T, Q, *)``, query_y: ``(T, Q, *)``;
        returns a scalar.
    """
    _check_steps(steps)
    _check_lr(lr)
    if support_x.shape[:2] != support_y.shape[:2] or query_x.shape[:2] != query_y.shape[:2]:
        raise ValueError("support and query inputs and targets must agree in their (T, K) / (T, Q) dimensions")
    if support_x.shape[0] != query_x.shape[0] or support_x.shape[0] == 0:
        raise ValueError(f"{support_x.shape[0]} support sets but {query_x.shape[0]} query sets (need equal, > 0)")
    if any(True for _ in model.buffers()):
        raise ValueError("batched_meta_loss does not handle buffers; use MAML.meta_loss for such models")
    num_tasks = support_x.shape[0]
    forward = vmap(lambda p, x: functional_call(model, p, (x,)))
    per_task_loss = vmap(loss_fn)
    names = [n for n, _ in model.named_parameters()]
    theta = dict(model.named_parameters())
    with torch.enable_grad():
        # Row t of the gradient of the summed support loss is task t's own gradient (tasks are independent).
        current = {n: theta[n].unsqueeze(0).expand(num_tasks, *theta[n].shape) for n in names}
        for _ in range(steps):
            total = per_task_loss(forward(current, support_x), support_y).sum()
            grads = torch.autograd.grad(total, [current[n] for n in names], create_graph=not first_order)
            current = {n: current[n] - lr * (g.detach() if first_order else g) for n, g in zip(names, grads)}
        return per_task_loss(forward(current, query_x), query_y).mean()
