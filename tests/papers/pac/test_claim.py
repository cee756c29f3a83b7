"""PAC's claims on the embedded data (Su et al., CVPR 2019): joint depth and flow upsampling, PAC-CRF segmentation."""

from __future__ import annotations

import pytest

from nvresearch.core.training import load_checkpoint
from nvresearch.core.training.run import train

# The default depth run (exactly ``python -m nvresearch.train paper=pac``) and the flow run of the claims; the
# ablations add their overrides to these.
DEPTH = ["paper=pac", "trainer.enable_progress_bar=false"]
FLOW = ["experiment=pac/flow_synthetic", "trainer.max_epochs=5", "trainer.enable_progress_bar=false", "logger=csv"]
ZERO_GUIDANCE = ["+model.net.zero_guidance=true"]  # the same network with constant kernels: plain transposed convs
# DJIF in the official layout (no same-padding, the official names), trained with the flow run's recipe: the
# residual aid of experiment=pac/flow_synthetic (stated here too), Adam 1e-3, as scripts/reproduce/pac/flow.py does.
DJIF = ["model=pac/djif", "model.net.channels=2", "model.net.residual=true", "model.optimizer.lr=1e-3"]


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in metrics.items() if k.startswith("test/")}


@pytest.mark.claim
def test_pac_beats_zero_guidance_and_interpolation_on_depth(compose, tmp_path):
    """Claim (Su et al. 2019, Table 1): the guide is what makes PAC joint depth upsampling beat the alternatives.

    Exactly the default embedded run (``python -m nvresearch.train paper=pac``: model=pac/tiny, x8, 4 epochs = 512
    Adam steps) and the same run with zero guidance (``+model.net.zero_guidance=true``: the same network with
    constant kernels, i.e. plain transposed convolutions, trained alike). On the 64 held-out test scenes PAC must
    have at least 10 % lower RMSE than zero guidance, 15 % lower than bicubic and 10 % lower than bilinear.

    Measured (test RMSE in cm, one thread, AMD EPYC VM with 2 shared cores, torch 2.14.1, 2026-12-03; seeds 1 and 2
    run as ``paper=pac data.factor=8 +model.net.residual=true trainer.max_epochs=4`` before that configuration
    became the default, seed 3 as ``paper=pac seed=3``):

    ====  =====  =============  =======  ========  ==========  =========  ==========
    seed  PAC    zero guidance  bicubic  bilinear  PAC / zero  PAC / bic  PAC / bil
    ====  =====  =============  =======  ========  ==========  =========  ==========
    1     44.50  55.68          58.79    56.90     0.80        0.76       0.78
    2     47.89  59.69          63.29    61.12     0.80        0.76       0.78
    3     41.71  53.36          55.41    53.92     0.78        0.75       0.77
    ====  =====  =============  =======  ========  ==========  =========  ==========

    With the network run without its guide this test measured the ablation's own 55.68 cm (ratio 1.000, 0.95 of
    bicubic) and failed (tried once, 2026-12-03). As written it measured seed 1's numbers again (the runs are
    deterministic) in 124 s CPU at one thread for both trainings (33 min wall on the shared 2-core VM at a load
    average of 10-15; docs/papers/pac.md).
    """
    pac = train(compose(DEPTH))
    zero = train(compose([*DEPTH, *ZERO_GUIDANCE], out=tmp_path / "zero_guidance"))
    print({"pac": _rounded(pac), "zero_guidance": _rounded(zero)})  # the numbers behind the docstring's table
    rmse, bicubic, bilinear = pac["test/rmse"], pac["test/rmse_bicubic"], pac["test/rmse_bilinear"]
    assert rmse < 0.90 * zero["test/rmse"], (pac, zero)
    assert rmse < 0.85 * bicubic, pac
    assert rmse < 0.90 * bilinear, pac
    # the checkpoint alone rebuilds the trained network (no Hydra)
    module = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert module.net.factor == 8 and not module.net.zero_guidance and not module.training


@pytest.mark.claim
def test_pac_beats_zero_guidance_djif_and_interpolation_on_embedded_flow(compose, tmp_path) -> None:
    """Claim (Su et al. 2019, Sintel table): guided PAC upsamples flow better than DJIF and than itself unguided.

    A shortened ``experiment=pac/flow_synthetic`` run (x8, residual tiny PacJointUpsample, 5 of its 10 epochs = 320
    Adam steps), the same run with zero guidance, and DJIF (official layout, Adam 1e-3, the same residual recipe) on
    the 64 held-out test scenes: PAC must beat zero guidance by at least 3 %, DJIF by at least 5 %, bicubic by 15 %
    and bilinear by 25 % EPE.

    Measured (test EPE in px, one thread, AMD EPYC VM with 2 shared cores, torch 2.14.1, 2026-12-03):

    ====  ======  =============  ======  =======  ========  ==========  ==========
    seed  PAC     zero guidance  DJIF    bicubic  bilinear  PAC / zero  PAC / DJIF
    ====  ======  =============  ======  =======  ========  ==========  ==========
    1     0.6149  0.6443         0.6615  0.8229   0.9346    0.954       0.930
    2     0.5567  0.6271         0.6305  0.7962   0.9048    0.888       0.883
    ====  ======  =============  ======  =======  ========  ==========  ==========

    PAC / bicubic 0.75 and 0.70, PAC / bilinear 0.66 and 0.62. With the network run without its guide this test
    measured the ablation's own 0.6443 px (ratio 1.000, and 0.974 of DJIF) and failed (tried once, 2026-12-03).
    CPU time: 53, 55 and 122 s for the three trainings at one thread, 225 s for the test (19.8 min wall on the shared
    2-core VM; docs/papers/pac.md).
    """
    pac = train(compose(FLOW))
    zero = train(compose([*FLOW, *ZERO_GUIDANCE], out=tmp_path / "zero_guidance"))
    djif = train(compose([*FLOW, *DJIF], out=tmp_path / "djif"))
    print({"pac": _rounded(pac), "zero_guidance": _rounded(zero), "djif": _rounded(djif)})
    epe, bicubic, bilinear = pac["test/epe"], pac["test/epe_bicubic"], pac["test/epe_bilinear"]
    assert epe < 0.97 * zero["test/epe"], (pac, zero)
    assert epe < 0.95 * djif["test/epe"], (pac, djif)
    assert epe < 0.85 * bicubic, pac
    assert epe < 0.75 * bilinear, pac


@pytest.mark.claim
def test_paccrf_raises_miou_over_the_unary_network(compose) -> None:
    """Claim (Su et al. 2019, Table 3): PAC-CRF on top of FCN-8s raises mIoU.

    A shortened embedded run (``experiment=pac/seg_synthetic`` with the tiny FCN-8s trained alone for 6 epochs
    instead of 10, then the PAC-CRF on the frozen backbone for 1 epoch instead of 4) must raise test mIoU by at least
    0.05 over the same backbone's own predictions on the 64 test scenes (measured 0.455 vs 0.366, seed 1, one thread,
    2026-12-03, the frozen backbone's dropout active as in the official code; docs/papers/pac.md).
    """
    from nvresearch.core.training.run import train

    cfg = compose(
        [
            "experiment=pac/seg_synthetic",
            "trainer.enable_progress_bar=false",
            "logger=csv",
            "data.dataset.val_size=16",
            "model.unary_epochs=6",
            "trainer.max_epochs=7",
        ]
    )
    metrics = train(cfg)
    print({k: round(v, 4) for k, v in metrics.items()})  # the numbers behind the docstring's table
    assert metrics["test/miou_unary"] > 0.25, metrics  # the backbone did learn the classes
    assert metrics["test/miou"] > metrics["test/miou_unary"] + 0.05, metrics
