"""FAZE's claim on the embedded eye-strip world: few-shot personalisation (Park et al., ICCV 2019)."""

from __future__ import annotations

import pytest
from conftest import ClaimGap, claim_gap

from nvresearch.core.training.run import train

# MAML personalisation must beat the offset-correction probe at k = 9 by at least this much (degrees). Measured on
# the redesigned world: 0.15 deg (seed 1) and 0.23 deg (seed 2).
OFFSET_MARGIN_DEG = 0.1
# ... and the official "NONE" baseline (no meta-learning: the DT-ED gaze head fine-tuned at its own step size) at
# k = 9 by at least this much. Measured: 0.98 deg (seed 1) and 0.40 deg (seed 2).
NONE_MARGIN_DEG = 0.2


@pytest.mark.claim
@claim_gap(
    "gap (issue 15): on the redesigned eye-strip world (kappa a rotation with the spec's spread, a hidden eye "
    "shape) k = 3 gains 16.4 % (seed 1) and 15.3 % (seed 2) < 20 %; k = 9, the offset and NONE margins pass",
)
def test_personalisation_beats_person_independent_estimation(compose):
    """Claim (FAZE Sec. 5, Fig. 5): few-shot personalisation lowers the gaze error of a person-independent
    estimator by a clear margin, does more than remove a constant offset, and owes it to meta-learning.

    Runs exactly the default embedded run (``python -m nvresearch.train paper=faze``: 800 DT-ED steps, then stage 2).
    The person-independent error is the better of the DT-ED gaze head and the unadapted jointly trained MLP; the
    personalised error is the meta-learned MLP's after 10 SGD steps on k calibration samples, averaged over the 16
    test persons and 10 draws. Asserted first (plain assertions, real failures): at k = 9 at least 20 % below the
    person-independent error, at least ``OFFSET_MARGIN_DEG`` below the offset-correction probe (the jointly trained
    MLP plus the mean (pitch, yaw) error of the same k samples: no learning) and at least ``NONE_MARGIN_DEG`` below
    the official "NONE" baseline (the method without meta-learning). Then the k = 3 bar (20 %): missing it raises
    :class:`ClaimGap`, the expected failure today.

    Measured on the redesigned world (kappa a rotation, 1.5 / 3 deg; hidden eye shape gain 0.15, curve 0.15/rad;
    one thread, shared 2-core AMD EPYC; docs/papers/faze.md): seed 1, person-independent 6.35 deg, k = 3 5.31 deg
    (16.4 %), k = 9 4.88 deg (23.1 %), offset correction 5.57 / 5.03 deg, NONE 6.03 / 5.86 deg; seed 2, 5.10 deg,
    4.32 (15.3 %), 3.91 (23.3 %), offset 4.50 / 4.14, NONE 4.64 / 4.31. So k = 3 misses the bar (kept at 20 %). With
    the offset correction in MAML's place the claim fails too: k = 3 12.3 % (seed 1) and 11.8 % (seed 2), k = 9
    20.8 % / 18.8 %, and not below itself by the margin; with NONE in MAML's place k = 3 gains 5.0 % / 9.0 %.
    A wider kappa spread (2.5 / 5 deg, MAML step 1e-3) passes seeds 1 and 2 but misses k = 3 on seed 3 (17.2 %); it
    is the raised spread issue 15 rules out, so it is not adopted (docs/papers/faze.md, Appendix).
    """
    metrics = train(compose(["paper=faze", "logger=csv", "trainer.enable_progress_bar=false"]))
    base = metrics["test/person_independent_error"]
    print({k: round(v, 3) for k, v in metrics.items()})
    assert metrics["test/error_k9"] < 0.8 * base, metrics
    assert metrics["test/error_k9"] < metrics["test/offset_error_k9"] - OFFSET_MARGIN_DEG, metrics
    assert metrics["test/error_k9"] < metrics["test/none_error_k9"] - NONE_MARGIN_DEG, metrics
    if not metrics["test/error_k3"] < 0.8 * base:
        raise ClaimGap(f"k = 3: {metrics['test/error_k3']:.3f} deg is not 20 % below {base:.3f} deg: {metrics}")
