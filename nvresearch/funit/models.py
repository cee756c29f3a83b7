"""FUNIT networks (Liu et al., ICCV 2019, Sec. 3 and Appendix): few-shot generator and multi-task discriminator.

Reference configuration (``configs/model/funit/default.yaml``): generator nf 64, 3 / 4 down-samplings in the content
/ class encoder, 2 residual blocks, a 64-d class code, MLP 64 -> 256 -> 256 -> 4096 (29,866,435 parameters);
discriminator nf 64, 10 pre-activation residual blocks, 119 source classes (54,252,599 parameters).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nvresearch.core.gan import (
    MLP,
    ActFirstResBlock,
    ClassConditionalHead,
    Conv2dBlock,
    ResBlocks,
    assign_adain_params,
    init_weights,
    num_adain_params,
)


class ContentEncoder(nn.Module):
    """E_x: 7x7 conv, ``num_downs`` 4x4 stride-2 convs doubling the width, ``num_res`` residual blocks; IN + ReLU.

    Shape:
        x: ``(B, 3, H, W)``; returns ``(B, nf * 2^num_downs, H / 2^num_downs, W / 2^num_downs)``.
    """

    def __init__(self, num_downs: int = 3, num_res: int = 2, in_channels: int = 3, nf: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = [Conv2dBlock(in_channels, nf, 7, 1, 3, norm="instance", activation="relu")]
        ch = nf
        for _ in range(num_downs):
            layers.append(Conv2dBlock(ch, 2 * ch, 4, 2, 1, norm="instance", activation="relu"))
            ch *= 2
        layers.append(ResBlocks(num_res, ch, norm="instance", activation="relu"))
        self.model = nn.Sequential(*layers)
        self.out_channels = ch

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class ClassEncoder(nn.Module):
    """E_y: 7x7 conv, two 4x4 stride-2 convs doubling the width, ``num_downs - 2`` more at constant width, global
    average pooling and a 1x1 conv to the ``latent_dim`` class code. No normalisation (Appendix A).

    Shape:
        x: ``(B, 3, H, W)``; returns ``(B, latent_dim)``.
    """

    def __init__(self, num_downs: int = 4, latent_dim: int = 64, in_channels: int = 3, nf: int = 64) -> None:
        super().__init__()
        if num_downs < 2:
            raise ValueError(f"the class encoder needs at least 2 down-samplings, got {num_downs}")
        layers: list[nn.Module] = [Conv2dBlock(in_channels, nf, 7, 1, 3, norm="none", activation="relu")]
        ch = nf
        for _ in range(2):
            layers.append(Conv2dBlock(ch, 2 * ch, 4, 2, 1, norm="none", activation="relu"))
            ch *= 2
        for _ in range(num_downs - 2):
            layers.append(Conv2dBlock(ch, ch, 4, 2, 1, norm="none", activation="relu"))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(ch, latent_dim, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x).flatten(1)


class Decoder(nn.Module):
    """F_x: ``num_res`` AdaIN residual blocks, ``num_ups`` x [nearest x2, 5x5 conv halving the width, IN, ReLU],
    7x7 conv to RGB, tanh. In the reference only the residual blocks are adaptive and the up-sampling convs use plain
    IN; ``adain_upsampling=True`` makes their norms AdaIN too (as imaginaire's improved FUNIT decoder does), which
    lets the class code set colours directly instead of through patterns that survive instance normalisation.

    Shape:
        content: ``(B, C, h, w)``; returns ``(B, 3, h * 2^num_ups, w * 2^num_ups)`` in [-1, 1]. The AdaIN
        parameters must be assigned first (:meth:`FewShotGenerator.decode` does it).
    """

    def __init__(
        self,
        num_ups: int = 3,
        num_res: int = 2,
        in_channels: int = 512,
        out_channels: int = 3,
        adain_upsampling: bool = False,
    ) -> None:
        super().__init__()
        up_norm = "adain" if adain_upsampling else "instance"
        layers: list[nn.Module] = [ResBlocks(num_res, in_channels, norm="adain", activation="relu")]
        ch = in_channels
        for _ in range(num_ups):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                Conv2dBlock(ch, ch // 2, 5, 1, 2, norm=up_norm, activation="relu"),
            ]
            ch //= 2
        layers.append(Conv2dBlock(ch, out_channels, 7, 1, 3, norm="none", activation="tanh"))
        self.model = nn.Sequential(*layers)

    def forward(self, content: Tensor) -> Tensor:
        return self.model(content)


class FewShotGenerator(nn.Module):
    """G(x, {y_1..y_K}) = F_x(E_x(x), mean_k E_y(y_k)) (Eq. 1; K-shot class code averaged before the MLP).

    Args:
        nf: width of the first convolutions.
        num_downs_content / num_downs_class: stride-2 convolutions in each encoder.
        num_res: residual blocks in the content encoder and (AdaIN) in the decoder.
        latent_dim: class-code size.
        mlp_dim / mlp_blocks: the MLP from the class code to the AdaIN parameters.
        init: weight initialisation (``kaiming``: fan-in normal, biases 0, as the reference).
        adain_upsampling: AdaIN also in the decoder's up-sampling layers (not the reference; see :class:`Decoder`).

    Shape:
        content: ``(B, 3, H, W)``; class_images: ``(B, 3, H, W)`` (K = 1) or ``(B, K, 3, H, W)``; returns
        ``(B, 3, H, W)`` in [-1, 1]. ``H`` and ``W`` must be multiples of ``2^max(num_downs)``.
    """

    def __init__(
        self,
        nf: int = 64,
        num_downs_content: int = 3,
        num_downs_class: int = 4,
        num_res: int = 2,
        latent_dim: int = 64,
        mlp_dim: int = 256,
        mlp_blocks: int = 3,
        init: str = "kaiming",
        adain_upsampling: bool = False,
    ) -> None:
        super().__init__()
        self.content_encoder = ContentEncoder(num_downs_content, num_res, 3, nf)
        self.class_encoder = ClassEncoder(num_downs_class, latent_dim, 3, nf)
        self.decoder = Decoder(num_downs_content, num_res, self.content_encoder.out_channels, 3, adain_upsampling)
        self.mlp = MLP(latent_dim, num_adain_params(self.decoder), mlp_dim, mlp_blocks, activation="relu")
        self.latent_dim = int(latent_dim)
        self.multiple = 2 ** max(num_downs_content, num_downs_class)
        init_weights(self, init)

    def _check(self, x: Tensor, name: str) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{name} must be (B, 3, H, W) images, got shape {tuple(x.shape)}")
        if x.shape[-1] % self.multiple or x.shape[-2] % self.multiple:
            raise ValueError(f"{name} height and width must be multiples of {self.multiple}, got {tuple(x.shape)}")

    def encode_content(self, x: Tensor) -> Tensor:
        """Content code E_x(x). Shape: ``(B, 3, H, W)`` -> ``(B, C, h, w)``."""
        self._check(x, "content images")
        return self.content_encoder(x)

    def encode_class(self, y: Tensor) -> Tensor:
        """Class code of each image, or the mean over K shots. Shape: ``(B, 3, H, W)`` or ``(B, K, 3, H, W)`` ->
        ``(B, latent_dim)``."""
        if y.dim() == 5:
            b, k = y.shape[:2]
            return self.encode_class(y.flatten(0, 1)).view(b, k, -1).mean(1)
        self._check(y, "class images")
        return self.class_encoder(y)

    def decode(self, content: Tensor, class_code: Tensor) -> Tensor:
        """F_x(content, class code): the MLP output drives the decoder's AdaIN layers. Returns ``(B, 3, H, W)``."""
        if class_code.shape != (content.shape[0], self.latent_dim):
            raise ValueError(f"class code must be (B, {self.latent_dim}), got {tuple(class_code.shape)}")
        assign_adain_params(self.mlp(class_code), self.decoder)
        return self.decoder(content)

    def forward(self, content: Tensor, class_images: Tensor) -> Tensor:
        return self.decode(self.encode_content(content), self.encode_class(class_images))


class MultiTaskDiscriminator(nn.Module):
    """FUNIT's patch discriminator with one binary real/fake output per source class (Sec. 3, Appendix A).

    7x7 conv, then ``num_stages`` x [ActFirstResBlock(c, c), ActFirstResBlock(c, 2c), reflect-pad 1, 3x3 stride-2
    average pool] with the width capped at ``max_channels``, then ``num_res - 2 num_stages`` more blocks, the last of
    which doubles the width (capped; the official layout, ``num_stages = num_res / 2 - 1``, has two); LeakyReLU and a
    1x1 conv to ``num_classes`` maps, of which the label's map is returned.

    Args:
        reference_inplace: reproduce the reference's in-place LeakyReLU effects (default, the official behaviour):
            identity-shortcut blocks add LReLU(x) instead of x, and the features used for feature matching are
            taken after the head's LReLU. ``False`` gives the clean pre-activation network (docs/papers/funit.md).

    Shape:
        x: ``(B, 3, H, W)``; labels: ``(B,)`` in ``[0, num_classes)``; returns logits ``(B, H/16, W/16)`` and
        features ``(B, C, H/16, W/16)`` (for ``num_stages = 4``).
    """

    def __init__(
        self,
        num_classes: int = 119,
        nf: int = 64,
        num_res: int = 10,
        num_stages: int = 4,
        max_channels: int = 1024,
        reference_inplace: bool = True,
        init: str = "kaiming",
    ) -> None:
        super().__init__()
        if num_res < 2 * num_stages:
            raise ValueError(f"num_res ({num_res}) must be at least 2 * num_stages ({2 * num_stages})")
        self.reference_inplace = reference_inplace
        alias = {"shortcut_after_activation": reference_inplace}
        layers: list[nn.Module] = [Conv2dBlock(3, nf, 7, 1, 3, norm="none", activation="none")]
        ch = nf
        for _ in range(num_stages):
            nxt = min(2 * ch, max_channels)
            layers += [
                ActFirstResBlock(ch, ch, **alias),
                ActFirstResBlock(ch, nxt, **alias),
                nn.ReflectionPad2d(1),
                nn.AvgPool2d(3, stride=2),
            ]
            ch = nxt
        # the blocks after the last down-sampling keep the width except the last one, which doubles it (capped),
        # as the official GPPatchMcResDis lays out its final pair
        num_final = num_res - 2 * num_stages
        for i in range(num_final):
            nxt = min(2 * ch, max_channels) if i == num_final - 1 else ch
            layers.append(ActFirstResBlock(ch, nxt, **alias))
            ch = nxt
        self.trunk = nn.Sequential(*layers)
        self.head = ClassConditionalHead(ch, num_classes, "multitask", activation="lrelu")
        self.num_classes, self.out_channels = int(num_classes), ch
        init_weights(self, init)

    def forward(self, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"discriminator input must be (B, 3, H, W), got {tuple(x.shape)}")
        feats = self.trunk(x)
        logits = self.head(feats, labels)
        if self.reference_inplace:
            feats = self.head.activation(feats)
        return logits, feats

    def features(self, x: Tensor) -> Tensor:
        """D_f(x): the trunk features averaged over space, used for feature matching. Shape: ``(B, C)``."""
        dummy = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        return self(x, dummy)[1].mean((2, 3))
