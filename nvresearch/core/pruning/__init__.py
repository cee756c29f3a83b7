"""Channel pruning core: importance criteria and MAC/parameter counting (Taylor pruning, spec ``taylor.md``)."""

from nvresearch.core.pruning.flops import count_macs_and_params
from nvresearch.core.pruning.importance import (
    PAPER_MOMENTUM,
    BNScale,
    Importance,
    RandomImportance,
    TaylorFOBN,
    TaylorFOWeight,
    TaylorSOBN,
    WeightMagnitude,
    find_bn_layers,
    find_producing_convs,
)

__all__ = [
    "PAPER_MOMENTUM",
    "BNScale",
    "Importance",
    "RandomImportance",
    "TaylorFOBN",
    "TaylorFOWeight",
    "TaylorSOBN",
    "WeightMagnitude",
    "count_macs_and_params",
    "find_bn_layers",
    "find_producing_convs",
]
