"""FAZE's claim on the embedded eye-strip world: few-shot personalisation (Park et al., ICCV 2019)."""

from __future__ import annotations

import pytest

from nvresearch.core.training.run import train

# MAML personalisation must beat the offset-correction probe at k = 9 by at least this much (degrees). Measured on
# the default world: 0.18 deg (seed 1) and 0.13 deg (seed 2).
OFFSET_MARGIN_DEG = 0.1
# ... and the official "NONE" baseline (no meta-learning: the DT-ED gaze head fine-tuned at its own step size) at
# k = 9 by at least this much. Measured: 0.87 deg (seed 1) and 1.17 deg (seed 2).
NONE_MARGIN_DEG = 0.2


@pytest.mark.claim
def test_personalisation_beats_person_independent_estimation(compose):
    """Claim (FAZE Sec. 5, Fig. 5): few-shot personalisation lowers the gaze error of a person-independent
    estimator by a clear margin, does more than remove a constant offset, and owes it to meta-learning.

    Runs exactly the default embedded run (``python -m nvresearch.train paper=faze``: 800 DT-ED steps, then stage 2).
    The person-independent error is the better of the DT-ED gaze head and the unadapted jointly trained MLP; the
    personalised error is the meta-learned MLP's after 10 SGD steps at 1e-3 on k calibration samples, averaged over
    the 16 test persons and 10 draws. Asserted: at k = 9 at least 20 % below the person-independent error, at least
    ``OFFSET_MARGIN_DEG`` below the offset-correction probe (the jointly trained MLP plus the mean (pitch, yaw) error
    of the same k samples: no learning) and at least ``NONE_MARGIN_DEG`` below the official "NONE" baseline (the
    method without meta-learning); at k = 3 at least 20 % below the person-independent error.

    Measured on the default world (kappa a rotation, std 2.5 / 5 deg; hidden eye shape gain 0.15, curve 0.15/rad;
    one thread, shared 2-core AMD EPYC; docs/papers/faze.md): seed 1, person-independent 6.56 deg, k = 3 5.06 deg
    (22.8 %), k = 9 4.54 deg (30.8 %), offset correction 5.27 / 4.72 deg, NONE 5.60 / 5.41 deg; seed 2, 7.32 deg,
    5.70 (22.1 %), 5.07 (30.7 %), offset 5.68 / 5.20, NONE 6.67 / 6.23; seed 3 misses k = 3: 5.93 deg, 4.91 (17.2 %),
    4.45 (25.0 %), offset 5.05 / 4.63, NONE 5.24 / 4.76 (its stage 1 leaves a lower person-independent error: the gain
    depends on the stage-1 seed, docs "Open"). With the offset correction in MAML's place the test fails (not below
    itself by the margin; on seed 1 also k = 3: 19.7 %), with NONE in MAML's place too (k = 3 14.6 % / 8.9 %, k = 9
    17.5 % / 14.9 %; seeds 1 / 2).
    """
    metrics = train(compose(["paper=faze", "logger=csv", "trainer.enable_progress_bar=false"]))
    base = metrics["test/person_independent_error"]
    print({k: round(v, 3) for k, v in metrics.items()})
    assert metrics["test/error_k9"] < 0.8 * base, metrics
    assert metrics["test/error_k9"] < metrics["test/offset_error_k9"] - OFFSET_MARGIN_DEG, metrics
    assert metrics["test/error_k9"] < metrics["test/none_error_k9"] - NONE_MARGIN_DEG, metrics
    assert metrics["test/error_k3"] < 0.8 * base, metrics
