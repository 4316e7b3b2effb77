"""Malformed settings fail at start-up with a message that names the variable and the fix."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from enrolink.cli import main
from enrolink.settings import SettingsError, load_settings

# (variable, value, text the message must contain to say what form is expected)
MALFORMED = [
    ("ENROLINK_HTTP_PORT", "abc", "valid integer"),
    ("ENROLINK_HTTP_PORT", "70000", "less than or equal to 65535"),
    ("ENROLINK_DATABASE_URL", "mysql://x", "postgresql://user:password@host:5432/enrolink"),
    ("ENROLINK_REDIS_URL", "http://x", "redis://host:6379/0"),
    ("ENROLINK_ENVIRONMENT", "staging", "'development' or 'production'"),
    ("ENROLINK_LOG_LEVEL", "LOUD", "'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
    ("ENROLINK_CORS_ORIGINS", "https://a.example", "JSON"),
]


@pytest.mark.parametrize(("variable", "value", "expected_form"), MALFORMED)
def test_malformed_setting_names_variable(
    variable: str, value: str, expected_form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as caught:
        load_settings()

    message = str(caught.value)
    assert variable in message
    assert expected_form in message


def test_default_page_size_above_maximum_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENROLINK_DEFAULT_PAGE_SIZE", "600")
    monkeypatch.setenv("ENROLINK_MAX_PAGE_SIZE", "500")

    with pytest.raises(SettingsError) as caught:
        load_settings()

    assert "ENROLINK_DEFAULT_PAGE_SIZE" in str(caught.value)
    assert "ENROLINK_MAX_PAGE_SIZE" in str(caught.value)


@pytest.mark.parametrize("command", ["migrate", "serve", "worker", "beat", "dev"])
def test_cli_malformed_setting_exits_2(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ENROLINK_DATABASE_URL", "mysql://x")

    status = main([command])

    error = capsys.readouterr().err
    assert status == 2
    assert "ENROLINK_DATABASE_URL" in error
    assert "postgresql://" in error
    assert "Traceback" not in error


@pytest.mark.parametrize("command", ["migrate", "serve", "worker", "beat"])
def test_cli_missing_database_url_exits_2(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ENROLINK_DATABASE_URL", raising=False)
    monkeypatch.setenv("ENROLINK_REDIS_URL", "redis://127.0.0.1:6379/0")

    status = main([command])

    error = capsys.readouterr().err
    assert status == 2
    assert "ENROLINK_DATABASE_URL is not set" in error


@pytest.mark.parametrize(
    ("command", "missing"),
    [("reconcile", "DATABASE_URL"), ("seed", "DATABASE_URL"), ("reconcile", "REDIS_URL")],
)
def test_cli_missing_url_points_to_dev_env(
    command: str,
    missing: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ENROLINK_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/enrolink")
    monkeypatch.setenv("ENROLINK_REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.delenv(f"ENROLINK_{missing}")
    monkeypatch.setenv("ENROLINK_DATA_DIR", "/srv/enrolink-data")

    status = main([command])

    error = capsys.readouterr().err
    assert status == 2
    assert f"ENROLINK_{missing} is not set" in error
    assert "while `enrolink dev` runs, `source /srv/enrolink-data/env` first." in error


def test_cli_subprocess_malformed_port_exits_2() -> None:
    environment = {**os.environ, "ENROLINK_HTTP_PORT": "abc"}

    completed = subprocess.run(
        [sys.executable, "-m", "enrolink", "serve"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 2
    assert "ENROLINK_HTTP_PORT" in completed.stderr
    assert "valid integer" in completed.stderr
    assert "Traceback" not in completed.stderr
