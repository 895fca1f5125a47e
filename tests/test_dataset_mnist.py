"""MNIST dataset: IDX parsing, the standard deskew, documented overlaps, bundle, split, errors.

Runs on the real test set in ../shared/data/mnist (CI always has it: there its absence is an
error; a clone without ../shared skips those tests) and on the subset bundled with the package.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import affine_transform

from amsweep.pipeline.datasets import mnist
from amsweep.pipeline.datasets._deskew import deskew, moments
from amsweep.pipeline.datasets._idx import read_idx, write_idx
from tests.conftest import require_shared

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def real_dir() -> Path:
    return require_shared(REAL / "t10k-images-idx3-ubyte.gz").parent


def _params(**kw) -> dict:
    p = {k: v.default for k, v in mnist.PARAMS.items()}
    p.update(kw)
    return p


def _pair_means(X: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean overlap (1/N) xi . xi' over distinct pairs: all pairs, and pairs of one class (pooled)."""
    S = X.astype(np.float64)
    N = S.shape[1]

    def pair_sum(block: np.ndarray) -> tuple[float, int]:
        s = block.sum(axis=0)
        n = len(block)
        return (s @ s - n * N) / 2 / N, n * (n - 1) // 2

    total, pairs = pair_sum(S)
    within = [pair_sum(S[labels == k]) for k in np.unique(labels)]
    return total / pairs, sum(w for w, _ in within) / sum(n for _, n in within)


def test_full_file_labels_and_counts(real_dir: Path) -> None:
    X, labels, index = mnist.load(196, _params(path=str(real_dir)))
    assert X.shape == (10_000, 196) and X.dtype == np.int8
    assert np.bincount(labels, minlength=10).tolist() == CLASS_COUNTS
    assert np.array_equal(labels, read_idx(real_dir / "t10k-labels-idx1-ubyte.gz"))
    assert np.array_equal(index, np.arange(10_000))


def test_documented_mean_overlaps(real_dir: Path) -> None:
    """Deskew + central 14 x 14 + threshold 86, first 3,000 images: about 0.11 and 0.36.

    The numbers are a deterministic function of the file (no sampling error); docs/science.md
    quotes them to two decimals, so the tolerance is the rounding half-width 0.005. (This
    pipeline gives 0.1097 / 0.3561; bilinear instead of the standard cubic-spline deskew
    gives 0.104, outside the band.) Without deskew, same-class digits are less aligned:
    0.297 within a class, so deskew must raise it by well over the 0.005 tolerance.
    """
    X, labels, _ = mnist.load(196, _params(path=str(real_dir)))
    between, within = _pair_means(X[:3000], labels[:3000])
    assert abs(between - 0.11) < 0.005
    assert abs(within - 0.36) < 0.005
    X_raw, _, _ = mnist.load(196, _params(path=str(real_dir), deskew=False))
    _, within_raw = _pair_means(X_raw[:3000], labels[:3000])
    assert within - within_raw > 0.03


def _reference_deskew(image: np.ndarray) -> np.ndarray:
    """The widely used per-image recipe, with scipy's default cubic spline."""
    c0, c1 = np.mgrid[:28, :28]
    total = image.sum()
    m0, m1 = (c0 * image).sum() / total, (c1 * image).sum() / total
    alpha = ((c0 - m0) * (c1 - m1) * image).sum() / ((c0 - m0) ** 2 * image).sum()
    affine = np.array([[1.0, 0.0], [alpha, 1.0]])
    offset = np.array([m0, m1]) - affine @ np.array([14.0, 14.0])
    return affine_transform(image, affine, offset=offset)


def test_batched_deskew_matches_scipy_and_removes_slant(real_dir: Path) -> None:
    images = read_idx(real_dir / "t10k-images-idx3-ubyte.gz")[:300].astype(np.float64)
    ours = deskew(images)
    ref = np.stack([_reference_deskew(im) for im in images[:60]])
    np.testing.assert_allclose(ours[:60], ref, atol=1e-8)  # same spline, float64 rounding only
    # Physics of the map: slant alpha = cov(r, c) / var(r) drops from a median 0.16 to
    # ~0.002 (interpolation and border clipping leave a residue) and the centre of mass
    # moves to the grid centre (14, 14) within a fraction of a pixel (observed max 0.31).
    _, alpha_before = moments(images)
    centre, alpha_after = moments(np.clip(ours, 0.0, None))
    assert np.median(np.abs(alpha_after)) < np.median(np.abs(alpha_before)) / 20
    assert np.abs(centre - 14.0).max() < 0.5


def test_bundled_subset_is_the_real_prefix_with_listed_sha256(real_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)
    assert mnist.data_dir(_params()) == mnist.BUNDLED_DIR
    X_b, y_b, _ = mnist.load(784, _params())
    X_r, y_r, _ = mnist.load(784, _params(path=str(real_dir)))
    assert X_b.shape == (2000, 784)
    assert np.array_equal(X_b, X_r[:2000]) and np.array_equal(y_b, y_r[:2000])
    text = (mnist.BUNDLED_DIR / "SOURCES.md").read_text()
    bundled_table = text[text.index("| bundled file |") :]
    listed = re.findall(r"`(t10k-[\w-]+\.gz)`[^|]*\| `([0-9a-f]{64})` \| `([0-9a-f]{64})`", bundled_table)
    assert len(listed) == 2
    for name, sha_gz, sha_raw in listed:
        blob = (mnist.BUNDLED_DIR / name).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == sha_gz
        assert hashlib.sha256(gzip.decompress(blob)).hexdigest() == sha_raw
    total = sum(p.stat().st_size for p in mnist.BUNDLED_DIR.glob("t10k-*"))
    assert total < 1_000_000


def test_env_var_and_plain_idx_files(real_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$AMSWEEP_MNIST is used when path is empty; uncompressed IDX files read the same as gz."""
    images = read_idx(mnist.BUNDLED_DIR / "t10k-images-idx3-ubyte.gz")[:500]
    labels = read_idx(mnist.BUNDLED_DIR / "t10k-labels-idx1-ubyte.gz")[:500]
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    monkeypatch.setenv(mnist.ENV_VAR, str(tmp_path))
    X, y, _ = mnist.load(196, _params())
    assert X.shape == (500, 196)
    assert np.array_equal(X, mnist.load(196, _params(path=str(real_dir)))[0][:500])
    assert np.array_equal(y, labels)


def test_make_draws_disjoint_labelled_subsets(real_dir: Path) -> None:
    p = _params(path=str(real_dir), digits="01")  # 980 + 1135 = 2115 images for 2100 draws
    data = mnist.make(784, 1500, 600, p, np.random.default_rng(0))
    X_all = mnist.load(784, _params(path=str(real_dir)))[0]
    file_labels = read_idx(real_dir / "t10k-labels-idx1-ubyte.gz")
    tr, te = data.meta["train_index"], data.meta["test_index"]
    assert data.train.shape == (1500, 784) and data.test.shape == (600, 784) and data.train.dtype == np.int8
    assert len(np.intersect1d(tr, te)) == 0 and len(np.unique(tr)) == 1500
    assert np.array_equal(data.train, X_all[tr]) and np.array_equal(data.test, X_all[te])
    assert np.array_equal(data.meta["train_labels"], file_labels[tr]) and np.array_equal(
        data.meta["test_labels"], file_labels[te]
    )
    assert set(np.unique(data.meta["train_labels"])) == {0, 1}
    again = mnist.make(784, 1500, 600, p, np.random.default_rng(0))
    assert np.array_equal(again.train, data.train)


def test_preprocessing_is_cached_per_process(real_dir: Path) -> None:
    p = _params(path=str(real_dir))
    mnist.load(196, p)
    hits = mnist._binarised.cache_info().hits
    mnist.load(196, dict(p))
    assert mnist._binarised.cache_info().hits == hits + 1
    key = (mnist._stamp(real_dir / "t10k-images-idx3-ubyte.gz"), mnist._stamp(real_dir / "t10k-labels-idx1-ubyte.gz"))
    assert mnist._binarised(*key, 14, True, 86.0) is mnist._binarised(*key, 14, True, 86.0)


def test_check_rejects_what_cannot_be_served(real_dir: Path, tmp_path: Path) -> None:
    ok = _params(path=str(real_dir))
    mnist.check(196, 9000, 1000, ok)
    mnist.check(784, 800, 92, _params(path=str(real_dir), digits="5"))  # exactly the 892 fives
    with pytest.raises(ValueError, match="N in \\[196, 784\\]"):
        mnist.check(100, 10, 10, ok)
    with pytest.raises(ValueError, match="exceeds the 892 images"):
        mnist.check(196, 800, 93, _params(path=str(real_dir), digits="5"))
    with pytest.raises(ValueError, match="exceeds the 10000 images"):
        mnist.check(196, 10_000, 1, ok)
    with pytest.raises(ValueError, match="digits"):
        mnist.check(196, 10, 10, _params(path=str(real_dir), digits="1a"))
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match=re.escape(str(missing))):
        mnist.check(196, 10, 10, _params(path=str(missing)))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
        mnist.check(196, 10, 10, _params(path=str(real_dir), split="train"))
    # malformed: a bad magic, a truncated payload, labels that do not match the images
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "t10k-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04junk")
    write_idx(bad / "t10k-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match=re.escape(str(bad / "t10k-images-idx3-ubyte")) + ".*magic"):
        mnist.check(196, 1, 1, _params(path=str(bad)))
    (bad / "t10k-images-idx3-ubyte").write_bytes(
        bytes([0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 28, 0, 0, 0, 28]) + b"\0" * 100
    )
    with pytest.raises(ValueError, match="holds 116 bytes"):
        mnist.check(196, 1, 1, _params(path=str(bad)))
    write_idx(bad / "t10k-images-idx3-ubyte", np.zeros((6, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="label file"):
        mnist.check(196, 1, 1, _params(path=str(bad)))
    (bad / "t10k-images-idx3-ubyte").unlink()
    (bad / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="cannot read IDX file"):
        mnist.check(196, 1, 1, _params(path=str(bad)))
