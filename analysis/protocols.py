"""Tables behind docs/experiments.md: retrieval protocols side by side, bisection versus grid basins.

A sweep that runs every rule twice (``<rule>`` retrieved asynchronously, ``<rule>_paper`` by the
PLM paper's protocol) pairs the two by rule family: the family is the label without ``_paper``.
Rules share data, couplings and corrupted starts, so differences between rules or protocols are
computed per seed and then averaged (mean and standard error of the paired difference).

    python -m amsweep.analysis.protocols CUBE [--at-alpha 0.05 0.1 0.15]   # prints the markdown tables
    python -m amsweep.analysis.protocols CUBE --versus "plm[symmetric=False]" --rivals krauth_mezard pseudo_inverse
        # and the paired difference of one family against the best rival at each load (section 1's table)
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import xarray as xr

from amsweep.analysis import derived, tables

__all__ = ["against_best", "bisection_vs_grid", "family", "main", "paired", "PAPER", "per_task", "seed_table"]

PAPER = "_paper"


def family(label: str) -> str:
    """'plm_paper[symmetric=False]' -> 'plm[symmetric=False]'."""
    return label.replace(PAPER, "", 1)


def per_task(ds: xr.Dataset, value: str, at: dict | None = None) -> pd.DataFrame:
    """Columns family, dynamics, load, seed, value: one row per done task."""
    frame = tables.restrict(derived.value_frame(ds, value), at)
    load = tables.load_axis(ds)
    dyn = dict(zip(ds["rule"].values.tolist(), ds["dynamics"].values.tolist()))
    out = frame[["rule", load, "seed", value]].copy()
    out["dynamics"] = out["rule"].map(dyn)
    out["family"] = out["rule"].map(family)
    return out.rename(columns={load: "load"})


def seed_table(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    """'mean ± sem' strings per (family, load) row and dynamics column."""
    g = frame.groupby(["family", "dynamics", "load"])[value]
    stats = pd.DataFrame({"mean": g.mean(), "sem": g.sem(ddof=1), "n": g.count()}).reset_index()
    stats["cell"] = [
        f"{m:.3f} ± {s:.3f}" if n > 1 else f"{m:.3f}"
        for m, s, n in zip(stats["mean"], stats["sem"].fillna(0.0), stats["n"])
    ]
    return stats.pivot(index=["family", "load"], columns="dynamics", values="cell")


def paired(frame: pd.DataFrame, value: str, a: tuple[str, str], b: tuple[str, str]) -> pd.DataFrame:
    """Per load: mean ± sem over seeds of value(a) - value(b), a and b as (family, dynamics)."""

    def pick(key: tuple[str, str]) -> pd.Series:
        sel = frame[(frame["family"] == key[0]) & (frame["dynamics"] == key[1])]
        return sel.set_index(["load", "seed"])[value]

    d = (pick(a) - pick(b)).dropna().groupby(level="load")
    return pd.DataFrame(
        {"mean": d.mean(), "sem": d.sem(ddof=1), "n": d.count(), "positive": d.apply(lambda x: int((x > 0).sum()))}
    )


def against_best(frame: pd.DataFrame, value: str, family: str, rivals: list[str], dynamics: str) -> pd.DataFrame:
    """Per load: ``paired`` of ``family`` against the rival with the highest seed mean at that load.

    "Wider than every classical rule" is a claim against the best of them, which changes with the
    load (the perceptron at some loads, the projector at others); the column ``rival`` says which.
    """
    sel = frame[frame["dynamics"] == dynamics]
    means = sel[sel["family"].isin(rivals)].groupby(["load", "family"])[value].mean()
    rows = []
    for load, best in means.groupby(level="load").idxmax().items():
        d = paired(frame[frame["load"] == load], value, (family, dynamics), (best[1], dynamics))
        rows.append(d.assign(rival=best[1]))
    if not rows:
        return pd.DataFrame(columns=["mean", "sem", "n", "positive", "rival"])
    return pd.concat(rows)


def bisection_vs_grid(ds: xr.Dataset) -> pd.DataFrame:
    """Per task: the bisection median (basin_q50) against the grid's median basin (the noise at
    which half the training starts are retrieved) and its bracket on the grid.

    The grid basin without interpolation is 2 rho_j, rho_j the last level where at least half the
    starts are retrieved; the true crossing lies in [2 rho_j, 2 rho_{j+1}]. ``inside`` says whether
    the bisection median falls in that bracket widened by one spin of bisection resolution (2/N).
    """
    from amsweep.analysis import basins

    grid = basins.basin_frame(ds, "success_train", threshold=0.5, name="grid")
    interp = basins.basin_frame(ds, "success_train", threshold=0.5, interpolate=True, name="grid_interp")
    grid = grid.merge(interp[tables.task_dims(ds) + ["grid_interp"]], on=tables.task_dims(ds))
    bis = tables.tidy(ds, ["basin_q50", "basin_mean"])
    keys = tables.task_dims(ds)
    m = grid.merge(bis[keys + ["basin_q50", "basin_mean"]].drop_duplicates(subset=keys), on=keys)
    noise = np.sort(ds["noise"].values.astype(float))
    levels = 2 * noise
    nxt = np.array(
        [
            levels[min(np.searchsorted(levels, g, side="right"), len(levels) - 1)] if g < levels[-1] else 1.0
            for g in m["grid"]
        ]
    )
    res = 2.0 / m["N"].astype(float)
    m["upper"] = nxt
    m["inside"] = (m["basin_q50"] >= m["grid"] - res - 1e-9) & (m["basin_q50"] <= m["upper"] + res + 1e-9)
    return m


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cube")
    ap.add_argument("--at-alpha", type=float, nargs="*", default=None)
    ap.add_argument("--versus", default=None, help="a family: its paired basin_mean against the best of --rivals")
    ap.add_argument("--rivals", nargs="*", default=["krauth_mezard", "pseudo_inverse"])
    args = ap.parse_args(argv)
    from amsweep.storage import query

    ds = query.open_cube(args.cube)
    if args.versus:
        frame = per_task(ds, "basin_mean")
        for dyn in sorted(frame["dynamics"].unique()):
            print(f"\n### basin_mean, {args.versus} minus the best of {args.rivals}, {dyn} (mean ± sem, seeds wider)\n")
            print(against_best(frame, "basin_mean", args.versus, args.rivals, dyn).to_string())
        return
    for value in ("basin_mean", "basin_q50", "basin_interp", "fixed_point_fraction"):
        frame = per_task(ds, value)
        if args.at_alpha:
            frame = frame[np.isin(frame["load"].round(6), np.round(args.at_alpha, 6))]
        print(f"\n### {value} (mean ± sem over seeds)\n")
        print(seed_table(frame, value).to_string())
    m = bisection_vs_grid(ds)
    gap = (m["basin_q50"] - m["grid_interp"]).abs()
    print(
        f"\n### bisection median (basin_q50) against the grid's median basin: inside the grid bracket "
        f"(+- 2/N) in {int(m['inside'].sum())} of {len(m)} tasks; |basin_q50 - interpolated grid median|: "
        f"median {gap.median():.3f}, 90% quantile {gap.quantile(0.9):.3f}, max {gap.max():.3f}"
    )


if __name__ == "__main__":
    main()
