"""The installed namespace: amsweep.* from a wheel, beside distributions that own the bare names.

The repository keeps pipeline/, storage/, analysis/ and sweeps/ at its top but installs them as
amsweep.pipeline, ... (pyproject's package-dir mapping). Each bare name is a distribution of its
own on the package index (`sweeps` is Weights & Biases' sweep engine), so the wheel must neither
install nor import them. The stand-ins built here own those names the way such a distribution
would: a top-level package of that name, installed into the same site-packages.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import os
import pkgutil
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
BARE = ("pipeline", "storage", "analysis", "sweeps")


def test_every_package_folder_is_listed_for_the_wheel():
    """A new subpackage folder missing from pyproject's list would be left out of the wheel."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {folder: package for package, folder in setuptools["package-dir"].items()}

    def package_of(folder: Path) -> str:  # the mapping of the folder or of the nearest one above
        parts = folder.relative_to(REPO).parts
        for n in range(len(parts), 0, -1):
            if "/".join(parts[:n]) in folders:
                return ".".join([folders["/".join(parts[:n])], *parts[n:]])
        raise AssertionError(f"{folder} is not under a package-dir folder")

    found = {
        package_of(init.parent)
        for top in (*BARE, "amsweep")  # amsweep/: the top package alone (the Python API)
        for init in (REPO / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found == set(setuptools["packages"])


def test_public_modules_declare_what_they_export():
    """Every public module of pipeline, storage and analysis says its API in ``__all__`` (and each
    name there exists); components (rules, datasets, dynamics) are described by their contract."""
    missing = []
    for package in ("amsweep.pipeline", "amsweep.storage", "amsweep.analysis"):
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
            if info.name.startswith("_") or info.ispkg:
                continue
            module = importlib.import_module(f"{package}.{info.name}")
            names = getattr(module, "__all__", None)
            if names is None:
                missing.append(module.__name__)
            else:
                missing += [f"{module.__name__}.{n}" for n in names if not hasattr(module, n)]
    assert not missing


def test_no_module_sets_a_global_plotting_backend():
    """Figures are drawn on matplotlib.figure.Figure objects: importing amsweep must not switch a
    user's backend (matplotlib.use) or start pyplot's global figure manager."""
    offenders = [
        f"{path.relative_to(REPO)}"
        for top in BARE
        for path in (REPO / top).rglob("*.py")
        if re.search(r"matplotlib\.use\(|import matplotlib\.pyplot|from matplotlib import pyplot", path.read_text())
    ]
    assert not offenders


def _standin_wheel(name: str, out: Path) -> Path:
    """A minimal wheel owning the top-level package ``name`` (PEP 427 layout, RECORD with hashes)."""
    files = {
        f"{name}/__init__.py": f"OWNER = 'standin-{name}'\n",
        f"standin_{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: standin-{name}\nVersion: 1.0\n",
        f"standin_{name}-1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"standin_{name}-1.0.dist-info/top_level.txt": f"{name}\n",
    }
    record = [
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
        f"{len(text.encode())}"
        for path, text in files.items()
    ]
    files[f"standin_{name}-1.0.dist-info/RECORD"] = (
        "\n".join([*record, f"standin_{name}-1.0.dist-info/RECORD,,"]) + "\n"
    )
    wheel = out / f"standin_{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return wheel


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_wheel_runs_the_quickstart_beside_packages_owning_the_bare_names(tmp_path):
    wheels, source = tmp_path / "wheels", tmp_path / "source"
    wheels.mkdir()
    # A copy of what the sdist holds: setuptools builds in the source tree (build/, *.egg-info).
    for top in (*BARE, "amsweep"):  # amsweep/: the top package's __init__.py and links to the others
        shutil.copytree(REPO / top, source / top, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)])
    built = list(wheels.glob("amsweep-*.whl"))
    assert len(built) == 1
    with zipfile.ZipFile(built[0]) as z:
        tops = {n.split("/")[0] for n in z.namelist() if not n.split("/")[0].endswith(".dist-info")}
        assert tops == {"amsweep"}, tops  # nothing installed under a bare name
        assert "amsweep/sweeps/quickstart.toml" in z.namelist()
        assert "amsweep/analysis/amsweep.mplstyle" in z.namelist()  # every figure is drawn in it
        assert "amsweep/testing/suite.py" in z.namelist()  # the plug-in authors' conformance kit
        assert not any(n.startswith("amsweep/pipeline/testing/") for n in z.namelist())  # once, by its name
    standins = [_standin_wheel(name, wheels) for name in BARE]

    # A fresh environment: the wheel and the stand-ins installed into it; the third-party
    # dependencies (numpy, ray, ...) read from this interpreter's site-packages through a plain
    # path entry, so no editable install of amsweep is visible there (its .pth hook is not run).
    env_dir = tmp_path / "fresh"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)])
    python = env_dir / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    Path(purelib, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index"]
        + [str(w) for w in [*built, *standins]]
    )

    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH"}}
    where = _run(
        [
            str(python),
            "-c",
            "import amsweep.sweeps.cli as c, amsweep.testing, sweeps, storage, pipeline, analysis as a; "
            "print(c.__file__); print(sweeps.OWNER, storage.OWNER, pipeline.OWNER, a.OWNER); "
            "import amsweep; print(amsweep.__file__, amsweep.run.__module__)",
        ],
        cwd=tmp_path,
        env=env,
    ).stdout.splitlines()
    assert where[0].startswith(purelib), where  # amsweep from the wheel, not the repository
    assert where[1] == "standin-sweeps standin-storage standin-pipeline standin-analysis"
    assert where[2].startswith(purelib) and where[2].endswith(" amsweep.sweeps.api"), where  # `amsweep.run`

    # The README's quickstart, through the wheel's console script (local Ray, cube, PNG).
    amsweep = str(env_dir / "bin" / "amsweep")
    out = _run([amsweep, "run", "quickstart", "--out", "q.zarr", "--quiet"], cwd=tmp_path, env=env)
    assert "done 60, failed 0" in out.stdout + out.stderr
    _run([amsweep, "phase", "q.zarr", "--at", "0.2", "-o", "q.png"], cwd=tmp_path, env=env)
    assert (tmp_path / "q.png").stat().st_size > 10_000
