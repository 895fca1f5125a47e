"""A small column table (ordered numpy columns) with the few operations ``amsweep query`` needs.

Why not pandas: importing pandas and xarray cost ``amsweep query`` 1.1-1.3 s of its ~1.5 s start
(issue 26: status and query start in <= 0.3 s). The operations are the ones the pandas table of
``query`` used, with pandas' own semantics (seed statistics excepted: see ``group_stats``), so the
printed text and the CSV stay byte for byte what they were (tests/test_query_numpy.py compares both
on real cubes):

- ``group_stats``: mean, standard error (ddof 1) and count per group, groups in sorted key order
  (``DataFrame.groupby(sort=True, dropna=False)``), by ``mean_sem_count`` in float64, the one
  definition ``analysis.tables.seed_stats`` uses too (pandas' own differed in a float32's last bit
  with the rows' order).
- ``outer_merge``: ``DataFrame.merge(how="outer")``: rows sorted by the join keys, NaN keys equal,
  a key with several rows on both sides their product (left rows outer).
- ``to_text``: ``DataFrame.to_string(index=False, max_rows=K)`` (6 significant decimals trimmed
  alike per column, scientific where a value would show as 0, labels in full: ``to_string``'s
  ``max_colwidth`` is None, unlike the 50 of ``display.max_colwidth``).
- ``to_csv``: ``DataFrame.to_csv(index=False)`` (numpy's shortest text of each value: a float32
  metric reads ``0.132``, not ``0.13199999928474426``).
"""

from __future__ import annotations

import csv
import io
import re
from typing import Iterable, Sequence

import numpy as np

__all__ = ["Table", "group_stats", "outer_merge", "to_csv", "to_text"]

PRECISION = 6  # pandas' display.precision
_NUMBER_WITH_DECIMAL = re.compile(r"^\s*[+-]?[0-9]+\.[0-9]*$")

Table = dict[str, np.ndarray]  # column name -> values (equal lengths), in column order


def rows(table: Table) -> int:
    return len(next(iter(table.values()))) if table else 0


def nansum(col: np.ndarray) -> float:
    """``Series.sum()``: NaN skipped."""
    return float(np.nansum(col)) if col.dtype.kind == "f" else float(col.sum())


def take(table: Table, index: np.ndarray) -> Table:
    """Rows ``index`` of every column; -1 is a missing row (NaN: an int column becomes float64)."""
    missing = index < 0
    out: Table = {}
    for name, col in table.items():
        picked = col[np.where(missing, 0, index)] if len(col) else np.zeros(len(index), dtype=col.dtype)
        if missing.any():
            if col.dtype.kind in "iub":
                picked = picked.astype(np.float64)
            elif col.dtype.kind != "f":
                picked = picked.astype(object)
            picked[missing] = np.nan
        out[name] = picked
    return out


def isna(col: np.ndarray) -> np.ndarray:
    if col.dtype.kind == "f":
        return np.isnan(col)
    if col.dtype.kind == "O":
        return np.fromiter((v is None or (isinstance(v, float) and v != v) for v in col), bool, len(col))
    return np.zeros(len(col), dtype=bool)


def codes(col: np.ndarray) -> tuple[np.ndarray, int]:
    """Sorted factorisation of one key column: (code per row, number of codes); NaN sorts last."""
    if col.dtype.kind == "O":  # labels: hashed once each (a per-row Python test cost ~1 s at 10^6 rows)
        values = col.tolist()
        distinct = set(values)
        blank = {v for v in distinct if v is None or (isinstance(v, float) and v != v)}
        seen = sorted(distinct - blank)
        lookup = {v: i for i, v in enumerate(seen)} | dict.fromkeys(blank, len(seen))
        out = np.fromiter(map(lookup.__getitem__, values), np.int64, len(values))
        return out, len(seen) + bool(blank)
    na = isna(col)
    values = col[~na]
    uniq = np.unique(values)
    out = np.full(len(col), len(uniq), dtype=np.int64)
    out[~na] = np.searchsorted(uniq, values)
    return out, len(uniq) + int(na.any())


def group_ids(columns: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(group id per row, one row index per group), groups in the sorted order of the key tuples."""
    n = len(columns[0]) if columns else 0
    key = np.zeros(n, dtype=np.int64)
    for col in columns:
        c, k = codes(col)
        key = key * k + c  # dense codes: at most the row count per column, so no overflow in practice
    uniq, first, ids = np.unique(key, return_index=True, return_inverse=True)
    return ids.reshape(-1), first


def group_stats(
    table: Table, value: str, keys: Sequence[str], missing: str | None = None, by: Sequence[str] | None = None
) -> Table:
    """``analysis.tables.seed_stats``: per group of ``keys``, the mean of ``value`` (in float64), its
    standard error ``<value>_sem`` (float64) and ``n``; with ``missing`` (a column of lost values)
    every group of ``table`` is kept, with its sum of ``missing`` last and ``n`` 0 where no value.
    ``by``: leading keys that the others depend on (the dimensions, before coordinates over them):
    the same groups in the same order, found from fewer columns."""
    by = list(by or keys)
    col = table[value]
    valid = ~np.isnan(col)
    data = take(table, np.nonzero(valid)[0])
    ids, first = group_ids([data[k] for k in by])
    out = take({k: data[k] for k in keys}, first)
    mean, sem, count = mean_sem_count(data[value], ids, len(first))
    out[value], out[f"{value}_sem"], out["n"] = mean, sem, count
    if missing is None:
        return out
    all_ids, all_first = group_ids([table[k] for k in by])
    lost = np.zeros(len(all_first), dtype=np.int64)
    np.add.at(lost, all_ids, table[missing])
    result = take({k: table[k] for k in keys}, all_first)
    # every group with a value is a group of the whole table: find it there (sorted, so by position)
    where = np.full(len(all_first), -1, dtype=np.int64)
    if len(first):
        valid_rows = np.nonzero(valid)[0]
        where[all_ids[valid_rows[first]]] = np.arange(len(first))
    stats = take({value: mean, f"{value}_sem": sem, "n": count}, where)
    stats["n"] = np.nan_to_num(stats["n"], nan=0).astype(np.int64)
    result.update(stats)
    result[missing] = lost
    return result


def mean_sem_count(values: np.ndarray, ids: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group ``ids`` (0 .. groups-1) of non-NaN ``values``: the mean, the standard error (ddof 1;
    NaN for one value) and the count, in float64 whatever the values' dtype. The one definition that
    ``amsweep query`` and ``analysis.tables.seed_stats`` share: pandas' own group mean sums float32 in
    float32 (Kahan) or float64 depending on the rows' order, and its ``sem`` takes another formula
    under ``agg``, so two tables of the same values could differ in the last bit of a float32."""
    count = np.bincount(ids, minlength=groups).astype(np.int64)
    wide = values.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(ids, weights=wide, minlength=groups) / count
        m2 = np.bincount(ids, weights=(wide - mean[ids]) ** 2, minlength=groups)
        sem = np.where(count > 1, np.sqrt(m2 / (count - 1)) / np.sqrt(count), np.nan)
    return mean, sem, count


def outer_merge(left: Table, right: Table, on: Sequence[str], by: Sequence[str] | None = None) -> Table:
    """``left.merge(right, on=on, how="outer")``: keys sorted, NaN equal to NaN, products of
    repeated keys left-major; a row with no partner has NaN in the other side's columns. ``by``:
    as in ``group_stats``, the leading keys that determine the others."""
    nl = rows(left)
    both = {k: np.concatenate([_joinable(left[k]), _joinable(right[k])]) for k in on}
    ids, first = group_ids([both[k] for k in (by or on)])
    lid, rid = ids[:nl], ids[nl:]
    groups = len(first)
    cl = np.bincount(lid, minlength=groups)
    cr = np.bincount(rid, minlength=groups)
    lorder = np.argsort(lid, kind="stable")
    rorder = np.argsort(rid, kind="stable")
    lstart = np.concatenate([[0], np.cumsum(cl)[:-1]])
    rstart = np.concatenate([[0], np.cumsum(cr)[:-1]])
    el, er = np.maximum(cl, 1), np.maximum(cr, 1)
    size = el * er
    block = np.repeat(np.arange(groups), size)
    offset = np.arange(int(size.sum())) - np.repeat(np.cumsum(size) - size, size)
    i, j = offset // er[block], offset % er[block]
    li = np.where(cl[block] > 0, lorder[np.minimum(lstart[block] + i, max(nl - 1, 0))] if nl else -1, -1)
    nr = rows(right)
    ri = np.where(cr[block] > 0, rorder[np.minimum(rstart[block] + j, max(nr - 1, 0))] if nr else -1, -1)
    lt, rt = take(left, li), take(right, ri)
    source = np.where(li >= 0, li, nl + ri)
    out: Table = {}
    for name, col in lt.items():  # pandas' order: the left columns, then the right's others
        out[name] = _restore(both[name][source], left[name], right[name]) if name in on else col
    for name, col in rt.items():
        if name not in on:
            out[name] = col
    return out


def _joinable(col: np.ndarray) -> np.ndarray:
    return col.astype(object) if col.dtype.kind == "O" else col


def _restore(merged: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """A key column keeps its dtype where both sides had it (pandas keeps int keys int)."""
    if left.dtype == right.dtype and left.dtype.kind != "O":
        return merged.astype(left.dtype)
    return merged


def nunique(col: np.ndarray) -> int:
    """``Series.nunique(dropna=False)``: distinct values, NaN counted once."""
    _, count = codes(col)
    return count


# ---- text ------------------------------------------------------------------------------------


def _trim_zeros(strings: list[str]) -> list[str]:
    is_number = [_NUMBER_WITH_DECIMAL.match(x) is not None for x in strings]
    if not any(is_number):
        return strings
    trimmed = list(strings)
    while all(x.endswith("0") for x, n in zip(trimmed, is_number) if n):
        trimmed = [x[:-1] if n else x for x, n in zip(trimmed, is_number)]
    return [x + "0" if n and x.endswith(".") else x for x, n in zip(trimmed, is_number)]


def _format_floats(col: np.ndarray) -> list[str]:
    na = np.isnan(col)

    def with_format(spec: str, trim: bool) -> list[str]:
        strings = ["NaN" if n else format(float(v), spec) for v, n in zip(col.tolist(), na)]
        return _trim_zeros(strings) if trim else strings

    out = with_format(f".{PRECISION}f", True)
    too_long = bool(out) and max(len(x) for x in out) > PRECISION + 6
    magnitude = np.abs(col)
    with np.errstate(invalid="ignore"):
        large = bool((magnitude > 1e6).any())
        small = bool(((magnitude < 10**-PRECISION) & (magnitude > 0)).any())
    if small or (too_long and large):
        out = with_format(f".{PRECISION}e", False)  # pandas trims these too: no 'e' matches its pattern
    return out


def _format_column(col: np.ndarray) -> list[str]:
    if col.dtype.kind == "f":
        return _format_floats(col)
    if col.dtype.kind in "iu":
        return [f"{x:d}" for x in col.tolist()]
    out = []
    for v in col.tolist():
        if v is None:
            out.append("None")
        elif isinstance(v, float) and v != v:
            out.append("NaN")
        else:
            out.append(str(v).replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n"))
    return out


def _fixed_width(strings: list[str], minimum: int) -> tuple[list[str], int]:
    if not strings:
        return strings, 0
    width = max(minimum, max(len(x) for x in strings))
    return [x.rjust(width) for x in strings], width


def to_text(table: Table, max_rows: int | None) -> str:
    """``DataFrame.to_string(index=False, max_rows=max_rows)`` of ``table``."""
    n = rows(table)
    if n == 0:
        return f"Empty DataFrame\nColumns: [{', '.join(table)}]\nIndex: []"
    truncated = bool(max_rows) and n > max_rows  # type: ignore[operator]
    row_num = 0
    index = np.arange(n)
    if truncated:
        assert max_rows is not None
        row_num = max_rows // 2
        if row_num >= 1:
            index = np.concatenate([np.arange(row_num), np.arange(n - row_num, n)])
        else:
            row_num = max_rows
            index = np.arange(max_rows)
    columns: list[list[str]] = []
    for name, values in table.items():
        header = f" {name}" if values.dtype.kind in "iufb" else name
        cells, width = _fixed_width(_format_column(values[index]), len(header))
        width = max(width, len(header))
        columns.append([header.rjust(width)] + cells)
    if truncated:
        for lines in columns:
            width = len(lines[row_num])
            lines.insert(row_num + 1, ("..." if width > 3 else "..").rjust(width))
    return _adjoin(columns)


def _adjoin(columns: list[list[str]]) -> str:
    widths = [max(map(len, c)) + 1 for c in columns[:-1]] + [max(map(len, columns[-1]))]
    padded = [[x.ljust(w) for x in c] for c, w in zip(columns, widths)]
    return "\n".join("".join(line) for line in zip(*padded))


def _csv_cells(col: np.ndarray) -> Iterable[str]:
    if col.dtype.kind in "fiub":
        text = col.astype(str)
        if col.dtype.kind == "f":
            text[np.isnan(col)] = ""
        return text.tolist()
    return ["" if (v is None or (isinstance(v, float) and v != v)) else str(v) for v in col.tolist()]


def to_csv(table: Table) -> str:
    """``DataFrame.to_csv(index=False)`` of ``table``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(table))
    if table:
        writer.writerows(zip(*(_csv_cells(c) for c in table.values())))
    return out.getvalue()
