"""The layers (docs/architecture.md#layers): application > analysis > compute | storage > declarations.

The contracts live in pyproject.toml ([tool.importlinter]) and are run here, so the README's test
command checks them: import-linter reads every import, including those inside functions, and the
forbidden contracts follow indirect imports. Two things it cannot see are checked beside it: a
module that is in no layer (import-linter only checks the modules it is told about), and what
importing storage really loads (a module imported by ``importlib`` has no import statement).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"amsweep.pipeline": "pipeline", "amsweep.storage": "storage", "amsweep.analysis": "analysis"}


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def _contract(contract_id: str) -> dict:
    return next(c for c in _config()["contracts"] if c["id"] == contract_id)


def _layers() -> list[list[str]]:
    return [[m.strip() for m in layer.replace("|", ":").split(":")] for layer in _contract("layers")["layers"]]


def _compute() -> set[str]:
    """The compute side: the pipeline modules of the layer that storage shares, and the plug-in
    conformance kit (``amsweep.testing``, kept in pipeline/testing beside what it tests)."""
    return {m for m in _layers()[2] if m.startswith("amsweep.pipeline.") or m == "amsweep.testing"}


def test_the_layer_contracts_hold():
    """No upward import, storage and compute independent (lint-imports over pyproject.toml)."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(_config()['contracts'])} kept, 0 broken" in out.stdout


def test_every_module_is_in_exactly_one_layer():
    """A new pipeline module must be placed (declarations or compute) before it can be imported
    from anywhere: a module in no layer would be checked by no contract."""
    placed = [m for layer in _layers() for m in layer]
    assert len(placed) == len(set(placed)), "a module is in two layers"
    whole = set(PACKAGES) - {"amsweep.pipeline"} | {"amsweep.sweeps"}
    assert whole <= set(placed)
    pipeline = {
        f"amsweep.pipeline.{p.stem if p.is_file() else p.name}"
        for p in (ROOT / "pipeline").iterdir()
        if ((p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()) and p.name != "testing"
    }  # pipeline/testing installs as amsweep.testing (pyproject's package-dir), placed by that name
    assert pipeline == {m for m in placed if m.startswith("amsweep.pipeline.")}, "place new modules in a layer"
    # the two forbidden contracts name the same compute side as the layers contract
    assert set(_contract("storage-not-compute")["forbidden_modules"]) == _compute()
    assert set(_contract("compute-not-storage")["source_modules"]) == _compute()


def test_opening_a_cube_loads_nothing_of_the_compute_side():
    """``import amsweep.storage.query`` is paid on every query, status and xarray open: it used to
    load the cell's metric formulas and through them a numba kernel (0.32 s of 1.0 s). Storage's own
    CRC-32C is google-crc32c's C code since issue 26 (its numba kernel cost ~1 s of a start)."""
    probe = (
        "import json, sys, amsweep.storage.query; q = sorted(sys.modules); "
        "import amsweep.storage.cube, amsweep.storage.check, amsweep.storage.backend; "
        "print(json.dumps([q, sorted(sys.modules)]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    query, storage = (set(names) for names in json.loads(out.stdout))
    compute = _compute()

    def of_compute(loaded: set[str]) -> list[str]:
        return sorted(m for m in loaded if m in compute or any(m.startswith(c + ".") for c in compute))

    assert "amsweep.pipeline.metric_table" in query  # the probe did import the declarations
    assert of_compute(query) == [] and of_compute(storage) == []
    assert _of(storage, "numba") == []


def _of(loaded: set[str], *packages: str) -> list[str]:
    """The modules of ``loaded`` that are ``packages`` or inside them."""
    return sorted(m for m in loaded if any(m == p or m.startswith(p + ".") for p in packages))


# Runs ``amsweep ARGS`` in a new process, then writes the modules it loaded to the file named first.
COMMAND_PROBE = (
    "import json, sys; from amsweep.sweeps.cli import main; code = main(sys.argv[2:]); "
    "json.dump(sorted(sys.modules), open(sys.argv[1], 'w')); sys.exit(code)"
)


def test_status_and_query_load_only_what_they_use(tmp_path):
    """``amsweep status`` and ``query`` start in a new process each time (issue 26: <= 0.3 s of
    import): status loads no numba, xarray, pandas, Ray, analysis or compute module (the executors
    once came with the parser, numba with the shard checksum, pandas with the commands' modules:
    ~1.7 s of its 2.2 s start on a loaded 2-core machine; zarr with the arrays' metadata, which
    storage/zarr_documents.StoredArray reads from the JSON, checked below); query neither: it reads
    the cube with numpy (storage/cube_view.py) and writes its table without pandas (storage/table.py),
    where xarray, pandas and dask cost it 1.1-1.3 s of a 1.5 s start."""
    from benchmarks.cube import results, sweep, write_all

    cube = str(tmp_path / "c.zarr")
    s = sweep(seeds=1)
    write_all(cube, s, results(s))
    loaded = {}
    for name, argv in {
        "status": ["status", cube],
        "query": ["query", cube, "--metric", "m_train", "--where", "noise=0.1", "--mean"],
    }.items():
        modules = tmp_path / f"{name}.json"
        out = subprocess.run(
            [sys.executable, "-c", COMMAND_PROBE, str(modules), *argv],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        loaded[name] = set(json.loads(modules.read_text()))
        assert "m_train" in out.stdout if name == "query" else f"tasks: done {len(results(s))}," in out.stdout
    compute = sorted(_compute())
    assert "amsweep.storage.cube" in loaded["status"] and "amsweep.storage.cube_view" in loaded["query"]
    for name in ("status", "query"):
        assert _of(loaded[name], "numba", "zarr", "xarray", "pandas", "dask", "scipy", "ray", "amsweep.analysis") == []
        assert _of(loaded[name], *compute) == []


def test_the_parser_names_every_executor():
    """``--executor``'s choices are written out in sweeps/arguments.py (so that building the parser
    does not import the executors): they must be the executor table's names."""
    from amsweep.pipeline.executors import EXECUTORS
    from amsweep.sweeps.arguments import EXECUTOR_NAMES

    assert sorted(EXECUTOR_NAMES) == sorted(EXECUTORS)


def test_array_metadata_read_without_zarr_is_zarrs(tmp_path):
    """``StoredArray`` (what status reads shards by, without importing zarr-python) gives the shard
    geometry, shape and fill value that zarr's own metadata object gives, for every array of a
    format-3 cube and of the format-2 fixture; anything else is zarr's object."""
    import numpy as np

    from benchmarks.cube import results, sweep, write_all
    from amsweep.storage import zarr_documents
    from amsweep.storage.objects import objects_at

    cube = str(tmp_path / "c.zarr")
    s = sweep(seeds=1)
    write_all(cube, s, results(s))
    sharded = 0
    for path, headed in ((cube, True), (str(ROOT / "tests" / "data" / "format2_tiny.zarr"), False)):
        doc = zarr_documents.read_root(objects_at(path), path)
        for name, stored in zarr_documents.arrays_of(doc).items():
            meta = stored.metadata
            assert stored.shape == tuple(meta.shape), name
            fill = np.asarray(stored.fill_value)
            assert fill.dtype == np.asarray(meta.fill_value).dtype, name
            assert np.array_equal(fill, np.asarray(meta.fill_value), equal_nan=fill.dtype.kind == "f"), name
            with zarr_documents.quiet_labels():  # the labels' data type (see zarr_documents._fixed_width)
                assert stored.to_dict() == meta.to_dict()
            if meta.codecs[0].__class__.__name__ == "ShardingCodec":
                sharded += 1
                assert zarr_documents.shard_geometry(stored, headed) == zarr_documents.shard_geometry(meta, headed)
    assert sharded > 30
