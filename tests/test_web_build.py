"""The web build from a plain shell: the ridpixels wheel with whatever Python is at hand, and a
failed build that leaves dist/ as it was (web/build.mjs, scripts/build_pixel_wheel.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from server_fallback.app import web_dist_problem

REPO = Path(__file__).resolve().parents[1]
NODE = shutil.which("node")


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)


def test_the_pixel_wheel_builds_with_a_python_whose_setuptools_cannot_make_wheels(tmp_path):
    """A fresh venv is such a Python: ensurepip gives 3.11 setuptools 65 without the `wheel`
    package, and 3.12 and later no setuptools at all. pip builds in its isolated environment then."""
    venv = tmp_path / "plain"
    run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    probe = "import sys; sys.path.insert(0, sys.argv[1]); import build_pixel_wheel as b; print(b.can_make_wheels())"
    assert run([python, "-c", probe, str(REPO / "scripts")], check=True).stdout.strip() == "False"
    built = run([python, str(REPO / "scripts" / "build_pixel_wheel.py"), str(tmp_path / "out")])
    assert built.returncode == 0, built.stderr
    wheel = Path(built.stdout.strip().splitlines()[-1])
    assert wheel.parent == tmp_path / "out" and wheel.name.startswith("ridpixels-") and wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("ridpixels/__init__.py") == (REPO / "ridpixels" / "__init__.py").read_bytes()
        assert not [n for n in archive.namelist() if not n.startswith(("ridpixels/", "ridpixels-"))]


@pytest.fixture
def web_copy(tmp_path) -> Path:
    """web/ without its dist/, in a folder of its own (node_modules, scripts/, ridpixels/ and docs/ linked)."""
    web = tmp_path / "web"
    shutil.copytree(REPO / "web", web, ignore=shutil.ignore_patterns("node_modules", "dist", "dist.partial-*"))
    (web / "node_modules").symlink_to(REPO / "web" / "node_modules")
    for name in ("scripts", "ridpixels", "docs"):  # docs/efficacy: the page for researchers
        (tmp_path / name).symlink_to(REPO / name)
    return web


@pytest.mark.skipif(NODE is None, reason="needs Node.js (scripts/setup.sh builds the web app with it)")
def test_a_failed_web_build_leaves_dist_as_it_was(web_copy, tmp_path):
    (web_copy / "dist").mkdir()
    (web_copy / "dist" / "index.html").write_text("the previous build")
    broken = tmp_path / "python-without-pip"
    broken.write_text("#!/bin/sh\necho 'No module named pip' >&2\nexit 3\n")
    broken.chmod(0o755)
    failed = run([NODE, "build.mjs"], cwd=web_copy, env={"PATH": "/usr/bin:/bin", "PYTHON": str(broken)})
    assert failed.returncode != 0 and "dist/ is left as it was" in failed.stderr, failed.stderr
    assert sorted(p.name for p in web_copy.iterdir() if p.name.startswith("dist")) == ["dist"]  # no partial folder left
    assert [p.name for p in (web_copy / "dist").iterdir()] == ["index.html"]
    assert (web_copy / "dist" / "index.html").read_text() == "the previous build"

    done = run([NODE, "build.mjs"], cwd=web_copy, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    assert web_dist_problem(web_copy / "dist") is None
    files = json.loads((web_copy / "dist" / "build.json").read_text())["files"]
    assert {"index.html", "app.js", "rid.js", "rid-widget.js", "sw.js"} <= set(files)
    assert sorted(p.name for p in web_copy.iterdir() if p.name.startswith("dist")) == ["dist"]
