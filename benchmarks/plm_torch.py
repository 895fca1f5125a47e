"""PLM training versus the same full-batch algorithm written the way the paper's authors did.

The authors' code (D'Amico et al. 2025, PyTorch) keeps J as an (N, N, d, d) parameter with
d = 1, masks its diagonal, takes fields with einsum, writes the loss as the mean over
patterns and sites of -x h + log(2 cosh(lam |h|) + 1e-9) / lam, differentiates it with
autograd, clips the global gradient norm and steps with SGD. Its gradient is
-(1 / (P N lam)) times amsweep's per-pattern-mean ascent direction, so SGD with
lr_torch = lr * lam * N takes exactly amsweep's steps: after the same epochs from the same
Hebb couplings both must hold the same J (checked in the table, and without torch in
tests/test_benchmarks_smoke.py against ``reference_epochs``, a float64 numpy transcription).
Both run on one thread; the gradient clip is kept (max norm inf: computed, never active).
"""

from __future__ import annotations

import numpy as np

from benchmarks._harness import Row, interleaved, ms, random_patterns, ratio_row, skipped
from benchmarks._plm_common import forced_form, params
from amsweep.pipeline.rules import plm
from amsweep.pipeline.rules._ising import hebb_couplings

TARGET = 2.0
LAM, LR = 1.0, 1.0
# Same iterates up to float32 rounding: ~1e-7 per step, a few hundred epochs -> < 1e-4.
AGREEMENT = 1e-4


def authors_loss(X: np.ndarray, J: np.ndarray, lam: float) -> float:
    """The authors' cross-entropy loss, float64: mean over (mu, i) of -x h + log(2cosh(lam |h|) + 1e-9) / lam."""
    Jm = J * (1.0 - np.eye(J.shape[0]))
    H = X @ Jm.T
    return float(np.mean(-X * H + np.log(2.0 * np.cosh(lam * np.abs(H)) + 1e-9) / lam))


def authors_gradient(X: np.ndarray, J: np.ndarray, lam: float) -> np.ndarray:
    """d loss / dJ in closed form: -(1 / (P N)) (X - tanh(lam H))^T X, zero diagonal (the mask)."""
    P, N = X.shape
    Jm = J * (1.0 - np.eye(N))
    H = X @ Jm.T
    G = -((X - np.tanh(lam * H)).T @ X) / (P * N)
    np.fill_diagonal(G, 0.0)
    return G


def reference_epochs(X: np.ndarray, J0: np.ndarray, lam: float, lr: float, epochs: int) -> np.ndarray:
    """The authors' full-batch SGD in float64 numpy, with their learning rate lr * lam * N."""
    X = X.astype(np.float64)
    J = J0.astype(np.float64)
    for _ in range(epochs):
        J -= lr * lam * X.shape[1] * authors_gradient(X, J, lam)
    return J


class AuthorsTorchPLM:
    """Full-batch PLM in the authors' style: einsum, log 2cosh, autograd, clip, SGD."""

    def __init__(self, X: np.ndarray, J0: np.ndarray, lam: float, lr: float) -> None:
        import torch

        torch.set_num_threads(1)
        self.torch = torch
        N = X.shape[1]
        self.xi = torch.from_numpy(X.astype(np.float32)).reshape(X.shape[0], N, 1)
        self.J = torch.nn.Parameter(torch.from_numpy(J0.copy()).reshape(N, N, 1, 1))
        mask = torch.ones(N, N)
        mask.fill_diagonal_(0.0)
        self.mask = mask[:, :, None, None]
        self.lam = lam
        self.opt = torch.optim.SGD([self.J], lr=lr * lam * N)

    def loss(self):
        torch = self.torch
        J_x = torch.einsum("ijab,mjb->mia", self.J * self.mask, self.xi)
        y = J_x.norm(dim=-1)
        x_J_x = torch.einsum("mia,mia->mi", self.xi, J_x)
        energy = -x_J_x + torch.log(2 * torch.cosh(self.lam * y) + 1e-9) / self.lam
        return energy.mean(dim=1).mean()

    def epochs(self, n: int) -> None:
        torch = self.torch
        for _ in range(n):
            loss = self.loss()
            if torch.isfinite(loss):
                self.opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_([self.J], float("inf"))
                self.opt.step()

    def couplings(self) -> np.ndarray:
        return self.J.detach().numpy().reshape(self.J.shape[0], -1).copy()


def run(tiny: bool = False, repeats: int = 5) -> list[Row]:
    N = P = 48 if tiny else 1000
    e1, e2 = (2, 6) if tiny else (10, 40)
    name = f"PyTorch authors' style / amsweep, PLM epoch, N = P = {N}"
    try:
        import torch  # noqa: F401
    except ImportError:
        return [skipped(name, f">= {TARGET:g}", "torch is not installed (pip install -e '.[bench]')")]
    X = random_patterns(P, N, seed=2)
    J0 = hebb_couplings(X.astype(np.float32))
    check = AuthorsTorchPLM(X, J0, LAM, LR)
    check.epochs(e2)
    ours = plm.train(X, 2, params(lam=LAM, lr=LR, epochs=e2), np.random.default_rng(0))
    J_torch = check.couplings()
    diff = float(np.abs(J_torch - ours.J).max() / np.abs(ours.J).max())
    ll_torch = plm.mean_log_pl(J_torch, X.astype(np.float32), LAM)
    rows = []
    for form in ("dual", "primal"):
        model = AuthorsTorchPLM(X, J0, LAM, LR)
        with forced_form(form):
            t = interleaved(
                {
                    "ours_short": lambda: plm.train(X, 2, params(lam=LAM, lr=LR, epochs=e1), np.random.default_rng(0)),
                    "ours_long": lambda: plm.train(X, 2, params(lam=LAM, lr=LR, epochs=e2), np.random.default_rng(0)),
                    "torch": lambda: model.epochs(e2 - e1),
                },
                repeats,
            )
        ours_epoch = [(b - a) / (e2 - e1) for a, b in zip(t["ours_short"], t["ours_long"])]
        torch_epoch = [s / (e2 - e1) for s in t["torch"]]
        row = ratio_row(
            f"{name} ({form} form)",
            torch_epoch,
            ours_epoch,
            ">=",
            TARGET,
            f"per full-batch epoch, 1 thread each (torch {torch.__version__}, its own MKL): torch "
            f"{ms(torch_epoch)}, amsweep {ms(ours_epoch)}. Equal accuracy = same algorithm and "
            f"iterates: after {e2} epochs from the same Hebb J, max|dJ|/max|J| = {diff:.1e} "
            f"(default form, {ours.info['form']}), mean log-PL {ll_torch:.6f} vs {ours.info['log_pl']:.6f}",
        )
        if not diff < AGREEMENT:
            row = Row(
                row.benchmark,
                row.ratio,
                row.lo,
                row.hi,
                row.repeats,
                row.target,
                False,
                f"INVALID, the two computed different J (max|dJ|/max|J| = {diff:.1e}): {row.detail}",
            )
        rows.append(row)
    return rows
