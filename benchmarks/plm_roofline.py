"""PLM training epoch versus its roofline: two float32 GEMMs of the primal epoch's shapes.

The epoch is timed as a marginal cost, (train(e2) - train(e1)) / (e2 - e1), so the one-off
work (Gram matrix, final couplings, final log-likelihood) is left out, and compared within
each repeat with H = X J^T followed by G = H^T X, (P, N) x (N, N) products in float32.
Both forms are reported: the dual form (default up to P = 1.5 N) needs a single (P, P) x
(P, N) product per epoch, so it runs below this roofline.
"""

from __future__ import annotations

import numpy as np

from benchmarks._harness import Row, interleaved, ms, random_patterns, ratio_row
from benchmarks._plm_common import forced_form, params
from amsweep.pipeline.rules import plm

TARGET = 1.5


def run(tiny: bool = False, repeats: int = 5) -> list[Row]:
    N = P = 64 if tiny else 1000
    e1, e2 = (2, 6) if tiny else (10, 40)
    X = random_patterns(P, N, seed=0)
    Xf = X.astype(np.float32)
    J = np.random.default_rng(1).standard_normal((N, N)).astype(np.float32)
    H = np.empty((P, N), np.float32)
    G = np.empty((N, N), np.float32)

    def two_gemms() -> None:  # as many pairs as marginal epochs: equally exposed to load
        for _ in range(e2 - e1):
            np.matmul(Xf, J.T, out=H)
            np.matmul(H.T, Xf, out=G)

    rows = []
    for form in ("dual", "primal"):
        with forced_form(form):
            t = interleaved(
                {
                    "short": lambda: plm.train(X, 2, params(epochs=e1), np.random.default_rng(0)),
                    "long": lambda: plm.train(X, 2, params(epochs=e2), np.random.default_rng(0)),
                    "gemm": two_gemms,
                },
                repeats,
            )
        epoch = [(b - a) / (e2 - e1) for a, b in zip(t["short"], t["long"])]
        gemm = [g / (e2 - e1) for g in t["gemm"]]
        rows.append(
            ratio_row(
                f"PLM epoch ({form} form) / 2 SGEMM, N = P = {N}",
                epoch,
                gemm,
                "<=",
                TARGET,
                f"marginal epoch (train({e2}) - train({e1})) / {e2 - e1}, full batch, asymmetric, lam = lr = 1: "
                f"{ms(epoch)}; 2 SGEMM {ms(gemm)}; 1 thread",
            )
        )
    return rows
