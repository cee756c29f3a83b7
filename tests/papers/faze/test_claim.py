"""FAZE's claim on the embedded eye-strip world: few-shot personalisation (Park et al., ICCV 2019)."""

from __future__ import annotations

import pytest

from nvresearch.core.training.run import train


@pytest.mark.claim
@pytest.mark.xfail(
    strict=True,
    reason="not shown on the redesigned eye-strip world (kappa as a rotation with the spec's spread, a hidden eye "
    "shape): k = 3 gains 16.4 % < 20 % (seed 1); MAML beats offset correction at k = 9 (4.88 vs 5.03 deg)",
)
def test_personalisation_beats_person_independent_estimation(compose):
    """Claim (FAZE Sec. 5, Fig. 5): few-shot personalisation lowers the gaze error of a person-independent
    estimator by a clear margin.

    Runs exactly the default embedded run (``python -m nvresearch.train paper=faze``: 800 DT-ED steps, then stage 2).
    The person-independent error is the better of the DT-ED gaze head and the unadapted jointly trained MLP; the
    personalised error is the meta-learned MLP's after 10 SGD steps on k calibration samples, averaged over the 16
    test persons and 10 draws. Asserted: at least 20 % at both, as the issue asks.

    Measured since DT-ED normalises the gaze and head codes separately (as the official code) and the calibration
    draws follow the official order (``pytest -m claim tests/papers/faze -rP``, one thread, shared 2-core AMD EPYC,
    seed 1): k = 3 16.3 % (6.18 vs 7.39 deg) and k = 9 21.5 % (5.80 deg), so this test FAILS at k = 3; the bar is
    kept (docs/papers/faze.md, Results and Open). The offset-correction probe (``test/offset_error_k<k>``, same
    run) scores 6.36 deg at k = 3 and 5.74 deg at k = 9, better than MAML from k = 6 on, so it is not asserted yet:
    the eye-strip world must first give persons more than a constant offset. Before the fix: k = 3 32.7 % (seed 1)
    and 31.1 % (seed 2), k = 9 37.2 % and 38.6 %.
    """
    metrics = train(compose(["paper=faze", "logger=csv", "trainer.enable_progress_bar=false"]))
    base = metrics["test/person_independent_error"]
    print({k: round(v, 3) for k, v in metrics.items()})
    assert metrics["test/error_k3"] < 0.8 * base, metrics
    assert metrics["test/error_k9"] < 0.8 * base, metrics
