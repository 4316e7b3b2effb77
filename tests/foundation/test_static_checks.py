"""Strict mypy and ruff pass on the application packages, so CI keeps them clean.

Each check runs this interpreter's mypy or ruff as a subprocess in the repository root, with the
settings in pyproject.toml. mypy keeps its incremental cache in the root's `.mypy_cache`
(git-ignored), outside pytest's basetemp, so later runs only recheck changed modules.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("enrolink", "models", "schema", "workers")
# Only stops a hung process. A cold mypy run over PACKAGES took about 10 s on 2 CPU cores.
TIMEOUT_SECONDS = 600


def _run_module(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *arguments],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )


def test_mypy_strict_passes() -> None:
    completed = _run_module("mypy", *PACKAGES)

    assert completed.returncode == 0, (
        f"mypy found errors; run `.venv/bin/mypy {' '.join(PACKAGES)}`:\n"
        f"{completed.stdout}{completed.stderr}"
    )


def test_ruff_check_passes() -> None:
    completed = _run_module("ruff", "check", *PACKAGES)

    assert completed.returncode == 0, (
        f"ruff check found errors; run `.venv/bin/ruff check {' '.join(PACKAGES)}`:\n"
        f"{completed.stdout}{completed.stderr}"
    )


def test_ruff_format_is_current() -> None:
    completed = _run_module("ruff", "format", "--check", *PACKAGES)

    assert completed.returncode == 0, (
        f"files need formatting; run `.venv/bin/ruff format {' '.join(PACKAGES)}`:\n"
        f"{completed.stdout}{completed.stderr}"
    )
