"""The value types that flow through one cell: data, trained model, relaxation.

Every dataset, rule and dynamics module speaks these types, so that the cell runner can
combine any dataset with any rule and any dynamics without knowing their internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Data", "Model", "NotApplicable", "Param", "Relaxation"]


@dataclass(frozen=True)
class Param:
    """Declared parameter of a dataset, rule or dynamics, used to validate sweep specs.

    ``default=None`` with ``required=True`` means the spec must give it. ``type`` is one of
    int, float, str, bool. Bounds are inclusive unless ``open_low``/``open_high`` say otherwise.
    """

    default: Any
    type: type
    doc: str
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    required: bool = False
    open_low: bool = False
    open_high: bool = False


@dataclass(frozen=True)
class Data:
    """Training and test examples of one cell.

    Ising data (q == 2) are +-1 int8; Potts data (q > 2) are states 0..q-1 int8.
    ``meta`` carries dataset-specific extras (labels, features, true couplings).
    """

    train: np.ndarray  # (P, N) int8
    test: np.ndarray  # (P_test, N) int8
    q: int = 2
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def N(self) -> int:
        return int(self.train.shape[1])


@dataclass
class Model:
    """What a learning rule produces and a dynamics consumes.

    Coupling models set ``J``: float32 (N, N) for Ising with h = J @ s and J_ii = 0, or
    float32 (N, q, N, q) for Potts with h_i(a) = sum_j J[i, a, j, s_j]. Pattern-based memories
    (dense, modern Hopfield, KDE) set ``memories`` (K, N) float32 and their constants in
    ``params``. ``info`` holds diagnostics of training (epochs run, convergence).
    """

    q: int
    J: np.ndarray | None = None
    memories: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Relaxation:
    """Outcome of running a dynamics from a batch of B initial states.

    A thermal dynamics (T > 0) also sets ``magnetisation``, its estimate of the thermal averages
    <s_i> of the state reached (TAP: the fixed point m; Glauber: the time average over its last
    sweeps). The overlap the replica-symmetric theory predicts is (1/N) sum_i xi_i <s_i>, so the
    cell reports overlaps of ``magnetisation`` when present; ``final`` is then the binarised
    read-out sign(<s_i>), which decides ``success_train``.
    """

    final: np.ndarray  # (B, N) int8, same alphabet as the data
    converged: np.ndarray  # (B,) bool: reached a fixed point within the step budget
    sweeps: np.ndarray  # (B,) int32: sweeps (or iterations) used
    magnetisation: np.ndarray | None = None  # (B, N) float64 thermal averages <s_i>, Ising only


class NotApplicable(Exception):
    """A rule, dynamics or dataset cannot serve this cell (e.g. Ising-only rule on Potts data).

    The runner records the cell as not applicable (status 3) instead of failing the sweep.
    """
