"""Final overlaps of patterns relaxed from themselves: why ``retrieved_fraction`` cuts at 0.9 (issue 22).

The capacity is where half the patterns are retrieved. Whether a pattern is retrieved is read
off its final overlap, which is bimodal near the capacity: the retrieval state at 0.9-1.0 and
the lost patterns at 0.2-0.6, with a valley between. This prints, for Hebb couplings relaxed
asynchronously as in ``hebb_capacity_laptop`` (its root seed and streams, through the cell's
own code), the histogram of final overlaps per load and, for several cuts, the load where the
seed-mean fraction above the cut falls through 1/2, so the effect of the cut can be read:

    python -m amsweep.analysis.retrieval_overlaps --N 400 --alpha 0.16,0.17,0.18,0.19,0.2 --seeds 20
"""

from __future__ import annotations

import argparse

import numpy as np

from amsweep.pipeline import cell
from amsweep.pipeline import spec as spec_mod

__all__ = ["EDGES", "CUTS", "final_overlaps", "half_crossing", "main"]

EDGES = (-1.0, 0.6, 0.8, 0.85, 0.9, 0.99, 1.01)
CUTS = (0.6, 0.7, 0.8, 0.85, 0.9, 0.95)


def final_overlaps(N: int, alphas: list[float], seeds: int, root_seed: int = 2026) -> dict[float, list[np.ndarray]]:
    """Per load, per seed: the final overlap of every pattern relaxed from itself (noise 0)."""
    sweep = spec_mod.from_dict(
        {
            "name": "retrieval_overlaps",
            "root_seed": root_seed,
            "seeds": seeds,
            "noise": [0.0],
            "P_test": 0,
            "retrieval": {"train_starts": 1000, "test_starts": 0, "random_starts": 0, "store_magnetisations": True},
            "datasets": {"random": {"N": [N], "alpha": alphas}},
            "rules": {"hebb": {}},
            "dynamics": {"asynchronous": {"max_sweeps": 100}},
        }
    )
    out: dict[float, list[np.ndarray]] = {}
    for task in sweep.tasks():
        result = cell.run_cell(sweep.job(task))
        X = cell.make_data(task, sweep.root_seed).train.astype(np.float32)
        assert result.magnetisations is not None  # store_magnetisations is on
        states = result.magnetisations[0]  # (starts, N): start b relaxed from pattern b
        out.setdefault(task.load, []).append(np.einsum("ij,ij->i", states, X[: states.shape[0]]) / N)
    return out


def half_crossing(alphas: list[float], fractions: list[float]) -> float:
    """Load of the first fall of ``fractions`` through 1/2, linearly interpolated (NaN if none)."""
    for i in range(len(alphas) - 1):
        if fractions[i] >= 0.5 > fractions[i + 1]:
            return alphas[i] + (fractions[i] - 0.5) * (alphas[i + 1] - alphas[i]) / (fractions[i] - fractions[i + 1])
    return float("nan")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--N", type=int, required=True)
    p.add_argument("--alpha", required=True, help="comma-separated loads, ascending")
    p.add_argument("--seeds", type=int, default=10)
    args = p.parse_args(argv)
    alphas = [float(a) for a in args.alpha.split(",")]
    m = final_overlaps(args.N, alphas, args.seeds)
    labels = [f"{lo:g}-{hi:g}" for lo, hi in zip(EDGES[:-1], EDGES[1:])]
    print(f"N = {args.N}, {args.seeds} seeds; fraction of patterns per final-overlap bin ({', '.join(labels)})")
    for a in alphas:
        allm = np.concatenate(m[a])
        h = np.histogram(allm, EDGES)[0] / allm.size
        print(f"  alpha {a:g}: " + " ".join(f"{x:.3f}" for x in h))
    crossings = [half_crossing(alphas, [float(np.mean([np.mean(s >= c) for s in m[a]])) for a in alphas]) for c in CUTS]
    print("  half retrieved at: " + "; ".join(f"cut {c:g}: {x:.4f}" for c, x in zip(CUTS, crossings)))


if __name__ == "__main__":
    main()
