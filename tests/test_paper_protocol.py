"""The PLM paper's retrieval protocol (``paper_synchronous``) against hand-computed trajectories.

The authors' update (Francill99/PseudoLikelihood_Analysis, ``dyn_step`` with d = 1 on the
sphere): s_i(t+1) = h_i / (|h_i| + 1e-9) with h_i = sum_{j != i} J_ij s_j(t), J_ii zeroed first;
i.e. all sites at once, s_i <- sign(h_i), a zero field gives s_i = 0; n steps, read at step n.
"""

from __future__ import annotations

import numpy as np
import pytest

from amsweep.pipeline import metrics as M
from amsweep.pipeline.dynamics import paper_synchronous, synchronous
from amsweep.pipeline.model import Model

# Six sites. Sites 0-3 are a ring where site i copies site i-1 (J[i, i-1] = 1): the ring
# pattern rotates by one site per step (period 4). Site 4 reads s0 - s1, which is zero whenever
# s0 = s1 (a tie: s4 -> 0). Site 5 copies site 4 and has a self-coupling J[5, 5] = 5 that the
# protocol must ignore (with it, site 5 would follow its own sign).
RING = np.zeros((6, 6), dtype=np.float32)
for i in range(4):
    RING[i, (i - 1) % 4] = 1.0
RING[4, 0], RING[4, 1] = 1.0, -1.0
RING[5, 4] = 1.0
RING[5, 5] = 5.0

# From s(0) = (+ + - - + -), by hand, one step at a time:
#   t=1: ring (s3, s0, s1, s2) = (- + + -); s4 = sign(s0 - s1) = sign(1 - 1) = 0; s5 = sign(s4(0)) = +
#   t=2: ring (- - + +); s4 = sign(-1 - 1) = -; s5 = sign(0) = 0
#   t=3: ring (+ - - +); s4 = sign(-1 + 1) = 0; s5 = sign(-1) = -
#   t=4: ring (+ + - -); s4 = sign(1 + 1) = +; s5 = sign(0) = 0
#   t=5 = t=1 (period 4 from t = 1 on), so t=10 is t=2.
START = np.array([1, 1, -1, -1, 1, -1], dtype=np.int8)
HAND = {
    1: [-1, 1, 1, -1, 0, 1],
    2: [-1, -1, 1, 1, -1, 0],
    3: [1, -1, -1, 1, 0, -1],
    4: [1, 1, -1, -1, 1, 0],
    5: [-1, 1, 1, -1, 0, 1],
    10: [-1, -1, 1, 1, -1, 0],
}


@pytest.mark.parametrize("n", sorted(HAND))
def test_hand_computed_trajectory_of_the_authors_rule(n: int) -> None:
    r = paper_synchronous.relax(Model(q=2, J=RING.copy()), START[None, :], {"max_sweeps": n}, np.random.default_rng(0))
    np.testing.assert_array_equal(r.final[0], HAND[n])
    assert not r.converged[0] and r.sweeps[0] == n  # a 4-cycle never converges


def test_overlap_is_read_at_step_n_and_zeros_count_as_nothing() -> None:
    # t = 10: (- - + + - 0) against s(0) = (+ + - - + -): five opposite sites, one zero: -5/6.
    r = paper_synchronous.relax(Model(q=2, J=RING.copy()), START[None, :], {"max_sweeps": 10}, np.random.default_rng(0))
    assert M.overlap(r.final, START[None, :])[0] == pytest.approx(-5 / 6, abs=1e-7)


def test_a_state_that_settles_is_frozen_and_reported_converged() -> None:
    # From all +: the ring is fixed; t=1: s4 = 0, s5 = +; t=2: s4 = 0, s5 = 0; t=3 changes nothing.
    all_up = np.ones((1, 6), dtype=np.int8)
    r = paper_synchronous.relax(Model(q=2, J=RING.copy()), all_up, {"max_sweeps": 10}, np.random.default_rng(0))
    np.testing.assert_array_equal(r.final[0], [1, 1, 1, 1, 0, 0])
    assert r.converged[0] and r.sweeps[0] == 3


def test_the_paper_protocol_differs_from_amsweeps_synchronous_dynamics() -> None:
    # amsweep's synchronous dynamics keeps the spin on a tie and stops at a detected 2-cycle;
    # an antiferromagnet on the complete graph flips every spin every step, so after n = 5
    # steps the paper's state is the negated start, amsweep's the start after 2 (cycle found).
    N = 8
    J = -(np.ones((N, N), np.float32) - np.eye(N, dtype=np.float32))
    up = np.ones((1, N), np.int8)
    paper = paper_synchronous.relax(Model(q=2, J=J), up, {"max_sweeps": 5}, np.random.default_rng(0))
    ams = synchronous.relax(Model(q=2, J=J), up, {"max_sweeps": 5}, np.random.default_rng(0))
    np.testing.assert_array_equal(paper.final, -up)
    np.testing.assert_array_equal(ams.final, up)
    # the tie of site 4 in the ring: amsweep keeps s4 = +, the paper sets 0
    a1 = synchronous.relax(Model(q=2, J=RING.copy()), START[None, :], {"max_sweeps": 1}, np.random.default_rng(0))
    assert a1.final[0, 4] == 1 and HAND[1][4] == 0


def test_the_authors_flip_count() -> None:
    # int(N (1 - m0) / 2) with the m0 the authors would pass: 1 - 0.9 = 0.0999... in float64
    assert paper_synchronous.flip_count(200, 0.05) == int(200 * ((1 - 0.9) / 2.0)) == 9
    assert paper_synchronous.flip_count(200, 0.2) == int(200 * ((1 - 0.6) / 2.0)) == 40
    assert paper_synchronous.flip_count(400, 0.1) == 39 and paper_synchronous.flip_count(400, 0.25) == 100
    for N in (7, 196, 200, 1000):
        for rho in (0.0, 0.01, 0.04, 0.05, 0.1, 0.15, 0.2, 0.3, 0.45):
            k = paper_synchronous.flip_count(N, rho)
            assert k in (int(np.floor(rho * N + 1e-9)), int(np.floor(rho * N + 1e-9)) - 1)


def test_corruption_with_the_authors_count_uses_the_same_sites() -> None:
    """The protocol's starts are the asynchronous starts minus the last site of the same order."""
    X = np.where(np.random.default_rng(1).random((20, 200)) < 0.5, 1, -1).astype(np.int8)
    ours = M.corrupt(X, 0.05, 2, np.random.default_rng(7))
    theirs = M.corrupt(X, 0.05, 2, np.random.default_rng(7), paper_synchronous.flip_count)
    assert np.all((ours != X).sum(axis=1) == 10) and np.all((theirs != X).sum(axis=1) == 9)
    assert np.all((theirs != X) <= (ours != X))


def test_self_coupling_is_ignored_and_couplings_are_not_modified() -> None:
    J = RING.copy()
    paper_synchronous.relax(Model(q=2, J=J), START[None, :], {"max_sweeps": 3}, np.random.default_rng(0))
    assert J[5, 5] == 5.0
