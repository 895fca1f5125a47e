"""Bisection against scan basins on the same cells (issue 22): how far the default estimator is off.

``basin_method = "bisect"`` stops at the first failure it meets in the transition zone and reads
the lower tail low; ``"scan"`` is unbiased (``pipeline/basin_bisection.py``). This runs both on
cells of ``random_basins_laptop`` (its root seed, N, retrieval settings and rules; noise 0 only,
which the basins do not depend on) and prints, per rule and load, the seed means of
``basin_mean``/``basin_q10``/``basin_q50`` for each method, the paired difference scan - bisect
with its standard error over seeds, and the wall time of each:

    python -m amsweep.analysis.basin_methods --alpha 0.1,0.3,0.4 --seeds 3
"""

from __future__ import annotations

import argparse
import copy

import numpy as np

from amsweep.pipeline import cell
from amsweep.pipeline import spec as spec_mod

__all__ = ["compare", "main", "SPEC"]

VALUES = ("basin_mean", "basin_q10", "basin_q50", "basin_seconds")
SPEC = {  # random_basins_laptop's settings for the cells compared
    "name": "basin_methods",
    "root_seed": 2025,
    "noise": [0.0],
    "P_test": 0,
    "retrieval": {"train_starts": 1, "test_starts": 0, "random_starts": 0, "basin_examples": 100, "basin_trials": 3},
    "rules": {
        "hebb": {},
        "plm": {"lr": 1.0, "epochs": 500},
        "plm_paper": {"kind": "plm", "lr": 1.0, "epochs": 500, "dynamics": "paper_synchronous"},
    },
    "dynamics": {"asynchronous": {"max_sweeps": 100}, "paper_synchronous": {"max_sweeps": 10}},
}


def compare(N: int, alphas: list[float], seeds: int) -> dict[tuple[str, float], dict[str, np.ndarray]]:
    """Per (rule label, load): method -> (seeds, 4) array of VALUES, from the same cells."""
    out: dict[tuple[str, float], dict[str, np.ndarray]] = {}
    for method in ("bisect", "scan"):
        raw = copy.deepcopy(SPEC) | {"seeds": seeds, "datasets": {"random": {"N": [N], "alpha": alphas}}}
        raw["retrieval"]["basin_method"] = method
        sweep = spec_mod.from_dict(raw)
        rows: dict[tuple[str, float], list[list[float]]] = {}
        for task in sweep.tasks():
            v = cell.run_cell(task, sweep.noise, sweep.retrieval, sweep.root_seed).values
            rows.setdefault((task.rule.label, task.load), []).append([float(v[k]) for k in VALUES])
        for key, r in rows.items():
            out.setdefault(key, {})[method] = np.array(r)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--N", type=int, default=200)
    p.add_argument("--alpha", default="0.1,0.3,0.4", help="comma-separated loads")
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args(argv)
    result = compare(args.N, [float(a) for a in args.alpha.split(",")], args.seeds)
    print("rule, alpha: bisect mean/q10/q50 | scan mean/q10/q50 | scan - bisect mean, q10 (+- sem) | seconds a cell")
    for (rule, alpha), r in sorted(result.items()):
        b, s = r["bisect"], r["scan"]
        d = s - b
        sem = d.std(axis=0, ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.full(d.shape[1], np.nan)
        print(
            f"{rule}, {alpha}: {b[:, 0].mean():.3f}/{b[:, 1].mean():.3f}/{b[:, 2].mean():.3f} | "
            f"{s[:, 0].mean():.3f}/{s[:, 1].mean():.3f}/{s[:, 2].mean():.3f} | "
            f"{d[:, 0].mean():+.4f} +- {sem[0]:.4f}, {d[:, 1].mean():+.4f} +- {sem[1]:.4f} | "
            f"{b[:, 3].mean():.3f} / {s[:, 3].mean():.3f}"
        )


if __name__ == "__main__":
    main()
