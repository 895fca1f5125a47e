"""Stable random streams keyed by coordinate values.

A cell's numbers must not depend on which worker ran it, in which order, or after how many
resumes; so every stream is seeded from the root seed and a hash of coordinate *values*
(never positions, never Python's salted ``hash``). Streams are split by purpose so that the
same data and the same corrupted starts are shared by every rule: comparisons between rules
are paired, which removes sampling noise from rule-versus-rule differences.

A small cell opens ten streams, and ``np.random.default_rng([root, key])`` cost ~17 us each
(~0.17 ms of a ~1.5 ms cell): converting the 128-bit key to words in Python, and numpy's
``SeedSequence.generate_state`` under an ``np.errstate`` decorator (~5 us of its ~7). ``stream``
builds the same generator from the same words and the same hash (``_Seeds``), ~2x cheaper, and
checks at import that it equals ``default_rng`` (it falls back to it otherwise).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

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


_H = _hash_constants(8)  # enough for the 4 uint64 words PCG64 asks for


class _Seeds(np.random.SeedSequence):
    """numpy's SeedSequence (same pool, same output hash) whose ``generate_state`` skips the
    ``np.errstate`` decorator: uint32 arithmetic is done on Python ints masked to 32 bits."""

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> np.ndarray:
        wide = np.dtype(dtype) == np.dtype(np.uint64)
        if not wide and np.dtype(dtype) != np.dtype(np.uint32):
            raise ValueError("only support uint32 or uint64")
        n = 2 * n_words if wide else n_words
        h = _H if n < len(_H) else _hash_constants(n)
        pool = self.pool.tolist()
        size = len(pool)
        state = []
        for i in range(n):  # numpy: v ^= h_i; v *= h_{i+1}; v ^= v >> 16 (uint32)
            v = ((pool[i % size] ^ h[i]) * h[i + 1]) & _M32
            state.append(v ^ (v >> 16))
        words = np.array(state, dtype="<u4")
        return words.view("<u8").astype(np.uint64) if wide else words.astype(np.uint32)


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
