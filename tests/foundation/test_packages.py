"""The top-level packages `schema`, `models` and `workers` are this repository's folders.

The names are generic, and PyPI has unrelated distributions called `schema` and `models`. In
Enrolink's own environment they must resolve to the folders beside this test, whatever the
working directory.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schema", "models", "workers")


@pytest.mark.parametrize("name", PACKAGES)
def test_package_resolves_to_repository(name: str) -> None:
    module = importlib.import_module(name)

    # A namespace package (a folder without __init__.py) has no __file__.
    assert module.__file__ is not None, f"{name} is a namespace package, not this repository's"
    assert Path(module.__file__).resolve() == REPOSITORY_ROOT / name / "__init__.py"


@pytest.mark.parametrize("name", PACKAGES)
def test_package_resolves_outside_repository(name: str, tmp_path: Path) -> None:
    # From another working directory the repository is not on sys.path, so the installed
    # distribution (pip install -e) must map the name to its folder.
    script = f"import json, {name}; print(json.dumps({name}.__file__))"
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    location = json.loads(completed.stdout)
    assert location is not None, (
        f"{name} imports as a namespace package outside the repository; run "
        "`.venv/bin/pip install -e '.[dev]'` again so the editable install maps it."
    )
    assert Path(location).resolve() == REPOSITORY_ROOT / name / "__init__.py"
