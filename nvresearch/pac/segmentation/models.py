"""Semantic segmentation networks of the PAC paper (Su et al., CVPR 2019, Sec. 5.3; official ``models.py``).

- :class:`FCN8s`: FCN-8s on a VGG-16 backbone, either the Caffe layout (``conv1_1`` padding 100 and fixed crops,
  ``padding="caffe"``) or the "alt-pad" layout (padding 1 everywhere, no crops, ``padding="alt"``). With
  ``pac=True`` (alt-pad only) it is the PAC-FCN "hot-swap" network: ``conv3_3``, ``conv4_3`` and ``conv5_3`` become
  :class:`~nvresearch.core.layers.pac.PacConv2d` guided by ``conv2_2`` features times ``1e-4`` and the last
  upsampling is bilinear.
- :class:`FCNWithCRF`: a backbone followed by a :class:`~nvresearch.core.layers.pac.crf.PacCRF` (or its loose,
  untied-steps variant) on colour edge features ``x / sigma`` with a learnable per-channel ``sigma`` (init 30).
- :func:`create_model`: the reference's model-name grammar (``fcn8s_crfi5p4d5641p4d5161``, ``fcn8spac``, ...).
- :func:`load_vgg16_weights` / :func:`load_weights`: torchvision VGG-16 and reference / Lightning state dicts.

Parameter names follow the reference (``conv1_1``, ``fc6``, ``score_fr``, ``upscore2``, ``crf.messengers.0.weight``,
``feat_scales.0``, ...), so its state dicts load unchanged. Inputs are images normalised as in the reference: RGB on
the 0-255 scale minus :data:`VOC_MEAN_RGB`, channels reversed to BGR
(:func:`nvresearch.pac.segmentation.data.to_network_input`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvresearch.core.layers.pac.crf import PacCRF, PacCRFLoose
from nvresearch.core.layers.pac.swap import PacGuidance, swap_conv_for_pac

__all__ = [
    "FCN8s",
    "FCNWithCRF",
    "VGG16_WIDTHS",
    "bilinear_upsampling_weight",
    "create_model",
    "load_vgg16_weights",
    "load_weights",
    "parse_model_name",
]

VGG16_WIDTHS: tuple[int, int, int, int, int] = (64, 128, 256, 512, 512)
"""Channels of the five VGG-16 stages."""
_STAGE_DEPTHS = (2, 2, 3, 3, 3)
_PAC_LAYERS = ("conv3_3", "conv4_3", "conv5_3")
HOT_SWAP_GUIDANCE_SCALE = 1e-4
"""The ``conv2_2`` guidance is multiplied by this, so every PAC kernel is ~1 and the swapped layers start as convs."""


def bilinear_upsampling_weight(channels: int, kernel_size: int) -> Tensor:
    """Per-channel bilinear interpolation filter for a ``ConvTranspose2d`` (the FCN initialisation).

    Shape:
        - output: :math:`(C, C, k, k)`, zero across channels.
    """
    factor = (kernel_size + 1) // 2
    centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    t = torch.arange(kernel_size, dtype=torch.float64)
    profile = 1 - (t - centre).abs() / factor
    w = torch.zeros(channels, channels, kernel_size, kernel_size, dtype=torch.float64)
    for c in range(channels):
        w[c, c] = torch.outer(profile, profile)
    return w.float()


def _crop_to(x: Tensor, size: Sequence[int], offset: int = 0) -> Tensor:
    h, w = size
    return x[:, :, offset : offset + h, offset : offset + w]


class FCN8s(nn.Module):
    """FCN-8s (Long et al. 2015) on VGG-16, as used by the PAC paper (official ``fcn8s.py``).

    Args:
        num_classes: Output classes (21 for VOC, background included).
        padding: ``"caffe"``: ``conv1_1`` padding 100, ``fc6`` without padding, crops at offsets 5, 9 and 31 (the
            ``fcn8s_from_caffe`` layout); ``"alt"``: padding 1 everywhere, ``fc6`` padding ``fc6_kernel // 2``,
            transposed convs with padding 1 / 1 / 4 (``FCN8sAltPad``). For inputs whose size is not a multiple of
            32 the alt layout crops each upsampled map at the top left to the skip's size.
        pac: PAC-FCN hot-swap (``FCN8sPac``, needs ``padding="alt"``): ``conv3_3``, ``conv4_3`` and ``conv5_3`` are
            ``PacConv2d(…, 3, padding=1)`` whose guidance is the ``conv2_2`` output (after ReLU) bilinearly resized
            to each layer's resolution and multiplied by ``1e-4``; the final 8x upsampling is bilinear
            interpolation (``upscore8`` is still built, so reference weights load, but unused). The swap is
            :func:`nvresearch.core.layers.swap_conv_for_pac` on the freshly built convs, so the PAC layers start
            with ``nn.Conv2d``'s initialisation and the same parameter names.
        widths: Channels of the five VGG stages (``VGG16_WIDTHS`` at full scale).
        fc_channels: Channels of ``fc6`` / ``fc7`` (4096 at full scale).
        fc6_kernel: Kernel size of ``fc6`` (7 at full scale).
        dropout: Dropout2d probability after ``fc6`` and ``fc7``.

    Shape:
        - image: :math:`(B, 3, H, W)`, mean-subtracted BGR on the 0-255 scale.
        - output: :math:`(B, C, H, W)` class logits.
    """

    def __init__(
        self,
        num_classes: int = 21,
        padding: str = "caffe",
        pac: bool = False,
        widths: Sequence[int] = VGG16_WIDTHS,
        fc_channels: int = 4096,
        fc6_kernel: int = 7,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if padding not in ("caffe", "alt"):
            raise ValueError(f"padding must be 'caffe' or 'alt', got {padding!r}")
        if pac and padding != "alt":
            raise ValueError("the PAC hot-swap network (pac=True) uses padding='alt'")
        if padding == "caffe" and fc6_kernel != 7:
            raise ValueError(
                f"the Caffe layout's crop offsets assume fc6_kernel=7, got {fc6_kernel}; use padding='alt'"
            )
        if len(widths) != 5:
            raise ValueError(f"widths must hold the channels of the 5 VGG stages, got {list(widths)}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = int(num_classes)
        self.padding = padding
        self.pac = bool(pac)
        in_ch = 3
        for stage, (width, depth) in enumerate(zip(widths, _STAGE_DEPTHS), start=1):
            for i in range(1, depth + 1):
                name = f"conv{stage}_{i}"
                pad = 100 if (name == "conv1_1" and padding == "caffe") else 1
                setattr(self, name, nn.Conv2d(in_ch, width, 3, padding=pad))
                in_ch = width
        fc6_pad = 0 if padding == "caffe" else fc6_kernel // 2
        self.fc6 = nn.Conv2d(in_ch, fc_channels, fc6_kernel, padding=fc6_pad)
        self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        self.drop = nn.Dropout2d(dropout)
        self.score_fr = nn.Conv2d(fc_channels, num_classes, 1)
        self.score_pool3 = nn.Conv2d(widths[2], num_classes, 1)
        self.score_pool4 = nn.Conv2d(widths[3], num_classes, 1)
        up_pad = (0, 0, 0) if padding == "caffe" else (1, 1, 4)
        self.upscore2 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=up_pad[0], bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=up_pad[1], bias=False)
        self.upscore8 = nn.ConvTranspose2d(num_classes, num_classes, 16, stride=8, padding=up_pad[2], bias=False)
        self.reset_parameters()
        # PAC-FCN: the core hot-swap turns the three convs into PAC layers with the same (initial) weights, reading
        # the conv2_2 guidance that forward() sets, resized to each layer's input and multiplied by 1e-4.
        self.hot_swap_guidance: PacGuidance | None = (
            swap_conv_for_pac(self, _PAC_LAYERS, guidance_scale=HOT_SWAP_GUIDANCE_SCALE) if pac else None
        )

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Score layers start at zero and the transposed convs as bilinear upsampling (the FCN recipe)."""
        for score in (self.score_fr, self.score_pool3, self.score_pool4):
            score.weight.zero_()
            score.bias.zero_()
        for up in (self.upscore2, self.upscore_pool4, self.upscore8):
            up.weight.copy_(bilinear_upsampling_weight(self.num_classes, up.kernel_size[0]))

    def forward(self, image: Tensor) -> Tensor:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an image batch (B, 3, H, W), got {tuple(image.shape)}")
        with ExitStack() as hot_swap:
            return self._forward(image, hot_swap)

    def _forward(self, image: Tensor, hot_swap: ExitStack) -> Tensor:
        h = image
        skips: dict[int, Tensor] = {}
        for stage, depth in enumerate(_STAGE_DEPTHS, start=1):
            for i in range(1, depth + 1):
                name = f"conv{stage}_{i}"
                h = F.relu(getattr(self, name)(h), inplace=True)
                if name == "conv2_2" and self.hot_swap_guidance is not None:
                    hot_swap.enter_context(self.hot_swap_guidance(h))  # the swapped layers read it until the end
            h = F.max_pool2d(h, 2, 2, ceil_mode=True)
            skips[stage] = h
        h = self.drop(F.relu(self.fc6(h), inplace=True))
        h = self.drop(F.relu(self.fc7(h), inplace=True))
        h = self.score_fr(h)
        pool4, pool3 = skips[4], skips[3]
        caffe = self.padding == "caffe"
        up2 = self.upscore2(h)
        score4 = self.score_pool4(pool4)
        if caffe:
            h = up2 + _crop_to(score4, up2.shape[-2:], 5)
        else:
            h = _crop_to(up2, score4.shape[-2:]) + score4
        up4 = self.upscore_pool4(h)
        score3 = self.score_pool3(pool3)
        if caffe:
            h = up4 + _crop_to(score3, up4.shape[-2:], 9)
        else:
            h = _crop_to(up4, score3.shape[-2:]) + score3
        size = image.shape[-2:]
        if self.pac:
            return F.interpolate(h, scale_factor=8, mode="bilinear", align_corners=False)[..., : size[0], : size[1]]
        h = self.upscore8(h)
        return _crop_to(h, size, 31 if caffe else 0)


class FCNWithCRF(nn.Module):
    """A segmentation backbone followed by PAC-CRF mean-field inference (official ``ModelWithCrf``).

    The CRF's edge features are the network input ``x`` (mean-subtracted BGR, 0-255) divided by a learnable
    per-channel scale, one vector per pairwise term (``feat_scales.{i}``, initialised to 30); no position features.

    Args:
        backbone: Maps the image to unary logits of the same size.
        num_classes: Classes of the logits.
        crf_steps: Mean-field steps (0: no CRF, the network is the backbone alone).
        loose: Untied steps (:class:`~nvresearch.core.layers.pac.crf.PacCRFLoose`) instead of tied ones.
        pairwise: One dict per pairwise term, the arguments of ``PacCRF.add_pairwise_kernel`` (``kernel_size``,
            ``dilation``, ``blur``, ``compat_type``, ...).
        feat_scale_init: Initial colour scale of the edge features.
        frozen_backbone: Freeze the backbone (``requires_grad=False``, run without gradients), as stage 1 of the
            paper's recipe. Like the official code (``create_model``, which only stops the gradients), the frozen
            backbone follows the network's train/eval mode, so its dropout stays active in training.
        frozen_backbone_eval: Keep a frozen backbone in eval mode (no dropout) even while training; not the
            official behaviour.
        perturbed_init: Perturb the CRF initialisation (the reference default).

    Shape:
        - image: :math:`(B, 3, H, W)`; output: :math:`(B, C, H, W)` logits (``log Q`` after the CRF).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int = 21,
        crf_steps: int = 5,
        loose: bool = False,
        pairwise: Sequence[Mapping[str, Any]] = (),
        feat_scale_init: float = 30.0,
        frozen_backbone: bool = False,
        perturbed_init: bool = True,
        frozen_backbone_eval: bool = False,
    ) -> None:
        super().__init__()
        if crf_steps < 0:
            raise ValueError(f"crf_steps must be >= 0, got {crf_steps}")
        if crf_steps > 0 and not pairwise:
            raise ValueError("a CRF (crf_steps > 0) needs at least one pairwise term")
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.crf_steps = int(crf_steps)
        self.frozen_backbone = bool(frozen_backbone)
        self.frozen_backbone_eval = bool(frozen_backbone_eval)
        self.crf: nn.Module | None = None
        self.feat_scales = nn.ParameterList()
        if crf_steps > 0:
            kwargs = [dict(p) for p in pairwise]
            cls = PacCRFLoose if loose else PacCRF
            self.crf = cls(num_classes, crf_steps, perturbed_init=perturbed_init, pairwise_kernels=kwargs)
            for _ in kwargs:
                self.feat_scales.append(nn.Parameter(torch.full((3,), float(feat_scale_init))))
        if frozen_backbone:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> FCNWithCRF:
        super().train(mode)
        if self.frozen_backbone and self.frozen_backbone_eval:
            self.backbone.eval()  # opt-in: no dropout in a frozen backbone (the reference keeps it)
        return self

    def crf_parameters(self) -> list[nn.Parameter]:
        """Parameters of the CRF and of the edge-feature scales."""
        params = list(self.feat_scales.parameters())
        if self.crf is not None:
            params += list(self.crf.parameters())
        return params

    def edge_features(self, image: Tensor) -> list[Tensor]:
        """``image / feat_scales[i]`` for each pairwise term, as the reference.

        Shape:
            - image: :math:`(B, 3, H, W)`; each output: :math:`(B, 3, H, W)`.
        """
        return [image / s.view(1, -1, 1, 1) for s in self.feat_scales]

    def unary(self, image: Tensor) -> Tensor:
        """Backbone logits (without gradients when the backbone is frozen)."""
        if self.frozen_backbone:
            with torch.no_grad():
                return self.backbone(image)
        return self.backbone(image)

    def refine(self, unary: Tensor, image: Tensor) -> Tensor:
        """Run the CRF on given unary logits (returns them unchanged without CRF)."""
        if self.crf is None:
            return unary
        return self.crf(unary, self.edge_features(image))

    def forward(self, image: Tensor) -> Tensor:
        return self.refine(self.unary(image), image)


# ----------------------------------------------------------------------------------------------------------------------
# Model names and weights
# ----------------------------------------------------------------------------------------------------------------------
_NAME_RE = re.compile(r"^(?P<backbone>fcn8s|fcn8spac|fcn8salt)(?P<frozen>frozen)?(?:_crf(?P<crf>.*))?$")
_TERM_RE = re.compile(r"p(?P<type>4d|2d|0d|na)(?P<spatial>s?)(?P<k>\d)(?P<rest>\d{2,})")


def parse_model_name(name: str) -> dict[str, Any]:
    """Parse the official ``create_model``'s model names: ``backbone[frozen][_crf[i{steps}[l]]p{term}p{term}...]``.

    A term is ``{type}{k}{dilation}{blur}``: ``type`` is ``4d``, ``2d``, ``0d`` (Potts) or ``na``, optionally with
    ``s`` (spatial filter); ``k`` one digit, ``blur`` the last digit and ``dilation`` the digits between. E.g.
    ``fcn8s_crfi5p4d5641p4d5161``: 5 tied steps, two ``4d`` 5x5 terms at dilations 64 and 16, blur 1.

    Returns:
        A dict with ``backbone``, ``frozen``, ``crf_steps``, ``loose`` and ``pairwise`` (a list of term dicts).
    """
    m = _NAME_RE.match(name)
    if m is None:
        raise ValueError(f"cannot parse model name {name!r}; expected e.g. 'fcn8s', 'fcn8spac', 'fcn8s_crfi5p4d5641'")
    out: dict[str, Any] = {
        "backbone": m["backbone"],
        "frozen": m["frozen"] is not None,
        "crf_steps": 0,
        "loose": False,
        "pairwise": [],
    }
    spec = m["crf"]
    if spec is None:
        return out
    head = re.match(r"^(?:i(?P<steps>\d+)(?P<loose>l?))?(?P<terms>(?:p.+)+)$", spec)
    if head is None:
        raise ValueError(f"cannot parse the CRF part {spec!r} of model name {name!r}")
    out["crf_steps"] = int(head["steps"]) if head["steps"] else 5
    out["loose"] = bool(head["loose"])
    terms = head["terms"]
    pos = 0
    while pos < len(terms):
        t = _TERM_RE.match(terms, pos)
        end = terms.find("p", pos + 1)
        end = len(terms) if end < 0 else end
        if t is None or t.end() < end:
            raise ValueError(f"cannot parse pairwise term {terms[pos:end]!r} of model name {name!r}")
        rest = t["rest"][: end - t.start("rest")]
        compat = {"0d": "potts"}.get(t["type"], t["type"])
        out["pairwise"].append(
            {
                "kernel_size": int(t["k"]),
                "dilation": int(rest[:-1]),
                "blur": int(rest[-1]),
                "compat_type": compat,
                "spatial_filter": bool(t["spatial"]) or compat == "4d",
            }
        )
        pos = end
    return out


def create_model(name: str, num_classes: int = 21, **backbone_kwargs: Any) -> FCNWithCRF:
    """Build a segmentation network from a reference model name, e.g. ``fcn8s_crfi5p4d5641p4d5161``.

    ``fcn8s`` is the Caffe-layout FCN-8s, ``fcn8salt`` the alt-pad one and ``fcn8spac`` the PAC-FCN hot-swap;
    ``backbone_kwargs`` go to :class:`FCN8s` (e.g. smaller ``widths`` for CPU).
    """
    spec = parse_model_name(name)
    kind = spec["backbone"]
    backbone = FCN8s(
        num_classes, padding="caffe" if kind == "fcn8s" else "alt", pac=kind == "fcn8spac", **backbone_kwargs
    )
    return FCNWithCRF(
        backbone,
        num_classes,
        crf_steps=spec["crf_steps"],
        loose=spec["loose"],
        pairwise=spec["pairwise"],
        frozen_backbone=spec["frozen"],
    )


def _read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"weights file not found: {path}. Expected a torch state dict (.pth) or a Lightning checkpoint (.ckpt)"
        )
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return dict(obj)


@torch.no_grad()
def load_vgg16_weights(fcn: FCN8s, state_dict: Mapping[str, Tensor]) -> None:
    """Copy a torchvision ``vgg16`` state dict (``features.*``, ``classifier.0/3``) into an :class:`FCN8s`.

    The 13 convs map in order; the classifier's ``fc6`` (25088 -> 4096) and ``fc7`` are reshaped into the 7x7 and
    1x1 convolutions, as in the FCN paper. Needs the full-scale widths.
    """
    convs = [f"conv{s}_{i}" for s, d in enumerate(_STAGE_DEPTHS, start=1) for i in range(1, d + 1)]
    feature_ids = sorted({int(k.split(".")[1]) for k in state_dict if k.startswith("features.")})
    if len(feature_ids) != len(convs):
        raise ValueError(f"expected 13 convolutions under 'features.', found {len(feature_ids)}")
    for name, idx in zip(convs, feature_ids):
        layer = getattr(fcn, name)
        w, b = state_dict[f"features.{idx}.weight"], state_dict[f"features.{idx}.bias"]
        if layer.weight.shape != w.shape:
            raise ValueError(f"{name}: VGG weight {tuple(w.shape)} does not fit {tuple(layer.weight.shape)}")
        layer.weight.copy_(w)
        layer.bias.copy_(b)
    for name, key in (("fc6", "classifier.0"), ("fc7", "classifier.3")):
        layer = getattr(fcn, name)
        if f"{key}.weight" in state_dict:
            layer.weight.copy_(state_dict[f"{key}.weight"].view_as(layer.weight))
            layer.bias.copy_(state_dict[f"{key}.bias"])


@torch.no_grad()
def load_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    prefix_candidates: Sequence[str] = ("net.", ""),
) -> list[str]:
    """Load weights from a file into ``model``, returning the model keys that were not found (left as they are).

    Understands plain state dicts (the reference's ``.pth`` files), Lightning checkpoints (keys ``net.*``) and
    torchvision VGG-16 (when ``model`` is an :class:`FCN8s`). The first prefix that matches any key is stripped. A
    tied CRF's ``crf.*`` tensors are copied into every step ``crf.steps.{i}.*`` of a loose CRF (stage 2 of the
    paper's recipe starts from stage 1's tied CRF). Shape mismatches raise ``ValueError``.
    """
    state = _read_state_dict(path)
    if isinstance(model, FCN8s) and any(k.startswith("features.") for k in state):
        load_vgg16_weights(model, state)
        return []
    for prefix in prefix_candidates:
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            break
    target = model.state_dict()
    expanded: dict[str, Tensor] = dict(state)
    for key, value in state.items():
        if key.startswith("crf.") and not key.startswith("crf.steps."):
            for tkey in target:
                if tkey.startswith("crf.steps.") and tkey.split(".", 3)[3] == key[4:]:
                    expanded.setdefault(tkey, value)
    missing = []
    matched = 0
    for key, param in target.items():
        if key not in expanded:
            missing.append(key)
            continue
        value = expanded[key]
        if value.shape != param.shape:
            raise ValueError(
                f"{os.fspath(path)}: '{key}' has shape {tuple(value.shape)}, the model {tuple(param.shape)}"
            )
        param.copy_(value)
        matched += 1
    if matched == 0:
        raise ValueError(f"{os.fspath(path)}: no tensor matches the model's parameter names")
    return missing
