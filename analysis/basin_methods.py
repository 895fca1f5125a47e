"""Bisection against scan basins on the same cells (issue 22): how far the default estimator is off.

``basin_method = "bisect"`` stops at the first failure it meets in the transition zone and reads
the lower tail low; ``"scan"`` is unbiased (``pipeline/basin_bisection.py``). This runs both on
cells of ``random_basins_laptop`` (its root seed, N, retrieval settings and rules; noise 0 only,
which the basins do not depend on) and prints, per rule and load, the seed means of
``basin_mean``/``basin_q10``/``basin_q50`` for each method, the paired difference scan - bisect
with its standard error over seeds, and the wall time of each:

    python -m amsweep.analysis.basin_methods --alpha 0.1,0.3,0.4 --seeds 3

``--brute P`` instead compares both methods (at each ``--trials``) with a brute-force scan of
every flip count (``--brute-trials`` fresh starts each) on ``--sets`` sets of P random patterns
with Hebb couplings, asynchronous dynamics: per-example paired differences in the mean and the
10% quantile, with standard errors (bootstrap over examples for the quantile):

    python -m amsweep.analysis.basin_methods --N 100 --brute 8 --sets 30 --trials 3,9
"""

from __future__ import annotations

import argparse
import copy
from typing import Any

import numpy as np

from amsweep.pipeline import basin_bisection as BB
from amsweep.pipeline import cell
from amsweep.pipeline import metrics as M
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.dynamics import asynchronous
from amsweep.pipeline.rules import hebb

__all__ = ["against_brute_force", "brute_force", "compare", "main", "SPEC"]

VALUES = ("basin_mean", "basin_q10", "basin_q50", "basin_seconds")
SPEC: dict[str, Any] = {  # random_basins_laptop's settings for the cells compared
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
        raw: dict[str, Any] = copy.deepcopy(SPEC) | {
            "seeds": seeds,
            "datasets": {"random": {"N": [N], "alpha": alphas}},
        }
        raw["retrieval"] = {**SPEC["retrieval"], "basin_method": method}
        sweep = spec_mod.from_dict(raw)
        rows: dict[tuple[str, float], list[list[float]]] = {}
        for task in sweep.tasks():
            v = cell.run_cell(sweep.job(task)).values
            rows.setdefault((task.rule.label, task.load), []).append([float(v[k]) for k in VALUES])
        for key, r in rows.items():
            out.setdefault(key, {})[method] = np.array(r)
    return out


def brute_force(X: np.ndarray, relax: BB.Relax, trials: int, rng: np.random.Generator) -> np.ndarray:
    """(2/N) sum over every k of the fraction of ``trials`` fresh k-flip starts retrieved (>= 0.99)."""
    E, N = X.shape
    rows = np.repeat(X, trials, axis=0)
    area = np.zeros(E)
    for k in range(1, N // 2 + 1):
        m = M.overlap(relax(M.corrupt(rows, k / N, 2, rng)), rows)
        area += (m >= 0.99).reshape(E, trials).mean(axis=1)
    return 2.0 * area / N


def _relaxer(model: Any, dyn: np.random.Generator) -> BB.Relax:
    return lambda S: asynchronous.relax(model, S, {"max_sweeps": 100}, dyn).final


def against_brute_force(N: int, P: int, sets: int, trials: list[int], brute_trials: int) -> dict[str, np.ndarray]:
    """Per-example basins of ``sets`` pattern sets: "brute", "bisect T" and "scan T" for each T."""
    out: dict[str, list[np.ndarray]] = {}
    for r in range(sets):
        rng = np.random.default_rng(700 + r)
        X = np.where(rng.random((P, N)) < 0.5, 1, -1).astype(np.int8)
        model = hebb.train(X, 2, {}, np.random.default_rng(0))
        dyn = np.random.default_rng(900 + r)

        relax = _relaxer(model, dyn)

        for T in trials:
            out.setdefault(f"bisect {T}", []).append(
                2.0 * BB.bisect(X, relax, T, 0.99, 2, np.random.default_rng(r)) / N
            )
            out.setdefault(f"scan {T}", []).append(
                2.0 * BB.scan_basin(X, relax, T, 0.99, 2, np.random.default_rng(r)) / N
            )
        out.setdefault("brute", []).append(brute_force(X, relax, brute_trials, np.random.default_rng(50 + r)))
    return {k: np.concatenate(v) for k, v in out.items()}


def _show_brute(result: dict[str, np.ndarray]) -> None:
    brute = result.pop("brute")
    boot = np.random.default_rng(1).integers(0, brute.size, size=(400, brute.size))
    print(f"brute force: mean {brute.mean():.4f}, q10 {np.quantile(brute, 0.1):.4f}, median {np.median(brute):.4f}")
    for name, v in result.items():
        d = v - brute
        dq = np.quantile(v[boot], 0.1, axis=1) - np.quantile(brute[boot], 0.1, axis=1)
        print(
            f"{name} - brute force: mean {d.mean():+.4f} +- {d.std(ddof=1) / np.sqrt(d.size):.4f}, "
            f"q10 {np.quantile(v, 0.1) - np.quantile(brute, 0.1):+.4f} +- {dq.std(ddof=1):.4f}, "
            f"median {np.median(v) - np.median(brute):+.4f}"
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--N", type=int, default=200)
    p.add_argument("--alpha", default="0.1,0.3,0.4", help="comma-separated loads")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--brute", type=int, default=0, metavar="P", help="compare with a brute-force scan at P patterns")
    p.add_argument("--sets", type=int, default=10, help="pattern sets (--brute)")
    p.add_argument("--trials", default="3", help="comma-separated basin_trials (--brute)")
    p.add_argument("--brute-trials", type=int, default=16, help="starts per flip count of the brute force")
    args = p.parse_args(argv)
    if args.brute:
        trials = [int(t) for t in args.trials.split(",")]
        _show_brute(against_brute_force(args.N, args.brute, args.sets, trials, args.brute_trials))
        return
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
