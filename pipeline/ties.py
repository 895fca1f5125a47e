"""Signs of float values with ties decided by a stated rule, not by rounding noise.

Why: a mean of an even number of +-1 examples is exactly 0 where half of them are flipped, but a
soft or weighted mean leaves a remainder of the size of its rounding or of far-away weights
(1e-45 in a float32 memory of ``elbo_memory``), whose sign is noise: it can lean toward the
prototype, and a machine or BLAS that flushes denormals to zero reads another sign. Every value
within ``TIE_ULPS`` float32 units in the last place of its row's largest magnitude (and every
denormal) is a tie here, so a sign read from these functions is the same with denormals flushed
or not, and under any perturbation below float32 resolution.

The tolerance is relative to the row, since rows are states or memories whose scale is theirs
(a mean of +-1 examples has scale 1, attention tokens sqrt(N)). 16 ulps covers the rounding of a
float32 sum of up to ~256 comparable terms; a genuine non-tie of a mean of e examples is >= 1/e.

Other signs and thresholds in pipeline/ (audit, issue 22): the zero-temperature dynamics
(asynchronous, synchronous, paper_synchronous) already treat |h_i| <= tol_i as a tie
(``_ising_kernels.TIE_RTOL``); Glauber's read-out sign(<s_i>) sees exact ties only (sums of
+-1 in float64), decided by the last sample; overlaps of +-1 states against 0.99 (success,
basins) and the dataset thresholds (MNIST pixels > 86, sign of Gaussian tokens) are exact or tie
with probability 0. Open: TAP's read-out sign(m) (ties +1) of a state that decays to the
paramagnet reads the direction of the slowest mode at |m| ~ tol, not noise of rounding but no
thermal property either (the thermal overlap m_train is the quantity reported there); the dense
rule's flip test gain > 0 is exact only while o^n stays below 2^53 (large n and N).
"""

from __future__ import annotations

import numpy as np

__all__ = ["TIE_ULPS", "signs", "tie_tolerance"]

TIE_ULPS = 16
_EPS = float(np.finfo(np.float32).eps)
_TINY = float(np.finfo(np.float32).tiny)  # the smallest normal float32: every denormal is a tie


def tie_tolerance(x: np.ndarray) -> np.ndarray:
    """Per row (last axis) of ``x``, the magnitude at or below which a value counts as 0: (..., 1)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return np.full((*x.shape[:-1], 1), _TINY)
    return np.maximum(TIE_ULPS * _EPS * np.max(np.abs(x), axis=-1, keepdims=True), _TINY)


def signs(x: np.ndarray, tie: float = 0.0) -> np.ndarray:
    """+1 / -1 by sign, ``tie`` where |x| is within ``tie_tolerance`` of 0 (float64 array).

    ``tie = 0`` (no information) for measurements; a dynamics whose states must stay in +-1 passes
    its stated tie value (+1).
    """
    x = np.asarray(x, dtype=np.float64)
    tol = tie_tolerance(x)
    return np.where(x > tol, 1.0, np.where(x < -tol, -1.0, tie))
