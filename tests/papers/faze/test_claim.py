"""FAZE's claim on the embedded eye-strip world: few-shot personalisation (Park et al., ICCV 2019)."""

from __future__ import annotations

import pytest

from nvresearch.core.training.run import train


@pytest.mark.claim
def test_personalisation_beats_person_independent_estimation(compose):
    """Claim (FAZE Sec. 5, spec D / H.3): few-shot personalisation lowers the gaze error of a person-independent
    estimator by a clear margin.

    Runs exactly the default embedded run (``python -m nvresearch.train paper=faze``: 800 DT-ED steps, then stage 2).
    The person-independent error is the better of the DT-ED gaze head and the unadapted jointly trained MLP; the
    personalised error is the meta-learned MLP's after 10 SGD steps on k calibration samples, averaged over the 16
    test persons and 10 draws. Measured (docs/papers/faze.md, OMP_NUM_THREADS=1): k = 3 32.7 % (seed 1, 4.76 vs
    7.08 deg) and 31.1 % (seed 2) below the person-independent error, k = 9 37.2 % and 38.6 %; under pytest with two
    threads (seed 1) 30.6 % and 34.3 %. Asserted: at least 20 % at both, as the issue asks. Shortened stage-1 runs
    gain less at k = 3 (16-26 % after 240-480 DT-ED steps, docs/papers/faze.md), too close to that bar.
    """
    metrics = train(compose(["paper=faze", "logger=csv", "trainer.enable_progress_bar=false"]))
    base = metrics["test/person_independent_error"]
    print({k: round(v, 3) for k, v in metrics.items()})
    assert metrics["test/error_k3"] < 0.8 * base, metrics
    assert metrics["test/error_k9"] < 0.8 * base, metrics
