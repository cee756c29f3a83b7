"""Loading weights of the official PAC code (NVlabs/pacnet), whose transposed layers correlate with the unflipped
weight."""

from __future__ import annotations

from torch import Tensor, nn

from nvresearch.core.layers.pac.checks import _check_tensor
from nvresearch.core.layers.pac.modules import PacConvTranspose2d

__all__ = ["load_official_state_dict", "official_transposed_weight_to_torch"]


def official_transposed_weight_to_torch(weight: Tensor) -> Tensor:
    """Converts an official ``PacConvTranspose2d`` weight to this module's (``nn.ConvTranspose2d``) convention.

    The official layer correlates with the unflipped weight, so the conversion is a spatial flip. It is its own
    inverse: applying it again converts back.

    Shape:
        - weight: ``(C_in, C_out, kh, kw)`` or ``(1, 1, kh, kw)``; output: same.

    Example:
        >>> import torch
        >>> from nvresearch.core.layers.pac import official_transposed_weight_to_torch
        >>> w = torch.randn(4, 4, 5, 5)
        >>> torch.equal(official_transposed_weight_to_torch(official_transposed_weight_to_torch(w)), w)
        True
    """
    _check_tensor(weight, "weight", 4, "(C_in, C_out, kh, kw)")
    return weight.flip(-2, -1)


def load_official_state_dict(model: nn.Module, state_dict: dict[str, Tensor], strict: bool = True) -> object:
    """Loads a state dict saved from the official PAC code into ``model`` (the released pretrained networks).

    Parameter names are the same; the weight of every :class:`PacConvTranspose2d` in ``model`` is flipped
    spatially on the way in (:func:`official_transposed_weight_to_torch`), because the official transposed layer
    correlates with the unflipped weight. ``state_dict`` itself is left unchanged.

    Returns:
        What ``model.load_state_dict`` returns (missing and unexpected keys when ``strict=False``).

    Example:
        >>> import torch
        >>> from nvresearch.core.layers.pac import PacConvTranspose2d, load_official_state_dict
        >>> layer = PacConvTranspose2d(2, 2, 3, stride=2, padding=1, output_padding=1)
        >>> official = {"weight": torch.ones(2, 2, 3, 3), "bias": torch.zeros(2)}
        >>> load_official_state_dict(layer, official)
        <All keys matched successfully>
    """
    converted = dict(state_dict)
    for name, module in model.named_modules():
        key = f"{name}.weight" if name else "weight"
        if isinstance(module, PacConvTranspose2d) and key in converted:
            converted[key] = official_transposed_weight_to_torch(converted[key])
    return model.load_state_dict(converted, strict=strict)


# ----------------------------------------------------------------------------------------------------------------------
