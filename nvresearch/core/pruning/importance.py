"""Channel-importance criteria on dependency groups (Molchanov et al., CVPR 2019, §3).

Every criterion scores the channels of the groups of a :class:`~nvresearch.core.pruning.graph.DependencyGraph`, one
score per channel, keyed by group name. "Method N" is the ``--pruning-method`` id of the official
``pruning_engine.py`` (listed in its README). The protocol (Torch-Pruning style, with the paper's accumulation
explicit):

- :meth:`Importance.accumulate` after each ``loss.backward()`` (data-driven criteria read gradients; the caller
  zeroes gradients between minibatches, as an ordinary training loop does);
- :meth:`Importance.scores` returns the window mean ``I_hat = acc / T`` over the ``T`` minibatches since the last
  step, as the official engine;
- :meth:`Importance.step` is one pruning step: momentum across pruning steps
  ``I_tilde <- beta * I_tilde + (1 - beta) * I_hat`` (``I_tilde = I_hat`` at the first step; the reference configs
  use ``beta = 0.9``), then the window is cleared;
- :meth:`Importance.reset` returns the object to its freshly constructed state; :meth:`Importance.remove` removes
  any hooks.

The paper's gate sits right after the BN that follows each producer (paper Table 2, "gate after BN"). There the
gate gradient is ``dL/dz = gamma * dL/dgamma + beta * dL/dbeta`` (chain rule through ``gamma * x_hat + beta``), read
from the BN's own gradients: no gate, no hook. Where no BN follows a producer (LeNet, plain CNNs, linear layers) a
gate ``z = 1`` is inserted by a forward hook, which leaves the outputs unchanged. A group with several producers (a
residual stage, a depthwise pair) has one shared gate, so its gradient is the sum over its gate points: the paper's
joint removal to first order (§3). Ranking is meant to be global across groups on raw scores (no per-layer
normalisation, as in every official config).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from nvresearch.core.pruning.graph import DependencyGraph, GatePoint, register_pruning_hook

__all__ = [
    "CRITERIA",
    "PAPER_MOMENTUM",
    "BNScale",
    "OBD",
    "Importance",
    "RandomImportance",
    "TaylorFO",
    "TaylorFOBN",
    "TaylorFOBNSum",
    "TaylorFOFG",
    "TaylorFOWeight",
    "TaylorOutput",
    "TaylorSO",
    "WeightMagnitude",
    "make_criterion",
]

#: ``pruning_momentum`` of every config the official repository ships (``configs/*.json``).
PAPER_MOMENTUM = 0.9


class Importance:
    """Base class: per-channel scores for every group, with windowed accumulation and momentum (official engine).

    Args:
        graph: The dependency graph of the network to score.
        momentum: ``beta`` of the momentum across pruning steps, in ``[0, 1)``; ``0`` disables it.
    """

    #: Data-driven criteria need at least one :meth:`accumulate` before :meth:`scores`.
    needs_data: bool = True

    def __init__(self, graph: DependencyGraph, momentum: float = 0.0) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if not graph.groups:
            raise ValueError("the network has no prunable channel groups")
        self.graph = graph
        self.modules: dict[str, nn.Module] = dict(graph.model.named_modules())
        self.momentum = float(momentum)
        self._acc: dict[str, torch.Tensor] = {}
        self._count = 0
        self._averaged: dict[str, torch.Tensor] | None = None

    @property
    def num_accumulated(self) -> int:
        """Number of minibatches ``T`` accumulated since the last reset or step."""
        return self._count

    def _minibatch(self) -> dict[str, torch.Tensor]:
        """Per-minibatch criterion of every group from the current gradients. Each shape: ``(size,)``."""
        raise NotImplementedError

    def _static(self) -> dict[str, torch.Tensor]:
        """Data-independent criterion of every group. Each shape: ``(size,)``."""
        raise NotImplementedError

    @torch.no_grad()
    def accumulate(self, loss: torch.Tensor | None = None) -> None:
        """Add the current minibatch's criterion to the window (``acc += I^(t)``, ``T += 1``); call after backward.

        Args:
            loss: Unused by first-order and weight-only criteria; required by :class:`TaylorSO`.
        """
        if not self.needs_data:
            return
        self._add(self._minibatch())

    def _add(self, values: Mapping[str, torch.Tensor]) -> None:
        for name, value in values.items():
            value = value.detach().float()
            if name in self._acc:
                self._acc[name] += value
            else:
                self._acc[name] = value.clone()
        self._count += 1

    @torch.no_grad()
    def scores(self) -> dict[str, torch.Tensor]:
        """Window mean ``I_hat = acc / T`` per group; for weight-only criteria, the current value.

        Returns:
            ``{group_name: scores}``, each of shape ``(size,)``, in the order of ``graph.groups``.

        Raises:
            RuntimeError: For data-driven criteria when nothing was accumulated since the last reset/step.
        """
        if not self.needs_data:
            return {name: v.detach().float().clone() for name, v in self._static().items()}
        if self._count == 0:
            raise RuntimeError(f"{type(self).__name__}.scores() called before any accumulate()")
        return {name: acc / self._count for name, acc in self._acc.items()}

    @torch.no_grad()
    def step(self) -> dict[str, torch.Tensor]:
        """One pruning step: momentum-average the window mean and clear the window.

        Returns:
            ``{group_name: I_tilde}``, each of shape ``(size,)`` (copies; safe to modify).
        """
        current = self.scores()
        if self._averaged is None or self.momentum == 0.0:
            self._averaged = current
        else:
            b = self.momentum
            self._averaged = {name: b * self._averaged[name] + (1.0 - b) * current[name] for name in current}
        self._acc = {}
        self._count = 0
        return {name: value.clone() for name, value in self._averaged.items()}

    def reset(self) -> None:
        """Clear the window and the momentum state (back to the freshly constructed state)."""
        self._acc = {}
        self._count = 0
        self._averaged = None

    def remove(self) -> None:
        """Remove any hooks this criterion registered; the model is then exactly as before."""
        self.reset()

    def __call__(self) -> dict[str, torch.Tensor]:
        return self.scores()


def _grad(param: torch.Tensor, what: str) -> torch.Tensor:
    if param.grad is None:
        raise RuntimeError(f"{what} has no .grad; call accumulate() after loss.backward()")
    return param.grad


class _Gates:
    """Multiplicative gates ``z`` (ones) at gate points, inserted with forward hooks (outputs are unchanged)."""

    def __init__(self, crit: Importance, points: list[tuple[str, GatePoint]], requires_grad: bool = True) -> None:
        self.z: dict[str, torch.Tensor] = {}
        by_module: dict[str, list[tuple[str, GatePoint]]] = {}
        for group, gp in points:
            size = next(g.size for g in crit.graph.groups if g.name == group)
            self.z.setdefault(group, torch.ones(size, requires_grad=requires_grad))
            by_module.setdefault(gp.module, []).append((group, gp))
        self.handles = [register_pruning_hook(crit.modules[m], self._hook(entries)) for m, entries in by_module.items()]

    def _hook(self, entries: list[tuple[str, GatePoint]]) -> Callable[..., torch.Tensor]:
        def hook(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
            pieces = []
            pos = 0
            for group, gp in sorted(entries, key=lambda e: e[1].offset):
                if gp.offset > pos:
                    pieces.append(torch.ones(gp.offset - pos, device=out.device, dtype=out.dtype))
                pieces.append(self.z[group].to(device=out.device, dtype=out.dtype))
                pos = gp.offset + gp.length
            if out.shape[1] > pos:
                pieces.append(torch.ones(out.shape[1] - pos, device=out.device, dtype=out.dtype))
            shape = [1] * (out.dim() - 1) + [-1] if isinstance(_m, nn.Linear) else [1, -1] + [1] * (out.dim() - 2)
            return out * torch.cat(pieces).view(shape)

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


class TaylorFO(Importance):
    """Taylor-FO on the paper's gates: ``I = (dL/dz)^2`` per minibatch (paper §3, Eq. 8; methods 22/31).

    The gate ``z`` of a group sits after the BN that follows each producer ("Taylor-FO-BN", the paper's best), where
    ``dL/dz = sum over gate points of (gamma * dL/dgamma + beta * dL/dbeta)``; without such a BN it sits on the
    producer's output (after ReLU/pooling is the same, both being positively homogeneous), via a hook. It is the square
    of the gradient of the batch-mean loss (not a mean of per-example squares, as the reference), averaged over the
    window.
    Momentum defaults to the reference's 0.9 (on in every official config).

    A residual stream (channels that meet in additions, one group per ResNet stage) has, with
    ``residual="skip_gate"`` (the default, as the reference), one gate shared by the outputs of the stage's blocks,
    after each block's final ReLU (reference ``models/resnet.py``): ``dL/dz`` is the sum over the blocks of
    ``sum_{n,h,w} a * dL/da`` at their outputs. ``residual="bn_sum"`` instead sums ``gamma * dgamma + beta * dbeta``
    over the BNs that produce the stream (each block's last BN and the downsample BN), as if each had its own gate
    tied to the others: an alternative of this library, not the reference's criterion. Groups whose additions are not
    module outputs (``ChannelGroup.stream_points`` empty) fall back to ``bn_sum``.

    Args:
        graph: Dependency graph of the network.
        momentum: ``beta`` across pruning steps.
        bn_closed_form: Use ``gamma * dgamma + beta * dbeta`` at BN gate points (``False``: hook gates everywhere;
            same values, for testing).
        residual: ``"skip_gate"`` (the reference) or ``"bn_sum"`` for residual streams (see above).

    Shape:
        - scores: ``(size,)`` per group.
    """

    def __init__(
        self,
        graph: DependencyGraph,
        momentum: float = PAPER_MOMENTUM,
        bn_closed_form: bool = True,
        residual: str = "skip_gate",
    ) -> None:
        super().__init__(graph, momentum)
        if residual not in ("skip_gate", "bn_sum"):
            raise ValueError(f"residual must be 'skip_gate' or 'bn_sum', got {residual!r}")
        self.residual = residual
        points = [
            (g.name, gp)
            for g in graph.groups
            for gp in (g.stream_points if residual == "skip_gate" and g.stream_points else g.gate_points)
        ]
        self._bn_points = [(name, gp) for name, gp in points if gp.is_bn and bn_closed_form]
        hooked = [(name, gp) for name, gp in points if not (gp.is_bn and bn_closed_form)]
        self._gates = _Gates(self, hooked) if hooked else None

    def gate_gradients(self) -> dict[str, torch.Tensor]:
        """``dL/dz`` per group from the current gradients. Each shape: ``(size,)``."""
        out = {g.name: torch.zeros(g.size) for g in self.graph.groups}
        for group, gp in self._bn_points:
            bn = self.modules[gp.module]
            value = bn.weight * _grad(bn.weight, f"{gp.module}.weight") + bn.bias * _grad(bn.bias, f"{gp.module}.bias")
            out[group] += value.detach().float().cpu()[gp.offset : gp.offset + gp.length]
        if self._gates is not None:
            for group, z in self._gates.z.items():
                if z.grad is None:
                    raise RuntimeError("gate has no gradient; call accumulate() after loss.backward()")
                out[group] += z.grad.float()
                z.grad = None
        return out

    def _minibatch(self) -> dict[str, torch.Tensor]:
        return {name: g.square() for name, g in self.gate_gradients().items()}

    def remove(self) -> None:
        super().remove()
        if self._gates is not None:
            self._gates.remove()


#: The paper's name for :class:`TaylorFO` with gates after BN (Table 3).
TaylorFOBN = TaylorFO


class TaylorFOBNSum(TaylorFO):
    """:class:`TaylorFO` with ``residual="bn_sum"``: residual streams scored by the sum of ``gamma * dgamma +
    beta * dbeta`` over the BNs producing them (this library's earlier default; not the reference's skip gate).

    Shape:
        - scores: ``(size,)`` per group.
    """

    def __init__(self, graph: DependencyGraph, momentum: float = PAPER_MOMENTUM, bn_closed_form: bool = True) -> None:
        super().__init__(graph, momentum, bn_closed_form, residual="bn_sum")


class TaylorFOFG(Importance):
    """Taylor-FO-FG: per-example squares ``sum_n (sum_hw a_n * dL/da_n)^2`` at the gate points (method 23).

    The gradient is that of the batch-mean loss, so each example's term carries ``1/N`` as in the reference.
    Uses forward hooks with tensor hooks on the gate-point outputs.

    Shape:
        - scores: ``(size,)`` per group.
    """

    def __init__(self, graph: DependencyGraph, momentum: float = PAPER_MOMENTUM) -> None:
        super().__init__(graph, momentum)
        self._per_example: dict[str, torch.Tensor] = {}
        entries: dict[str, list[tuple[str, GatePoint]]] = {}
        for g in graph.groups:
            for gp in g.gate_points:
                entries.setdefault(gp.module, []).append((g.name, gp))
        self._handles = [register_pruning_hook(self.modules[m], self._hook(e)) for m, e in entries.items()]

    def _hook(self, entries: list[tuple[str, GatePoint]]) -> Callable[..., None]:
        def forward_hook(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            if not (torch.is_grad_enabled() and out.requires_grad):
                return
            act = out.detach()

            def grad_hook(grad: torch.Tensor) -> None:
                contrib = (act * grad).flatten(2).sum(2) if act.dim() > 2 else act * grad  # (N, C)
                for group, gp in entries:
                    part = contrib[:, gp.offset : gp.offset + gp.length].detach().float().cpu()
                    prev = self._per_example.get(group)
                    self._per_example[group] = part if prev is None else prev + part

            out.register_hook(grad_hook)

        return forward_hook

    def _minibatch(self) -> dict[str, torch.Tensor]:
        if not self._per_example:
            raise RuntimeError("no gate gradients recorded; call accumulate() after loss.backward()")
        out = {g.name: self._per_example[g.name].square().sum(0) for g in self.graph.groups}
        self._per_example = {}
        return out

    def remove(self) -> None:
        super().remove()
        for h in self._handles:
            h.remove()
        self._handles = []
        self._per_example = {}


class TaylorSO(Importance):
    """Diagonal second-order Taylor on the gates: ``I = (-z * g + 0.5 * z^2 * H_zz)^2`` at ``z = 1`` (method 11).

    Inserts gates (forward hooks) at every gate point. :meth:`accumulate` takes the minibatch ``loss`` computed with
    the gates in place and differentiates it twice: one extra backward per channel, so it is meant for
    small networks, as in the reference. It does not touch ``.grad``.

    Shape:
        - scores: ``(size,)`` per group.
    """

    def __init__(self, graph: DependencyGraph, momentum: float = PAPER_MOMENTUM) -> None:
        super().__init__(graph, momentum)
        self._gates = _Gates(self, [(g.name, gp) for g in graph.groups for gp in g.gate_points])

    def accumulate(self, loss: torch.Tensor | None = None) -> None:
        if loss is None:
            raise ValueError("TaylorSO.accumulate needs the minibatch loss (with its autograd graph)")
        names = list(self._gates.z)
        zs = [self._gates.z[n] for n in names]
        grads = torch.autograd.grad(loss, zs, create_graph=True, retain_graph=True, allow_unused=True)
        values: dict[str, torch.Tensor] = {}
        for name, z, g in zip(names, zs, grads, strict=True):
            if g is None:
                values[name] = torch.zeros(z.numel())
                continue
            hzz = torch.zeros(z.numel())
            for c in range(z.numel()):
                if not g[c].requires_grad:
                    continue
                (h,) = torch.autograd.grad(g[c], z, retain_graph=True, allow_unused=True)
                hzz[c] = 0.0 if h is None else float(h[c])
            values[name] = (-g.detach().float() + 0.5 * hzz).square()
        self._add(values)

    def remove(self) -> None:
        super().remove()
        self._gates.remove()


class OBD(TaylorSO):
    """Optimal Brain Damage on the gates as the reference codes it: ``I = z * H_zz`` at ``z = 1`` (method 10).

    The diagonal of the Hessian of the minibatch loss with respect to each gate (one extra backward per channel, as
    :class:`TaylorSO`), not squared (it can be negative), averaged over the window. Needs the loss at accumulate time.

    Shape:
        - scores: ``(size,)`` per group.
    """

    def accumulate(self, loss: torch.Tensor | None = None) -> None:
        if loss is None:
            raise ValueError("OBD.accumulate needs the minibatch loss (with its autograd graph)")
        names = list(self._gates.z)
        zs = [self._gates.z[n] for n in names]
        grads = torch.autograd.grad(loss, zs, create_graph=True, retain_graph=True, allow_unused=True)
        values: dict[str, torch.Tensor] = {}
        for name, z, g in zip(names, zs, grads, strict=True):
            hzz = torch.zeros(z.numel())
            for c in range(z.numel()):
                if g is None or not g[c].requires_grad:
                    continue
                (h,) = torch.autograd.grad(g[c], z, retain_graph=True, allow_unused=True)
                hzz[c] = 0.0 if h is None else float(h[c])
            values[name] = z.detach().float() * hzz
        self._add(values)


class TaylorOutput(TaylorFOFG):
    """Taylor on the layer output (Molchanov et al., ICLR 2017; method 6).

    Per minibatch and gate point: ``mean_{n,h,w} |a * dL/da|`` (absolute value per element), summed over the
    group's gate points, then divided by its l2 norm over the group's channels (``+ 1e-8``), as the reference; then
    the window mean and momentum like every data-driven criterion.

    Shape:
        - scores: ``(size,)`` per group.
    """

    def _hook(self, entries: list[tuple[str, GatePoint]]) -> Callable[..., None]:
        def forward_hook(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            if not (torch.is_grad_enabled() and out.requires_grad):
                return
            act = out.detach()

            def grad_hook(grad: torch.Tensor) -> None:
                prod = (act * grad).abs()
                contrib = prod.transpose(0, 1).flatten(1).mean(1)  # (C,)
                for group, gp in entries:
                    part = contrib[gp.offset : gp.offset + gp.length].detach().float().cpu()
                    prev = self._per_example.get(group)
                    self._per_example[group] = part if prev is None else prev + part

            out.register_hook(grad_hook)

        return forward_hook

    def _minibatch(self) -> dict[str, torch.Tensor]:
        if not self._per_example:
            raise RuntimeError("no output gradients recorded; call accumulate() after loss.backward()")
        out = {}
        for g in self.graph.groups:
            v = self._per_example[g.name]
            out[g.name] = v / (v.norm() + 1e-8)
        self._per_example = {}
        return out


class _ProducerCriterion(Importance):
    """Base for criteria on the weights of the conv/linear layers producing each group's channels."""

    def _rows(self, fn: Callable[[torch.Tensor, str], torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for g in self.graph.groups:
            total = torch.zeros(g.size)
            for name, offset in g.producers:
                module = self.modules[name]
                rows = fn(module.weight, name)[offset : offset + g.size]
                total += rows.detach().float().cpu()
            out[g.name] = total
        return out


class TaylorFOWeight(_ProducerCriterion):
    """ "Conv weight Taylor FO": per filter, the sum of squares ``sum_s (w_s * g_s)^2`` (method 0).

    Summed over each producing filter's weights (bias excluded) and over the group's producers, per minibatch, then
    averaged over the window and momentum-smoothed like every data-driven criterion.

    Shape:
        - scores: ``(size,)`` per group.
    """

    def __init__(self, graph: DependencyGraph, momentum: float = PAPER_MOMENTUM) -> None:
        super().__init__(graph, momentum)

    def _minibatch(self) -> dict[str, torch.Tensor]:
        return self._rows(lambda w, name: (w * _grad(w, f"{name}.weight")).square().flatten(1).sum(1))


class WeightMagnitude(_ProducerCriterion):
    """ "Weight magnitude": ``sum w^2`` (``p=2``, method 2) or ``sum |w|`` (``p=1``, method 3) per filter.

    Summed over the group's producers; :meth:`accumulate` is a no-op. ``momentum`` (default 0; the reference engine
    applies its 0.9 to every criterion) smooths the values across pruning steps like the data-driven criteria.

    Shape:
        - scores: ``(size,)`` per group.
    """

    needs_data = False

    def __init__(self, graph: DependencyGraph, p: int = 2, momentum: float = 0.0) -> None:
        if p not in (1, 2):
            raise ValueError(f"p must be 1 or 2, got {p}")
        super().__init__(graph, momentum)
        self.p = p

    def _static(self) -> dict[str, torch.Tensor]:
        if self.p == 2:
            return self._rows(lambda w, _n: w.square().flatten(1).sum(1))
        return self._rows(lambda w, _n: w.abs().flatten(1).sum(1))


class BNScale(Importance):
    """ "BN scale" (Network Slimming): ``|gamma|`` at the BN gate points, summed over them (method 30).

    Raises:
        ValueError: If a group has no BN right after a producer.

    Shape:
        - scores: ``(size,)`` per group.
    """

    needs_data = False

    def __init__(self, graph: DependencyGraph, momentum: float = 0.0) -> None:
        super().__init__(graph, momentum)
        for g in graph.groups:
            if not any(gp.is_bn for gp in g.gate_points):
                raise ValueError(f"group {g.name!r} has no BatchNorm after its producers; BN scale is undefined")

    def _static(self) -> dict[str, torch.Tensor]:
        out = {}
        for g in self.graph.groups:
            total = torch.zeros(g.size)
            for gp in g.gate_points:
                if gp.is_bn:
                    total += (
                        self.modules[gp.module].weight.detach().abs().float().cpu()[gp.offset : gp.offset + gp.length]
                    )
            out[g.name] = total
        return out


class RandomImportance(Importance):
    """Random baseline: i.i.d. ``U(0, 5)`` per channel, as the reference (method 1).

    Deterministic given ``seed``: a private generator, re-seeded on :meth:`reset`; each :meth:`scores` call draws
    fresh values (groups in graph order). Global RNG state is untouched.

    Shape:
        - scores: ``(size,)`` per group.
    """

    needs_data = False

    def __init__(self, graph: DependencyGraph, seed: int = 0, momentum: float = 0.0) -> None:
        super().__init__(graph, momentum)
        self.seed = int(seed)
        self._gen = torch.Generator().manual_seed(self.seed)

    def _static(self) -> dict[str, torch.Tensor]:
        return {g.name: 5.0 * torch.rand(g.size, generator=self._gen) for g in self.graph.groups}

    def reset(self) -> None:
        super().reset()
        self._gen = torch.Generator().manual_seed(self.seed)


#: Criterion names accepted by :func:`make_criterion` (and the configs), with the reference method id.
CRITERIA: dict[str, type[Importance]] = {
    "taylor_fo_bn": TaylorFO,  # 22 / 31; residual streams: the shared skip gate (22)
    "taylor_fo_bn_sum": TaylorFOBNSum,  # 31 summed over a residual stream's BNs (not in the reference)
    "taylor_fo_fg": TaylorFOFG,  # 23
    "taylor_so": TaylorSO,  # 11
    "obd": OBD,  # 10
    "taylor_output": TaylorOutput,  # 6 (ICLR 2017)
    "taylor_fo_weight": TaylorFOWeight,  # 0
    "weight_magnitude": WeightMagnitude,  # 2
    "bn_scale": BNScale,  # 30
    "random": RandomImportance,  # 1
}


def make_criterion(name: str, graph: DependencyGraph, **kwargs: object) -> Importance:
    """Build a criterion by name (see :data:`CRITERIA`); ``kwargs`` go to its constructor."""
    if name not in CRITERIA:
        raise ValueError(f"unknown criterion {name!r}; choose one of {sorted(CRITERIA)}")
    return CRITERIA[name](graph, **kwargs)
