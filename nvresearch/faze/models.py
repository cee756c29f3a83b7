"""FAZE networks (Park et al., ICCV 2019): the DT-ED autoencoder (Sec. 3) and the AdaGEN gaze MLP (Sec. 4).

Layout and parameter names follow the official ``src/models/dt_ed.py`` and ``densenet.py``: InstanceNorm without
affine, LeakyReLU(0.01), bias-free (transposed) convolutions with Kaiming-normal initialisation, no BatchNorm,
no dropout, no buffers.
At the reference configuration (growth rate 32, z = 64 / 2x3 / 16x3, decoder input 32x2x8, 64x256 input)
:class:`DTED` has 6,873,465 parameters and :class:`GazeMLP` 643.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DTED", "GazeMLP", "DenseNetDecoder", "DenseNetEncoder", "normalize_codes", "rotate_codes"]


def _act() -> nn.Module:
    return nn.LeakyReLU(0.01)


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class CompositeLayer(nn.Module):
    """InstanceNorm -> LeakyReLU -> (transposed) convolution, stride 1, spatial size kept (official ``densenet.py``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, transposed: bool = False) -> None:
        super().__init__()
        self.norm = _norm(in_channels)
        self.act = _act()
        pad = 1 if kernel_size > 1 else 0
        conv = nn.ConvTranspose2d if transposed else nn.Conv2d
        self.conv = conv(in_channels, out_channels, kernel_size, stride=1, padding=pad, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.act(self.norm(x)))


class DenseBlock(nn.Module):
    """``num_layers`` composite layers, each appending ``growth_rate`` channels to the running concatenation."""

    def __init__(self, in_channels: int, growth_rate: int, num_layers: int = 4, transposed: bool = False) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = CompositeLayer(in_channels + i * growth_rate, growth_rate, 3, transposed)
            self.add_module(f"compo{i + 1}", layer)
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.children():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class TransitionDown(nn.Module):
    """1x1 composite layer (compression 1.0) then 2x2 average pooling."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.composite = CompositeLayer(channels, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(self.composite(x), 2, 2)


class TransitionUp(nn.Module):
    """InstanceNorm -> LeakyReLU -> 3x3 transposed convolution with stride 2 (doubles H and W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.act = _act()
        self.conv = nn.ConvTranspose2d(channels, channels, 3, stride=2, padding=1, output_padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.act(self.norm(x)))


class _Initial(nn.Module):
    def __init__(self, growth_rate: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 2 * growth_rate, 3, stride=2, padding=1, bias=False)
        self.norm = _norm(2 * growth_rate)
        self.act = _act()
        self.conv2 = nn.Conv2d(2 * growth_rate, 4 * growth_rate, 3, stride=2, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.act(self.norm(self.conv1(x))))


class DenseNetEncoder(nn.Module):
    """Two stride-2 convolutions, then ``num_blocks`` dense blocks with transitions between them (as ``densenet.py``).

    Shape:
        x: ``(B, 3, H, W)`` with H, W divisible by ``2 ** (num_blocks + 1)``; returns
        ``(B, C, H / 2**(num_blocks+1), W / 2**(num_blocks+1))`` with ``C = 4g + num_blocks * num_layers * g``.
    """

    def __init__(self, growth_rate: int = 32, num_blocks: int = 4, num_layers: int = 4) -> None:
        super().__init__()
        self.initial = _Initial(growth_rate)
        c = 4 * growth_rate
        for b in range(num_blocks):
            block = DenseBlock(c, growth_rate, num_layers)
            self.add_module(f"block{b + 1}", block)
            c = block.out_channels
            if b < num_blocks - 1:
                self.add_module(f"trans{b + 1}", TransitionDown(c))
        self.out_channels = c
        self.num_blocks = num_blocks

    def forward(self, x: Tensor) -> Tensor:
        x = self.initial(x)
        for b in range(self.num_blocks):
            x = getattr(self, f"block{b + 1}")(x)
            if b < self.num_blocks - 1:
                x = getattr(self, f"trans{b + 1}")(x)
        return x


class _DecoderLast(nn.Module):
    def __init__(self, in_channels: int, growth_rate: int) -> None:
        super().__init__()
        g2, g4 = 2 * growth_rate, 4 * growth_rate
        self.conv1 = nn.ConvTranspose2d(in_channels, g4, 3, stride=2, padding=1, output_padding=1, bias=False)
        self.norm1, self.act1 = _norm(g4), _act()
        self.conv2 = nn.ConvTranspose2d(g4, g2, 3, stride=2, padding=1, output_padding=1, bias=False)
        self.norm2, self.act2 = _norm(g2), _act()
        self.conv3 = nn.Conv2d(g2, 3, 3, stride=1, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act1(self.norm1(self.conv1(x)))
        x = self.act2(self.norm2(self.conv2(x)))
        return self.conv3(x)  # no output activation, as the official decoder


class DenseNetDecoder(nn.Module):
    """Mirror of the encoder with transposed convolutions and no skip connections; unbounded output (as ``dt_ed.py``).

    Shape:
        x: ``(B, in_channels, h, w)``; returns ``(B, 3, h * 2**(num_blocks+1), w * 2**(num_blocks+1))``.
    """

    def __init__(self, in_channels: int = 32, growth_rate: int = 32, num_blocks: int = 4, num_layers: int = 4) -> None:
        super().__init__()
        c = in_channels
        for b in range(num_blocks):
            block = DenseBlock(c, growth_rate, num_layers, transposed=True)
            self.add_module(f"block{b + 1}", block)
            c = block.out_channels
            if b < num_blocks - 1:
                self.add_module(f"trans{b + 1}", TransitionUp(c))
        self.last = _DecoderLast(c, growth_rate)
        self.num_blocks = num_blocks

    def forward(self, x: Tensor) -> Tensor:
        for b in range(self.num_blocks):
            x = getattr(self, f"block{b + 1}")(x)
            if b < self.num_blocks - 1:
                x = getattr(self, f"trans{b + 1}")(x)
        return self.last(x)


def normalize_codes(codes: Tensor, axis: int = 1) -> Tensor:
    """L2-normalise 3D codes as the reference does (official ``src/models/dt_ed.py``).

    ``axis=1`` (the reference) normalises over the F (row-index) axis of the ``(B, F, 3)`` tensor, so each of the
    3 *columns* becomes unit-norm; ``axis=2`` normalises each row; ``axis=3`` normalises the flattened code.

    Shape:
        codes: ``(B, F, 3)``; returns the same shape.
    """
    if axis in (1, 2):
        return F.normalize(codes, dim=axis)
    if axis == 3:
        return F.normalize(codes.flatten(1), dim=1).view_as(codes)
    raise ValueError(f"normalize axis must be 1, 2 or 3, got {axis}")


def rotate_codes(codes: Tensor, rotation_from: Tensor, rotation_to: Tensor | None = None) -> Tensor:
    """Rotate row-vector codes: ``Z R_from`` (frontalise) or ``Z R_from R_to^T`` (a -> b), as the official ``dt_ed.py``.

    In column notation each row ``z`` becomes ``R_to R_from^T z``.

    Shape:
        codes: ``(B, F, 3)``; rotations ``(B, 3, 3)``; returns ``(B, F, 3)``.
    """
    out = codes @ rotation_from
    if rotation_to is not None:
        out = out @ rotation_to.transpose(-1, -2)
    return out


class DTED(nn.Module):
    """Disentangling Transforming Encoder-Decoder (FAZE Sec. 3; official ``src/models/dt_ed.py``).

    The encoder maps an eye-region image to an appearance code ``z_app`` (64), a gaze code ``Z_g`` (2x3) and a head
    code ``Z_h`` (16x3) (slices of one 118-d vector: app first, then the rows of a row-major reshape to ``(18, 3)``).
    The gaze and head codes are column-normalised, each on its own, then rotated by the relative rotations of gaze
    and head and decoded with the appearance code into another image of the same person. A gaze head
    (6 -> 64 -> ReLU -> 3, unit output) reads the unrotated gaze code.

    Args:
        z_app / z_gaze / z_head: appearance size and numbers of 3D rows of the gaze and head codes.
        growth_rate: DenseNet growth rate ``k`` (32 in the reference).
        decoder_input_c: channels of the decoder's bottleneck (32).
        image_size: ``(H, W)`` of the input, each divisible by ``2 ** (num_blocks + 1)`` (``(64, 256)``).
        normalize_3d_codes / normalize_axis: column normalisation of the 3D codes (on, axis 1, in the reference).
        backprop_gaze_to_encoder: let the gaze loss train the encoder (on in the reference).
        num_blocks / num_layers: dense blocks and composite layers per block (4 / 4).

    Shape:
        images ``(B, 3, H, W)`` in [-1, 1]; rotations ``(B, 3, 3)``.
    """

    def __init__(
        self,
        z_app: int = 64,
        z_gaze: int = 2,
        z_head: int = 16,
        growth_rate: int = 32,
        decoder_input_c: int = 32,
        image_size: Sequence[int] = (64, 256),
        normalize_3d_codes: bool = True,
        normalize_axis: int = 1,
        backprop_gaze_to_encoder: bool = True,
        num_blocks: int = 4,
        num_layers: int = 4,
    ) -> None:
        super().__init__()
        h, w = (int(s) for s in image_size)
        self.config = {
            "z_app": z_app,
            "z_gaze": z_gaze,
            "z_head": z_head,
            "growth_rate": growth_rate,
            "decoder_input_c": decoder_input_c,
            "image_size": [h, w],
            "normalize_3d_codes": normalize_3d_codes,
            "normalize_axis": normalize_axis,
            "backprop_gaze_to_encoder": backprop_gaze_to_encoder,
            "num_blocks": num_blocks,
            "num_layers": num_layers,
        }  # constructor arguments, saved with exported estimators
        factor = 2 ** (num_blocks + 1)
        if h % factor or w % factor or h <= 0 or w <= 0:
            raise ValueError(f"image_size {(h, w)} must be positive and divisible by {factor}")
        if normalize_axis not in (1, 2, 3):
            raise ValueError(f"normalize_axis must be 1, 2 or 3, got {normalize_axis}")
        self.z_app, self.z_gaze, self.z_head = int(z_app), int(z_gaze), int(z_head)
        self.image_size = (h, w)
        self.bottleneck = (h // factor, w // factor)
        self.decoder_input_c = int(decoder_input_c)
        self.normalize_3d_codes = normalize_3d_codes
        self.normalize_axis = normalize_axis
        self.backprop_gaze_to_encoder = backprop_gaze_to_encoder
        self.z_dim = self.z_app + 3 * (self.z_gaze + self.z_head)

        self.encoder = DenseNetEncoder(growth_rate, num_blocks, num_layers)
        self.decoder = DenseNetDecoder(decoder_input_c, growth_rate, num_blocks, num_layers)
        self.fc_enc = nn.Linear(self.encoder.out_channels, self.z_dim)
        self.fc_dec = nn.Linear(self.z_dim, decoder_input_c * self.bottleneck[0] * self.bottleneck[1])
        self.gaze1 = nn.Linear(3 * self.z_gaze, 64)
        self.gaze2 = nn.Linear(64, 3)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _check_images(self, images: Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != self.image_size:
            raise ValueError(
                f"DTED expects images of shape (B, 3, {self.image_size[0]}, {self.image_size[1]}), "
                f"got {tuple(images.shape)}"
            )

    def pooled_features(self, images: Tensor) -> Tensor:
        """The encoder's globally pooled features, the input of ``fc_enc`` (the official ``before_z``).

        Shape:
            images: ``(B, 3, H, W)``; returns ``(B, encoder.out_channels)`` (640 at the reference size).
        """
        self._check_images(images)
        return self.encoder(images).mean(dim=(2, 3))

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Images -> ``(z_app (B, 64), Z_g (B, 2, 3), Z_h (B, 16, 3))``, gaze and head codes normalised separately."""
        return self.codes_from_features(self.pooled_features(images))

    def codes_from_features(self, feats: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`pooled_features` -> the codes of :meth:`encode` (``fc_enc``, the slices, the normalisation)."""
        z = self.fc_enc(feats)
        z_app = z[:, : self.z_app]
        z3d = z[:, self.z_app :].reshape(z.shape[0], self.z_gaze + self.z_head, 3)
        z_gaze, z_head = z3d[:, : self.z_gaze], z3d[:, self.z_gaze :]
        if self.normalize_3d_codes:
            # The gaze and head codes are normalised each on its own (official dt_ed.py, maybe_do_norm): normalising
            # the stacked 18 rows together would leave the gaze code's columns at norm ~0.2-0.3.
            z_gaze = normalize_codes(z_gaze, self.normalize_axis)
            z_head = normalize_codes(z_head, self.normalize_axis)
        return z_app, z_gaze, z_head

    def decode(self, z_app: Tensor, z_gaze: Tensor, z_head: Tensor) -> Tensor:
        """Codes (already rotated to the target pose) -> image ``(B, 3, H, W)``, unbounded."""
        z = torch.cat([z_app, z_gaze.flatten(1), z_head.flatten(1)], dim=1)
        x = self.fc_dec(z).view(z.shape[0], self.decoder_input_c, *self.bottleneck)
        return self.decoder(x)

    def estimate_gaze(self, z_gaze: Tensor) -> Tensor:
        """The DT-ED gaze head (``dt_ed.py``): ``normalize(W2 ReLU(W1 vec(Z_g) + b1) + b2)``; returns ``(B, 3)``."""
        x = z_gaze.flatten(1)
        if not self.backprop_gaze_to_encoder:
            x = x.detach()
        return F.normalize(self.gaze2(F.relu(self.gaze1(x))), dim=-1)

    def forward(
        self,
        image_a: Tensor,
        rot_gaze_a: Tensor,
        rot_head_a: Tensor,
        rot_gaze_b: Tensor | None = None,
        rot_head_b: Tensor | None = None,
        image_b: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Encode ``a``; with target rotations also decode ``a``'s codes rotated a -> b; with ``image_b`` encode it.

        Returns a dict with ``z_app``, ``z_gaze``, ``z_head``, ``canon_gaze``, ``canon_head`` (frontalised codes
        ``Z R``), ``gaze_hat`` (unit vectors), and when decoding ``image_b_hat``; with ``image_b`` also
        ``canon_gaze_b`` and ``canon_head_b``.
        """
        z_app, z_gaze, z_head = self.encode(image_a)
        out = {
            "z_app": z_app,
            "z_gaze": z_gaze,
            "z_head": z_head,
            "canon_gaze": rotate_codes(z_gaze, rot_gaze_a),
            "canon_head": rotate_codes(z_head, rot_head_a),
            "gaze_hat": self.estimate_gaze(z_gaze),
        }
        if rot_gaze_b is not None and rot_head_b is not None:
            zg = rotate_codes(z_gaze, rot_gaze_a, rot_gaze_b)
            zh = rotate_codes(z_head, rot_head_a, rot_head_b)
            out["image_b_hat"] = self.decode(z_app, zg, zh)
        if image_b is not None:
            if rot_gaze_b is None or rot_head_b is None:
                raise ValueError("encoding image_b needs rot_gaze_b and rot_head_b")
            _, zg_b, zh_b = self.encode(image_b)
            out["canon_gaze_b"] = rotate_codes(zg_b, rot_gaze_b)
            out["canon_head_b"] = rotate_codes(zh_b, rot_head_b)
        return out


class GazeMLP(nn.Module):
    """AdaGEN / PS-GEN gaze estimator (FAZE Sec. 4): ``in -> hidden -> 3``, unit-vector output.

    Weights initialised N(0, 1/fan_in), biases 0 (the reference's SELU-friendly initialisation); 643 parameters at
    6 -> 64 -> 3.

    Two ablations of the official ``2_meta_learning.py``:

    - ``before_z`` features (``pre_features > 0``): the input is the encoder's pooled features and a first layer
      ``layer0`` (``pre_features -> pre_out``, meant to start as the DT-ED's ``fc_enc``) maps them to the codes, of
      which ``in_features`` outputs from ``pre_keep_start`` (the gaze code, not column-normalised) go through SELU
      into ``layer1`` (the official ``GazeEstimationModelPreExtended``).
    - Meta-SGD (``meta_sgd``): one learned step-size multiplier per parameter element, kept as buffers
      (``step_scales()``, saved with the weights); the inner update and the personalisation are
      ``theta - lr * scale * grad`` instead of ``theta - lr * grad``.

    Args:
        in_features: flattened gaze-code size (6).
        hidden: hidden units (64).
        activation: ``selu`` (the reference's MAML MLP) or ``relu`` (the DT-ED head).
        pre_features: ``before_z`` input size (0: no first layer, the input is the gaze code).
        pre_out: outputs of ``layer0`` (the DT-ED's code size, 118 at the reference).
        pre_keep_start: the first kept output of ``layer0`` (``z_app``, 64 at the reference).
        meta_sgd: carry per-parameter step-size multipliers (initialised to 1).

    Shape:
        x: ``(B, in_features)`` or ``(B, F, 3)`` (flattened), or ``(B, pre_features)`` with a first layer; returns
        ``(B, 3)`` unit vectors.
    """

    def __init__(
        self,
        in_features: int = 6,
        hidden: int = 64,
        activation: str = "selu",
        pre_features: int = 0,
        pre_out: int = 0,
        pre_keep_start: int = 0,
        meta_sgd: bool = False,
    ) -> None:
        super().__init__()
        if activation not in ("selu", "relu"):
            raise ValueError(f"activation must be 'selu' or 'relu', got {activation!r}")
        self.in_features = int(in_features)
        self.pre_features, self.pre_out, self.pre_keep_start = int(pre_features), int(pre_out), int(pre_keep_start)
        if self.pre_features and not 0 <= self.pre_keep_start <= self.pre_out - self.in_features:
            raise ValueError(
                f"pre_keep_start={pre_keep_start} + in_features={in_features} must fit in pre_out={pre_out}"
            )
        self.config = {"in_features": in_features, "hidden": hidden, "activation": activation}
        if self.pre_features:
            self.config |= {"pre_features": self.pre_features, "pre_out": self.pre_out}
            self.config |= {"pre_keep_start": self.pre_keep_start}
            self.layer0 = nn.Linear(self.pre_features, self.pre_out)
        if meta_sgd:
            self.config["meta_sgd"] = True
        self.layer1 = nn.Linear(in_features, hidden)
        self.layer2 = nn.Linear(hidden, 3)
        self.activation = activation
        for layer in (getattr(self, "layer0", None), self.layer1, self.layer2):
            if layer is not None:
                nn.init.normal_(layer.weight, 0.0, 1.0 / math.sqrt(layer.in_features))
                nn.init.zeros_(layer.bias)
        self._scale_names: dict[str, str] = {}
        if meta_sgd:
            for name, p in list(self.named_parameters()):
                self._scale_names[name] = "step_" + name.replace(".", "_")
                self.register_buffer(self._scale_names[name], torch.ones_like(p))

    @property
    def meta_sgd(self) -> bool:
        return bool(self._scale_names)

    def step_scales(self) -> dict[str, Tensor]:
        """Meta-SGD's per-parameter step multipliers, parameter name -> tensor of its shape (empty without)."""
        return {name: getattr(self, buf) for name, buf in self._scale_names.items()}

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1) if x.dim() > 2 else x
        expected = self.pre_features or self.in_features
        if x.shape[-1] != expected:
            raise ValueError(f"GazeMLP expects {expected} input features, got shape {tuple(x.shape)}")
        if self.pre_features:
            x = F.selu(self.layer0(x)[..., self.pre_keep_start : self.pre_keep_start + self.in_features])
        h = self.layer1(x)
        h = F.selu(h) if self.activation == "selu" else F.relu(h)
        return F.normalize(self.layer2(h), dim=-1)
