"""``amsweep query`` without xarray or pandas (issue 26) prints and writes byte for byte what the
xarray/pandas query printed: every option (several metrics, ``--mean``, ``--csv``, ``--where`` on
every kind of key, ``--allow-missing`` with lost values, ``--max-rows``) and its errors, on alpha and
P cubes written in process (per-variant coordinates, a NaN coordinate, unfinished tasks, a lost
data shard, a lost status shard), on sweeps/smoke.toml, and on the reference cubes under /work/ref
where that folder is readable. The reference below is the query as it was at ec2a2d0
(``storage.query``'s xarray reader, pandas' group-by, merge, ``to_string`` and ``to_csv``)."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.cell import run_cell
from amsweep.pipeline.errors import AmsweepError
from amsweep.storage import query
from amsweep.storage.cube import Cube
from amsweep.sweeps.cli import main
from tests.conftest import SMALL

REF = Path("/work/ref")
ROOT = Path(__file__).resolve().parents[1]


# ---- the reference: the query of ec2a2d0, on xarray and pandas --------------------------------


def old_table(path: str, metrics: Sequence[str], where: dict, mean: bool, allow_missing: bool) -> pd.DataFrame:
    from amsweep.analysis.tables import seed_stats
    from amsweep.pipeline.metric_table import METRICS

    ds = query.select(query.open_cube(path), where)
    frames = []
    for metric in metrics:
        frame = query.to_frame(ds, metric, allow_missing=allow_missing)
        if mean:
            keys = [c for c in frame.columns if c not in (metric, "seed", query.MISSING)]
            frame = seed_stats(frame, metric, keys)
        if len(metrics) > 1:
            frame = frame.rename(columns={"n": f"{metric}_n", query.MISSING: f"{metric}_{query.MISSING}"})
        frames.append(frame)
    shared = ("n", query.MISSING) if len(metrics) == 1 else ()
    owned = {
        metric: [c for c in frame.columns if c == metric or c.startswith(f"{metric}_") or c in shared]
        for metric, frame in zip(metrics, frames)
    }
    table = frames[0]
    for frame in frames[1:]:
        table = table.merge(frame, on=[c for c in table.columns if c in frame.columns], how="outer")
    values = [c for metric in metrics for c in owned[metric]]
    table = table[[c for c in table.columns if c not in values] + values]
    if mean:
        for c in [c for c in table.columns if c == "n" or c in {f"{m}_n" for m in metrics}]:
            table[c] = table[c].fillna(0).astype("int64")
    for metric in metrics:
        columns = [c for c in (metric, f"{metric}_sem") if c in table.columns]
        table = table.astype(dict.fromkeys(columns, METRICS[metric].dtype))
    return table


def old_output(path: str, args: list[str], tmp: Path) -> tuple[str, str, str]:
    """(stdout, csv text, error) of the old ``amsweep query`` with these arguments."""
    from amsweep.sweeps.query_command import metric_names

    metrics_given = [args[i + 1] for i, a in enumerate(args) if a == "--metric"]
    where_given = [args[i + 1] for i, a in enumerate(args) if a == "--where"]
    max_rows = int(args[args.index("--max-rows") + 1]) if "--max-rows" in args else 60
    try:
        metrics = metric_names(metrics_given)
        frame = old_table(
            path, metrics, query.parse_where(",".join(where_given)), "--mean" in args, "--allow-missing" in args
        )
    except AmsweepError as e:
        return "", "", str(e)
    lost = [c for c in frame.columns if c == query.MISSING or c.endswith(f"_{query.MISSING}")]
    always = {*metrics, "n", *(f"{m}_n" for m in metrics), *lost}
    drop = [c for c in frame.columns if frame[c].nunique(dropna=False) <= 1 and c not in always]
    if "--csv" in args:
        out = tmp / "old.csv"
        frame.to_csv(out, index=False)
        return f"wrote {len(frame)} rows to X\n", out.read_text(), ""
    return frame.drop(columns=drop).to_string(index=False, max_rows=max_rows) + "\n", "", ""


def new_output(path: str, args: list[str], tmp: Path, capsys) -> tuple[str, str, str]:
    out = tmp / "new.csv"
    argv = ["query", path, *args] + (["--csv", str(out)] if "--csv" in args else [])
    argv = [a for i, a in enumerate(argv) if not (a == "--csv" and i < len(argv) - 2)]
    code = main(argv)
    got = capsys.readouterr()
    if code != 0:
        error = got.err.strip().splitlines()[-1]
        assert error.startswith("amsweep query: error: "), got.err
        return "", "", error.removeprefix("amsweep query: error: ")
    text = out.read_text() if out.exists() else ""
    if out.exists():
        out.unlink()
    return got.out.replace(str(out), "X"), text, ""


# ---- cubes --------------------------------------------------------------------------------------


def _write(path: str, raw: dict[str, Any] | spec_mod.Sweep, skip_last: int = 0) -> str:
    sweep = raw if isinstance(raw, spec_mod.Sweep) else spec_mod.from_dict(raw)
    tasks = list(sweep.tasks())
    with Cube.create_or_open(path, sweep) as c:
        c.write([run_cell(sweep.job(t)) for t in tasks[: len(tasks) - skip_last]])
    return path


@pytest.fixture(scope="module")
def cubes(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("qnp")
    raw = copy.deepcopy(SMALL)
    raw["datasets"]["random"]["N"] = [32, 48]
    raw["rules"]["plm"]["clip"] = [0.0, 1.0]  # rule_clip, NaN for hebb
    out = {"alpha": _write(str(root / "alpha.zarr"), raw)}
    by_p = copy.deepcopy(raw)
    by_p["datasets"]["random"] = {"N": [32, 48], "P": [4, 8]}
    by_p["rules"]["plm"]["lr"] = [1.0, 5.0]
    out["P"] = _write(str(root / "P.zarr"), by_p, skip_last=5)  # unfinished: tasks left pending
    smoke = spec_mod.load(str(ROOT / "sweeps" / "smoke.toml"))
    out["smoke"] = _write(str(root / "smoke.zarr"), smoke)
    lost = str(root / "lost.zarr")
    shutil.copytree(out["alpha"], lost)
    for name in ("m_train", "success_train"):
        shard = next(p for p in sorted(Path(lost, name, "c").rglob("*")) if p.is_file())
        data = bytearray(shard.read_bytes())
        data[len(data) // 3] ^= 0xFF  # one damaged inner chunk: its block of done tasks lost, the rest kept
        shard.write_bytes(bytes(data))
    out["lost"] = lost
    orphan = str(root / "orphan.zarr")
    shutil.copytree(out["alpha"], orphan)
    next(p for p in sorted(Path(orphan, "status", "c").rglob("*")) if p.is_file()).unlink()
    out["orphan"] = orphan
    out["format2"] = str(ROOT / "tests" / "data" / "format2_tiny.zarr")
    for name in ("smoke", "quickstart", "all_datasets_smoke"):
        ref = REF / f"{name}.zarr"
        if os.access(ref / "zarr.json", os.R_OK):
            out[f"ref-{name}"] = str(ref)
    return out


def where_clauses(path: str) -> list[list[str]]:
    """A clause on every coordinate of the cube (one value, and two where there are two), plus
    combinations and the kinds of error a user meets."""
    from amsweep.storage.cube_view import open_view

    view = open_view(path)
    out: list[list[str]] = [[]]
    for name, coord in view.coords.items():
        values = [v for v in dict.fromkeys(coord.values.ravel().tolist()) if v == v and v != ""]
        if not values:
            continue
        out.append(["--where", f"{name}={values[0]}"])
        if len(values) > 1:
            out.append(["--where", f"{name}={values[-1]}|{values[0]}"])
    out += [
        ["--where", "noise=0.0", "--where", f"rule={view.coords['rule'].values[-1]}"],
        ["--where", "nosuch=1"],
        ["--where", "N=abc"],
        ["--where", "N=12345"],
        ["--where", "seed=0,seed=1"],
        ["--where", "clip=1.0"],
    ]
    if "P" in view.coords and view.coords["P"].values.ndim == 2:
        p = view.coords["P"].values
        out.append(["--where", f"P={p.ravel()[0]}|{p.ravel()[-1]},noise=0.15"])
    if "alpha" in view.coords and view.coords["alpha"].values.ndim == 2:
        out.append(["--where", f"alpha={view.coords['alpha'].values.ravel()[-1]}"])
    return out


METRIC_SETS = [
    ["m_train"],
    ["train_seconds"],
    ["m_train,fixed_point_fraction"],
    ["fixed_point_fraction,m_train,m_test"],
]


EXTRAS = [[], ["--mean"], ["--csv"], ["--mean", "--csv"], ["--max-rows", "5"], ["--mean", "--max-rows", "1"]]


def option_sets(path: str) -> list[list[str]]:
    """Each metric set with half of the output options on the whole cube, then each where clause with
    one of them in turn (the full product took minutes on a loaded 2-core machine; CI's budget)."""
    out = [  # every metric set with half of the output options, each option with two of the metric sets
        ["--metric", m[0], *extra]
        for j, m in enumerate(METRIC_SETS)
        for i, extra in enumerate(EXTRAS)
        if (i + j) % 2 == 0
    ]
    for i, where in enumerate(where_clauses(path)[1:]):
        out.append(["--metric", METRIC_SETS[i % len(METRIC_SETS)][0], *where, *EXTRAS[i % len(EXTRAS)]])
    return out


@pytest.mark.parametrize(
    "name",
    ["alpha", "P", "smoke", "lost", "orphan", "format2", "ref-smoke", "ref-quickstart", "ref-all_datasets_smoke"],
)
def test_query_prints_and_writes_what_the_pandas_query_did(cubes, name, tmp_path, capsys):
    if name not in cubes:
        pytest.skip(f"{name}: /work/ref is not readable here")
    path = cubes[name]
    options = option_sets(path)
    if name in ("lost", "orphan"):
        options = [o + ["--allow-missing"] for o in options[::3]] + options[::7]
    compared = 0
    for args in options:
        old = old_output(path, args, tmp_path)
        new = new_output(path, args, tmp_path, capsys)
        assert new == old, f"amsweep query {path} {' '.join(args)}"
        compared += 1
    assert compared > 10


def test_shadowed_names_match_xarray():
    from amsweep.storage.attributes import SHADOWED
    from amsweep.storage.cube_view import SHADOWED as spelled

    assert spelled == SHADOWED


def test_a_format1_cube_answers_the_same_table(tmp_path, capsys):
    """Format 1 (read-only) is read through zarr-python as status and upgrade read it; its columns
    follow today's coordinate order (xarray listed a format-1 store in the order the file system
    gave), so the tables are compared with their columns sorted: same columns, rows and values."""
    path = str(ROOT / "tests" / "data" / "format1_tiny.zarr")
    for args in (["--metric", "m_train"], ["--metric", "m_train,m_test", "--mean", "--where", "rule=hebb|storkey"]):
        old, new = tmp_path / "old.csv", tmp_path / "new.csv"
        assert main(["query", path, *args, "--csv", str(new)]) == 0, capsys.readouterr().err
        metrics = args[1].split(",")
        old_table(path, metrics, query.parse_where(",".join(args[4:5])), "--mean" in args, False).to_csv(
            old, index=False
        )
        a, b = pd.read_csv(old), pd.read_csv(new)
        assert sorted(a.columns) == sorted(b.columns) and len(a) > 0
        pd.testing.assert_frame_equal(a[sorted(a.columns)], b[sorted(b.columns)])
