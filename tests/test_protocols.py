"""analysis.protocols.against_best: the paired difference against the best rival at each load."""

import numpy as np
import pandas as pd

from amsweep.analysis.protocols import against_best


def _frame() -> pd.DataFrame:
    # Two rivals that swap places between the loads; seeds pair the rules (same data, same starts).
    rng = np.random.default_rng(0)
    rows = []
    for load, base in ((0.05, {"km": 0.83, "proj": 0.82}), (0.1, {"km": 0.75, "proj": 0.76})):
        for seed in range(5):
            noise = rng.normal(0, 0.005)
            for fam, mean in (*base.items(), ("plm", base["km"] + 0.004)):
                rows.append(dict(family=fam, dynamics="asynchronous", load=load, seed=seed, basin_mean=mean + noise))
    return pd.DataFrame(rows)


def test_against_best_pairs_with_the_rival_of_highest_mean_at_each_load():
    frame = _frame()
    table = against_best(frame, "basin_mean", "plm", ["km", "proj"], "asynchronous")
    assert list(table["rival"]) == ["km", "proj"]
    # per-seed noise is shared by the rules of a seed, so the paired differences are exact
    assert np.allclose(table["mean"].to_numpy(), [0.004, -0.006])
    assert np.allclose(table["sem"].to_numpy(), 0.0, atol=1e-12)
    assert list(table["positive"]) == [5, 0] and list(table["n"]) == [5, 5]
    assert against_best(frame, "basin_mean", "plm", ["km"], "paper_synchronous").empty
