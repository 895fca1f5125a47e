"""Stable random streams keyed by coordinate values.

A cell's numbers must not depend on which worker ran it, in which order, or after how many
resumes; so every stream is seeded from the root seed and a hash of coordinate *values*
(never positions, never Python's salted ``hash``). Streams are split by purpose so that the
same data and the same corrupted starts are shared by every rule: comparisons between rules
are paired, which removes sampling noise from rule-versus-rule differences.

A small cell opens ten streams, and ``np.random.default_rng([root, key])`` cost ~17 us each
(~0.17 ms of a ~1.5 ms cell): converting the 128-bit key to words in Python, and numpy's
``SeedSequence.generate_state`` under an ``np.errstate`` decorator (~5 us of its ~7). ``stream``
builds the same generator from the same words and the same hash (``_Seeds``, its output hash a
numba kernel) and checks at import that it equals ``default_rng`` (it falls back to it otherwise).
Measured in one process at load ~11 (best of 9 x 10^4 streams): 18.6 us against default_rng's 30.5
(the key included in both), and 19.4 against 27.7 with the Python-int output hash it had before.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import numpy as np
from numba import njit

__all__ = ["stable_key", "stream"]

_M32 = 0xFFFFFFFF
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED  # numpy's SeedSequence output hash (O'Neill's seed_seq_fe)


def _json(parts: tuple[Any, ...]) -> str:
    """``json.dumps(parts, sort_keys=True, default=str)``, without the encoder's setup for the
    usual parts (str, int, finite float); anything else goes through ``json.dumps`` itself."""
    out = []
    for p in parts:
        kind = type(p)
        if kind is str:
            out.append(json.encoder.encode_basestring_ascii(p))  # what ensure_ascii=True writes
        elif kind is int:
            out.append(int.__repr__(p))
        elif kind is float and p - p == 0.0:  # finite (json writes NaN and Infinity its own way)
            out.append(float.__repr__(p))
        else:
            return json.dumps(parts, sort_keys=True, default=str)
    return "[" + ", ".join(out) + "]"


def stable_key(*parts: Any) -> int:
    """128-bit integer from JSON-encoded parts; identical on every machine and Python version."""
    digest = hashlib.sha256(_json(parts).encode()).digest()
    return int.from_bytes(digest[:16], "little")


def _words(n: int) -> list[int]:
    """The little-endian 32-bit words SeedSequence makes of a non-negative int (one word for 0)."""
    out = [n & _M32]
    n >>= 32
    while n:
        out.append(n & _M32)
        n >>= 32
    return out


def _hash_constants(n: int) -> list[int]:
    """The output hash's multipliers, h_0 = INIT_B, h_{i+1} = h_i MULT_B mod 2^32 (they depend on i only)."""
    out = [_INIT_B]
    for _ in range(n):
        out.append((out[-1] * _MULT_B) & _M32)
    return out


_H = np.array(_hash_constants(8), dtype=np.uint64)  # enough for the 4 uint64 words PCG64 asks for


@njit(cache=True)
def _output_hash(pool: np.ndarray, h: np.ndarray, out: np.ndarray) -> None:
    """numpy's output hash, word i: v = (pool[i % size] ^ h_i) h_{i+1} mod 2^32; v ^ (v >> 16).

    One kernel call, ~0.6 us, where the same loop on Python ints with numpy's array conversions
    took ~2.5 us of each of a small cell's 8 streams (issue 26)."""
    size = pool.shape[0]
    for i in range(out.shape[0]):
        v = ((np.uint64(pool[i % size]) ^ h[i]) * h[i + 1]) & np.uint64(0xFFFFFFFF)
        out[i] = np.uint32(v ^ (v >> np.uint64(16)))


class _Seeds(np.random.SeedSequence):
    """numpy's SeedSequence (same pool, same output hash) whose ``generate_state`` skips the
    ``np.errstate`` decorator: the uint32 arithmetic is a numba kernel's, on uint64 masked to 32 bits."""

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> np.ndarray:
        wide = np.dtype(dtype) == np.dtype(np.uint64)
        if not wide and np.dtype(dtype) != np.dtype(np.uint32):
            raise ValueError("only support uint32 or uint64")
        n = 2 * n_words if wide else n_words
        h = _H if n < len(_H) else np.array(_hash_constants(n), dtype=np.uint64)
        if wide and sys.byteorder != "little":  # numpy joins the words little-endian first
            words = np.empty(n, np.uint32)
            _output_hash(self.pool, h, words)
            return words.astype("<u4").view("<u8").astype(np.uint64)
        out = np.empty(n_words, np.uint64 if wide else np.uint32)
        _output_hash(self.pool, h, out.view(np.uint32))  # uint64 word i is words 2i (low), 2i + 1
        return out


def _fast_stream(root_seed: int, key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(_Seeds(np.array(_words(root_seed) + _words(key), dtype=np.uint32))))


def _fast_is_exact() -> bool:
    """Whether ``_fast_stream`` gives ``default_rng``'s generator here (this numpy's SeedSequence)."""
    for root, key in ((0, 0), (1, 2**127 + 12345), (2**40 + 7, stable_key("check", 1, 0.5))):
        a, b = np.random.default_rng([root, key]), _fast_stream(root, key)
        if a.bit_generator.state != b.bit_generator.state or a.random(4).tolist() != b.random(4).tolist():
            return False
    return True


_FAST = _fast_is_exact()


def stream(root_seed: int, *parts: Any) -> np.random.Generator:
    """Independent Generator for one purpose of one cell: ``default_rng([root_seed, stable_key(*parts)])``."""
    key = stable_key(*parts)
    if _FAST and type(root_seed) is int and root_seed >= 0:
        return _fast_stream(root_seed, key)
    return np.random.default_rng([root_seed, key])
