"""deploy/compose.yaml and deploy/.env.example, checked by Compose v2 itself and by reading them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from enrolink.settings import ENV_PREFIX, Settings, load_settings
from tests.deploy.tools import DEPLOY, run_compose_config

COMPOSE_FILE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
ENROLINK_SERVICES = ("migrate", "api", "worker", "beat", "flower")

# A commented-out line documents a default: "# ENROLINK_LOG_LEVEL=INFO".
ENV_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")


def compose_copy(
    folder: Path, compose_text: str | None = None, env_text: str | None = None
) -> Path:
    """Lay out deploy/ in ``folder`` with .env made from .env.example, and return compose.yaml.

    Compose requires the env_file, and a real deploy/.env of the developer must not be touched.
    """
    deploy = folder / "deploy"
    deploy.mkdir()
    shutil.copy(DEPLOY / "nginx.conf", deploy / "nginx.conf")
    shutil.copy(DEPLOY / "Dockerfile", deploy / "Dockerfile")
    (deploy / ".env").write_text(env_text if env_text is not None else ENV_EXAMPLE.read_text())
    compose = deploy / "compose.yaml"
    compose.write_text(compose_text if compose_text is not None else COMPOSE_FILE.read_text())
    return compose


def services() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    result: dict[str, Any] = document["services"]
    return result


def env_example_lines() -> dict[str, tuple[str, bool]]:
    """Return each variable of .env.example with its value and whether the line is active."""
    variables: dict[str, tuple[str, bool]] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = ENV_LINE.match(line)
        if match:
            variables[match.group(1)] = (match.group(2), not line.startswith("#"))
    return variables


def test_compose_config_valid(tmp_path: Path) -> None:
    result = run_compose_config(compose_copy(tmp_path))

    assert result.ok, result.output


def test_compose_rejects_broken_file(tmp_path: Path) -> None:
    text = COMPOSE_FILE.read_text().replace("replicas: 2", "replicas: two", 1)
    assert text != COMPOSE_FILE.read_text()

    result = run_compose_config(compose_copy(tmp_path, compose_text=text))

    assert not result.ok
    assert "replicas" in result.output


def test_compose_requires_postgres_password(tmp_path: Path) -> None:
    env_text = ENV_EXAMPLE.read_text().replace("POSTGRES_PASSWORD=change-me\n", "")
    assert env_text != ENV_EXAMPLE.read_text()

    result = run_compose_config(compose_copy(tmp_path, env_text=env_text))

    assert not result.ok
    assert "set POSTGRES_PASSWORD" in result.output


def test_api_two_replicas_beat_one() -> None:
    defined = services()

    assert defined["api"]["deploy"]["replicas"] == 2
    assert defined["beat"]["deploy"]["replicas"] == 1
    # Replicas share the service name, so none may fix a container name or a host port.
    assert "container_name" not in defined["api"]
    assert "ports" not in defined["api"]


def test_depends_on_has_conditions() -> None:
    allowed = {"service_healthy", "service_completed_successfully"}
    for name, service in services().items():
        for dependency, options in service.get("depends_on", {}).items():
            assert options.get("condition") in allowed, f"{name} -> {dependency}"


def test_migrations_run_before_services() -> None:
    defined = services()

    assert defined["migrate"]["command"] == ["migrate"]
    assert defined["migrate"]["restart"] == "no"
    for name in ("api", "worker", "beat"):
        condition = defined[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name


def test_health_checks_where_served() -> None:
    defined = services()

    for name in ("postgres", "redis", "proxy", "worker", "flower"):
        assert defined[name]["healthcheck"]["test"], name
    # api keeps the image's HEALTHCHECK on /readyz; the proxy waits for it.
    assert "healthcheck" not in defined["api"]
    assert defined["proxy"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_images_pinned_to_versions() -> None:
    for name, service in services().items():
        image = service["image"]
        if name in ENROLINK_SERVICES:
            continue
        # PostgreSQL numbers releases major.minor (16.6); the others major.minor.patch.
        tag = image.rpartition(":")[2]
        assert re.match(r"\d+\.\d+", tag), f"{name}: {image} is not pinned to a release."


def test_flower_on_loopback_with_password() -> None:
    flower = services()["flower"]

    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])
    assert "FLOWER_BASIC_AUTH" in flower["environment"]


def test_enrolink_services_share_env_file() -> None:
    defined = services()

    for name in ENROLINK_SERVICES:
        assert defined[name]["env_file"] == [{"path": ".env", "required": True}], name


def test_env_example_lists_every_setting() -> None:
    listed = {name for name in env_example_lines() if name.startswith(ENV_PREFIX)}
    expected = {f"{ENV_PREFIX}{field.upper()}" for field in Settings.model_fields}

    assert sorted(expected - listed) == [], "settings missing from deploy/.env.example"
    assert sorted(listed - expected) == [], "deploy/.env.example names unknown settings"


def test_env_example_values_load(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, (value, active) in env_example_lines().items():
        if name.startswith(ENV_PREFIX) and (active or value):
            monkeypatch.setenv(name, value)

    settings = load_settings()

    assert settings.database_url is not None
    assert settings.redis_url is not None


def test_env_example_required_values_active() -> None:
    variables = env_example_lines()

    for name in ("POSTGRES_PASSWORD", "FLOWER_BASIC_AUTH", "ENROLINK_DATABASE_URL"):
        assert variables[name][1], f"{name} is required by compose.yaml but commented out."
    assert variables["ENROLINK_REDIS_URL"][1]
