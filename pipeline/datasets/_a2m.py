"""Reader of A2M / aligned FASTA multiple sequence alignments into Potts states.

A2M (the format of Pfam and HMMER alignments): uppercase letters and '-' are match columns,
present in every record; lowercase letters and '.' are insertions relative to the profile
and are dropped, so every record reduces to the same number of match columns. Plain aligned
FASTA (uppercase and '-' only) is the special case without insertions.

Alphabet: 21 Potts states, the gap '-' = 0 and the 20 amino acids in alphabetical order of
their one-letter codes. The ambiguous or rare codes X (unknown), B (D/N), Z (E/Q), J (I/L),
U (selenocysteine) and O (pyrrolysine) become the gap state, as in plmDCA: they are a few
per ten thousand residues in Pfam and would otherwise each need a state with no statistics.
"""

from __future__ import annotations

import gzip
import string
from pathlib import Path

import numpy as np

ALPHABET = "-ACDEFGHIKLMNPQRSTVWY"
GAP = 0
Q = len(ALPHABET)
UNUSUAL = "XBZJUO"
_INSERTIONS = (string.ascii_lowercase + ".").encode()
_WHITESPACE = b" \t\r\n"


def _lookup() -> np.ndarray:
    """Byte -> state table; -1 marks a byte no match column may hold."""
    table = np.full(256, -1, dtype=np.int8)
    for state, letter in enumerate(ALPHABET):
        table[ord(letter)] = state
    for letter in UNUSUAL:
        table[ord(letter)] = GAP
    return table


_TABLE = _lookup()


def read_bytes(path: Path) -> bytes:
    """File content, gunzipped when it starts with the gzip magic number (whatever its name)."""
    raw = Path(path).read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def parse(raw: bytes, source: str = "<bytes>") -> tuple[tuple[str, ...], np.ndarray]:
    """Record names and (M, L) int8 states of the match columns of an A2M/FASTA text.

    Raises ValueError on an empty alignment, text before the first header, records with
    different numbers of match columns (not an alignment) or characters outside the format.
    """
    chunks = raw.split(b">")
    if chunks[0].strip():
        raise ValueError(f"{source}: text before the first '>' header; not A2M/FASTA")
    records = chunks[1:]
    if not records:
        raise ValueError(f"{source}: no '>' record found; not A2M/FASTA")
    names: list[str] = []
    seqs: list[bytes] = []
    for rec in records:
        header, _, body = rec.partition(b"\n")
        names.append(header.strip().decode("ascii", errors="replace"))
        seqs.append(body.translate(None, _WHITESPACE + _INSERTIONS))
    L = len(seqs[0])
    bad = next((k for k, s in enumerate(seqs) if len(s) != L), None)
    if bad is not None:
        raise ValueError(
            f"{source}: record {bad + 1} ({names[bad]!r}) has {len(seqs[bad])} match columns, "
            f"the first record has {L}; uppercase letters and '-' must line up in every record"
        )
    if L == 0:
        raise ValueError(f"{source}: the records have no match column (uppercase letter or '-')")
    codes = np.frombuffer(b"".join(seqs), dtype=np.uint8).reshape(len(seqs), L)
    states = _TABLE[codes]
    if np.any(states < 0):
        m, i = np.argwhere(states < 0)[0]
        raise ValueError(
            f"{source}: record {m + 1} ({names[m]!r}) holds {chr(codes[m, i])!r} in match column "
            f"{i + 1}; allowed: {ALPHABET[1:]}, {UNUSUAL} (read as gap), '-', and lowercase/'.' insertions"
        )
    return tuple(names), states


def read_a2m(path: Path) -> tuple[tuple[str, ...], np.ndarray]:
    """Parse an A2M/FASTA file (plain or gzip) into record names and match-column states."""
    return parse(read_bytes(path), str(path))
