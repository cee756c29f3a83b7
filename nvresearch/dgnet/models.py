"""DG-Net networks (Zheng et al., CVPR 2019, Sec. 3 and Fig. 2): generator, discriminator, appearance encoder, teacher.

The reference configuration is the official ``configs/latest.yaml`` (NVlabs/DG-Net): a 256x128 RGB person image,
a grey copy of it for the structure encoder.

- :class:`DGNetGenerator` (official ``AdaINGen``, 13,380,675 parameters): the structure encoder E_s (380,544), the
  decoder G (1,455,555) and eight MLPs (11,544,576) that turn the appearance code into AdaIN parameters.
- :class:`DGNetDiscriminator` (``MsImageDis``, 1,025,571): three residual patch discriminators at 1, 1/2, 1/4 scale.
- :class:`AppearanceEncoder` (``ft_netAB``, 26,378,782 without the unused ImageNet ``fc``): a ResNet-50 trunk with
  stride 1 in its last stage, a 4-part max-pooled appearance code and two identity heads (primary, fine-grained).
- :class:`TeacherNet` (``ft_net``, 24,943,407 without ``fc``): the ResNet-50 baseline whose soft labels drive primary
  feature learning.

Every module keeps the official module layout where it costs nothing (the same ``nn.Sequential`` indices), so that
:func:`nvresearch.dgnet.official.official_state_dict` is a short list of renames.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from nvresearch.core.gan import Conv2dBlock, ResBlocks, adain_layers, assign_adain_params, init_weights
from nvresearch.core.gan.aspp import ASPP
from nvresearch.core.gan.blocks import MLP
from nvresearch.core.gan.residual_discriminators import MultiScaleResidualDiscriminator

BACKBONES = ("resnet18", "resnet34", "resnet50", "tiny")
TINY_WIDTHS = (16, 32, 64, 128)


def to_gray(x: Tensor) -> Tensor:
    """The structure encoder's input: the plain mean over the channels of the (ImageNet-normalised) image.

    Not a luminance: the official ``to_gray`` averages the three normalised channels (trainer.py).

    Shape:
        x: ``(B, 3, H, W)``; returns ``(B, 1, H, W)``.
    """
    return x.mean(dim=1, keepdim=True)


def upscale_small(x: Tensor, max_height: int = 128) -> Tensor:
    """Nearest x2 up-sampling of inputs no taller than ``max_height`` before the appearance encoder (``scale2`` in
    the official trainer); a no-op at the reference 256x128.

    Shape:
        x: ``(B, C, H, W)``; returns ``(B, C, 2H, 2W)`` if ``H <= max_height``, else ``x``.
    """
    if x.shape[2] > max_height:
        return x
    return F.interpolate(x, scale_factor=2, mode="nearest")


class StructureEncoder(nn.Module):
    """E_s (Sec. 3.1, "structure encoder"; official ``ContentEncoder`` with ASPP).

    3x3 stride-2 conv to ``base_channels``, 3x3 conv doubling the width, then ``num_downsample - 1`` x [3x3 conv,
    3x3 stride-2 conv doubling the width], ``num_res`` residual blocks and an ASPP (dilations 3 / 6 / 9) that
    doubles the width again. Instance norm (non-affine), LeakyReLU 0.2, reflection padding throughout.

    Shape:
        x: ``(B, in_channels, H, W)``; returns ``(B, 4 * base_channels * 2^(num_downsample - 1), H / 2^num_downsample,
        W / 2^num_downsample)`` (128x64x32 for a 1x256x128 input at the reference configuration).
    """

    def __init__(
        self,
        in_channels: int = 1,
        base_channels: int = 16,
        num_downsample: int = 2,
        num_res: int = 4,
        activation: str = "lrelu",
        pad_type: str = "reflect",
    ) -> None:
        super().__init__()
        if num_downsample < 1:
            raise ValueError(f"num_downsample must be >= 1, got {num_downsample}")
        kw = {"norm": "instance", "activation": activation, "pad_type": pad_type}
        ch = base_channels
        layers: list[nn.Module] = [
            Conv2dBlock(in_channels, ch, 3, 2, 1, **kw),
            Conv2dBlock(ch, 2 * ch, 3, 1, 1, **kw),
        ]
        ch *= 2
        for _ in range(num_downsample - 1):
            layers += [Conv2dBlock(ch, ch, 3, 1, 1, **kw), Conv2dBlock(ch, 2 * ch, 3, 2, 1, **kw)]
            ch *= 2
        layers.append(ResBlocks(num_res, ch, norm="instance", activation=activation, pad_type=pad_type))
        layers.append(ASPP(ch, ch // 2, 2 * ch, (3, 6, 9), norm="instance", activation=activation, pad_type=pad_type))
        self.model = nn.Sequential(*layers)
        self.out_channels = 2 * ch

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class Decoder(nn.Module):
    """G (Sec. 3.1, "decoder"): ``num_res`` AdaIN residual blocks, ``num_upsample`` x [nearest x2, 5x5 conv halving the
    width, layer norm, LeakyReLU], two 3x3 convs with LeakyReLU and a 1x1 conv to ``out_channels``.

    No tanh: the output lives in the ImageNet-normalised space of the inputs (official ``tanh: false``). The AdaIN
    parameters are written in by :meth:`DGNetGenerator.decode`. Index 0 is a dropout (``p = 0`` at the reference)
    and the up-sampling layers are separate entries, so the indices match the official ``Decoder``.

    Shape:
        x: ``(B, in_channels, h, w)``; returns ``(B, out_channels, h * 2^num_upsample, w * 2^num_upsample)``.
    """

    def __init__(
        self,
        in_channels: int = 128,
        out_channels: int = 3,
        num_upsample: int = 2,
        num_res: int = 4,
        dropout: float = 0.0,
        activation: str = "lrelu",
        pad_type: str = "reflect",
    ) -> None:
        super().__init__()
        ch = in_channels
        layers: list[nn.Module] = [
            nn.Dropout(p=dropout),
            ResBlocks(num_res, ch, norm="adain", activation=activation, pad_type=pad_type),
        ]
        for _ in range(num_upsample):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                Conv2dBlock(ch, ch // 2, 5, 1, 2, norm="layer", activation=activation, pad_type=pad_type),
            ]
            ch //= 2
        layers += [
            Conv2dBlock(ch, ch, 3, 1, 1, norm="none", activation=activation, pad_type=pad_type),
            Conv2dBlock(ch, ch, 3, 1, 1, norm="none", activation=activation, pad_type=pad_type),
            Conv2dBlock(ch, out_channels, 1, 1, 0, norm="none", activation="none", pad_type=pad_type),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class DGNetGenerator(nn.Module):
    """The generative module (Sec. 3.1): E_s, G and the MLPs from the appearance code to AdaIN parameters.

    The appearance code (``appearance_dim``, 8192 = 2048 channels x 4 parts, channel-major) is cut into ``num_res``
    equal consecutive slices; slice ``k`` feeds the scale MLP ``mlp_w[k]`` and the shift MLP ``mlp_b[k]``
    (``in -> mlp_dim -> mlp_dim -> 2 * C``, LeakyReLU between) whose outputs drive the two AdaIN layers of residual
    block ``k`` (official ``mlp_w1..4`` / ``mlp_b1..4``). Because the code is channel-major, a slice is a range of
    channels of all four parts, not one body part. Kaiming-normal (fan-in) init, zero biases (``init: kaiming``).

    Args:
        in_channels: channels of the structure input (1: grey).
        base_channels / num_downsample / num_res: the structure encoder's (the decoder mirrors them).
        appearance_dim: length of the appearance code; must be divisible by ``num_res``.
        mlp_dim: hidden width of the MLPs.
        out_channels: channels of the generated image.
        dropout: dropout at the decoder input (reference 0).

    Shape:
        :meth:`encode`: ``(B, in_channels, H, W) -> (B, C, H / 4, W / 4)``; :meth:`decode`: structure
        ``(B, C, h, w)`` and appearance ``(B, appearance_dim)`` -> ``(B, out_channels, 4h, 4w)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        base_channels: int = 16,
        num_downsample: int = 2,
        num_res: int = 4,
        appearance_dim: int = 8192,
        mlp_dim: int = 512,
        out_channels: int = 3,
        dropout: float = 0.0,
        activation: str = "lrelu",
        pad_type: str = "reflect",
    ) -> None:
        super().__init__()
        if num_res < 1 or appearance_dim % num_res:
            raise ValueError(f"appearance_dim ({appearance_dim}) must split into num_res ({num_res}) equal slices")
        self.structure_encoder = StructureEncoder(
            in_channels, base_channels, num_downsample, num_res, activation, pad_type
        )
        width = self.structure_encoder.out_channels
        self.decoder = Decoder(width, out_channels, num_downsample, num_res, dropout, activation, pad_type)
        self.appearance_dim, self.num_res, self.width = appearance_dim, num_res, width
        slice_dim = appearance_dim // num_res
        self.mlp_w = nn.ModuleList(MLP(slice_dim, 2 * width, mlp_dim, 3, activation=activation) for _ in range(num_res))
        self.mlp_b = nn.ModuleList(MLP(slice_dim, 2 * width, mlp_dim, 3, activation=activation) for _ in range(num_res))
        init_weights(self, "kaiming")

    def encode(self, gray: Tensor) -> Tensor:
        """Structure code ``s = E_s(gray(x))``."""
        return self.structure_encoder(gray)

    def adain_params(self, appearance: Tensor) -> tuple[Tensor, Tensor]:
        """The AdaIN scales and shifts for an appearance code, ``(B, 2 * num_res * C)`` each, in layer order."""
        if appearance.dim() != 2 or appearance.shape[1] != self.appearance_dim:
            raise ValueError(f"appearance code must be (B, {self.appearance_dim}), got {tuple(appearance.shape)}")
        slices = appearance.chunk(self.num_res, dim=1)
        w = torch.cat([mlp(s) for mlp, s in zip(self.mlp_w, slices, strict=True)], dim=1)
        b = torch.cat([mlp(s) for mlp, s in zip(self.mlp_b, slices, strict=True)], dim=1)
        return w, b

    def decode(self, structure: Tensor, appearance: Tensor) -> Tensor:
        """``G(s, a)``: the image with the structure ``s`` dressed in the appearance ``a``."""
        w, b = self.adain_params(appearance)
        layers = len(adain_layers(self.decoder))
        bsz = appearance.shape[0]
        # core's layout is [bias_1, weight_1, bias_2, weight_2, ...]; DG-Net's MLPs give all weights, all biases
        params = torch.stack((b.view(bsz, layers, self.width), w.view(bsz, layers, self.width)), dim=2)
        assign_adain_params(params.reshape(bsz, -1), self.decoder, order=("bias", "weight"))
        return self.decoder(structure)

    def forward(self, gray: Tensor, appearance: Tensor) -> Tensor:
        """Encode ``gray`` and decode it with ``appearance``.

        Shape:
            gray: ``(B, in_channels, H, W)``; appearance: ``(B, appearance_dim)``; returns ``(B, out_channels, H, W)``.
        """
        return self.decode(self.encode(gray), appearance)


class DGNetDiscriminator(MultiScaleResidualDiscriminator):
    """D (Sec. 3.1; official ``MsImageDis``): three residual patch discriminators on the RGB image at full, 1/2 and
    1/4 resolution (LSGAN, no norm, LeakyReLU, reflection padding), weights N(0, 0.02^2), zero biases.

    Shape:
        x: ``(B, in_channels, H, W)``; returns ``num_scales`` maps ``(B, 1, H / 4 / 2^s, W / 4 / 2^s)`` (rounded up).
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 32,
        num_downsample: int = 2,
        num_res: int = 4,
        num_scales: int = 3,
        activation: str = "lrelu",
        pad_type: str = "reflect",
    ) -> None:
        super().__init__(
            num_scales, in_channels, base_channels, num_downsample, num_res, "none", activation, pad_type, 512
        )
        init_weights(self, "normal", gain=0.02)


class ClassBlock(nn.Module):
    """An identity head (official ``ClassBlock``): Linear -> BatchNorm1d -> Dropout -> Linear to the classes.

    The BN output (``bottleneck``-d) is the test feature. Init: first Linear kaiming-normal (fan-out), bias 0; BN
    (1, 0); last Linear N(0, 0.001^2), bias 0. The same ``add_block`` / ``classifier`` layout as the reference.

    Shape:
        x: ``(B, in_features)``; :meth:`forward` returns logits ``(B, num_classes)``, :meth:`embed` ``(B, bottleneck)``.
    """

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.5, bottleneck: int = 512) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Linear(in_features, bottleneck), nn.BatchNorm1d(bottleneck)]
        if dropout > 0:
            blocks.append(nn.Dropout(p=dropout))
        self.add_block = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Linear(bottleneck, num_classes))
        nn.init.kaiming_normal_(self.add_block[0].weight, a=0, mode="fan_out")
        nn.init.zeros_(self.add_block[0].bias)
        nn.init.normal_(self.classifier[0].weight, std=0.001)
        nn.init.zeros_(self.classifier[0].bias)

    def embed(self, x: Tensor) -> Tensor:
        return self.add_block(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.add_block(x))


def resnet_trunk(backbone: str = "resnet50", last_stride: int = 2, pretrained_path: str | None = None) -> nn.Module:
    """A torchvision ResNet without its ImageNet ``fc``; ``last_stride=1`` removes the down-sampling of ``layer4``.

    Args:
        backbone: one of :data:`BACKBONES`; ``tiny`` is a CPU-sized ResNet of torchvision basic blocks, one per
            stage, widths :data:`TINY_WIDTHS` (about 0.3 M parameters), with the same stem and stage layout.
        last_stride: 1 (DG-Net's appearance encoder: 16x8 maps for 256x128) or 2 (torchvision's, the teacher's).
        pretrained_path: a local torchvision state dict (e.g. ``resnet50-0676ba61.pth``) to start from; its ``fc``
            entries are ignored. None: random init (nothing is downloaded).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {BACKBONES}")
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
    net = _tiny_resnet() if backbone == "tiny" else getattr(torchvision.models, backbone)(weights=None)
    if pretrained_path is not None:
        load_trunk_weights(net, pretrained_path)
    del net.fc
    if last_stride == 1:
        block = net.layer4[0]
        for conv in (block.conv1, block.conv2):
            conv.stride = (1, 1)  # torchvision puts the stride on conv2 (Bottleneck) or conv1 (BasicBlock)
        block.downsample[0].stride = (1, 1)
    return net


def _tiny_resnet() -> nn.Module:
    from torchvision.models.resnet import BasicBlock

    net = torchvision.models.resnet18(weights=None, num_classes=1)
    net.conv1 = nn.Conv2d(3, TINY_WIDTHS[0], 7, 2, 3, bias=False)
    net.bn1 = nn.BatchNorm2d(TINY_WIDTHS[0])
    width = TINY_WIDTHS[0]
    for k, planes in enumerate(TINY_WIDTHS, 1):
        stride = 1 if k == 1 else 2
        down = None
        if stride != 1 or width != planes:
            down = nn.Sequential(nn.Conv2d(width, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        setattr(net, f"layer{k}", nn.Sequential(BasicBlock(width, planes, stride, down)))
        width = planes
    net.fc = nn.Linear(width, 1)
    return net


def trunk_channels(trunk: nn.Module) -> int:
    """Output channels of a ResNet trunk (its last BatchNorm in ``layer4``)."""
    return [m for m in trunk.layer4.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features


def load_trunk_weights(net: nn.Module, path: str | os.PathLike) -> None:
    """Load a torchvision ResNet state dict from a local file into ``net`` (every trunk tensor must match)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no pretrained backbone weights at '{path}' (a torchvision ResNet state dict)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = net.state_dict()
    trunk = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing = sorted(k for k in own if not k.startswith("fc.") and k not in trunk)
    unexpected = sorted(k for k in trunk if k not in own)
    shapes = sorted(k for k in trunk if k in own and tuple(trunk[k].shape) != tuple(own[k].shape))
    if missing or unexpected or shapes:
        raise ValueError(
            f"'{path}' is not a state dict of this ResNet: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}), {len(shapes)} mis-shaped (e.g. {shapes[:3]})"
        )
    net.load_state_dict(trunk, strict=False)


def _trunk_features(trunk: nn.Module, x: Tensor) -> Tensor:
    x = trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(x))))
    return trunk.layer4(trunk.layer3(trunk.layer2(trunk.layer1(x))))


def _pool(name: str) -> type[nn.Module]:
    if name == "max":
        return nn.AdaptiveMaxPool2d
    if name == "avg":
        return nn.AdaptiveAvgPool2d
    raise ValueError(f"pool must be 'max' or 'avg', got {name!r}")


class AppearanceEncoder(nn.Module):
    """E_a, shared by generation and re-id (Sec. 3.1-3.2; official ``ft_netAB``).

    A ResNet trunk (``layer4`` stride ``last_stride``); the appearance code is the trunk map max-pooled to
    ``num_parts`` x 1 and flattened channel-major (index ``num_parts * c + part``), **detached** as in the official
    code (generation losses never update E_a); the global feature is the map max-pooled to 1x1 and feeds two
    :class:`ClassBlock` heads: primary (dropout 0.5, trained on real images and the teacher's soft labels) and
    fine-grained (dropout 0.75, trained to find the structure provider's identity in generated images).

    Args:
        num_classes: training identities (Market 751, Duke 702, MSMT17 1041).
        backbone / last_stride / pretrained_path: see :func:`resnet_trunk`.
        pool: ``max`` (reference) or ``avg`` for both the code and the global feature.
        num_parts: horizontal stripes of the appearance code.
        bottleneck: width of the heads' test features.
        detach_code: cut the gradient of the appearance code (reference True).

    Shape:
        x: ``(B, 3, H, W)``; :meth:`forward` returns the code ``(B, C * num_parts)`` (8192 for ResNet-50) and the
        primary and fine-grained logits ``(B, num_classes)``; :meth:`features` the two ``(B, bottleneck)`` features.
    """

    def __init__(
        self,
        num_classes: int = 751,
        backbone: str = "resnet50",
        last_stride: int = 1,
        pool: str = "max",
        num_parts: int = 4,
        bottleneck: int = 512,
        dropout_primary: float = 0.5,
        dropout_fine: float = 0.75,
        detach_code: bool = True,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        self.model = resnet_trunk(backbone, last_stride, pretrained_path)
        channels = trunk_channels(self.model)
        self.partpool = _pool(pool)((num_parts, 1))
        self.globalpool = _pool(pool)((1, 1))
        self.classifier1 = ClassBlock(channels, num_classes, dropout_primary, bottleneck)
        self.classifier2 = ClassBlock(channels, num_classes, dropout_fine, bottleneck)
        self.channels, self.num_parts, self.detach_code = channels, num_parts, detach_code
        self.code_dim = channels * num_parts

    def _trunk(self, x: Tensor) -> tuple[Tensor, Tensor]:
        fmap = _trunk_features(self.model, x)
        code = self.partpool(fmap).flatten(1)  # (B, C, P, 1) -> channel-major (B, C * P)
        return (code.detach() if self.detach_code else code), self.globalpool(fmap).flatten(1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        code, g = self._trunk(x)
        return code, self.classifier1(g), self.classifier2(g)

    def encode(self, x: Tensor) -> Tensor:
        """The appearance code alone (the heads are not evaluated)."""
        return self._trunk(x)[0]

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The primary and fine-grained test features (the heads' BN outputs, before their classifiers)."""
        _, g = self._trunk(x)
        return self.classifier1.embed(g), self.classifier2.embed(g)


class TeacherNet(nn.Module):
    """The teacher (Sec. 3.2, "primary feature learning"; official ``ft_net``): a ResNet baseline trained with
    identity cross-entropy on the real images, one :class:`ClassBlock` head (dropout 0.5) on the average-pooled
    trunk; its soft labels on generated images supervise the student's primary head.

    Shape:
        x: ``(B, 3, H, W)``; returns logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int = 751,
        backbone: str = "resnet50",
        last_stride: int = 2,
        pool: str = "avg",
        bottleneck: int = 512,
        dropout: float = 0.5,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        self.model = resnet_trunk(backbone, last_stride, pretrained_path)
        channels = trunk_channels(self.model)
        self.globalpool = _pool(pool)((1, 1))
        self.classifier = ClassBlock(channels, num_classes, dropout, bottleneck)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.globalpool(_trunk_features(self.model, x)).flatten(1))

    def features(self, x: Tensor) -> Tensor:
        """The head's BN output, the baseline's test feature ``(B, bottleneck)``."""
        return self.classifier.embed(self.globalpool(_trunk_features(self.model, x)).flatten(1))
