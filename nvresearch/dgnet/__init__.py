"""DG-Net: Joint Discriminative and Generative Learning for Person Re-identification (Zheng et al., CVPR 2019).

Torch-only public pieces: the networks at the official configuration (generator with structure encoder, decoder and
AdaIN MLPs; multi-scale discriminator; ResNet-50 appearance encoder with primary and fine-grained heads; teacher),
the losses as the official trainer computes them, the Market-1501 evaluation protocol, the dataset readers and
:func:`load_official` for the official checkpoints.
"""

from nvresearch.dgnet.data import (
    MSMT17,
    DukeMTMCReID,
    Market1501,
    PreparedReid,
    ReidImages,
    ReidRecord,
    eval_transform,
    parse_name,
    train_transform,
)
from nvresearch.dgnet.losses import (
    DGNetLossWeights,
    cross_entropy_pair,
    discriminator_loss,
    flip_horizontal,
    generator_adversarial_loss,
    generator_total,
    identity_loss,
    kl_to_teacher,
    ramp,
    reconstruction_loss,
    teacher_loss,
    teacher_soft_labels,
)
from nvresearch.dgnet.metrics import (
    ReidResult,
    average_precision,
    evaluate_query,
    extract_features,
    market_evaluate,
    multi_query_features,
    weight_query,
)
from nvresearch.dgnet.models import (
    AppearanceEncoder,
    ClassBlock,
    Decoder,
    DGNetDiscriminator,
    DGNetGenerator,
    StructureEncoder,
    TeacherNet,
    resnet_trunk,
    to_gray,
    upscale_small,
)
from nvresearch.dgnet.official import OfficialCheckpointError, load_official, official_state_dict

__all__ = [
    "MSMT17",
    "DukeMTMCReID",
    "Market1501",
    "PreparedReid",
    "ReidImages",
    "ReidRecord",
    "eval_transform",
    "parse_name",
    "train_transform",
    "AppearanceEncoder",
    "ClassBlock",
    "DGNetDiscriminator",
    "DGNetGenerator",
    "DGNetLossWeights",
    "Decoder",
    "OfficialCheckpointError",
    "ReidResult",
    "average_precision",
    "evaluate_query",
    "extract_features",
    "market_evaluate",
    "multi_query_features",
    "weight_query",
    "StructureEncoder",
    "TeacherNet",
    "cross_entropy_pair",
    "discriminator_loss",
    "flip_horizontal",
    "generator_adversarial_loss",
    "generator_total",
    "identity_loss",
    "kl_to_teacher",
    "load_official",
    "official_state_dict",
    "ramp",
    "reconstruction_loss",
    "resnet_trunk",
    "teacher_loss",
    "teacher_soft_labels",
    "to_gray",
    "upscale_small",
]
