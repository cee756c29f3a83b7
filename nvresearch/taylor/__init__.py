"""Taylor pruning: Importance Estimation for Neural Network Pruning (Molchanov et al., CVPR 2019).

Torch-only public pieces: the pruning core (:mod:`nvresearch.core.pruning`: dependency groups, criteria, oracle,
engine, surgery, MAC counting), the paper's networks, datasets, loss and metrics. Lightning lives in
``nvresearch.taylor.module``, ``nvresearch.taylor.datamodule`` and ``nvresearch.taylor.callback``, which this package
does not import.
"""

from nvresearch.core.pruning import (
    CRITERIA,
    PAPER_MOMENTUM,
    BNScale,
    ChannelGroup,
    DependencyGraph,
    Importance,
    Pruner,
    PruneTarget,
    RandomImportance,
    TaylorFO,
    TaylorFOBN,
    TaylorFOFG,
    TaylorFOWeight,
    TaylorSO,
    WeightMagnitude,
    count_macs_and_params,
    make_criterion,
    oracle_importance,
    prune,
    rank_correlation,
    remove_channels,
    shrink_to_state_dict,
)
from nvresearch.taylor.data import Cifar10, Digits, MnistIdx, image_folder
from nvresearch.taylor.losses import classification_loss
from nvresearch.taylor.models import ARCHS, DigitsCNN, LeNet3, torchvision_classifier

__all__ = [
    "ARCHS",
    "CRITERIA",
    "PAPER_MOMENTUM",
    "BNScale",
    "ChannelGroup",
    "Cifar10",
    "DependencyGraph",
    "Digits",
    "DigitsCNN",
    "Importance",
    "LeNet3",
    "MnistIdx",
    "PruneTarget",
    "Pruner",
    "RandomImportance",
    "TaylorFO",
    "TaylorFOBN",
    "TaylorFOFG",
    "TaylorFOWeight",
    "TaylorSO",
    "WeightMagnitude",
    "classification_loss",
    "count_macs_and_params",
    "image_folder",
    "make_criterion",
    "oracle_importance",
    "prune",
    "rank_correlation",
    "remove_channels",
    "shrink_to_state_dict",
    "torchvision_classifier",
]
