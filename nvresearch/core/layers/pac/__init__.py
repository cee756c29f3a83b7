"""Pixel-adaptive convolution (PAC) layers (Su et al., "Pixel-Adaptive Convolutional Neural Networks", CVPR 2019).

PAC modulates a spatially shared filter ``W`` with a kernel ``K`` computed from a guidance ("adapting") feature
``f`` (Eq. 3 of the paper)::

    v'_i = sum_{j in Omega(i)} K(f_i, f_j) W[p_i - p_j] v_j + b

With ``K == 1`` (e.g. a Gaussian kernel on constant guidance) PAC is an ordinary convolution. The argument names and
order of the functions and modules match the official NVlabs/pacnet layers, so code written for those ports by
changing the import. Behaviour that differs from the official code, on purpose:

- ``PacConvTranspose2d`` follows the weight convention of :class:`torch.nn.ConvTranspose2d`: with ``K == 1`` it
  equals ``nn.ConvTranspose2d`` with the same ``weight``. The official layer correlates with the *unflipped* weight,
  so official transposed weights must be flipped spatially when loaded: :func:`official_transposed_weight_to_torch`.
- The mask path works (upstream raises on current torch): ``output_mask = (norm != 0)`` as float, and wherever the
  normaliser is 0 the kernel is divided by 1 instead.
- Several implementation forms, one answer (tests compare them in float64, outputs and all gradients), picked per
  device and layer by one dispatcher (:mod:`.dispatch`); ``form=`` on the functions or :func:`pac_form` asks for
  one explicitly:

  * **rows form** (the CPU default of stride-1 ``PacConv2d`` and of ``PacConvTranspose2d`` with at least 32
    channels and little padding): the padded input as
    one channels-last ``(B*H*W, C)`` matrix of pixel rows, where every tap's input is the same matrix shifted by a
    row offset; one thin matrix product per tap on cache-sized tiles of rows, recomputed in backward (autograd keeps
    only the input, the kernel and the weight). Transposed layers are decomposed into ``stride**2`` phases that
    read the original input, so no multiplication touches an inserted zero.
  * **cols form** (the CPU default of such layers with 8 to 31 channels on large images): the same geometry with
    channels first, one ``(C_out, C) @ (C, tile)`` product per tap and tile (with few channels, channels-last rows
    of only C values are slow to broadcast and multiply).
  * **fused Gaussian** (what those layers run on the CPU for the common configuration: Gaussian kernel, no
    smoothing, no normalisation, no mask, float32/float64): the rows or cols form with ``K`` computed tap by tap from
    the guidance inside the same autograd ``Function`` and never stored; only the kernel entries that meet real
    input samples are computed (for ``PacConv2d`` one pass for each tap and its mirror: the kernel is symmetric).
    Narrower transposed layers on small images run the same fusion with channels first and strided taps.
  * **tap loop** (strided or narrow ``PacConv2d``, narrow transposed layers with a given kernel): strided slices
    per tap with channels first, recomputed in backward.
  * **unfold form** (CUDA, where the loops above are launch-bound): im2col and one matrix product per batch chunk,
    the im2col recomputed in backward instead of kept.
  * **reference** (``native_impl=True``, as the official native path): plain autograd on ``F.unfold`` and
    ``einsum``. Obviously correct and memory-hungry (it keeps the im2col); the other forms are tested against it.

  Every option works on every form where it applies (the kernel comes from :func:`packernel2d` unless fused), and
  the backward passes are themselves differentiable (double backward works).
- With ``dilation > 1`` the smoothed reference feature (``smooth_kernel_type != 'none'``) is centred on the window
  centre; the official padding ``P - (k - k_s) / 2`` is the ``dilation == 1`` special case of the one used here.
- A module called with an explicit ``kernel=`` and a ``mask=`` returns ``(output, output_mask)`` as documented, with
  ``output_mask`` marking outputs that have at least one valid neighbour (the official code drops the mask).
- ``PacPool2d`` needs no ``bias`` attribute for ``repr()`` (the official one raises ``AttributeError``).
- The kernel is computed in float32 when the guidance is float16/bfloat16 or autocast is active (the squared
  feature distance overflows float16 easily).

Where things are (one file per concern, a reader's walk from the outside in):

- :mod:`.modules`: ``PacConv2d``, ``PacConvTranspose2d``, ``PacPool2d`` (configuration, parameters, fillers); each
  ``forward`` is one call to :func:`.functional.pac_layer`.
- :mod:`.functional`: ``pacconv2d``, ``pacconv_transpose2d``, ``pacpool2d``, ``pac_layer``: check once, ask the
  dispatcher, run the form.
- :mod:`.checks`: argument parsing and every input check. :mod:`.dispatch`: the only place choosing a form, its
  tunables, :func:`pac_form`. :mod:`.kernel`: ``packernel2d`` and ``nd2col``. :mod:`.plans`: tap geometry.
- :mod:`.forms`: one module per form (``rows``, ``fused``, ``taploop``, ``unfold``, ``reference``).
- :mod:`.official`: loading official weights. :mod:`.crf`: PAC-CRF. :mod:`.swap`: swapping convolutions for PAC.
"""

from nvresearch.core.layers.pac.checks import IntPair
from nvresearch.core.layers.pac.dispatch import FORMS, pac_form
from nvresearch.core.layers.pac.functional import pac_layer, pacconv2d, pacconv_transpose2d, pacpool2d
from nvresearch.core.layers.pac.kernel import nd2col, packernel2d
from nvresearch.core.layers.pac.modules import PacConv2d, PacConvTranspose2d, PacPool2d
from nvresearch.core.layers.pac.official import load_official_state_dict, official_transposed_weight_to_torch

__all__ = [
    "FORMS",
    "IntPair",
    "PacConv2d",
    "PacConvTranspose2d",
    "PacPool2d",
    "load_official_state_dict",
    "nd2col",
    "official_transposed_weight_to_torch",
    "pac_form",
    "pac_layer",
    "pacconv2d",
    "pacconv_transpose2d",
    "packernel2d",
    "pacpool2d",
]
