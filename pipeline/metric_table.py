"""The metric table: every result variable a cell produces, declared once (no formulas here).

A declaration says what storage and analysis read about a metric: its group (hence its dims),
dtype, description, label, units and whether every done task has a value. The cube template,
the integrity check, queries and the figures read this table; ``pipeline/metrics.py`` (and
``memory_metrics.py``) say how each entry is computed, under the same name (``metrics.COMPUTE``,
checked against this table when it is imported). Apart from the formulas because storage
imports this module on every query, status and xarray open: the formulas' module reaches a
numba kernel (``memory_metrics`` -> ``dynamics._sphere_attention``), which took 0.32 s of a
1.0 s ``import amsweep.storage.query``. Keep the order: it is the order of a cube's variables,
and new metrics go at the end.
"""

from __future__ import annotations

from typing import Iterable

from amsweep.pipeline.metric_types import BASINS, CELL, RANDOM, TEST, TIMINGS, TRAIN, Metric

__all__ = ["check_declared", "FOUND_OVERLAP", "MEMORY_METRICS", "METRICS", "RETRIEVED_OVERLAP", "SUCCESS_OVERLAP"]

SUCCESS_OVERLAP = 0.99
# A pattern counts as *retrieved* (``retrieved_fraction``) when its relaxed overlap reaches this.
# Final overlaps from the patterns are bimodal: the retrieval state at 0.97-1.00 (0.967 at Hebb's
# alpha_c in theory) and the lost patterns at 0.2-0.5 (docs/experiments.md, section 9, measured
# histogram); almost nothing lands between 0.6 and 0.9, so any cut in that gap counts the same
# patterns, and 0.9 stays below the retrieval state's overlap at every load where it exists.
# 0.99 (``success_train``) would cut into the retrieval state itself near alpha_c.
RETRIEVED_OVERLAP = 0.9

# A memory on one component overlaps its prototype by ~1 once binarised (a mean of e examples
# with 10% flips has ~0.3 wrong sites of 64 at e = 8), a memory merging two by ~0.5, and a single
# example (what a KDE stores) by 1 - 2 flip = 0.8: 0.95 credits only means of several examples.
FOUND_OVERLAP = 0.95


# The metrics of pipeline/memory_metrics.py (what a clustering memory stored and retrieves).
MEMORY_METRICS: dict[str, Metric] = {
    "recovered_components": Metric(
        CELL,
        "mean over the dataset's true prototypes of the best overlap of any binarised memory "
        "sign(mu_k) with it, sites within float32 rounding of 0 counting 0 (mixture only)",
        "best overlap of a memory with each true component",
        long_name="best overlap with components",
    ),
    "components_found": Metric(
        CELL,
        f"fraction of true prototypes whose best binarised memory (ties 0) overlaps them by >= {FOUND_OVERLAP} "
        "(mixture only)",
        "fraction of components found",
        long_name="fraction of components found",
    ),
    "components_as_oracle": Metric(
        CELL,
        "fraction of true prototypes some binarised memory matches at least as well as the sign of the "
        "mean of that component's own training examples (the estimate true labels would give; ties 0 in both; "
        "mixture only)",
        "fraction of components found as well as by their labels",
        long_name="components found as by labels",
    ),
    "n_clusters": Metric(
        CELL,
        "clusters of the token set after the attention dynamics (single linkage at angle eps; self_attention only)",
        "clusters of tokens",
        long_name="clusters of tokens",
    ),
    "cluster_steps": Metric(
        CELL,
        "attention steps until the cluster count took its final value (self_attention only)",
        "steps to form the clusters",
        long_name="steps to form the clusters",
    ),
    "clusters_converged": Metric(
        CELL,
        "1 if the token dynamics stopped moving (by tol) within max_steps, else 0 (self_attention only)",
        "token dynamics converged",
        long_name="token dynamics converged",
    ),
    "test_mode_distance": Metric(
        TEST,
        "mean over test starts of the fraction of sites where the binarised attractor (sign(<s_i>) for "
        "thermal dynamics) differs from the nearest true prototype (mixture only)",
        "test starts: distance of attractor to the nearest prototype",
        long_name="test: distance to prototype",
    ),
    "test_own_mode": Metric(
        TEST,
        "fraction of test starts whose binarised attractor is exactly the prototype of the component "
        "their example was drawn from (mixture only)",
        "test starts: fraction ending on their own prototype",
        long_name="test: on own prototype",
    ),
}

METRICS: dict[str, Metric] = {
    "fixed_point_fraction": Metric(
        CELL,
        "fraction of training examples that are fixed points of the dynamics",
        "fraction of training examples that are fixed points",
        always=True,
        long_name="fraction of fixed points",
    ),
    "m_train": Metric(
        TRAIN,
        "mean final overlap with the corrupted training example it started from "
        "(thermal dynamics: of the magnetisations <s_i>)",
        r"final overlap from training starts $m_{train}$",
        long_name="overlap from training starts",
    ),
    "success_train": Metric(
        TRAIN,
        "fraction of training starts whose binarised final state (sign(<s_i>) for "
        "thermal dynamics) has overlap >= 0.99 with their example",
        "fraction of training starts retrieved (overlap >= 0.99)",
        always=True,
        long_name="fraction retrieved (≥ 0.99)",
    ),
    "converged_train": Metric(
        TRAIN,
        "fraction of training starts that reached a fixed point",
        "fraction of training starts that reached a fixed point",
        always=True,
        long_name="training starts converged",
    ),
    "m_test": Metric(
        TEST,
        "mean final overlap with the corrupted test example it started from "
        "(thermal dynamics: of the magnetisations <s_i>)",
        r"final overlap from test starts $m_{test}$",
        long_name="overlap from test starts",
    ),
    "converged_test": Metric(
        TEST,
        "fraction of test starts that reached a fixed point",
        "fraction of test starts that reached a fixed point",
        long_name="test starts converged",
    ),
    "test_best_train": Metric(
        TEST,
        "mean over test starts of the attractor's best overlap with any training example",
        "test starts: best overlap of attractor with a training example",
        long_name="test: best training overlap",
    ),
    "test_best_feature": Metric(
        TEST,
        "mean over test starts of the attractor's best |overlap| with any of the dataset's hidden features "
        "or mixture prototypes (random features, mixture only)",
        "test starts: best |overlap| of attractor with a feature or prototype",
        long_name="test: best feature overlap",
    ),
    "random_best_train": Metric(
        RANDOM,
        "mean over random starts of the attractor's best overlap with any training example",
        "random starts: best overlap with a training example",
        long_name="random: best training overlap",
    ),
    "random_best_test": Metric(
        RANDOM,
        "mean over random starts of the attractor's best overlap with any test example",
        "random starts: best overlap with a test example",
        long_name="random: best test overlap",
    ),
    "random_converged": Metric(
        RANDOM,
        "fraction of random starts that reached a fixed point",
        "fraction of random starts that reached a fixed point",
        long_name="random starts converged",
    ),
    "coupling_similarity": Metric(
        CELL,
        "cosine similarity of learned and true couplings (spin glass only)",
        "cosine(learned J, true J)",
        long_name="cosine(learned J, true J)",
    ),
    "basin_mean": Metric(
        BASINS,
        "mean over training examples of the basin 1 - m_in* = 2 k*/N, k* the most flipped "
        "sites from which the example is still retrieved, found by bisection (biased low in the "
        "lower tail) or, with retrieval.basin_method = scan, the unbiased sum over k of the retrieved "
        "fraction (retrieval.basin_examples > 0; NaN otherwise)",
        r"basin $2k^*/N$, bisection (mean)",
        long_name="basin 2k*/N (mean)",
    ),
    "basin_q10": Metric(
        BASINS,
        "10% quantile over training examples of the basin 2 k*/N (bisection or scan)",
        r"basin $2k^*/N$, bisection (10% quantile)",
        long_name="basin 2k*/N (10% quantile)",
    ),
    "basin_q50": Metric(
        BASINS,
        "median over training examples of the basin 2 k*/N (bisection or scan)",
        r"basin $2k^*/N$, bisection (median)",
        long_name="basin 2k*/N (median)",
    ),
    "basin_q90": Metric(
        BASINS,
        "90% quantile over training examples of the basin 2 k*/N (bisection or scan)",
        r"basin $2k^*/N$, bisection (90% quantile)",
        long_name="basin 2k*/N (90% quantile)",
    ),
    **MEMORY_METRICS,  # what a clustering memory stored (computed in pipeline/memory_metrics.py)
    "train_seconds": Metric(TIMINGS, "wall time of training", "training wall time", "s", always=True),
    "retrieval_seconds": Metric(
        TIMINGS,
        "wall time of all retrieval runs of the task",
        "retrieval wall time",
        "s",
        always=True,
    ),
    "basin_seconds": Metric(
        TIMINGS,
        "wall time of the bisection basins (0 when they are off)",
        "basin bisection wall time",
        "s",
    ),
    "no_solution_train": Metric(
        TRAIN,
        "fraction of training starts from which the dynamics' equations have no solution (adaptive TAP: "
        "its response cap still active when the iteration stopped); thermal overlaps leave them out",
        "fraction of training starts without a solution",
        long_name="starts without a solution",
    ),
    # Appended (issue 22): new variables go at the end so the order of existing ones is kept.
    "retrieved_fraction": Metric(
        TRAIN,
        "fraction of training starts retrieved: binarised final state (sign(<s_i>) for thermal "
        "dynamics) at overlap >= 0.9 with its example; its fall through 1/2 is the capacity "
        "(half the patterns retrieved), whatever overlap the lost patterns end at",
        "fraction retrieved (overlap >= 0.9)",
        long_name="fraction retrieved (≥ 0.9)",
    ),
}


def check_declared(names: Iterable[str], what: str = "a cell result") -> None:
    """Refuse undeclared metrics and missing declared ones: a value stored without its declaration
    would have no cube variable, no label and no integrity check."""
    names = set(names)
    unknown, missing = sorted(names - METRICS.keys()), sorted(METRICS.keys() - names)
    if unknown or missing:
        raise ValueError(
            f"{what} does not match the metrics declared in pipeline/metric_table.py: "
            f"undeclared {unknown}, missing {missing}"
        )
