"""Lightning callback running the paper's pruning engine during fine-tuning.

Works with any LightningModule of this library that exposes its network as an attribute (``net`` by default) and an
``example_input_array`` (or pass ``input_shape``). From epoch ``start_epoch`` on, after every backward pass the
criterion accumulates; every ``frequency`` minibatches the ``prune_per_step`` lowest-ranked channels (global ranking)
are masked, until the target is reached; training then continues as fine-tuning. Masked channels are exactly zero
everywhere, so validation and test measure the pruned network; when training ends the callback also writes the
physically smaller network (``pruned_model.pt``, loadable with ``torch.load(..., weights_only=False)``) and the
pruning history (``pruning.json``) into the run folder. Keep masks and counters are saved in checkpoints, so a resumed
run continues with the same channels removed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist

from nvresearch.core.pruning import DependencyGraph, Pruner, PruneTarget, make_criterion, remove_channels

__all__ = ["TaylorPruning"]


def _average_window_over_processes(criterion: Any) -> None:
    """Under DDP, average the criterion's window over the processes before each pruning step.

    The criteria read gradients after backward. Parameter gradients (Taylor-FO-BN's ``gamma * dgamma``) are already
    averaged by DDP and equal in every process, but gate and activation gradients (Taylor-FO on gates, FO-FG, ...)
    are local to each process's shard of the batch. Ranked separately, the processes would mask different channels
    and the replicas would silently stop being one network; averaged, every process removes the same channels.
    Equal values stay unchanged (``(x + x) / 2 == x``), so Taylor-FO-BN prunes as in one process.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1 or not criterion.needs_data:
        return
    step = criterion.step

    def synced_step() -> dict[str, torch.Tensor]:
        world = dist.get_world_size()
        # NCCL reduces only CUDA tensors; the criteria keep their windows on the CPU
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
        for name in sorted(criterion._acc):  # the same order in every process
            acc = criterion._acc[name]
            total = acc.to(device) if device is not None else acc.clone()
            dist.all_reduce(total)
            acc.copy_(total / world)
        return step()

    criterion.step = synced_step


class TaylorPruning(pl.Callback):
    """Interleaved pruning of ``pl_module.<net_attr>``.

    Args:
        criterion: A name of :data:`nvresearch.core.pruning.CRITERIA` (``taylor_fo_bn`` is the paper's best).
        prune_per_step: Channels removed per pruning step (reference ImageNet: 100).
        frequency: Minibatches between pruning steps (reference ImageNet: 30; the first after ``frequency + 1``).
        target_channels / target_macs_ratio / target_params_ratio / max_steps: Stop at the first reached.
        start_epoch: Epoch at which pruning starts (earlier epochs train the unpruned network).
        momentum: ``beta`` across pruning steps for data-driven criteria (reference: 0.9).
        net_attr: Attribute of the LightningModule holding the network.
        input_shape: ``(C, H, W)`` for tracing; default: the module's ``example_input_array``.
        seed: Seed of the random criterion.
    """

    def __init__(
        self,
        criterion: str = "taylor_fo_bn",
        prune_per_step: int = 100,
        frequency: int = 30,
        target_channels: int | None = None,
        target_macs_ratio: float | None = None,
        target_params_ratio: float | None = None,
        max_steps: int | None = None,
        start_epoch: int = 0,
        momentum: float = 0.9,
        net_attr: str = "net",
        input_shape: Sequence[int] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if criterion in ("taylor_so", "obd"):
            raise ValueError(f"{criterion} needs the loss graph when accumulating; use nvresearch.core.pruning.prune()")
        self.criterion_name = criterion
        self.target = PruneTarget(target_channels, target_macs_ratio, target_params_ratio, max_steps)
        self.prune_per_step, self.frequency = int(prune_per_step), int(frequency)
        self.start_epoch, self.momentum, self.net_attr = int(start_epoch), float(momentum), net_attr
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.seed = int(seed)
        self.pruner: Pruner | None = None
        self._pending: dict[str, Any] | None = None
        self.curve: list[dict[str, float]] = []
        self._last: dict[str, float] | None = None

    # ------------------------------------------------------------------ set-up
    def _net(self, pl_module: pl.LightningModule) -> torch.nn.Module:
        net = getattr(pl_module, self.net_attr, None)
        if not isinstance(net, torch.nn.Module):
            raise AttributeError(f"{type(pl_module).__name__} has no network attribute {self.net_attr!r}")
        return net

    def _build(self, pl_module: pl.LightningModule) -> None:
        net = self._net(pl_module)
        if self.input_shape is not None:
            example = torch.zeros(1, *self.input_shape)
        elif isinstance(getattr(pl_module, "example_input_array", None), torch.Tensor):
            example = pl_module.example_input_array[:1]
        else:
            raise ValueError("TaylorPruning needs input_shape=(C, H, W) or the module's example_input_array")
        param = next(net.parameters())
        graph = DependencyGraph(net, example.to(device=param.device, dtype=param.dtype))
        kwargs: dict[str, Any] = {}
        data_driven = ("taylor_fo_bn", "taylor_fo_bn_sum", "taylor_fo_fg", "taylor_output", "taylor_fo_weight")
        if self.criterion_name in data_driven:
            kwargs["momentum"] = self.momentum
        if self.criterion_name == "random":
            kwargs["seed"] = self.seed
        crit = make_criterion(self.criterion_name, graph, **kwargs)
        _average_window_over_processes(crit)
        self.pruner = Pruner(graph, crit, self.target, self.prune_per_step, self.frequency)
        if self._pending is not None:
            self.pruner.load_state_dict(self._pending)
            self._pending = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.pruner is None and (trainer.current_epoch >= self.start_epoch or self._pending is not None):
            self._build(pl_module)

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.pruner is not None and not self.pruner.done:
            self.pruner.after_backward()

    # ------------------------------------------------------------------ reporting
    def _log(self, pl_module: pl.LightningModule, stage: str) -> dict[str, float]:
        if self.pruner is None:
            macs, params = DependencyGraph(self._net(pl_module), self._example(pl_module)).count()
            full_macs, full_params, removed = macs, params, 0
        else:
            macs, params = self.pruner.count()
            full_macs, full_params, removed = self.pruner.full_macs, self.pruner.full_params, self.pruner.removed
        values = {
            "macs": float(macs),
            "params": float(params),
            "macs_ratio": macs / full_macs,
            "params_ratio": params / full_params,
            "channels_removed": float(removed),
        }
        for key, value in values.items():
            pl_module.log(f"{stage}/{key}", value, sync_dist=False)
        return values

    def _example(self, pl_module: pl.LightningModule) -> torch.Tensor:
        if self.input_shape is not None:
            return torch.zeros(1, *self.input_shape)
        return pl_module.example_input_array[:1].to(next(self._net(pl_module).parameters()).device)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._last = self._log(pl_module, "val")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after every epoch-end hook, so the module's val/acc of this epoch is in callback_metrics
        if trainer.sanity_checking or self._last is None:
            return
        acc = trainer.callback_metrics.get("val/acc")
        entry = {"epoch": trainer.current_epoch, **self._last, "acc": float(acc) if acc is not None else None}
        self.curve.append(entry)
        self._last = None

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log(pl_module, "test")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.pruner is None or not trainer.is_global_zero:
            return
        out = Path(trainer.default_root_dir)
        out.mkdir(parents=True, exist_ok=True)
        pruned = remove_channels(self.pruner.graph, self._net(pl_module)).cpu()
        torch.save(pruned, out / "pruned_model.pt")
        macs, params = self.pruner.count()
        report = {
            "criterion": self.criterion_name,
            "full_macs": self.pruner.full_macs,
            "full_params": self.pruner.full_params,
            "macs": macs,
            "params": params,
            "channels_removed": self.pruner.removed,
            "channels_total": self.pruner.graph.num_channels,
            "steps": [vars(r) | {"per_group": None} for r in self.pruner.history],
            "curve": self.curve,
        }
        (out / "pruning.json").write_text(json.dumps(report, indent=2) + "\n")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"pruner": self.pruner.state_dict() if self.pruner is not None else None, "curve": self.curve}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.curve = list(state_dict.get("curve", []))
        if state_dict.get("pruner") is not None:
            if self.pruner is not None:
                self.pruner.load_state_dict(state_dict["pruner"])
            else:
                self._pending = state_dict["pruner"]
