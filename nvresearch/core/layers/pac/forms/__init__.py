"""The implementation forms of PAC, one module each; :mod:`..dispatch` decides which one runs.

- :mod:`.rows`: channels-last pixel rows, one thin matrix product per tap and tile (CPU); the cols form, the same
  geometry with channels first (narrow layers on large images).
- :mod:`.fused`: the Gaussian kernel computed inside the correlation, in the rows or cols layout, or channels first
  with strided taps (CPU).
- :mod:`.taploop`: strided slices per tap, channels first (strided ``PacConv2d``, narrow layers, pooling).
- :mod:`.unfold`: im2col per batch chunk, recomputed in backward (CUDA).
- :mod:`.reference`: plain autograd on ``F.unfold`` (``native_impl=True``), what the others are tested against.
"""
