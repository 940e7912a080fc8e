"""Build the pure-Python wheel of ridpixels (ridpixels-<version>-py3-none-any.whl) for the browser:
web/build.mjs runs this and ships the wheel beside Pyodide's files, and the page's verify mode
installs it into Pyodide (web/src/verify/).

    python scripts/build_pixel_wheel.py OUT_DIR   # prints the wheel's path

ridpixels/ is copied into a temporary folder with a generated minimal pyproject.toml (name
"ridpixels", the version from ridpixels.__version__, no dependencies, the setuptools backend) and
`python -m pip wheel --no-deps` builds it there, so the toolkit's own pyproject.toml (torch and
the rest) never enters the wheel. SOURCE_DATE_EPOCH fixes the archive's time stamps: the same
source gives the same bytes, hence the same content-hashed URL in web/dist.

It runs with any Python 3.9+ that has pip: the project's venv, or a plain python3 whose
setuptools is too old to make wheels (before 70.1 setuptools needs the separate `wheel` package
for bdist_wheel; Python 3.11's ensurepip gives setuptools 65 without it). Such a Python builds in
pip's isolated environment, which installs a current setuptools from the package index.

`pyodide build` of the same folder would give the same kind of wheel (pure Python, py3-none-any:
nothing is compiled, so no Emscripten platform tag), but it cannot run here: pyodide-build 0.26
and later need Python >= 3.12 (this project's venv is 3.11), and 0.25.1 downloads its
cross-build environment from the network when it runs. pip's wheel is the same archive format,
and Pyodide installs it as it would its own.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ridpixels"
EPOCH = "315532800"  # 1980-01-01, the earliest time a zip file can hold

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "ridpixels"
version = "{version}"
description = "RID's pixel policy without torch: working size, tile plan, 8-bit rounding, bound check"
requires-python = ">=3.9"
dependencies = []

[tool.setuptools]
packages = ["ridpixels"]
"""


def version() -> str:
    """ridpixels.__version__, read without importing the package."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit(f"no __version__ in {PACKAGE / '__init__.py'}")


def can_make_wheels() -> bool:
    """This Python's setuptools makes wheels without fetching anything: it has bdist_wheel
    itself (70.1 and later) or beside it (the `wheel` package)."""
    from importlib.metadata import PackageNotFoundError, version

    try:  # read from the installed metadata: importing setuptools here could clash with distutils
        major, minor = (int(part) for part in version("setuptools").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def build(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    v = version()
    with tempfile.TemporaryDirectory(prefix="ridpixels-wheel-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(PACKAGE, src / "ridpixels", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (src / "pyproject.toml").write_text(PYPROJECT.format(version=v))
        # This environment's setuptools when it can make wheels (no index needed), else pip's own.
        isolation = ["--no-build-isolation"] if can_make_wheels() else []
        env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *isolation,
                               "-w", str(Path(tmp) / "wheel"), str(src)], env=env)
        if done.returncode:
            how = "with its own setuptools" if isolation else "in an isolated environment (pip installs setuptools from the index)"
            raise SystemExit(f"cannot build the ridpixels wheel with {sys.executable} {how}: pip exited {done.returncode} "
                             "(see above). Run ./scripts/setup.sh first (the build then uses .venv), or set PYTHON to a "
                             "Python with pip and setuptools >= 70.1.")
        (built,) = (Path(tmp) / "wheel").glob("*.whl")
        if built.name != f"ridpixels-{v}-py3-none-any.whl":
            raise SystemExit(f"unexpected wheel {built.name}")
        target = out / built.name
        shutil.copyfile(built, target)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    if importlib.util.find_spec("pip") is None:
        raise SystemExit(f"{sys.executable} has no pip, so it cannot build the ridpixels wheel: run ./scripts/setup.sh "
                         "first (the build then uses .venv), or set PYTHON to a Python with pip.")
    print(build(Path(sys.argv[1])))
