"""Semantic segmentation with PAC-FCN and PAC-CRF (Su et al., CVPR 2019, Sec. 5.2-5.3).

Torch-only: Lightning lives in ``module`` and ``datamodule``, which this package does not import.
"""
