"""MAML-style meta-learning on :func:`torch.func.functional_call` (Finn et al., "Model-Agnostic Meta-Learning", 2017).

Used by FAZE stage 2 (AdaGEN, person = task; official ``2_meta_learning.py``) and, later, MetaView
(category = task, inner loop on the head only).

An *inner loop* adapts a dict of parameters ``theta`` to a task's support set with plain SGD,
``theta_{s+1} = theta_s - lr_s * grad L_support(theta_s)``. It never touches the module's own parameters: the
adapted tensors are passed to the module through ``functional_call``, so the query loss stays differentiable
w.r.t. ``theta`` (second order, through ``create_graph=True``) and w.r.t. learned step sizes.

Two outer objectives, chosen with ``MAML(mode=...)``:

- ``'textbook'``: the meta-loss of a meta-batch of ``J`` tasks is ``(1/J) sum_j L_query(task j; theta'_j)`` with
  ``theta'_j`` the inner-loop result on task ``j``'s support set, so the meta-gradient is
  ``(1/J) sum_j (I - alpha H_j) grad L_query(task j; theta'_j)`` for one step.
- ``'faithful'``: what the official FAZE script computes per outer iteration (``2_meta_learning.py:401-419``).
  There, the meta-model's parameters are the tensors that the inner step differentiates and ``.grad``
  is not zeroed between the tasks of a meta-batch, so with ``g_j = grad L_support(task j; theta)`` the gradient handed
  to Adam is ``G = sum_j g_j + grad_theta L_query(task J; theta - alpha * sum_j g_j)``:
  (i) the support losses of all tasks enter *directly* (a joint-training term, summed, not averaged), (ii) only the
  **last** task's query loss is used, and (iii) its single inner step uses the **accumulated** support gradient of
  all tasks. ``meta_loss`` returns the surrogate ``sum_j L_support(task j; theta) + L_query(task J; theta')``, whose
  gradient is exactly ``G``; its *value* is therefore not a query loss. The reference takes one inner step per task,
  so faithful mode requires ``inner_steps == 1``. It is second order unless ``first_order=True`` (the reference
  uses ``create_graph=True``; FOMAML is its separate option, where the ``g_j`` inside ``theta'`` are treated as
  constants and the direct ``sum_j g_j`` term is unchanged).

Test-time adaptation (:meth:`MAML.adapt`) is the same in both modes: copy the meta-model and run full-batch plain SGD
on the support set (FAZE personalization: 1000 steps at the meta-training ``alpha``). The reference's
meta-validation bug (its SGD optimizer updates stale tensors, so logged "meta-valid" losses are zero-step losses) is
deliberately not reproduced.

Buffers (e.g. BatchNorm running statistics): inside :meth:`MAML.meta_loss` each task runs on its own *clone* of the
meta-model's buffers, passed to ``functional_call`` together with the adapted parameters. Normalisation follows the
module's train/eval mode (train mode: batch statistics, the usual MAML choice), running-stat updates made while
adapting to one task do not leak into other tasks or into the meta-model, and the meta-model's buffers are never
modified by ``meta_loss``. :meth:`MAML.adapt` works on a deep copy, whose own buffers are updated by its forward
passes (so an adapted BatchNorm model carries statistics of its support set). FAZE's models have no BatchNorm.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

__all__ = ["MAML", "Task", "inner_loop", "LossFn", "StepLR"]

LossFn = Callable[[Any, Tensor], Tensor]
"""``loss_fn(prediction, target) -> scalar``."""

StepLR = float | Tensor | Mapping[str, Tensor]
"""One inner step's learning rate: a scalar (float or 0-d tensor) or, Meta-SGD style, one tensor per parameter name
(a scalar or a tensor broadcastable to that parameter's shape)."""

_MODES = ("textbook", "faithful")


@dataclass
class Task:
    """One few-shot episode: a support set to adapt on and a query set to evaluate the adapted model on.

    ``x`` may be a tensor or a tuple of model inputs (the tuple is unpacked into the model call).

    Shape:
        - support_x: ``(K, *)`` (or a tuple of such tensors), support_y: ``(K, *)``.
        - query_x: ``(Q, *)`` (or a tuple of such tensors), query_y: ``(Q, *)``.
    """

    support_x: Any
    support_y: Tensor
    query_x: Any
    query_y: Tensor

    @property
    def support(self) -> tuple[Any, Tensor]:
        """``(support_x, support_y)``."""
        return self.support_x, self.support_y

    @property
    def query(self) -> tuple[Any, Tensor]:
        """``(query_x, query_y)``."""
        return self.query_x, self.query_y


def _forward(model: nn.Module, tensors: Mapping[str, Tensor], x: Any) -> Any:
    args = x if isinstance(x, tuple) else (x,)
    # strict=False: names missing from ``tensors`` (non-adapted parameters, buffers) come from the module itself.
    return functional_call(model, dict(tensors), args)


def _check_steps(steps: int) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")


def _check_lr(lr: float | Tensor) -> None:
    value = float(lr.detach().min()) if isinstance(lr, Tensor) else float(lr)
    if not value > 0:
        raise ValueError(f"lr must be > 0, got {value!r}")


def inner_loop(
    model: nn.Module,
    params: Mapping[str, Tensor],
    support: tuple[Any, Tensor],
    loss_fn: LossFn,
    steps: int,
    lr: float | Tensor | None,
    first_order: bool = False,
    per_step_lrs: Sequence[StepLR] | None = None,
    buffers: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Adapt ``params`` to a support set with ``steps`` plain SGD steps, keeping the graph to ``params`` (MAML Eq. 1).

    Args:
        model: module whose forward is evaluated with ``params`` (and ``buffers``) substituted.
        params: name -> tensor of the parameters to adapt (a subset of ``model``'s parameters is allowed, e.g. a
            head only; the others are read from ``model``). Tensors that do not require grad are adapted as
            constants (no meta-gradient flows to them).
        support: ``(x, y)``; ``x`` may be a tuple of model inputs.
        loss_fn: ``loss_fn(prediction, y) -> scalar``.
        steps: number of SGD steps (0 returns ``params`` unchanged).
        lr: step size used when ``per_step_lrs`` is None; must be > 0.
        first_order: if True, the support gradients are computed without a graph and treated as constants (FOMAML:
            ``d theta' / d theta = I``); otherwise ``create_graph=True`` gives the full second-order dependence.
        per_step_lrs: optional learned step sizes, one entry per step; each a scalar or a dict name -> tensor
            (Meta-SGD, per parameter and broadcastable to it). Gradients flow into them in both orders.
        buffers: optional name -> tensor substituted for the module's buffers (e.g. per-task clones).

    Returns:
        The adapted parameters, same names and shapes as ``params``.

    Shape:
        - support x: ``(K, *)``, y: ``(K, *)``; each returned tensor has its input's shape.
    """
    _check_steps(steps)
    if per_step_lrs is not None:
        if len(per_step_lrs) != steps:
            raise ValueError(f"per_step_lrs has {len(per_step_lrs)} entries but steps={steps}")
        for step_lr in per_step_lrs:
            if isinstance(step_lr, Mapping):
                missing = set(params) - set(step_lr)
                if missing:
                    raise ValueError(f"per-parameter lr is missing {sorted(missing)}")
    else:
        if lr is None:
            raise ValueError("lr must be given when per_step_lrs is None")
        _check_lr(lr)

    names = list(params)
    current = {n: (p if p.requires_grad else p.detach().requires_grad_(True)) for n, p in params.items()}
    extra = dict(buffers) if buffers is not None else {}
    x, y = support
    with torch.enable_grad():
        for s in range(steps):
            loss = loss_fn(_forward(model, {**extra, **current}, x), y)
            grads = torch.autograd.grad(
                loss, [current[n] for n in names], create_graph=not first_order, allow_unused=True
            )
            step_lr = per_step_lrs[s] if per_step_lrs is not None else lr
            updated = {}
            for n, g in zip(names, grads):
                if g is None:  # parameter not used by this loss
                    updated[n] = current[n]
                    continue
                if first_order:
                    g = g.detach()
                a = step_lr[n] if isinstance(step_lr, Mapping) else step_lr
                updated[n] = current[n] - a * g
            current = updated
    return current


class MAML(nn.Module):
    """Meta-learner holding the meta-parameters (the wrapped model's initialization and optional learned step sizes).

    Implements MAML / FOMAML / Meta-SGD (``learn_inner_lr``) with a ``'textbook'`` and a ``'faithful'`` (official
    FAZE ``2_meta_learning.py``) outer objective; see the module docstring for the exact difference.

    Args:
        model: the network whose initialization is meta-learned (registered as ``self.model``).
        loss_fn: ``loss_fn(prediction, target) -> scalar``, used for support and query losses.
        inner_steps: SGD steps per task during meta-training (>= 0; must be 1 in ``'faithful'`` mode).
        inner_lr: inner step size alpha (> 0), also the initial value of learned step sizes.
        first_order: FOMAML (support gradients treated as constants in the outer gradient).
        learn_inner_lr: learn one step size per inner step (Meta-SGD style), stored in ``self.inner_lrs``.
        per_param_lr: with ``learn_inner_lr``, learn an element-wise step size per parameter and step (Meta-SGD).
        mode: ``'textbook'`` or ``'faithful'``.
        inner_params: names (or dotted prefixes) of the parameters adapted in the inner loop; None adapts all.
            Non-adapted parameters (e.g. MetaView's backbone) still receive outer gradients.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        inner_steps: int = 1,
        inner_lr: float = 1e-2,
        first_order: bool = False,
        learn_inner_lr: bool = False,
        per_param_lr: bool = False,
        mode: str = "textbook",
        inner_params: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        _check_steps(inner_steps)
        _check_lr(inner_lr)
        if mode not in _MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {_MODES}")
        if mode == "faithful" and inner_steps != 1:
            raise ValueError("mode='faithful' reproduces the official single inner step; inner_steps must be 1")
        if per_param_lr and not learn_inner_lr:
            raise ValueError("per_param_lr=True needs learn_inner_lr=True")
        self.model = model
        self.loss_fn = loss_fn
        self.inner_steps = inner_steps
        self.inner_lr = float(inner_lr)
        self.first_order = first_order
        self.mode = mode
        self.per_param_lr = per_param_lr
        all_names = [n for n, _ in model.named_parameters()]
        if inner_params is None:
            self.inner_names = all_names
        else:
            self.inner_names = [n for n in all_names if any(n == p or n.startswith(p + ".") for p in inner_params)]
            if not self.inner_names:
                raise ValueError(f"inner_params {list(inner_params)} match no parameter of the model")
        self.inner_lrs: nn.ParameterList | nn.ModuleList | None = None
        if learn_inner_lr:
            params = dict(model.named_parameters())
            if per_param_lr:
                # ParameterDict keys cannot contain '.', so each step stores a list ordered like ``inner_names``.
                self.inner_lrs = nn.ModuleList(
                    nn.ParameterList(nn.Parameter(torch.full_like(params[n], self.inner_lr)) for n in self.inner_names)
                    for _ in range(inner_steps)
                )
            else:
                ref = params[self.inner_names[0]]
                self.inner_lrs = nn.ParameterList(
                    nn.Parameter(torch.tensor(self.inner_lr, dtype=ref.dtype, device=ref.device))
                    for _ in range(inner_steps)
                )

    def _step_lrs(self, steps: int) -> list[StepLR] | None:
        """Learned step sizes for ``steps`` steps; steps beyond the learned ones reuse the last learned value."""
        if self.inner_lrs is None:
            return None
        if steps == 0:
            return []
        if len(self.inner_lrs) == 0:
            raise ValueError("learned step sizes exist only for inner_steps >= 1; pass lr explicitly")
        out: list[StepLR] = []
        for s in range(steps):
            entry = self.inner_lrs[min(s, len(self.inner_lrs) - 1)]
            out.append(dict(zip(self.inner_names, entry)) if self.per_param_lr else entry)
        return out

    def _inner_params(self) -> dict[str, Tensor]:
        params = dict(self.model.named_parameters())
        return {n: params[n] for n in self.inner_names}

    def _cloned_buffers(self) -> dict[str, Tensor]:
        return {n: b.clone() for n, b in self.model.named_buffers()}

    def meta_loss(self, tasks: Sequence[Task]) -> Tensor:
        """Outer objective of one meta-batch; ``.backward()`` gives the meta-gradient.

        ``'textbook'``: mean over tasks of the query loss after inner adaptation. ``'faithful'``: the surrogate
        ``sum_j L_support(task j; theta) + L_query(task J; theta - alpha sum_j g_j)`` whose gradient is the official
        FAZE update ``G``.

        Args:
            tasks: a non-empty meta-batch.

        Returns:
            A scalar tensor, differentiable w.r.t. the model parameters and the learned step sizes.
        """
        if len(tasks) == 0:
            raise ValueError("meta_loss needs at least one task")
        if self.mode == "textbook":
            losses = []
            for task in tasks:
                buffers = self._cloned_buffers()
                adapted = inner_loop(
                    self.model,
                    self._inner_params(),
                    task.support,
                    self.loss_fn,
                    self.inner_steps,
                    self.inner_lr,
                    first_order=self.first_order,
                    per_step_lrs=self._step_lrs(self.inner_steps),
                    buffers=buffers,
                )
                losses.append(self.loss_fn(_forward(self.model, {**buffers, **adapted}, task.query_x), task.query_y))
            return torch.stack(losses).mean()
        return self._faithful_meta_loss(tasks)

    def _faithful_meta_loss(self, tasks: Sequence[Task]) -> Tensor:
        theta = self._inner_params()
        names = list(theta)
        buffers = self._cloned_buffers()  # one module in the reference: tasks share (and update) the same buffers
        support_total: Tensor | None = None
        grad_sum: list[Tensor | None] = [None] * len(names)
        for task in tasks:
            loss = self.loss_fn(_forward(self.model, {**buffers, **theta}, task.support_x), task.support_y)
            grads = torch.autograd.grad(
                loss,
                [theta[n] for n in names],
                create_graph=not self.first_order,
                retain_graph=True,  # the support loss itself is part of the returned surrogate
                allow_unused=True,
            )
            for i, g in enumerate(grads):
                if g is not None:
                    g = g.detach() if self.first_order else g
                    grad_sum[i] = g if grad_sum[i] is None else grad_sum[i] + g
            support_total = loss if support_total is None else support_total + loss
        step_lrs = self._step_lrs(1)
        step_lr: StepLR = step_lrs[0] if step_lrs is not None else self.inner_lr
        adapted = {}
        for n, g in zip(names, grad_sum):
            a = step_lr[n] if isinstance(step_lr, Mapping) else step_lr
            adapted[n] = theta[n] if g is None else theta[n] - a * g
        last = tasks[-1]
        query = self.loss_fn(_forward(self.model, {**buffers, **adapted}, last.query_x), last.query_y)
        assert support_total is not None
        return support_total + query

    @torch.no_grad()
    def adapt(self, support: tuple[Any, Tensor], steps: int | None = None, lr: float | None = None) -> nn.Module:
        """Return a deep copy of the model fine-tuned on ``support`` with full-batch SGD (FAZE PS-GEN).

        The meta-model is left untouched. Each step is first order (no graph is kept across steps), so long
        test-time runs (FAZE: 1000 steps) use constant memory.

        Args:
            support: ``(x, y)``; ``x`` may be a tuple of model inputs.
            steps: number of SGD steps; defaults to ``inner_steps``.
            lr: constant step size; defaults to the learned step sizes if any (steps past the learned ones reuse the
                last), else ``inner_lr``.

        Returns:
            The adapted copy (same class and train/eval mode as ``self.model``).

        Shape:
            - support x: ``(K, *)``, y: ``(K, *)``.
        """
        steps = self.inner_steps if steps is None else steps
        _check_steps(steps)
        if lr is not None:
            _check_lr(lr)
        adapted_model = copy.deepcopy(self.model)
        step_lrs = None
        if lr is None and self.inner_lrs is not None:
            step_lrs = [
                {k: v.detach() for k, v in e.items()} if isinstance(e, Mapping) else e.detach()
                for e in self._step_lrs(steps)
            ]
        params = dict(adapted_model.named_parameters())
        current = {n: params[n].detach() for n in self.inner_names}
        for s in range(steps):
            current = inner_loop(
                adapted_model,
                current,
                support,
                self.loss_fn,
                1,
                (self.inner_lr if lr is None else lr) if step_lrs is None else None,
                first_order=True,
                per_step_lrs=None if step_lrs is None else [step_lrs[s]],
            )
            current = {n: t.detach() for n, t in current.items()}
        for n, t in current.items():
            params[n].copy_(t)
        return adapted_model
