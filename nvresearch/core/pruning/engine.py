"""The paper's pruning engine: interleave pruning with fine-tuning (official ``pruning_engine.py``).

:class:`Pruner` holds the schedule: after every minibatch's backward pass the criterion accumulates; every
``frequency`` minibatches (the first after ``frequency + 1``, as the reference) it removes the ``prune_per_step``
channels with the lowest momentum-averaged score, ranked globally across groups, until a target number of channels,
MACs or parameters is reached. Removed channels are masked (zero everywhere, so they never come back during
fine-tuning); :meth:`Pruner.finalize` removes them physically. :func:`prune` runs the whole loop for users outside
Lightning; ``nvresearch.taylor.callback.TaylorPruning`` is the Lightning callback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nvresearch.core.pruning.graph import DependencyGraph
from nvresearch.core.pruning.importance import Importance, TaylorSO, make_criterion
from nvresearch.core.pruning.surgery import remove_channels

__all__ = ["PruneTarget", "Pruner", "prune"]


@dataclass
class PruneTarget:
    """When to stop pruning: the first of these that is reached (``None`` = not used).

    Attributes:
        channels: Number of channels to remove in total (the reference's ``prune_neurons_max``).
        macs_ratio: Fraction of the original MACs to keep (e.g. 0.6 keeps 60 % of the FLOPs).
        params_ratio: Fraction of the original parameters to keep.
        steps: Maximum number of pruning steps (the reference's ``maximum_pruning_iterations``).
    """

    channels: int | None = None
    macs_ratio: float | None = None
    params_ratio: float | None = None
    steps: int | None = None

    def __post_init__(self) -> None:
        if all(v is None for v in (self.channels, self.macs_ratio, self.params_ratio, self.steps)):
            raise ValueError("a pruning target needs channels, macs_ratio, params_ratio or steps")
        for name in ("macs_ratio", "params_ratio"):
            v = getattr(self, name)
            if v is not None and not 0.0 < v <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {v}")


@dataclass
class PruneRecord:
    """One pruning step: minibatch index, channels removed so far, MACs and parameters left."""

    iteration: int
    removed: int
    macs: int
    params: int
    per_group: dict[str, int] = field(default_factory=dict)


class Pruner:
    """Interleaved pruning with a global ranking.

    Args:
        graph: Dependency graph of the network; masking hooks are attached on construction.
        criterion: An :class:`~nvresearch.core.pruning.importance.Importance` on ``graph``.
        target: When to stop (:class:`PruneTarget`).
        prune_per_step: Channels removed per pruning step (the reference's ``prune_per_iteration``; 100 on ImageNet).
        frequency: Minibatches between pruning steps (30 on ImageNet).
        bn_term: MAC convention (see :func:`~nvresearch.core.pruning.flops.count_macs_and_params`).
        l2_normalization_per_layer: Divide each group's scores by their l2 norm (``+ 1e-8``) before the global
            ranking (the reference's ``l2_normalization_per_layer``; off in all its configs).
        pruning_threshold: Skip a pruning step (the window keeps accumulating) while the mean training loss since
            the last step exceeds this (the reference's ``pruning_threshold``; 100 there means off). Needs the loss
            in :meth:`after_backward`.
        fixed_criteria: Estimate the scores once, at the first pruning step, and rank every later step on them
            (the reference's ``fixed_criteria``); the criterion stops accumulating after that step.
    """

    def __init__(
        self,
        graph: DependencyGraph,
        criterion: Importance,
        target: PruneTarget,
        prune_per_step: int = 100,
        frequency: int = 30,
        bn_term: bool = True,
        l2_normalization_per_layer: bool = False,
        pruning_threshold: float | None = None,
        fixed_criteria: bool = False,
    ) -> None:
        if prune_per_step < 1 or frequency < 1:
            raise ValueError("prune_per_step and frequency must be positive")
        if criterion.graph is not graph:
            raise ValueError("criterion was built on another DependencyGraph")
        self.graph = graph
        self.criterion = criterion
        self.target = target
        self.prune_per_step = int(prune_per_step)
        self.frequency = int(frequency)
        self.bn_term = bn_term
        self.l2_normalization_per_layer = bool(l2_normalization_per_layer)
        self.pruning_threshold = pruning_threshold
        self.fixed_criteria = bool(fixed_criteria)
        self._fixed: dict[str, torch.Tensor] | None = None
        self._loss_sum, self._loss_count = 0.0, 0
        self.skipped = 0
        self.iteration = 0
        self.history: list[PruneRecord] = []
        self.full_macs, self.full_params = graph.count(bn_term=bn_term)
        self.done = False
        self._handles = graph.attach_masks()
        self._sizes = [g.size for g in graph.groups]
        self._owner = torch.cat([torch.full((g.size,), i, dtype=torch.long) for i, g in enumerate(graph.groups)])

    @property
    def removed(self) -> int:
        """Channels removed so far."""
        return sum(int((~k).sum()) for k in self.graph.keep_masks())

    def count(self) -> tuple[int, int]:
        """MACs and parameters of the network as currently pruned."""
        return self.graph.count(bn_term=self.bn_term)

    def _reached(self, macs: int, params: int, removed: int) -> bool:
        t = self.target
        return (
            (t.channels is not None and removed >= t.channels)
            or (t.macs_ratio is not None and macs <= t.macs_ratio * self.full_macs)
            or (t.params_ratio is not None and params <= t.params_ratio * self.full_params)
            or (t.steps is not None and len(self.history) >= t.steps)
        )

    def after_backward(self, loss: torch.Tensor | None = None) -> bool:
        """Accumulate the criterion for this minibatch and prune when due; returns whether a step ran.

        Call after ``loss.backward()`` (and typically after ``optimizer.step()``, as the reference does).
        """
        if self.done:
            return False
        if self._fixed is None:
            self.criterion.accumulate(loss)
        if loss is not None:
            self._loss_sum += float(loss.detach())
            self._loss_count += 1
        ran = False
        if self.iteration % self.frequency == 0 and self.iteration != 0:
            mean_loss = self._loss_sum / max(self._loss_count, 1)
            if self.pruning_threshold is not None and self._loss_count == 0:
                raise ValueError("pruning_threshold needs the loss: call after_backward(loss)")
            if self.pruning_threshold is not None and mean_loss > self.pruning_threshold:
                self.skipped += 1  # the loss is too high to prune now (reference pruning_engine.py)
            else:
                self.prune_step()
                ran = True
            self._loss_sum, self._loss_count = 0.0, 0
        self.iteration += 1
        return ran

    @torch.no_grad()
    def prune_step(self) -> int:
        """One pruning step: remove the lowest-scoring channels globally; returns how many were removed."""
        if self._fixed is not None:
            scores = self._fixed
        else:
            scores = self.criterion.step()
            if self.fixed_criteria:
                self._fixed = scores
        groups = self.graph.groups
        if self.l2_normalization_per_layer:
            scores = {name: v / (v.float().norm() + 1e-8) for name, v in scores.items()}
        flat = torch.cat([scores[g.name].detach().float().cpu().flatten() for g in groups])
        alive = torch.cat(self.graph.keep_masks())
        flat[~alive] = float("inf")  # already removed: stay removed, as in the reference
        # never remove a group's last channel: protect each group's best alive channel
        best = torch.full((len(groups),), -float("inf")).scatter_reduce(
            0, self._owner, flat.masked_fill(~alive, -float("inf")), "amax"
        )
        protect = alive & (flat == best[self._owner])
        flat[protect] = float("inf")
        n_candidates = int(torch.isfinite(flat).sum())
        removed_before = int((~alive).sum())
        n = min(self.prune_per_step, n_candidates)
        if self.target.channels is not None:
            n = min(n, max(0, self.target.channels - removed_before))
        order = torch.argsort(flat, stable=True)[:n]

        def apply(k: int) -> list[torch.Tensor]:
            new = alive.clone()
            new[order[:k]] = False
            return list(new.split(self._sizes))

        new_keep = apply(n)
        macs, params = self.graph.count(new_keep, bn_term=self.bn_term)
        if n > 0 and (self.target.macs_ratio is not None or self.target.params_ratio is not None):
            if self._reached(macs, params, removed_before + n):  # stop at the first channel that reaches the target
                lo, hi = 1, n
                while lo < hi:
                    mid = (lo + hi) // 2
                    m_mid, p_mid = self.graph.count(apply(mid), bn_term=self.bn_term)
                    if self._reached(m_mid, p_mid, removed_before + mid):
                        hi = mid
                    else:
                        lo = mid + 1
                n = lo
                new_keep = apply(n)
                macs, params = self.graph.count(new_keep, bn_term=self.bn_term)
        self.graph.set_keep(new_keep)
        removed = removed_before + n
        per_group = {g.name: int(g.size - k.sum()) for g, k in zip(groups, new_keep, strict=True)}
        self.history.append(PruneRecord(self.iteration, removed, macs, params, per_group))
        if self._reached(macs, params, removed) or n_candidates == n:
            self.done = True
            # the criterion's hooks (gates, FO-FG's per-example recorders) must not outlive pruning: they would keep
            # recording every later minibatch and break on one of another size; the masks stay until finalize
            self.criterion.remove()
        return n

    def finalize(self, model: nn.Module | None = None) -> nn.Module:
        """Remove the masking hooks and return the physically pruned network (a copy; see ``remove_channels``)."""
        self.detach()
        return remove_channels(self.graph, model)

    def detach(self) -> None:
        """Remove the masking hooks and the criterion's hooks from the model."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self.criterion.remove()

    def state_dict(self) -> dict[str, Any]:
        """Keep masks and counters (for resuming; the criterion's window restarts empty)."""
        return {
            "keep": self.graph.keep_masks(),
            "iteration": self.iteration,
            "done": self.done,
            "history": [vars(r) for r in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.graph.set_keep(state["keep"])
        self.iteration = int(state["iteration"])
        self.done = bool(state["done"])
        self.history = [PruneRecord(**r) for r in state["history"]]
        if self.done:  # a run resumed after pruning ended: no criterion hooks (see prune_step)
            self.criterion.remove()


def prune(
    model: nn.Module,
    loader: Iterable[Any],
    criterion: str | Callable[[DependencyGraph], Importance] = "taylor_fo_bn",
    target: PruneTarget | None = None,
    *,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    example_input: torch.Tensor | None = None,
    prune_per_step: int = 100,
    frequency: int = 30,
    max_epochs: int = 100,
    finetune_steps: int = 0,
) -> tuple[nn.Module, Pruner]:
    """Prune ``model`` with fine-tuning in between (the paper's loop), for use outside Lightning.

    Args:
        model: The network (trained). It is updated in place by the optimizer and masked while pruning.
        loader: Training minibatches; iterated for as many epochs as needed.
        criterion: A name from :data:`~nvresearch.core.pruning.importance.CRITERIA` or ``graph -> Importance``.
        target: When to stop pruning (default: remove half of the MACs).
        loss_fn: ``loss_fn(model, batch) -> scalar``; default: cross-entropy of ``model(batch[0])`` vs ``batch[1]``.
        optimizer: Fine-tuning optimizer over ``model``'s parameters; ``None`` prunes without fine-tuning.
        example_input: One input batch for tracing; default: ``batch[0]`` of the first minibatch.
        prune_per_step / frequency: The schedule (reference ImageNet: 100 channels every 30 minibatches).
        max_epochs: Give up pruning after this many passes over ``loader``.
        finetune_steps: Extra fine-tuning minibatches after the target is reached.

    Returns:
        ``(pruned, pruner)``: the physically smaller network (a copy) and the pruner (history, masks).
    """
    if loss_fn is None:

        def loss_fn(m: nn.Module, batch: Any) -> torch.Tensor:
            return nn.functional.cross_entropy(m(batch[0]), batch[1])

    if example_input is None:
        example_input = next(iter(loader))[0]
    graph = DependencyGraph(model, example_input)
    crit = make_criterion(criterion, graph) if isinstance(criterion, str) else criterion(graph)
    pruner = Pruner(graph, crit, target or PruneTarget(macs_ratio=0.5), prune_per_step, frequency)
    extra = 0
    for _ in range(max_epochs):
        for batch in loader:
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
            else:
                model.zero_grad(set_to_none=True)
            loss = loss_fn(model, batch)
            loss.backward(retain_graph=isinstance(crit, TaylorSO))
            if not pruner.done:
                pruner.after_backward(loss)
            else:
                extra += 1
            if optimizer is not None:
                optimizer.step()
            if pruner.done and extra >= finetune_steps:
                return pruner.finalize(), pruner
    return pruner.finalize(), pruner
