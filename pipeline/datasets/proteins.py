"""Protein families as Potts patterns: sequences of a Pfam alignment, q = 21 states.

N is not free: it is the number of match columns that survive the gap filter, which
``natural_N(params)`` reports and ``check`` enforces. Training and test examples are
distinct sequences of the family, drawn without replacement.

Defaults, and why:
- ``max_gap_column = 0.5``: drop a column only when gap is its majority state. Pfam match
  columns are the profile HMM's match states, so on PF00014 this keeps the whole Kunitz
  domain (53 columns; the worst, the C-terminal one, is 44% gap). A mostly-gap column would
  mostly add trivial gap-gap agreement to overlaps.
- ``max_gap_sequence = 0.5``: a record covering less than half of the domain is a fragment
  (the EVcouplings default of 50% coverage); on PF00014 this drops 8 of 4,914 records.
- ``deduplicate = True``: Pfam families hold many identical sequences (PF00014: 4,906
  records pass the gap filters, 3,609 of them distinct over the 53 columns; the bundled
  subset: 997 of 1,000 and 865). A test sequence identical to a training one would count as
  generalization although it is memorization, so duplicates are dropped.
- ``reweight = False`` and ``theta = 0.8``: the plmDCA weights w_s = 1/#{t : identity > theta}
  are always computed and stored in ``meta["train_weights"]`` / ``meta["test_weights"]``
  (rules only see X, so they cannot use them; metrics can). With ``reweight = True`` the
  examples are drawn with probability proportional to w_s, which thins out clusters of
  close homologs the way reweighting does in DCA, while keeping unweighted rules unchanged.

The parsed, filtered alignment and its weights are cached per process, keyed by file
(path, size, modification time) and filter parameters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from amsweep.pipeline import datafiles
from amsweep.pipeline.datasets._a2m import ALPHABET, Q, read_a2m
from amsweep.pipeline.datasets._msa import filter_alignment, sequence_weights
from amsweep.pipeline.model import Data, Param

BUNDLED = Path(__file__).resolve().parent / "bundled" / "PF00014_first1000.a2m.gz"
ENV_PATH = "AMSWEEP_PFAM"

PARAMS: dict[str, Param] = {
    "path": Param(
        "",
        str,
        f"A2M/FASTA alignment (plain or gzip; a path or fsspec URL); '' = env {ENV_PATH} if set, "
        "else the bundled PF00014 subset",
    ),
    "max_gap_column": Param(0.5, float, "drop match columns whose gap fraction exceeds this", low=0.0, high=1.0),
    "max_gap_sequence": Param(
        0.5, float, "drop sequences whose gap fraction over the kept columns exceeds this", low=0.0, high=1.0
    ),
    "deduplicate": Param(True, bool, "drop exact duplicate sequences so that train and test never share one"),
    "reweight": Param(False, bool, "draw sequences with probability proportional to their plmDCA weight"),
    "theta": Param(
        0.8,
        float,
        "identity threshold of the plmDCA weights (neighbours: identity > theta)",
        low=0.0,
        high=1.0,
        open_high=True,
    ),
}


@dataclass(frozen=True)
class Family:
    """A filtered alignment: (M, N) int8 states in 0..20 and where they came from."""

    path: str
    states: np.ndarray
    names: tuple[str, ...]
    columns: np.ndarray  # kept match columns, indices into the unfiltered alignment
    records: np.ndarray  # kept records, indices into the unfiltered alignment
    n_records: int  # records in the file


META = (
    "alphabet",
    "path",
    "columns",
    "train_index",
    "test_index",
    "train_names",
    "test_names",
    "train_weights",
    "test_weights",
    "n_sequences",
    "M_eff",
)


def _given(params: dict) -> str:
    given = params["path"] or os.environ.get(ENV_PATH, "")
    if datafiles.is_url(given):
        return given
    return str(Path(given).expanduser()) if given else str(BUNDLED)


def source(params: dict) -> str:
    """The alignment's path or URL: params['path'], else env AMSWEEP_PFAM, else the bundled subset."""
    path = _given(params)
    if not datafiles.exists(path):
        origin = "params 'path'" if params["path"] else f"env {ENV_PATH}"
        raise ValueError(f"proteins: alignment file {path!r} (from {origin}) does not exist")
    return path


def resolve_path(params: dict) -> Path:
    """A local file with the alignment (a URL is fetched once per node, see amsweep.pipeline.datafiles)."""
    return datafiles.local(source(params)).resolve()


def data_files(params: dict) -> list[str]:
    """The file this dataset reads (a local path or URL)."""
    return [source(params)]


def with_data_folder(params: dict, folder: Path) -> dict:
    """The same data read from ``folder``, which holds the file of ``data_files`` by name."""
    name = _given(params).rstrip("/").rsplit("/", 1)[-1]
    return {**params, "path": str(Path(folder) / name)}


def _file_key(params: dict) -> tuple[str, int, int]:
    path = resolve_path(params)
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


@cache
def _parsed(path: str, size: int, mtime_ns: int) -> tuple[tuple[str, ...], np.ndarray]:
    names, states = read_a2m(Path(path))
    states.setflags(write=False)
    return names, states


@cache
def _family(
    path: str, size: int, mtime_ns: int, max_gap_column: float, max_gap_sequence: float, deduplicate: bool
) -> Family:
    names, states = _parsed(path, size, mtime_ns)
    kept, columns, records = filter_alignment(states, max_gap_column, max_gap_sequence, deduplicate)
    for a in (kept, columns, records):
        a.setflags(write=False)
    return Family(path, kept, tuple(names[r] for r in records), columns, records, len(names))


@cache
def _weights(key: tuple, theta: float) -> np.ndarray:
    w = sequence_weights(_family(*key).states, theta)
    w.setflags(write=False)
    return w


def _key(params: dict) -> tuple:
    return (
        *_file_key(params),
        float(params["max_gap_column"]),
        float(params["max_gap_sequence"]),
        bool(params["deduplicate"]),
    )


def family(params: dict) -> Family:
    """The filtered alignment named by params (parsed once per process)."""
    return _family(*_key(params))


def weights(params: dict) -> np.ndarray:
    """plmDCA weights of the filtered alignment's sequences (computed once per process)."""
    return _weights(_key(params), float(params["theta"]))


def natural_N(params: dict) -> int:
    """The only N this alignment offers: its match columns after the column gap filter."""
    return int(family(params).states.shape[1])


def check(N: int, P: int, P_test: int, params: dict) -> None:
    """Refuse an N other than the alignment's, or more examples than distinct sequences."""
    fam = family(params)
    M, n = fam.states.shape
    filters = (
        f"max_gap_column={params['max_gap_column']}, max_gap_sequence="
        f"{params['max_gap_sequence']}, deduplicate={params['deduplicate']}"
    )
    if n == 0:
        raise ValueError(f"proteins: no column of {fam.path} survives the filters ({filters})")
    if N != n:
        raise ValueError(
            f"proteins: {Path(fam.path).name} offers only N = {n} "
            f"(match columns after the gap filter, {filters}); got N={N}"
        )
    if P + P_test > M:
        raise ValueError(
            f"proteins: P + P_test = {P} + {P_test} = {P + P_test} exceeds the "
            f"{M} sequences of {Path(fam.path).name} left after the filters ({filters})"
        )


def make(N: int, P: int, P_test: int, params: dict, rng: np.random.Generator) -> Data:
    """P training and P_test test sequences, distinct records drawn without replacement."""
    check(N, P, P_test, params)
    fam = family(params)
    w = weights(params)
    M = fam.states.shape[0]
    if params["reweight"]:
        idx = rng.choice(M, size=P + P_test, replace=False, p=w / w.sum())
    else:
        idx = rng.choice(M, size=P + P_test, replace=False)
    train_idx, test_idx = idx[:P], idx[P:]
    meta = {
        "alphabet": ALPHABET,
        "path": fam.path,
        "columns": np.asarray(fam.columns),
        "train_index": train_idx,
        "test_index": test_idx,
        "train_names": [fam.names[k] for k in train_idx],
        "test_names": [fam.names[k] for k in test_idx],
        "train_weights": w[train_idx].astype(np.float32),
        "test_weights": w[test_idx].astype(np.float32),
        "n_sequences": M,
        "M_eff": float(w.sum()),
    }
    return Data(train=fam.states[train_idx], test=fam.states[test_idx], q=Q, meta=meta)
