"""Networks of the Taylor-pruning experiments (Molchanov et al., CVPR 2019).

- :class:`LeNet3`: the reference's ``lenet3`` (MNIST/CIFAR): two 5x5 convolutions (16, 32 channels) with ReLU and
  2x2 max-pooling, then fully connected layers of 120 and 84 units; its 252 prunable units are the ones the paper's
  LeNet correlation study gates (official ``models/lenet.py``).
- :class:`DigitsCNN`: a small conv-BN-ReLU network for the embedded 8x8 digits, so that the paper's best criterion
  (gate after BN) applies.
- :func:`torchvision_classifier`: the ImageNet networks of Table 3 (torchvision ResNet-18/34/50/101, VGG11-BN,
  DenseNet-121/201, MobileNetV2), optionally loading a torchvision checkpoint file and with a CIFAR stem.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["ARCHS", "DigitsCNN", "LeNet3", "torchvision_classifier"]


class LeNet3(nn.Module):
    """The reference ``lenet3``: conv5(16)-pool-conv5(32)-pool-fc(120)-fc(84)-fc(classes), ReLU after each hidden layer.

    Args:
        in_channels: 1 for MNIST/digits, 3 for CIFAR-10.
        num_classes: Output classes.
        input_size: Side of the square input (28 for MNIST, 32 for CIFAR-10).

    Shape:
        - Input: ``(B, in_channels, input_size, input_size)``.
        - Output: ``(B, num_classes)`` logits.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> None:
        super().__init__()
        side = ((input_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"input_size {input_size} is too small for LeNet3 (needs at least 16)")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * side * side, 120),
            nn.ReLU(inplace=False),
            nn.Linear(120, 84),
            nn.ReLU(inplace=False),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class DigitsCNN(nn.Sequential):
    """A small ``nn.Sequential`` conv-BN-ReLU classifier for 8x8 digits (the embedded default).

    Three 3x3 conv-BN-ReLU stages (``widths``) with 2x2 max-pooling after the first two, global average pooling, a
    hidden fully connected layer of ``hidden`` units and the classifier.

    Shape:
        - Input: ``(B, in_channels, H, W)`` with ``H, W >= 4``.
        - Output: ``(B, num_classes)`` logits.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: tuple[int, int, int] = (32, 64, 128),
        hidden: int = 64,
    ) -> None:
        w1, w2, w3 = (int(w) for w in widths)
        super().__init__(
            nn.Conv2d(in_channels, w1, 3, padding=1, bias=False),
            nn.BatchNorm2d(w1),
            nn.ReLU(),
            nn.Conv2d(w1, w2, 3, padding=1, bias=False),
            nn.BatchNorm2d(w2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w2, w3, 3, padding=1, bias=False),
            nn.BatchNorm2d(w3),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(w3, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )


ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "vgg11_bn", "densenet121", "densenet201", "mobilenet_v2")


def torchvision_classifier(
    arch: str,
    num_classes: int = 1000,
    weights_path: str | None = None,
    cifar_stem: bool = False,
) -> nn.Module:
    """A torchvision network of the paper's Table 3.

    Args:
        arch: One of :data:`ARCHS`.
        num_classes: Output classes (1000 for ImageNet).
        weights_path: Optional torchvision checkpoint file (e.g. ``resnet50-19c8e357.pth``), loaded with
            ``weights_only=True``; the reference prunes from these pretrained weights.
        cifar_stem: For 32x32 inputs (ResNets only): a 3x3 stride-1 stem without max-pooling.

    Raises:
        ValueError: Unknown ``arch``. FileNotFoundError: ``weights_path`` does not exist.
    """
    import torchvision

    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {ARCHS}")
    model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    if cifar_stem:
        if not arch.startswith("resnet"):
            raise ValueError("cifar_stem applies to ResNets only")
        model.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        model.maxpool = nn.Identity()
    if weights_path:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: '{path}' (expected a torchvision state dict .pth)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    return model
