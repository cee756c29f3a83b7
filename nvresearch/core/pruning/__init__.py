"""Channel pruning core (Taylor pruning, Molchanov et al., CVPR 2019): dependency groups by ``torch.fx``, importance
criteria, the oracle and rank correlation, the interleaved pruning engine, channel surgery and MAC/parameter counting.

Torch-only: Lightning, scipy and friends are imported inside the functions that need them.
"""

from nvresearch.core.pruning.engine import Pruner, PruneRecord, PruneTarget, prune
from nvresearch.core.pruning.flops import count_macs_and_params
from nvresearch.core.pruning.graph import ChannelGroup, DependencyGraph, GatePoint
from nvresearch.core.pruning.importance import (
    CRITERIA,
    OBD,
    PAPER_MOMENTUM,
    BNScale,
    Importance,
    RandomImportance,
    TaylorFO,
    TaylorFOBN,
    TaylorFOBNSum,
    TaylorFOFG,
    TaylorFOWeight,
    TaylorOutput,
    TaylorSO,
    WeightMagnitude,
    make_criterion,
)
from nvresearch.core.pruning.oracle import oracle_importance, rank_correlation
from nvresearch.core.pruning.surgery import remove_channels, shrink_to_state_dict

__all__ = [
    "CRITERIA",
    "PAPER_MOMENTUM",
    "BNScale",
    "ChannelGroup",
    "DependencyGraph",
    "GatePoint",
    "OBD",
    "Importance",
    "PruneRecord",
    "PruneTarget",
    "Pruner",
    "RandomImportance",
    "TaylorFO",
    "TaylorFOBN",
    "TaylorFOBNSum",
    "TaylorFOFG",
    "TaylorFOWeight",
    "TaylorOutput",
    "TaylorSO",
    "WeightMagnitude",
    "count_macs_and_params",
    "make_criterion",
    "oracle_importance",
    "prune",
    "rank_correlation",
    "remove_channels",
    "shrink_to_state_dict",
]
