"""Meta-learning: MAML-style inner/outer loops on ``torch.func.functional_call`` (:mod:`nvresearch.core.meta.maml`)."""

from nvresearch.core.meta.maml import MAML, LossFn, StepLR, Task, inner_loop

__all__ = ["MAML", "LossFn", "StepLR", "Task", "inner_loop"]
