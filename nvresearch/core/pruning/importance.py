"""Channel-importance criteria for BatchNorm-delimited channels (Molchanov et al., CVPR 2019; spec ``taylor.md``).

Every criterion scores the output channels of a set of ``BatchNorm2d`` layers, one score per channel, keyed by the
BN's module name. The protocol (Torch-Pruning style, with the paper's accumulation made explicit):

- :meth:`Importance.accumulate` after each ``loss.backward()`` (data-driven criteria read ``.grad``; the caller must
  zero gradients between minibatches, as an ordinary training loop does);
- :meth:`Importance.scores` returns the window mean ``I_hat = acc / T`` over the ``T`` minibatches since the last
  reset/step (spec A.2);
- :meth:`Importance.step` is one pruning step: it applies the momentum across pruning steps
  ``I_tilde <- beta * I_tilde + (1 - beta) * I_hat`` (``I_tilde = I_hat`` at the first step; the reference configs use
  ``beta = 0.9``) and clears the window;
- :meth:`Importance.reset` returns the object to its freshly constructed state.

No gates are inserted and no hooks are registered: the gate-after-BN gradient is recovered from the BN's own
parameter gradients, ``dL/dz = gamma * dL/dgamma + beta * dL/dbeta`` (spec A.1), so the model is never modified.
Ranking is meant to be global across layers on raw scores (no per-layer normalisation, spec A.2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

__all__ = [
    "PAPER_MOMENTUM",
    "BNScale",
    "Importance",
    "RandomImportance",
    "TaylorFOBN",
    "TaylorFOWeight",
    "TaylorSOBN",
    "WeightMagnitude",
    "find_bn_layers",
    "find_producing_convs",
]

#: ``pruning_momentum`` of every shipped reference config (spec A.2, B.1).
PAPER_MOMENTUM = 0.9


def find_bn_layers(model: nn.Module) -> list[str]:
    """Names of all ``BatchNorm2d`` modules of ``model`` in ``named_modules()`` order."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]


def find_producing_convs(model: nn.Module, bn_names: Sequence[str]) -> dict[str, str]:
    """Map each BN name to the ``Conv2d`` that produces its input.

    Heuristic (as the reference, which takes the module "two places back", spec A.1 method 0): the last ``Conv2d``
    registered before the BN in ``named_modules()`` order, which must have ``out_channels == num_features``. This
    holds for torchvision ResNets, VGG-BN and DenseNets; pass an explicit mapping to the criteria otherwise.

    Raises:
        ValueError: If no matching convolution precedes a BN.
    """
    wanted = set(bn_names)
    result: dict[str, str] = {}
    last_conv: tuple[str, nn.Conv2d] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            last_conv = (name, module)
        elif name in wanted:
            if last_conv is None or last_conv[1].out_channels != module.num_features:
                raise ValueError(f"no Conv2d with {module.num_features} output channels precedes BN '{name}'")
            result[name] = last_conv[0]
    missing = wanted - result.keys()
    if missing:
        raise ValueError(f"BN layers not found in model: {sorted(missing)}")
    return result


class Importance:
    """Base class: per-channel scores for BN layers with windowed accumulation and momentum (spec A.2).

    Args:
        model: The network. Only references to its modules are kept.
        layers: BN module names to score; ``None`` means every ``BatchNorm2d`` of the model.
        momentum: ``beta`` of the momentum across pruning steps, in ``[0, 1)``; ``0`` disables it.

    Subclasses implement :meth:`_minibatch` (data-driven) or :meth:`_static` (weight-only).
    """

    #: Data-driven criteria need at least one :meth:`accumulate` before :meth:`scores`.
    needs_data: bool = True

    def __init__(self, model: nn.Module, layers: Sequence[str] | None = None, momentum: float = 0.0) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        modules = dict(model.named_modules())
        names = find_bn_layers(model) if layers is None else list(layers)
        if not names:
            raise ValueError("no BatchNorm2d layers to score")
        self.bns: dict[str, nn.BatchNorm2d] = {}
        for name in names:
            bn = modules.get(name)
            if not isinstance(bn, nn.BatchNorm2d):
                raise ValueError(f"'{name}' is not a BatchNorm2d of the model")
            self.bns[name] = bn
        self.momentum = float(momentum)
        self._acc: dict[str, torch.Tensor] = {}
        self._count = 0
        self._averaged: dict[str, torch.Tensor] | None = None

    @property
    def num_accumulated(self) -> int:
        """Number of minibatches ``T`` accumulated since the last reset or step."""
        return self._count

    def _minibatch(self, name: str) -> torch.Tensor:
        """Per-minibatch criterion of BN ``name`` from the current ``.grad``. Shape: ``(C,)``."""
        raise NotImplementedError

    def _static(self, name: str) -> torch.Tensor:
        """Data-independent criterion of BN ``name``. Shape: ``(C,)``."""
        raise NotImplementedError

    @torch.no_grad()
    def accumulate(self, loss: torch.Tensor | None = None) -> None:
        """Add the current minibatch's criterion to the window (``acc += I^(t)``, ``T += 1``); call after backward.

        Args:
            loss: Unused by first-order and weight-only criteria (they read ``.grad``); required by
                :class:`TaylorSOBN`, which differentiates it twice.
        """
        if not self.needs_data:
            return
        self._add({name: self._minibatch(name).detach() for name in self.bns})

    def _add(self, values: Mapping[str, torch.Tensor]) -> None:
        for name, value in values.items():
            if name in self._acc:
                self._acc[name] += value
            else:
                self._acc[name] = value.clone()
        self._count += 1

    @torch.no_grad()
    def scores(self) -> dict[str, torch.Tensor]:
        """Window mean ``I_hat = acc / T`` per BN (spec A.2); for weight-only criteria, the current value.

        Returns:
            ``{bn_name: scores}``, each of shape ``(C,)`` with ``C = num_features`` of that BN.

        Raises:
            RuntimeError: For data-driven criteria when nothing was accumulated since the last reset/step.
        """
        if not self.needs_data:
            return {name: self._static(name).detach().clone() for name in self.bns}
        if self._count == 0:
            raise RuntimeError(f"{type(self).__name__}.scores() called before any accumulate()")
        return {name: acc / self._count for name, acc in self._acc.items()}

    @torch.no_grad()
    def step(self) -> dict[str, torch.Tensor]:
        """One pruning step: momentum-average the window mean and clear the window (spec A.2).

        ``I_tilde = I_hat`` at the first step (or with ``momentum == 0``), else
        ``I_tilde <- momentum * I_tilde + (1 - momentum) * I_hat``.

        Returns:
            ``{bn_name: I_tilde}``, each of shape ``(C,)`` (copies; safe to modify).
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
        """Drop all references to the model. Criteria register no hooks, so the model is untouched."""
        self.reset()
        self.bns = {}

    def __call__(self) -> dict[str, torch.Tensor]:
        return self.scores()


def _grad(param: torch.Tensor, what: str) -> torch.Tensor:
    if param.grad is None:
        raise RuntimeError(f"{what} has no .grad; call accumulate() after loss.backward()")
    return param.grad


class TaylorFOBN(Importance):
    """Taylor-FO-BN: first-order Taylor on a virtual gate right after each BN (paper §3; spec A.1 methods 22/31).

    Per minibatch ``I = (gamma * dL/dgamma + beta * dL/dbeta)^2``, which equals ``(dL/dz)^2`` for a multiplicative
    gate ``z = 1`` inserted after the BN output. It is the square of the gradient of the batch-mean loss (not a mean
    of per-example squares, spec E.1), averaged over the minibatches of the window. Momentum defaults to the
    reference's ``0.9`` (spec E.2).

    The ResNet skip-gate divisors of the reference (3/4/6/3, and 3 for every other gate, spec A.2) apply to shared
    stage gates, which this per-BN criterion does not model.

    Shape:
        - scores: ``(C,)`` per BN.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] | None = None, momentum: float = PAPER_MOMENTUM) -> None:
        super().__init__(model, layers, momentum)
        for name, bn in self.bns.items():
            if not bn.affine:
                raise ValueError(f"BN '{name}' has no affine parameters")

    def _minibatch(self, name: str) -> torch.Tensor:
        bn = self.bns[name]
        gate_grad = bn.weight * _grad(bn.weight, f"{name}.weight") + bn.bias * _grad(bn.bias, f"{name}.bias")
        return gate_grad.square()


class TaylorSOBN(TaylorFOBN):
    """Diagonal second-order Taylor on a virtual gate after each BN (paper §3; spec A.1 method 11, E.13).

    Per minibatch ``I = (-z * g + 0.5 * z^2 * H_zz)^2`` at ``z = 1``, with ``g = dL/dz = gamma * dL/dgamma +
    beta * dL/dbeta`` and ``H_zz = d^2L/dz^2 = [gamma, beta] H_c [gamma, beta]^T`` (``H_c`` the 2x2 Hessian block
    of channel ``c`` in ``(gamma_c, beta_c)``), so no gate is inserted. Costs one extra backward pass per channel:
    meant for small networks, as in the reference.

    :meth:`accumulate` takes the minibatch ``loss`` (with its graph) instead of reading ``.grad``; it does not touch
    ``.grad``, so it can be called before or instead of ``loss.backward()`` (then pass ``retain_graph=True`` there).

    Shape:
        - scores: ``(C,)`` per BN.
    """

    def accumulate(self, loss: torch.Tensor | None = None) -> None:
        if loss is None:
            raise ValueError("TaylorSOBN.accumulate needs the minibatch loss (with its autograd graph)")
        params = [p for bn in self.bns.values() for p in (bn.weight, bn.bias)]
        grads = torch.autograd.grad(loss, params, create_graph=True, retain_graph=True)
        values: dict[str, torch.Tensor] = {}
        for i, (name, bn) in enumerate(self.bns.items()):
            gamma, beta = bn.weight, bn.bias
            gate_grad = gamma * grads[2 * i] + beta * grads[2 * i + 1]  # g_c, differentiable
            hzz = torch.empty_like(gate_grad, requires_grad=False)
            for c in range(gate_grad.numel()):
                d_gamma, d_beta = torch.autograd.grad(gate_grad[c], (gamma, beta), retain_graph=True)
                # d(g_c)/dz = gamma_c * dg_c/dgamma_c + beta_c * dg_c/dbeta_c = g_c + H_zz,c
                hzz[c] = (gamma[c] * d_gamma[c] + beta[c] * d_beta[c] - gate_grad[c]).detach()
            g = gate_grad.detach()
            values[name] = (-g + 0.5 * hzz).square()
        self._add(values)


class _ConvCriterion(Importance):
    """Base for criteria on the ``Conv2d`` producing each BN's input (see :func:`find_producing_convs`)."""

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str] | None = None,
        momentum: float = PAPER_MOMENTUM,
        convs: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(model, layers, momentum)
        mapping = dict(convs) if convs is not None else find_producing_convs(model, list(self.bns))
        modules = dict(model.named_modules())
        self.convs: dict[str, nn.Conv2d] = {}
        for name, bn in self.bns.items():
            conv = modules.get(mapping.get(name, ""))
            if not isinstance(conv, nn.Conv2d) or conv.out_channels != bn.num_features:
                raise ValueError(f"no Conv2d with {bn.num_features} output channels mapped to BN '{name}'")
            self.convs[name] = conv

    def remove(self) -> None:
        super().remove()
        self.convs = {}


class TaylorFOWeight(_ConvCriterion):
    """ "Conv weight Taylor FO": per filter, the sum of squares ``sum_s (w_s * g_s)^2`` (spec A.1, method 0).

    Summed over the filter's weights ``(in/groups, k_h, k_w)`` of the convolution producing the BN input (the bias,
    if any, is not included), per minibatch, then averaged over the window and momentum-smoothed across pruning
    steps like every data-driven criterion (spec A.2; the reference's ``pruning_momentum`` is global, default 0.9).

    Shape:
        - scores: ``(C,)`` per BN, ``C = conv.out_channels``.
    """

    def _minibatch(self, name: str) -> torch.Tensor:
        conv = self.convs[name]
        weight = conv.weight
        return (weight * _grad(weight, f"conv of {name}")).square().flatten(1).sum(1)


class WeightMagnitude(_ConvCriterion):
    """ "Weight magnitude": ``sum w^2`` (``p=2``, method 2) or ``sum |w|`` (``p=1``, method 3) per filter (spec A.1).

    Computed from the current weights of the convolution producing the BN input; :meth:`accumulate` is a no-op and no
    momentum is applied (the reference re-evaluates it per minibatch and smooths it like the data-driven criteria,
    which differs only while the weights are being fine-tuned between pruning steps).

    Args:
        p: ``2`` for the squared L2 norm (the reference's "weight norm"), ``1`` for the L1 norm.

    Shape:
        - scores: ``(C,)`` per BN.
    """

    needs_data = False

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str] | None = None,
        p: int = 2,
        convs: Mapping[str, str] | None = None,
    ) -> None:
        if p not in (1, 2):
            raise ValueError(f"p must be 1 or 2, got {p}")
        super().__init__(model, layers, 0.0, convs)
        self.p = p

    def _static(self, name: str) -> torch.Tensor:
        weight = self.convs[name].weight.flatten(1)
        return weight.square().sum(1) if self.p == 2 else weight.abs().sum(1)


class BNScale(Importance):
    """ "BN scale" (Network Slimming): ``|gamma|`` per channel (spec A.1, method 30). Weight-only.

    Shape:
        - scores: ``(C,)`` per BN.
    """

    needs_data = False

    def __init__(self, model: nn.Module, layers: Sequence[str] | None = None) -> None:
        super().__init__(model, layers, 0.0)
        for name, bn in self.bns.items():
            if not bn.affine:
                raise ValueError(f"BN '{name}' has no affine parameters")

    def _static(self, name: str) -> torch.Tensor:
        return self.bns[name].weight.abs()


class RandomImportance(Importance):
    """Random baseline: i.i.d. ``U(0, 5)`` per channel, as the reference (spec A.1, method 1).

    Deterministic given ``seed``: a private generator is seeded at construction and on :meth:`reset`; each
    :meth:`scores` call draws fresh values (layers in ``named_modules()`` order). Global RNG state is untouched.

    Shape:
        - scores: ``(C,)`` per BN, float32 on the BN's device.
    """

    needs_data = False

    def __init__(self, model: nn.Module, layers: Sequence[str] | None = None, seed: int = 0) -> None:
        super().__init__(model, layers, 0.0)
        self.seed = int(seed)
        self._gen = torch.Generator().manual_seed(self.seed)

    def _static(self, name: str) -> torch.Tensor:
        bn = self.bns[name]
        return (5.0 * torch.rand(bn.num_features, generator=self._gen)).to(bn.weight.device if bn.affine else "cpu")

    def reset(self) -> None:
        super().reset()
        self._gen = torch.Generator().manual_seed(self.seed)
