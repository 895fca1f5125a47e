"""A small transformer in numpy, with hand-written gradients, that maps a context to an energy.

Why numpy and not torch: the network is small (one or two blocks, width ~N), so matrix
products in numpy train it in minutes on one core, the core install stays light with no
optional extra, and CI runs its tests (a torch extra would have to be skipped there or
installed at gigabytes). The price is the backward pass written out below, which
``tests/test_in_context.py`` checks against finite differences in float64.

Architecture, for a context C of M points c_j in {+-1}^N (batched over B contexts):

    H = C We + be                                       token embeddings, width D
    per block l:  H <- H + softmax(e^tau (H Wq)(H Wk)^T / sqrt(D), self masked) H Wv
                  H <- H + relu(H W1 + b1) W2 + b2
    mu_j = H_j U + bu,  v_j = H_j . uv                  per-token centre (N) and log-mass

A token attends to the *other* tokens only (its own value comes through the residual): with
itself in the softmax its overlap 1 would outweigh a cluster mate's (1 - 2p)^2 at any
temperature sharp enough to separate clusters, and attention could not pool. The initial
network is a random-metric kernel smoother: We orthogonal, keys equal to queries (a positive
semi-definite similarity), U = We^T and the residual branches' last layers (Wv, W2) at zero.

The output is a mixture with one component per token, normalisable in closed form on the
hypercube: the mixture of product Bernoullis log p(x) = lse_j(v_j + x.mu_j - sum_i log 2cosh(mu_ij))
- lse_j(v_j), whose v_j are the components' normalised log-masses. Since |x|^2 = N there, it is
exp(-beta E) for the Gaussian energy E(x) = -(1/beta) log sum_j exp(lw_j - beta |x - m_j|^2 / 2)
with centres m_j = mu_j / beta (``gaussian_energy``): the kernel-density memory is the special
case mu_j = beta c_j, v_j = 0, with no learning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Params = dict[str, np.ndarray]

BLOCK = ("Wq", "Wk", "tau", "Wv", "W1", "b1", "W2", "b2")


def names(layers: int) -> tuple[str, ...]:
    """Parameter names of a network with ``layers`` blocks."""
    return ("We", "be", *(f"{n}{l}" for l in range(layers) for n in BLOCK), "U", "bu", "uv")


def n_layers(theta: Params) -> int:
    """Blocks in a parameter set."""
    return sum(1 for k in theta if k.startswith("tau"))


def init(N: int, D: int, F: int, layers: int, rng: np.random.Generator) -> Params:
    """The random-metric kernel smoother the training starts from (see the module docstring)."""
    n = max(N, D)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    We = q[:N, :D] * np.sqrt(n / N)  # orthonormal rows or columns: inner products kept
    theta: Params = {"We": We, "be": np.zeros(D)}
    for l in range(layers):
        Wq = rng.standard_normal((D, D)) / np.sqrt(D)
        theta.update(
            {
                f"Wq{l}": Wq,
                f"Wk{l}": Wq.copy(),
                f"tau{l}": np.zeros(1),
                f"Wv{l}": np.zeros((D, D)),
                f"W1{l}": rng.standard_normal((D, F)) * np.sqrt(2.0 / D),
                f"b1{l}": np.zeros(F),
                f"W2{l}": np.zeros((F, D)),
                f"b2{l}": np.zeros(D),
            }
        )
    theta.update({"U": We.T.copy(), "bu": np.zeros(N), "uv": np.zeros(D)})
    return theta


@dataclass
class Block:
    """Activations of one block's forward pass that its backward pass needs."""

    H: np.ndarray  # block input
    Q: np.ndarray
    K: np.ndarray
    V: np.ndarray
    S0: np.ndarray  # scores before the temperature e^tau and the mask
    A: np.ndarray
    H1: np.ndarray  # after attention
    Z1: np.ndarray
    R1: np.ndarray


def _softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, shifted by its maximum so nothing overflows."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _lse(z: np.ndarray) -> np.ndarray:
    """log sum exp over the last axis."""
    m = z.max(axis=-1)
    return m + np.log(np.exp(z - m[..., None]).sum(axis=-1))


def log2cosh(z: np.ndarray) -> np.ndarray:
    """log(2 cosh z) without overflow: |z| + log1p(exp(-2|z|))."""
    a = np.abs(z)
    return a + np.log1p(np.exp(-2.0 * a))


def _block(theta: Params, l: int, H: np.ndarray) -> tuple[np.ndarray, Block]:
    D = H.shape[-1]
    Q, K, V = H @ theta[f"Wq{l}"], H @ theta[f"Wk{l}"], H @ theta[f"Wv{l}"]
    S0 = (Q @ np.swapaxes(K, 1, 2)) / np.sqrt(D)
    S = np.exp(theta[f"tau{l}"]) * S0
    if S.shape[1] > 1:  # a token attends to the others (a lone token keeps itself: no NaN)
        idx = np.arange(S.shape[1])
        S[:, idx, idx] = -np.inf
    A = _softmax(S)
    H1 = H + A @ V
    Z1 = H1 @ theta[f"W1{l}"] + theta[f"b1{l}"]
    R1 = np.maximum(Z1, 0.0)
    return H1 + R1 @ theta[f"W2{l}"] + theta[f"b2{l}"], Block(H, Q, K, V, S0, A, H1, Z1, R1)


def encode(theta: Params, C: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[Block], np.ndarray]:
    """Centres mu (B, M, N) and log-masses v (B, M) predicted from contexts C (B, M, N), with the tape."""
    H = C @ theta["We"] + theta["be"]
    tape = []
    for l in range(n_layers(theta)):
        H, blk = _block(theta, l, H)
        tape.append(blk)
    return H @ theta["U"] + theta["bu"], H @ theta["uv"], tape, H


def gaussian_energy(mu: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Centres m, inverse temperature beta, log-weights lw of E(x) = -(1/beta) lse_j(lw_j - beta |x - m_j|^2 / 2).

    On the hypercube exp(-beta E) is the predicted mixture (mu, v) of one context, whatever beta;
    beta = rms(mu) puts the centres m = mu / beta at the data's scale (per-site rms 1), where the
    kernel-density memory keeps its own (mu = beta c gives m = c, equal lw: exactly kde), so a
    continuous relaxation of either energy moves in the same space.
    """
    beta = float(np.sqrt(np.mean(mu * mu)))
    m = mu / beta
    lw = v - log2cosh(mu).sum(axis=-1) + 0.5 * beta * np.einsum("...n,...n->...", m, m)
    return m, beta, lw


def log_likelihood(mu: np.ndarray, v: np.ndarray, X: np.ndarray) -> np.ndarray:
    """log p(x) (B, T) of points X (B, T, N) under the normalised mixtures (mu, v) of B contexts."""
    G = X @ np.swapaxes(mu, 1, 2) + (v - log2cosh(mu).sum(axis=-1))[:, None, :]
    return _lse(G) - _lse(v)[:, None]


def _flat(a: np.ndarray) -> np.ndarray:
    """(B, M, k) -> (B M, k): token-wise layers' gradients as one matrix product."""
    return a.reshape(-1, a.shape[-1])


def _block_backward(theta: Params, l: int, b: Block, dOut: np.ndarray, g: Params) -> np.ndarray:
    """Gradients of block l's parameters into ``g``; returns the gradient of its input."""
    D = b.H.shape[-1]
    g[f"W2{l}"] = _flat(b.R1).T @ _flat(dOut)
    g[f"b2{l}"] = dOut.sum(axis=(0, 1))
    dZ1 = (dOut @ theta[f"W2{l}"].T) * (b.Z1 > 0.0)
    g[f"W1{l}"] = _flat(b.H1).T @ _flat(dZ1)
    g[f"b1{l}"] = dZ1.sum(axis=(0, 1))
    dH1 = dOut + dZ1 @ theta[f"W1{l}"].T
    dA = dH1 @ np.swapaxes(b.V, 1, 2)
    dV = np.swapaxes(b.A, 1, 2) @ dH1
    dS = b.A * (dA - (dA * b.A).sum(axis=-1, keepdims=True))  # zero on the masked diagonal
    gain = np.exp(theta[f"tau{l}"])
    g[f"tau{l}"] = (dS * b.S0).sum() * gain
    dS *= gain / np.sqrt(D)
    dQ = dS @ b.K
    dK = np.swapaxes(dS, 1, 2) @ b.Q
    Hf = _flat(b.H)
    g[f"Wq{l}"] = Hf.T @ _flat(dQ)
    g[f"Wk{l}"] = Hf.T @ _flat(dK)
    g[f"Wv{l}"] = Hf.T @ _flat(dV)
    return dH1 + dQ @ theta[f"Wq{l}"].T + dK @ theta[f"Wk{l}"].T + dV @ theta[f"Wv{l}"].T


def loss_and_grad(theta: Params, C: np.ndarray, X: np.ndarray) -> tuple[float, Params]:
    """Mean negative log-likelihood per site of targets X (B, T, N) given contexts C, and its gradient."""
    B, T, N = X.shape
    mu, v, tape, H = encode(theta, C)
    G = X @ np.swapaxes(mu, 1, 2) + (v - log2cosh(mu).sum(axis=-1))[:, None, :]
    loss = -float((_lse(G).sum() - T * _lse(v).sum()) / (B * T * N))

    # mixture head: d loss / d G = -softmax(G) / (B T N); d loss / d v also gets softmax(v) / (B N)
    dG = _softmax(G) * (-1.0 / (B * T * N))
    dGs = dG.sum(axis=1)
    dv = dGs + _softmax(v) / (B * N)
    dmu = np.swapaxes(dG, 1, 2) @ X - dGs[..., None] * np.tanh(mu)
    g: Params = {"U": _flat(H).T @ _flat(dmu), "bu": dmu.sum(axis=(0, 1)), "uv": _flat(H).T @ dv.reshape(-1)}
    dH = dmu @ theta["U"].T + dv[..., None] * theta["uv"]
    for l in reversed(range(len(tape))):
        dH = _block_backward(theta, l, tape[l], dH, g)
    g["We"] = _flat(C).T @ _flat(dH)
    g["be"] = dH.sum(axis=(0, 1))
    return loss, g
