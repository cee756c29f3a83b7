"""The oracle (true loss change of removing each channel alone) and rank correlation (paper Table 1).

The reference's "To come" list promised this code and never released it (issue #1). Here the oracle removes each
channel alone by masking it everywhere it lives (exactly what physical removal computes), forwards the same
minibatches and records ``|L_base - L_removed|`` of the batch-mean loss, averaged over the minibatches. The
correlation of a criterion with it is computed globally, over all channels of the network pooled (paper Table 1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from nvresearch.core.pruning.graph import DependencyGraph

__all__ = ["oracle_importance", "rank_correlation"]

LossFn = Callable[[nn.Module, object], torch.Tensor]


@torch.no_grad()
def oracle_importance(
    graph: DependencyGraph,
    batches: Iterable[object],
    loss_fn: LossFn,
    signed: bool = False,
) -> dict[str, torch.Tensor]:
    """Loss change from removing each channel alone, averaged over ``batches`` (official method 40).

    Costs one forward pass per channel and minibatch. Channels already removed by the graph's keep masks get 0.
    The model's train/eval mode is left as it is (use eval mode for a deterministic oracle).

    Args:
        graph: Dependency graph of the network (its current keep masks are respected).
        batches: Minibatches, each passed to ``loss_fn`` unchanged.
        loss_fn: ``loss_fn(model, batch) -> scalar`` batch-mean loss.
        signed: Return ``mean(L_removed - L_base)`` instead of the reference's ``mean |L_base - L_removed|``.

    Returns:
        ``{group_name: delta}``, each of shape ``(size,)``.
    """
    model = graph.model
    base_keep = graph.keep_masks()
    totals = {g.name: torch.zeros(g.size, dtype=torch.float64) for g in graph.groups}
    n_batches = 0
    with graph.masked():
        for batch in batches:
            n_batches += 1
            graph.set_keep(base_keep)
            base = float(loss_fn(model, batch))
            for i, g in enumerate(graph.groups):
                for c in range(g.size):
                    if not bool(base_keep[i][c]) or int(base_keep[i].sum()) < 2:
                        continue
                    keep = [k.clone() for k in base_keep]
                    keep[i][c] = False
                    graph.set_keep(keep)
                    delta = float(loss_fn(model, batch)) - base
                    totals[g.name][c] += delta if signed else abs(delta)
    graph.set_keep(base_keep)
    if n_batches == 0:
        raise ValueError("oracle_importance needs at least one minibatch")
    return {name: (t / n_batches).float() for name, t in totals.items()}


def _flat(scores: Mapping[str, torch.Tensor] | torch.Tensor, order: list[str] | None) -> torch.Tensor:
    if isinstance(scores, torch.Tensor):
        return scores.detach().flatten().double().cpu()
    names = order if order is not None else list(scores)
    return torch.cat([scores[n].detach().flatten().double().cpu() for n in names])


def rank_correlation(
    criterion: Mapping[str, torch.Tensor] | torch.Tensor,
    oracle: Mapping[str, torch.Tensor] | torch.Tensor,
    exclude_zero: bool = False,
) -> dict[str, float]:
    """Spearman's rho and Kendall's tau between a criterion and the oracle, all channels pooled (paper Table 1).

    Args:
        criterion: Scores per group (``{name: (size,)}``) or a flat tensor.
        oracle: The same layout (dict keys are matched by name).
        exclude_zero: Drop channels where both are exactly 0 (dead units inflate the correlation).

    Returns:
        ``{"spearman": rho, "kendall": tau, "n": number of channels used}``.
    """
    from scipy.stats import kendalltau, spearmanr

    order = list(oracle) if isinstance(oracle, Mapping) else None
    if isinstance(criterion, Mapping) and order is not None and set(criterion) != set(order):
        raise ValueError(f"criterion and oracle cover different groups: {sorted(set(criterion) ^ set(order))}")
    a, b = _flat(criterion, order), _flat(oracle, order)
    if a.shape != b.shape:
        raise ValueError(f"criterion has {a.numel()} scores, oracle {b.numel()}")
    if exclude_zero:
        keep = (a != 0) | (b != 0)
        a, b = a[keep], b[keep]
    if a.numel() < 2:
        raise ValueError("need at least two channels to correlate")
    rho = spearmanr(a.numpy(), b.numpy()).statistic
    tau = kendalltau(a.numpy(), b.numpy()).statistic
    return {"spearman": float(rho), "kendall": float(tau), "n": int(a.numel())}
