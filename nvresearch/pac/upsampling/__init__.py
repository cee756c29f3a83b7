"""Joint depth and optical-flow upsampling with PAC (Su et al., CVPR 2019, Sec. 5.1).

Torch-only: Lightning lives in ``module`` and ``datamodule``, which this package does not import.
"""
