"""GAN building blocks shared by FUNIT, DG-Net and segmentation-by-translation (torch-only).

Blocks with selectable normalisation / activation / padding, AdaIN driven by an MLP, switchable norms, patch,
multi-scale and class-conditional discriminators, GAN losses, the R1 penalty, feature matching and weight EMA.
The Lightning pattern for alternating updates is :class:`nvresearch.core.training.gan.GANModule`.
"""

from nvresearch.core.gan.blocks import (
    MLP,
    ActFirstResBlock,
    Conv2dBlock,
    LinearBlock,
    ResBlock,
    ResBlocks,
    init_weights,
    make_activation,
    make_padding,
)
from nvresearch.core.gan.discriminators import ClassConditionalHead, MultiScaleDiscriminator, PatchDiscriminator
from nvresearch.core.gan.ema import ema_copy, ema_update
from nvresearch.core.gan.losses import d_loss_fake, d_loss_real, feature_matching_loss, g_loss, r1_penalty
from nvresearch.core.gan.norms import (
    AdaptiveInstanceNorm2d,
    LayerNorm2d,
    SwitchableNorm2d,
    adain_layers,
    assign_adain_params,
    instance_norm,
    make_norm,
    num_adain_params,
    set_norm_mode,
)

__all__ = [
    "MLP",
    "ActFirstResBlock",
    "AdaptiveInstanceNorm2d",
    "ClassConditionalHead",
    "Conv2dBlock",
    "LayerNorm2d",
    "LinearBlock",
    "MultiScaleDiscriminator",
    "PatchDiscriminator",
    "ResBlock",
    "ResBlocks",
    "SwitchableNorm2d",
    "adain_layers",
    "assign_adain_params",
    "d_loss_fake",
    "d_loss_real",
    "ema_copy",
    "ema_update",
    "feature_matching_loss",
    "g_loss",
    "init_weights",
    "instance_norm",
    "make_activation",
    "make_norm",
    "make_padding",
    "num_adain_params",
    "r1_penalty",
    "set_norm_mode",
]
