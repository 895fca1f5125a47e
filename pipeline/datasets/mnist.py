"""Binarised MNIST digits: the structured dataset of the memorization/generalization papers.

Preprocessing follows the papers: moment deskew, central 14 x 14 crop (N = 196) or the full
28 x 28 image (N = 784), pixel > threshold -> +1 else -1. Every cell of a sweep needs the
same 10,000 preprocessed images, so loading and preprocessing are cached per process, keyed
by the files (path and modification time) and the preprocessing parameters.

Where the files come from: the ``path`` parameter (a directory or any fsspec URL of one, e.g.
``s3://bucket/mnist``; see ``amsweep.pipeline.datafiles``); if empty, the environment variable
``AMSWEEP_MNIST``; if unset, the subset bundled with the package (the first 2,000 test
images, see ``bundled/SOURCES.md``), so tests and default sweeps run without a download.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from amsweep.pipeline import datafiles
from amsweep.pipeline.datasets._deskew import deskew as _deskew_stack
from amsweep.pipeline.datasets._idx import read_idx
from amsweep.pipeline.model import Data, Param

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
SIDES: dict[int, int] = {196: 14, 784: 28}  # N -> side of the square crop
ENV_VAR = "AMSWEEP_MNIST"

PARAMS: dict[str, Param] = {
    "path": Param(
        "",
        str,
        f"directory (or fsspec URL of one) of the IDX files; '' = ${ENV_VAR} if set, "
        "else the bundled 2,000-image subset",
    ),
    "split": Param(
        "t10k",
        str,
        "which IDX pair to read: t10k-* (test set, 10,000 images) or train-* (60,000)",
        choices=("t10k", "train"),
    ),
    "threshold": Param(86.0, float, "pixel value (0..255, after deskew) above which a site is +1", low=0.0, high=255.0),
    "digits": Param("0123456789", str, "class filter: the digits to keep, e.g. '01'"),
    "deskew": Param(True, bool, "straighten each digit by its intensity moments before cropping"),
}
META = ("train_labels", "test_labels", "train_index", "test_index")


def data_dir(params: dict) -> Path | str:
    """The directory (or URL) the IDX files are read from, after the path / env / bundle fallback."""
    chosen = params["path"] or os.environ.get(ENV_VAR, "")
    if datafiles.is_url(chosen):
        return chosen
    return Path(chosen).expanduser() if chosen else BUNDLED_DIR


def _find(directory: Path | str, stem: str) -> str:
    """``stem`` or ``stem.gz`` in ``directory``; a ValueError naming both if neither exists."""
    for name in (stem + ".gz", stem):
        candidate = datafiles.join(directory, name)
        if datafiles.exists(candidate):
            return candidate
    raise ValueError(f"MNIST file {datafiles.join(directory, stem)}[.gz] not found (set param 'path' or ${ENV_VAR})")


def data_files(params: dict) -> list[str]:
    """The image and label files this dataset reads (local paths or URLs)."""
    directory = data_dir(params)
    if not datafiles.is_url(directory) and not Path(directory).is_dir():
        raise ValueError(
            f"MNIST directory {directory} does not exist or is not a directory (set param 'path' or ${ENV_VAR})"
        )
    split = params["split"]
    return [_find(directory, f"{split}-images-idx3-ubyte"), _find(directory, f"{split}-labels-idx1-ubyte")]


def with_data_folder(params: dict, folder: Path) -> dict:
    """The same data read from ``folder``, which holds the files of ``data_files`` by name."""
    return {**params, "path": str(folder)}


def _files(params: dict) -> tuple[Path, Path]:
    """Local copies of the image and label files (a URL is fetched once per node)."""
    images, labels = data_files(params)
    return datafiles.local(images), datafiles.local(labels)


def _stamp(path: Path) -> tuple[str, int, int]:
    """Cache key of a file: a replaced or rewritten file is read again."""
    st = path.stat()
    return str(path.resolve()), st.st_mtime_ns, st.st_size


@lru_cache(maxsize=2)
def _raw(images_key: tuple[str, int, int], labels_key: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Validated (n, 28, 28) uint8 images and (n,) uint8 labels."""
    images = read_idx(images_key[0])
    labels = read_idx(labels_key[0])
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"malformed MNIST image file {images_key[0]}: expected uint8 (n, 28, 28), got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"malformed MNIST label file {labels_key[0]}: expected uint8 ({images.shape[0]},) to match "
            f"{images_key[0]}, got {labels.dtype} {labels.shape}"
        )
    if labels.size and labels.max() > 9:
        raise ValueError(f"malformed MNIST label file {labels_key[0]}: label {labels.max()} outside 0..9")
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


@lru_cache(maxsize=8)
def _binarised(
    images_key: tuple[str, int, int], labels_key: tuple[str, int, int], side: int, deskew: bool, threshold: float
) -> np.ndarray:
    """All images preprocessed to +-1 int8 (n, side * side), read-only because it is shared."""
    images, _ = _raw(images_key, labels_key)
    pixels = _deskew_stack(images) if deskew else images.astype(np.float64)
    lo = (28 - side) // 2
    crop = pixels[:, lo : lo + side, lo : lo + side].reshape(len(images), side * side)
    X = np.where(crop > threshold, 1, -1).astype(np.int8)
    X.flags.writeable = False
    return X


def _digits(params: dict) -> np.ndarray:
    text = params["digits"]
    if not text or any(c not in "0123456789" for c in text) or len(set(text)) != len(text):
        raise ValueError(f"MNIST param digits={text!r} must be distinct characters from '0123456789'")
    return np.array(sorted(int(c) for c in text), dtype=np.uint8)


def load(N: int, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every image passing the class filter: (X (n, N) int8, labels (n,) uint8, file index (n,)).

    Arrays are in file order, so the first k rows are the first k matching images of the file.
    """
    if N not in SIDES:
        raise ValueError(f"MNIST offers N in {sorted(SIDES)} (14 x 14 crop or 28 x 28), got N={N}")
    images_path, labels_path = _files(params)
    keys = (_stamp(images_path), _stamp(labels_path))
    _, labels = _raw(*keys)
    X = _binarised(*keys, SIDES[N], bool(params["deskew"]), float(params["threshold"]))
    index = np.flatnonzero(np.isin(labels, _digits(params)))
    return X[index], labels[index], index


def check(N: int, P: int, P_test: int, params: dict) -> None:
    """N must be 196 or 784, the files must exist and parse, and hold P + P_test images of the chosen digits."""
    if N not in SIDES:
        raise ValueError(f"MNIST offers N in {sorted(SIDES)} (14 x 14 crop or 28 x 28), got N={N}")
    digits = _digits(params)
    images_path, labels_path = _files(params)
    _, labels = _raw(_stamp(images_path), _stamp(labels_path))
    available = int(np.isin(labels, digits).sum())
    if P + P_test > available:
        raise ValueError(
            f"MNIST: P + P_test = {P + P_test} exceeds the {available} images of digits "
            f"{params['digits']!r} in {images_path}"
        )


def make(N: int, P: int, P_test: int, params: dict, rng: np.random.Generator) -> Data:
    """Disjoint random train and test subsets of the preprocessed images."""
    check(N, P, P_test, params)
    X, labels, index = load(N, params)
    pick = rng.choice(len(X), size=P + P_test, replace=False)
    train, test = pick[:P], pick[P:]
    return Data(
        train=X[train],
        test=X[test],
        q=2,
        meta={
            "train_labels": labels[train].astype(np.int8),
            "test_labels": labels[test].astype(np.int8),
            "train_index": index[train],
            "test_index": index[test],
        },
    )
