"""Convolution, linear and residual blocks with selectable normalisation, activation and padding.

The blocks follow the layout shared by MUNIT, FUNIT and DG-Net: pad -> conv -> norm -> activation (or, with
``activation_first``, activation -> pad -> conv -> norm). Activations are never in-place; where a reference relies
on in-place aliasing its effect is reproduced explicitly (see :class:`ActFirstResBlock`).
"""

from __future__ import annotations

import math

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from nvresearch.core.gan.norms import make_norm

ACTIVATIONS = ("relu", "lrelu", "tanh", "sigmoid", "none")
PADDINGS = ("reflect", "replicate", "zero")


def make_activation(name: str) -> nn.Module:
    """``relu``, ``lrelu`` (slope 0.2), ``tanh``, ``sigmoid`` or ``none``."""
    if name == "relu":
        return nn.ReLU()
    if name == "lrelu":
        return nn.LeakyReLU(0.2)
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}; choose one of {ACTIVATIONS}")


def make_padding(name: str, padding: int) -> nn.Module:
    """``reflect``, ``replicate`` or ``zero`` padding of ``padding`` pixels on every side."""
    if name == "reflect":
        return nn.ReflectionPad2d(padding)
    if name == "replicate":
        return nn.ReplicationPad2d(padding)
    if name == "zero":
        return nn.ZeroPad2d(padding)
    raise ValueError(f"unknown padding {name!r}; choose one of {PADDINGS}")


class Conv2dBlock(nn.Module):
    """pad -> conv -> norm -> activation (or activation -> pad -> conv -> norm with ``activation_first``).

    Args:
        in_channels / out_channels / kernel_size / stride / padding: of the convolution (padding applied by a
            separate ``pad_type`` layer, the convolution itself does not pad).
        norm: one of :data:`~nvresearch.core.gan.norms.NORMS`.
        activation: one of :data:`ACTIVATIONS`.
        pad_type: one of :data:`PADDINGS`.
        activation_first: pre-activation order.
        bias: convolution bias.
        spectral_norm: wrap the convolution in spectral normalisation (power iteration on each training forward).

    Shape:
        x: ``(B, in_channels, H, W)``; returns ``(B, out_channels, H', W')``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        norm: str = "none",
        activation: str = "relu",
        pad_type: str = "reflect",
        activation_first: bool = False,
        bias: bool = True,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.activation_first = activation_first
        self.pad = make_padding(pad_type, padding)
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, bias=bias)
        self.conv = _spectral_norm(conv) if spectral_norm else conv
        self.norm = make_norm(norm, out_channels)
        self.activation = make_activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        if self.activation_first:
            return self.norm(self.conv(self.pad(self.activation(x))))
        return self.activation(self.norm(self.conv(self.pad(x))))


class LinearBlock(nn.Module):
    """linear -> (batch/layer/none) norm -> activation.

    Shape:
        x: ``(B, in_features)``; returns ``(B, out_features)``.
    """

    def __init__(self, in_features: int, out_features: int, norm: str = "none", activation: str = "relu") -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, out_features, bias=True)
        if norm == "none":
            self.norm: nn.Module = nn.Identity()
        elif norm == "batch":
            self.norm = nn.BatchNorm1d(out_features)
        elif norm == "layer":
            self.norm = nn.LayerNorm(out_features)
        else:
            raise ValueError(f"LinearBlock norm must be 'none', 'batch' or 'layer', got {norm!r}")
        self.activation = make_activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.norm(self.fc(x)))


class MLP(nn.Module):
    """``num_blocks`` linear layers: ``in -> dim (act) -> ... -> dim (act) -> out`` (no activation on the last).

    The MLP that maps a style/class code to AdaIN parameters in MUNIT, FUNIT (64 -> 256 -> 256 -> 4096) and DG-Net.

    Shape:
        x: ``(B, in_features, ...)`` (flattened from dim 1); returns ``(B, out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        dim: int,
        num_blocks: int,
        norm: str = "none",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"an MLP needs at least one block, got {num_blocks}")
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(num_blocks - 1):
            layers.append(LinearBlock(width, dim, norm=norm, activation=activation))
            width = dim
        layers.append(LinearBlock(width, out_features, norm="none", activation="none"))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x.flatten(1))


class ResBlock(nn.Module):
    """``y = x + N2(C2(act(N1(C1(x)))))`` with two 3x3 convolutions of the same width (MUNIT/FUNIT residual block).

    No activation after the second norm nor after the addition. With ``norm='adain'`` both norms are AdaIN.

    Shape:
        x: ``(B, C, H, W)``; returns the same shape.
    """

    def __init__(
        self,
        channels: int,
        norm: str = "instance",
        activation: str = "relu",
        pad_type: str = "reflect",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        kw = {"norm": norm, "pad_type": pad_type, "spectral_norm": spectral_norm}
        self.conv1 = Conv2dBlock(channels, channels, 3, 1, 1, activation=activation, **kw)
        self.conv2 = Conv2dBlock(channels, channels, 3, 1, 1, activation="none", **kw)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.conv1(x))


class ResBlocks(nn.Sequential):
    """``num_blocks`` :class:`ResBlock` in a row.

    Shape:
        x: ``(B, C, H, W)``; returns the same shape.
    """

    def __init__(
        self,
        num_blocks: int,
        channels: int,
        norm: str = "instance",
        activation: str = "relu",
        pad_type: str = "reflect",
    ) -> None:
        super().__init__(*(ResBlock(channels, norm, activation, pad_type) for _ in range(num_blocks)))


class ActFirstResBlock(nn.Module):
    """Pre-activation residual block: ``out = shortcut(x) + C1(act(C0(act(x))))`` (FUNIT's discriminator block).

    Both convolutions are 3x3 (hidden width ``min(in, out)`` unless given); the shortcut is the identity when
    ``in == out`` and a 1x1 convolution without bias otherwise.

    Args:
        shortcut_after_activation: reproduce the FUNIT reference, whose in-place LeakyReLU overwrites the input
            tensor that an identity shortcut then adds: ``out = act(x) + F(act(x))`` instead of ``x + F(act(x))``.
            Learned shortcuts read ``x`` before it is overwritten and are not affected.

    Shape:
        x: ``(B, in_channels, H, W)``; returns ``(B, out_channels, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int | None = None,
        norm: str = "none",
        activation: str = "lrelu",
        pad_type: str = "reflect",
        shortcut_after_activation: bool = False,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        hidden = min(in_channels, out_channels) if hidden_channels is None else hidden_channels
        self.learned_shortcut = in_channels != out_channels
        self.shortcut_after_activation = shortcut_after_activation
        kw = {"norm": norm, "pad_type": pad_type, "spectral_norm": spectral_norm}
        self.conv_0 = Conv2dBlock(in_channels, hidden, 3, 1, 1, activation="none", **kw)
        self.conv_1 = Conv2dBlock(hidden, out_channels, 3, 1, 1, activation=activation, activation_first=True, **kw)
        self.activation = make_activation(activation)
        if self.learned_shortcut:
            conv_s = nn.Conv2d(in_channels, out_channels, 1, bias=False)
            self.conv_s = _spectral_norm(conv_s) if spectral_norm else conv_s

    def forward(self, x: Tensor) -> Tensor:
        a = self.activation(x)
        dx = self.conv_1(self.conv_0(a))
        if self.learned_shortcut:
            return self.conv_s(x) + dx
        return (a if self.shortcut_after_activation else x) + dx


def init_weights(module: nn.Module, kind: str = "kaiming", gain: float = 0.02) -> nn.Module:
    """Initialise every Conv/Linear weight of ``module`` in place; biases to zero. Returns ``module``.

    ``kaiming``: normal, fan-in, a = 0 (FUNIT, MUNIT generators); ``normal``: N(0, gain^2) (DG-Net's
    discriminator); ``xavier``: normal with ``gain``; ``orthogonal``: with ``gain``. Spectrally normalised layers
    are initialised through their original weight.
    """
    if kind not in ("kaiming", "normal", "xavier", "orthogonal"):
        raise ValueError(f"unknown init {kind!r}; choose kaiming, normal, xavier or orthogonal")
    for m in module.modules():
        if not isinstance(m, nn.Conv2d | nn.Linear | nn.ConvTranspose2d):
            continue
        w = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
        if kind == "kaiming":
            nn.init.kaiming_normal_(w, a=0, mode="fan_in")
        elif kind == "normal":
            nn.init.normal_(w, 0.0, gain)
        elif kind == "xavier":
            nn.init.xavier_normal_(w, gain=math.sqrt(2) if gain is None else gain)
        else:
            nn.init.orthogonal_(w, gain=gain)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    return module
