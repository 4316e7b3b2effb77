"""deploy/Dockerfile and .dockerignore: hadolint, and the rules hadolint does not check.

No Docker engine runs on the development machines or in CI, so the image is never built here;
these tests read the files.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

from tests.deploy.conftest import APP_UID
from tests.deploy.tools import DEPLOY, REPO, run_hadolint

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

# Names of build arguments and variables that would put a secret into an image layer.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_URL$|_KEY$|CREDENTIAL", re.IGNORECASE)


def instructions(text: str) -> list[tuple[str, str]]:
    """Return the Dockerfile's instructions as (KEYWORD, arguments), continuations joined."""
    parsed: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            # Comments end no instruction, even between continuation lines.
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        parsed.append((keyword.upper(), arguments.strip()))
        pending = ""
    return parsed


def stages(parsed: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Split the instructions into build stages, each starting with its FROM."""
    result: list[list[tuple[str, str]]] = []
    for instruction in parsed:
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def dockerfile_instructions() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def final_stage() -> list[tuple[str, str]]:
    return stages(dockerfile_instructions())[-1]


def test_dockerfile_passes_hadolint() -> None:
    result = run_hadolint(DOCKERFILE)

    assert result.ok, result.output


def test_hadolint_ignores_give_reasons() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" not in line:
            continue
        previous = lines[number - 1].strip() if number else ""
        reason = f"Line {number + 1} ignores a hadolint rule without a comment above saying why."
        assert previous.startswith("#"), reason
        assert "hadolint" not in previous, reason
        assert len(previous) > 10, reason


def test_hadolint_rejects_broken_dockerfile(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    text = DOCKERFILE.read_text().replace('CMD ["serve"]', "CMD enrolink serve")
    assert text != DOCKERFILE.read_text()
    broken.write_text(text)

    result = run_hadolint(broken)

    assert not result.ok
    assert "DL3025" in result.output


def test_base_image_pinned_build_arg() -> None:
    parsed = dockerfile_instructions()
    first_from = next(index for index, (keyword, _) in enumerate(parsed) if keyword == "FROM")
    arguments = dict(
        arguments.partition("=")[::2]
        for keyword, arguments in parsed[:first_from]
        if keyword == "ARG"
    )

    assert "PYTHON_IMAGE" in arguments
    # A full patch version in the tag, e.g. python:3.11.11-slim-bookworm, never :latest.
    assert re.fullmatch(
        r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", arguments["PYTHON_IMAGE"]
    )
    for keyword, argument in parsed:
        if keyword == "FROM":
            assert argument.split()[0] == "${PYTHON_IMAGE}"


def test_image_built_in_stages() -> None:
    built = stages(dockerfile_instructions())

    assert len(built) >= 2
    copied_from_builder = [
        arguments
        for keyword, arguments in built[-1]
        if keyword == "COPY" and arguments.startswith("--from=builder")
    ]
    assert copied_from_builder == ["--from=builder /opt/enrolink /opt/enrolink"]


def test_runtime_user_numeric_not_root() -> None:
    users = [arguments for keyword, arguments in final_stage() if keyword == "USER"]

    assert users, "The final stage sets no USER, so the container would run as root."
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
    assert match, f"USER {users[-1]} is not numeric; Kubernetes' runAsNonRoot needs a uid."
    assert int(match.group(1)) == APP_UID
    assert match.group(2) is None or int(match.group(2)) != 0


def test_entrypoint_and_cmd_exec_form() -> None:
    stage = dict(final_stage())

    assert json.loads(stage["ENTRYPOINT"]) == ["enrolink"]
    assert json.loads(stage["CMD"]) == ["serve"]


def test_healthcheck_polls_readyz() -> None:
    stage = dict(final_stage())

    assert "HEALTHCHECK" in stage
    options, separator, command = stage["HEALTHCHECK"].partition("CMD ")
    assert separator
    assert "--timeout=" in options
    arguments = json.loads(command)
    assert arguments[0] == "python"
    assert "/readyz" in arguments[-1]


def test_image_bakes_in_no_secret() -> None:
    for keyword, arguments in dockerfile_instructions():
        if keyword not in {"ENV", "ARG"}:
            continue
        for assignment in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", arguments):
            assert not SECRET_NAME.search(assignment), f"{keyword} {assignment} looks secret."


def test_dockerignore_admits_only_copied_files() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # Everything is excluded first, so a new local file (an .env, a dump) never enters the
    # build context by default.
    assert patterns[0] == "**"
    admitted = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}

    sources: list[str] = []
    for keyword, arguments in final_stage() + stages(dockerfile_instructions())[0]:
        if keyword == "COPY" and not arguments.startswith("--from="):
            sources.extend(arguments.split()[:-1])
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not found in the repository."
        assert any(fnmatch.fnmatch(source, pattern) for pattern in admitted), (
            f"COPY {source}: .dockerignore leaves it out of the build context."
        )
