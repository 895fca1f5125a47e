"""The proteins dataset: A2M parsing, gap filters, plmDCA weights, the bundled subset.

Known answers come from the real Pfam PF00014 (Kunitz/BPTI) alignment: 4,914 records, a
53-column profile, and the domain's three disulfide bonds (six conserved cysteines).
The real file must be present: these tests fail, not skip, without it.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest

from amsweep.pipeline.datasets import _a2m, proteins
from tests.conftest import require_shared

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "proteins" / "PF00014.a2m.gz"
DEFAULTS = {name: p.default for name, p in proteins.PARAMS.items()}


def params(**kw) -> dict:
    return {**DEFAULTS, "path": str(REAL), **kw}


@pytest.fixture(scope="module")
def real() -> tuple[tuple[str, ...], np.ndarray]:
    return _a2m.read_a2m(require_shared(REAL))


def test_real_file_records_and_match_columns(real):
    names, states = real
    text = gzip.decompress(REAL.read_bytes()).decode()
    # independent count: every record's uppercase letters and '-' (match columns)
    bodies = [b.split("\n", 1)[1] for b in text.split(">")[1:]]
    lengths = {len(re.sub(r"[^A-Z-]", "", b)) for b in bodies}
    assert len(names) == len(bodies) == 4914 and states.shape == (4914, 53) and lengths == {53}
    assert states.dtype == np.int8 and states.min() == 0 and states.max() == 20
    # gap state = '-' plus the rare uppercase codes read as gap (X 7 times, B once here)
    expected_gaps = sum(len(re.findall(r"[-XBZJUO]", b)) for b in bodies)
    assert (states == _a2m.GAP).sum() == expected_gaps == 9735 + 8
    assert names[0] == "H0ZLV2_TAEGU/132-184"


def test_kunitz_domain_has_six_conserved_cysteines(real):
    # The Kunitz fold is held by three disulfide bonds (BPTI C5-C55, C14-C38, C30-C51):
    # six columns are cysteine in most sequences and the others almost never.
    fam = proteins.family(params())
    cys = (fam.states == _a2m.ALPHABET.index("C")).mean(axis=0)
    assert np.sum(cys > 0.8) == 6
    assert np.all(np.sort(cys)[:-6] < 0.05)


def test_gap_filters_keep_exactly_the_columns_and_sequences_below_threshold(real):
    _, states = real
    gap_col = (states == _a2m.GAP).mean(axis=0)
    assert proteins.natural_N(params()) == 53  # default 0.5 keeps the whole profile
    for t in (0.05, 0.2, 0.4, 0.5):
        fam = proteins.family(params(max_gap_column=t, deduplicate=False, max_gap_sequence=1.0))
        assert np.array_equal(fam.columns, np.flatnonzero(gap_col <= t))
        assert fam.states.shape == (4914, np.sum(gap_col <= t))
    # the two ends of the domain are the gappiest columns (37% and 44% gaps)
    assert proteins.natural_N(params(max_gap_column=0.4)) == 52
    assert proteins.natural_N(params(max_gap_column=0.3)) == 51
    counts = []
    for t in (1.0, 0.5, 0.3, 0.1):
        fam = proteins.family(params(max_gap_sequence=t, deduplicate=False))
        seq_gap = (states[fam.records] == _a2m.GAP).mean(axis=1)
        dropped = np.setdiff1d(np.arange(4914), fam.records)
        assert np.all(seq_gap <= t) and np.all((states[dropped] == _a2m.GAP).mean(axis=1) > t)
        counts.append(fam.states.shape[0])
    assert counts[:2] == [4914, 4906] and counts == sorted(counts, reverse=True)
    dedup = proteins.family(params())
    assert len(np.unique(dedup.states, axis=0)) == dedup.states.shape[0] < counts[1]


def test_bundled_subset_equals_the_first_records_of_the_real_file(real, monkeypatch):
    monkeypatch.delenv(proteins.ENV_PATH, raising=False)
    assert proteins.resolve_path(DEFAULTS) == proteins.BUNDLED.resolve()
    names, states = _a2m.read_a2m(proteins.BUNDLED)
    assert len(names) == 1000
    assert names == real[0][:1000] and np.array_equal(states, real[1][:1000])
    monkeypatch.setenv(proteins.ENV_PATH, str(REAL))
    assert proteins.family(DEFAULTS).n_records == 4914


def test_parser_drops_insertions_and_reads_rare_letters_as_gap(tmp_path):
    text = ">s1 first\nACd.e-Y\n>s2\nXB\n-..uO\n"  # s2 spans two lines
    i = _a2m.ALPHABET.index
    for name, data in (("a.fasta", text.encode()), ("a.a2m.gz", gzip.compress(text.encode()))):
        (tmp_path / name).write_bytes(data)
        names, states = _a2m.read_a2m(tmp_path / name)
        assert names == ("s1 first", "s2")
        assert states.tolist() == [[i("A"), i("C"), 0, i("Y")], [0, 0, 0, 0]]
    names, states = _a2m.parse(b">a\nAC-Y\n>b\nXBZJ\n>c\nU-Ow-\n")
    assert states.tolist() == [[i("A"), i("C"), 0, i("Y")], [0, 0, 0, 0], [0, 0, 0, 0]]
    with pytest.raises(ValueError, match="record 2"):
        _a2m.parse(b">a\nACD\n>b\nAC\n")
    with pytest.raises(ValueError, match="'\\*'"):
        _a2m.parse(b">a\nAC*\n")


def test_sequence_weights_count_neighbours_above_theta(tmp_path):
    base = "ACDEFGHIKL"
    seqs = [
        base,
        base,
        base,  # three identical: weight 1/3 each
        "ACDEFGHIWW",  # 8/10 = 80% identical to base: not above 0.8
        "MNPQRSTVWY",  # unrelated
        "MNPQRSTVWA",
    ]  # 90% identical to the one above: pair, 1/2 each
    path = tmp_path / "w.fasta"
    path.write_text("".join(f">s{k}\n{s}\n" for k, s in enumerate(seqs)))
    w = proteins.weights({**DEFAULTS, "path": str(path), "deduplicate": False})
    assert np.allclose(w, [1 / 3, 1 / 3, 1 / 3, 1.0, 0.5, 0.5])
    fam = proteins.family({**DEFAULTS, "path": str(path)})
    assert fam.states.shape == (4, 10) and list(fam.records) == [0, 3, 4, 5]


def test_reweighted_draws_follow_the_weights(tmp_path):
    # 9 distinct near-copies of one sequence (90% identical to each other, weight 1/9 each)
    # and 9 unrelated sequences (weight 1): a weighted draw picks the cluster with
    # probability 1/(1 + 9) = 0.1, a uniform draw with probability 0.5.
    rng = np.random.default_rng(0)
    aa = np.array(list(_a2m.ALPHABET[1:]))
    core = rng.choice(aa, 40)
    cluster = []
    for k in range(9):
        s = core.copy()
        s[k] = "W" if s[k] != "W" else "Y"  # one site differs from the core: 39/40 identity
        cluster.append("".join(s))
    loners = ["".join(rng.choice(aa, 40)) for _ in range(9)]
    path = tmp_path / "c.fasta"
    path.write_text("".join(f">s{k}\n{s}\n" for k, s in enumerate(cluster + loners)))
    p = {**DEFAULTS, "path": str(path), "reweight": True}
    assert np.allclose(proteins.weights(p), [1 / 9] * 9 + [1.0] * 9)
    draws = np.array([proteins.make(40, 1, 0, p, rng).meta["train_index"][0] for _ in range(2000)])
    frac = np.mean(draws < 9)
    assert abs(frac - 0.1) < 5 * np.sqrt(0.1 * 0.9 / 2000)  # 5 sigma of a binomial frequency
    uniform = np.array(
        [proteins.make(40, 1, 0, {**p, "reweight": False}, rng).meta["train_index"][0] for _ in range(2000)]
    )
    assert abs(np.mean(uniform < 9) - 0.5) < 5 * np.sqrt(0.25 / 2000)


def test_check_refuses_wrong_n_too_many_examples_and_missing_file(tmp_path):
    p = params(path=str(proteins.BUNDLED))  # the shipped subset: runs on every clone
    M = proteins.family(p).states.shape[0]
    proteins.check(53, M - 100, 100, p)
    with pytest.raises(ValueError, match="offers only N = 53"):
        proteins.check(52, 10, 10, p)
    with pytest.raises(ValueError, match=f"exceeds the {M} sequences"):
        proteins.check(53, M, 1, p)
    with pytest.raises(ValueError, match="does not exist"):
        proteins.check(53, 10, 10, params(path=str(tmp_path / "none.a2m")))


def test_make_draws_disjoint_deterministic_potts_examples():
    p = params(path=str(proteins.BUNDLED))
    fam = proteins.family(p)
    d = proteins.make(53, 300, 100, p, np.random.default_rng(3))
    assert d.q == 21 and d.train.shape == (300, 53) and d.test.shape == (100, 53)
    assert d.train.dtype == np.int8 and d.train.min() >= 0 and d.train.max() <= 20
    assert not set(d.meta["train_index"]) & set(d.meta["test_index"])
    assert np.array_equal(d.train, fam.states[d.meta["train_index"]])
    # duplicates were removed, so no test sequence equals a training sequence
    assert not (d.test[:, None, :] == d.train[None, :, :]).all(axis=2).any()
    assert d.meta["train_weights"].shape == (300,) and np.all(d.meta["train_weights"] <= 1)
    again = proteins.make(53, 300, 100, p, np.random.default_rng(3))
    assert np.array_equal(again.train, d.train) and np.array_equal(again.test, d.test)
