"""The layers of pyproject.toml's import-linter contracts hold, and an uphill import breaks them.

    rid > server_fallback > ridexport > ridtrain > ridpixels
    ridtrain: attacker > defender > diffusion > the shared modules (pixels, data, corpus, config, bundled)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("rid", "server_fallback", "ridexport", "ridtrain", "ridpixels")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """lint-imports on the packages under `root`, with the contracts of its pyproject.toml."""
    assert LINT_IMPORTS.exists(), f"{LINT_IMPORTS} is missing: install the test extras (pip install -e '.[test]')"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def copy_packages(root: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("weights", "__pycache__"))
    shutil.copyfile(REPO / "pyproject.toml", root / "pyproject.toml")


def test_the_layers_hold():
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("ridtrain/pixels.py", "import ridexport.manifest", "rid > server_fallback > ridexport > ridtrain > ridpixels"),
    ("ridexport/export.py", "import rid.check", "rid > server_fallback > ridexport > ridtrain > ridpixels"),
    ("ridpixels/__init__.py", "import server_fallback.settings", "rid > server_fallback > ridexport > ridtrain > ridpixels"),
    ("ridtrain/defender/train.py", "from ridtrain.attacker import purify", "ridtrain: the attacker and judge > the defender"),
    ("ridtrain/diffusion/tiny.py", "import ridtrain.defender.generators", "ridtrain: the attacker and judge > the defender"),
    ("ridtrain/data.py", "from ridtrain.diffusion import targets", "ridtrain: the attacker and judge > the defender"),
], ids=["ridtrain-to-ridexport", "ridexport-to-rid", "ridpixels-to-server", "defender-to-attacker", "diffusion-to-defender",
        "shared-to-diffusion"])
def test_an_uphill_import_breaks_a_contract(tmp_path, module, line, broken):
    copy_packages(tmp_path)
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{line}  # uphill\n")
    done = lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 broken" in done.stdout and f"{broken}" in done.stdout.replace("\n", " ") and line.split()[1] in done.stdout


def test_a_ridtrain_module_outside_every_layer_breaks_the_contract(tmp_path):
    """The ridtrain contract is exhaustive: a new module must be given its side."""
    copy_packages(tmp_path)
    (tmp_path / "ridtrain" / "newcomer.py").write_text("from ridtrain.attacker import purify\n")
    done = lint_imports(tmp_path)
    assert done.returncode == 1 and "ridtrain.newcomer" in done.stdout, done.stdout + done.stderr
