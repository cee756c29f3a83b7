"""Meta-learning: MAML-style inner/outer loops on ``torch.func.functional_call`` (:mod:`nvresearch.core.meta.maml`)
and vectorised test-time adaptation of many tasks at once (:mod:`nvresearch.core.meta.batched`)."""

from nvresearch.core.meta.batched import adapt, batched_adapt, batched_forward, batched_meta_loss, stack_params
from nvresearch.core.meta.maml import MAML, LossFn, StepLR, Task, inner_loop

__all__ = [
    "MAML",
    "LossFn",
    "StepLR",
    "Task",
    "adapt",
    "batched_adapt",
    "batched_forward",
    "batched_meta_loss",
    "inner_loop",
    "stack_params",
]
