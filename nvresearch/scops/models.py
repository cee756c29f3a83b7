"""SCOPS networks (Hung et al., CVPR 2019, Sec. 3 and 4; official code ``model/deeplab_2branch.py``).

- :class:`PartSegmenter`: the part segmentation network of the released config (``DeepLab50_2branch``): a
  DeepLab-v2 ResNet-50 (Caffe-style stride on the first 1x1 conv, layer3/layer4 dilated 2/4, output stride 8), the
  layer4 output split in half along channels, and an ASPP head summing four dilated 3x3 convs on the second half.
  ``K + 1`` output channels: channel 0 is the background, channels ``1..K`` the parts. Built from torchvision's
  ``Bottleneck`` blocks, so its state-dict names are torchvision's (and the official ones) for the backbone.
  23,839,844 parameters for ``num_parts=8``, 23,692,372 for ``num_parts=4`` (the official counts).
- :class:`VGGFeatures`: the frozen VGG-19 of the semantic-consistency loss, ``features[0:36]`` (to relu5_4,
  20,024,384 parameters), returning relu5_2 and relu5_4 concatenated (1024 channels, stride 16).
- :class:`PartBasis`: the learned non-negative part bases ``ReLU(w)``, ``w`` of shape ``(K, C)``.

Pretrained weights are read from a local file only (``pretrained=<path>``); nothing is downloaded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import vgg19
from torchvision.models.resnet import Bottleneck

__all__ = [
    "ASPP",
    "PartBasis",
    "PartSegmenter",
    "RandomFeatures",
    "TextureFeatures",
    "VGGFeatures",
    "l2_normalize_rows",
    "load_matching",
    "upsample_logits",
]

ASPP_DILATIONS: tuple[int, ...] = (6, 12, 18, 24)
"""Dilation (= padding) of the four ASPP branches of DeepLab-v2 (official ``layer5``)."""

VGG_RELU5_2 = 32  # features[0:32] ends with relu5_2 (index 31); features[32:36] ends with relu5_4 (index 35)
VGG_RELU5_4 = 36


def upsample_logits(logits: Tensor, size: int | Sequence[int]) -> Tensor:
    """Bilinear up-sampling with ``align_corners=True``, as every loss of the official trainer sees the logits.

    Shape:
        logits: ``(B, C, h, w)``; returns ``(B, C, H, W)`` with ``(H, W) = size``.
    """
    size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)


def l2_normalize_rows(w: Tensor, eps: float = 1e-6) -> Tensor:
    """``w / sqrt(sum(w**2, dim=1) + eps)`` row by row (official ``featureL2Norm``, eps inside the square root).

    Shape:
        w: ``(K, C)``; returns ``(K, C)``.
    """
    return w / (w.pow(2).sum(dim=1, keepdim=True) + eps).sqrt()


def load_matching(module: nn.Module, path: str | os.PathLike) -> list[str]:
    """Copy the tensors of a local checkpoint whose name and shape match ``module``'s; return the names copied.

    This is how the official code initialises the backbone from the Caffe ImageNet ResNet-50 (by name and shape only,
    ``model/model_factory.py``): the ASPP head and anything else unmatched keep their initialisation. A checkpoint
    holding ``{"state_dict": ...}`` is unwrapped. Raises ``FileNotFoundError`` naming the path, and ``ValueError`` when
    nothing matches (a file for another network would otherwise pass silently).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no pretrained weights at '{path}'")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    own = module.state_dict()
    copied = [k for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)]
    if not copied:
        raise ValueError(f"'{path}': no tensor matches {type(module).__name__} by name and shape")
    with torch.no_grad():
        for k in copied:
            own[k].copy_(state[k])
    return copied


class ASPP(nn.Module):
    """DeepLab-v2 atrous spatial pyramid pooling classifier: the *sum* of 3x3 convs with dilation = padding, with bias,
    weights drawn from N(0, 0.01) (official ``Classifier_Module``).

    Shape:
        x: ``(B, in_channels, h, w)``; returns ``(B, num_classes, h, w)``.
    """

    def __init__(
        self, in_channels: int = 1024, num_classes: int = 9, dilations: Sequence[int] = ASPP_DILATIONS
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=int(d), dilation=int(d), bias=True) for d in dilations
        )
        for conv in self.convs:
            nn.init.normal_(conv.weight, 0.0, 0.01)

    def forward(self, x: Tensor) -> Tensor:
        out = self.convs[0](x)
        for conv in self.convs[1:]:
            out = out + conv(x)
        return out


class PartSegmenter(nn.Module):
    """SCOPS part segmentation network: DeepLab-v2 ResNet with a two-branch split and an ASPP head (Sec. 4).

    The defaults are the official configuration (``DeepLab50_2branch`` of ``exps/SCOPS_K8_retrain.json``). Small
    configurations for CPU shrink ``blocks`` and ``base_channels`` (widths ``base_channels * (1, 2, 4, 8)``, expansion
    4). Differences from torchvision's ResNet-50, all from the official network: the stride of layer2 sits on the first
    1x1 conv (Caffe style), the stem max-pool rounds up (``ceil_mode=True``), every block of layer3 / layer4 is dilated
    2 / 4 (torchvision leaves the first block of a dilated stage at the previous dilation), there is no fc. The affine
    parameters of the stem BN and of every block's three BNs are frozen (``requires_grad=False``); the projection
    shortcut BNs train, as in the official two-branch file. BN itself follows ``train()`` / ``eval()``: the official
    trainer keeps it in training mode (batch statistics) throughout.

    Args:
        num_parts: K; the network predicts K + 1 channels (channel 0 = background).
        blocks: Bottleneck blocks per stage (ResNet-50: ``(3, 4, 6, 3)``).
        base_channels: width of the stem and of layer1's bottleneck (64 for ResNet-50).
        aspp_dilations: dilations of the ASPP branches.
        pretrained: local path of an ImageNet ResNet-50 state dict (the official ``resnet50-caffe``, or torchvision's
            names); tensors are copied by name and shape match, the ASPP head stays random.

    Shape:
        x: ``(B, 3, H, W)``; :meth:`forward` returns logits ``(B, K + 1, h, w)`` with ``h = ceil(H / 8)`` (+1 from the
        ceil-mode pool: 33 for 256, 17 for 128). :meth:`forward_all` also returns the two halves of layer4.
    """

    def __init__(
        self,
        num_parts: int = 8,
        blocks: Sequence[int] = (3, 4, 6, 3),
        base_channels: int = 64,
        aspp_dilations: Sequence[int] = ASPP_DILATIONS,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if int(num_parts) < 1:
            raise ValueError(f"num_parts must be >= 1, got {num_parts}")
        if len(blocks) != 4 or min(int(b) for b in blocks) < 1:
            raise ValueError(f"blocks must be 4 positive counts (one per stage), got {list(blocks)}")
        self.num_parts = int(num_parts)
        c = int(base_channels)
        self.conv1 = nn.Conv2d(3, c, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
        self._inplanes = c
        self.layer1 = self._make_layer(c, int(blocks[0]), stride=1, dilation=1)
        self.layer2 = self._make_layer(2 * c, int(blocks[1]), stride=2, dilation=1)
        self.layer3 = self._make_layer(4 * c, int(blocks[2]), stride=1, dilation=2)
        self.layer4 = self._make_layer(8 * c, int(blocks[3]), stride=1, dilation=4)
        self.feature_channels = 8 * c * Bottleneck.expansion
        self.aspp = ASPP(self.feature_channels // 2, self.num_parts + 1, aspp_dilations)
        self._init_backbone()
        if pretrained:
            load_matching(self, pretrained)

    def _make_layer(self, planes: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
        out = planes * Bottleneck.expansion
        # The official condition also names dilation 2 and 4, but the first block of every stage changes the width
        # anyway, so the shortcut is a projection exactly there.
        downsample = None
        if stride != 1 or self._inplanes != out or dilation in (2, 4):
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )
        layers = []
        for i in range(blocks):
            block = Bottleneck(self._inplanes, planes, 1, downsample if i == 0 else None, dilation=dilation)
            if i == 0 and stride != 1:
                block.conv1.stride = (stride, stride)  # Caffe style: the stride is on the first 1x1 conv
            for bn in (block.bn1, block.bn2, block.bn3):
                bn.requires_grad_(False)
            layers.append(block)
            self._inplanes = out
        return nn.Sequential(*layers)

    def _init_backbone(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.01)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.bn1.requires_grad_(False)

    def forward_all(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(feature_instance, feature_part, logits)``: the first and second half of layer4 (the first is unused by
        every loss) and the ASPP logits on the second half."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        half = x.shape[1] // 2
        instance, part = x[:, :half], x[:, half:]
        return instance, part, self.aspp(part)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_all(x)[2]

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer groups of the official trainer: the trainable backbone at ``lr``, the ASPP head at ``10 * lr``."""
        head = {id(p) for p in self.aspp.parameters()}
        backbone = [p for p in self.parameters() if p.requires_grad and id(p) not in head]
        return [{"params": backbone, "lr": lr}, {"params": list(self.aspp.parameters()), "lr": 10 * lr}]


class VGGFeatures(nn.Module):
    """Frozen VGG-19 features of the semantic-consistency loss (Sec. 3.3): relu5_2 and relu5_4 concatenated.

    torchvision's ``vgg19().features[0:36]``; the parameters never train and the module stays in ``eval()`` mode.
    The input is ImageNet-normalised RGB (the caller converts). Up-sampling to the part-map size is left to the caller
    (bilinear up-sampling is per channel, so it commutes with the concatenation).

    Args:
        pretrained: local path of a torchvision VGG-19 state dict (``features.*`` names; ``classifier.*`` ignored).

    Shape:
        x: ``(B, 3, H, W)``; returns ``(B, 1024, H / 16, W / 16)``.
    """

    out_channels = 1024

    def __init__(self, pretrained: str | None = None) -> None:
        super().__init__()
        features = vgg19(weights=None).features
        self.features = nn.Sequential(*list(features.children())[:VGG_RELU5_4])
        if pretrained:
            load_matching(self, pretrained)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:  # frozen: always evaluation mode
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        relu5_2 = self.features[:VGG_RELU5_2](x)
        relu5_4 = self.features[VGG_RELU5_2:](relu5_2)
        return torch.cat([relu5_2, relu5_4], dim=1)


class RandomFeatures(nn.Module):
    """A frozen random conv net as the semantic features of the embedded world (no ImageNet weights offline; as in a
    pilot run): ``layers`` 3x3 convs with ReLU, the first ``log2(stride)`` of them with stride 2, on the network
    input divided by 255, times ``scale`` (the semantic loss weight 1e4 was set for VGG features; the appendix's
    second pilot needed features x10 to keep the bases alive). Deterministic given ``seed``; never trains.

    Shape:
        x: ``(B, 3, H, W)`` network inputs (RGB x 255 minus the Caffe mean); returns ``(B, channels, H / stride,
        W / stride)``, non-negative.
    """

    def __init__(self, channels: int = 64, layers: int = 3, stride: int = 8, scale: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        downs = int(stride).bit_length() - 1
        if 2**downs != int(stride) or downs > int(layers):
            raise ValueError(f"stride must be a power of 2 of at most 2**layers ({2 ** int(layers)}), got {stride}")
        g = torch.Generator().manual_seed(int(seed))
        convs, c_in = [], 3
        for i in range(int(layers)):
            conv = nn.Conv2d(c_in, int(channels), 3, stride=2 if i < downs else 1, padding=1)
            bound = (6.0 / (c_in * 9)) ** 0.5  # He-uniform, so the activations keep their scale through the ReLUs
            with torch.no_grad():
                conv.weight.uniform_(-bound, bound, generator=g)
                conv.bias.zero_()
            convs += [conv, nn.ReLU()]
            c_in = int(channels)
        self.net = nn.Sequential(*convs)
        self.out_channels, self.scale = int(channels), float(scale)
        self.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x / 255.0) * self.scale


class TextureFeatures(nn.Module):
    """Frozen texture-energy features, the embedded world's stand-in for ImageNet VGG (no weights offline).

    What the semantic-consistency loss needs from its features is that they tell the parts apart; VGG's relu5 does for
    faces and birds. A random conv net on RGB does not in the embedded world: it mostly encodes the image's colours,
    which all parts of an image share (k-means on its features: FG-NMI 0.005, docs/papers/scops.md). These features
    see texture instead: each channel is centred on its ``window`` x ``window`` local mean and divided by the local
    colour contrast (one per pixel, over the three channels, so the image's two colours drop out), filtered by a bank
    of quadrature Gabor pairs at ``periods`` (pixels) and ``orientations``; the local energy
    ``sqrt(sum over channels of even^2 + odd^2)`` is averaged over the orientations (rotation-invariant, as the parts
    rotate) and then pooled over ``stride`` x ``stride`` cells (the coarse map of VGG's stride 16). One channel per
    period, non-negative, times ``scale``; k-means on these features reaches FG-NMI 0.34-0.36 in the world at
    rotation 45 or 90 degrees. Never trains.

    Shape:
        x: ``(B, 3, H, W)`` network inputs (RGB x 255 minus the Caffe mean); returns ``(B, len(periods), H / stride,
        W / stride)``.
    """

    def __init__(
        self,
        periods: Sequence[float] = (1.5, 2.5, 3.5, 5.0),
        orientations: int = 4,
        stride: int = 4,
        scale: float = 1.0,
        kernel_size: int = 9,
        window: int = 5,
    ) -> None:
        super().__init__()
        if not periods or min(float(p) for p in periods) <= 0 or int(orientations) < 1 or int(stride) < 1:
            raise ValueError(
                f"periods must be positive, orientations and stride >= 1; got {list(periods)}, {orientations}, {stride}"
            )
        r = torch.arange(int(kernel_size), dtype=torch.float64) - int(kernel_size) // 2
        yy, xx = torch.meshgrid(r, r, indexing="ij")
        kernels = []
        for period in periods:
            envelope = torch.exp(-(xx**2 + yy**2) / (2 * (0.6 * float(period)) ** 2))
            for o in range(int(orientations)):
                theta = torch.pi * o / int(orientations)
                phase = 2 * torch.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / float(period)
                even = envelope * torch.cos(phase)
                even = even - even.sum() / envelope.sum() * envelope  # zero mean: flat regions give no energy
                odd = envelope * torch.sin(phase)
                kernels += [even / even.abs().sum(), odd / odd.abs().sum()]
        self.register_buffer("kernels", torch.stack(kernels)[:, None].float(), persistent=False)
        self.num_periods, self.orientations = len(periods), int(orientations)
        self.stride, self.scale, self.window = int(stride), float(scale), int(window)
        self.out_channels = len(periods)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        k = self.window
        pad = (k // 2, (k - 1) // 2, k // 2, (k - 1) // 2)
        mean = F.avg_pool2d(F.pad(x, pad, mode="replicate"), k, stride=1)
        centred = x - mean
        # one contrast for the three channels: the energy of a two-colour texture then depends on its pattern, not
        # on which two colours (nor on whether they differ in brightness or only in hue)
        var = F.avg_pool2d(F.pad(centred.pow(2).sum(dim=1, keepdim=True), pad, mode="replicate"), k, stride=1)
        normed = centred / (var.sqrt() + 5.0)  # +5 levels: flat regions stay flat instead of amplifying noise
        half = self.kernels.shape[-1] // 2
        flat = F.pad(normed.reshape(b * c, 1, h, w), (half, half, half, half), mode="replicate")
        response = F.conv2d(flat, self.kernels).view(b, c, -1, h, w)
        energy = (response[:, :, 0::2] ** 2 + response[:, :, 1::2] ** 2).sum(dim=1).sqrt()
        energy = energy.view(b, self.num_periods, self.orientations, h, w).mean(dim=2)
        return F.avg_pool2d(energy, self.stride) * self.scale


class CaffeInputVGG(nn.Module):
    """:class:`VGGFeatures` on SCOPS network inputs: converts them with ``imagenet_from_caffe`` (the official
    mean-order quirk included) first, as the official trainer feeds its VGG.

    Shape:
        x: ``(B, 3, H, W)`` network inputs; returns ``(B, 1024, H / 16, W / 16)``.
    """

    def __init__(self, pretrained: str | None = None) -> None:
        super().__init__()
        self.vgg = VGGFeatures(pretrained)
        self.out_channels = VGGFeatures.out_channels

    def forward(self, x: Tensor) -> Tensor:
        from nvresearch.scops.losses import imagenet_from_caffe

        return self.vgg(imagenet_from_caffe(x))


class PartBasis(nn.Module):
    """Learned part bases ``W = ReLU(w)`` of the semantic-consistency loss (Sec. 3.3, official
    ``PartBasisGenerator``): ``w`` is initialised with ``|N(0, 1)|``; ``normalize=True`` L2-normalises each row
    (``ref_norm``, off in the released config).

    Shape:
        returns ``(K, feature_dim)``, non-negative.
    """

    def __init__(self, num_parts: int = 8, feature_dim: int = 1024, normalize: bool = False) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(int(num_parts), int(feature_dim)).abs())
        self.normalize = bool(normalize)

    def forward(self) -> Tensor:
        out = F.relu(self.w)
        return l2_normalize_rows(out) if self.normalize else out
