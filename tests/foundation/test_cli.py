"""The `enrolink` command line: help text, and `enrolink migrate` run as a user runs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from enrolink.cli import main

SUBCOMMANDS = ["migrate", "serve", "worker", "beat", "dev"]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_exits_0_with_defaults(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])

    output = capsys.readouterr().out
    assert exited.value.code == 0
    assert f"usage: enrolink {command}" in output
    assert "default" in output


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])

    output = capsys.readouterr().out
    assert exited.value.code == 0
    for command in SUBCOMMANDS:
        assert command in output


def test_no_subcommand_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    status = main([])

    assert status == 2
    assert "usage: enrolink" in capsys.readouterr().err


def test_console_script_runs_help() -> None:
    script = os.path.join(os.path.dirname(sys.executable), "enrolink")

    completed = subprocess.run(
        [script, "serve", "--help"], capture_output=True, text=True, timeout=60, check=False
    )

    assert completed.returncode == 0, completed.stderr
    assert "--workers" in completed.stdout


# enrolink migrate ---------------------------------------------------------------------------


def _plain(url: str) -> str:
    """Return the URL in the form asyncpg.connect accepts (no SQLAlchemy driver suffix)."""
    return "postgresql://" + url.partition("://")[2]


async def _execute(url: str, statement: str) -> None:
    connection = await asyncpg.connect(_plain(url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _schema_snapshot(url: str) -> list[tuple[object, ...]]:
    """Return every column, constraint and index of the public schema, and the revision."""
    connection = await asyncpg.connect(_plain(url))
    try:
        columns = await connection.fetch(
            "SELECT table_name, column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2"
        )
        constraints = await connection.fetch(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace ORDER BY 1"
        )
        indexes = await connection.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        )
        revision = await connection.fetch("SELECT version_num FROM alembic_version")
        attendance_types = await connection.fetch("SELECT code FROM attendance_types ORDER BY 1")
    finally:
        await connection.close()
    rows = [*columns, *constraints, *indexes, *revision, *attendance_types]
    return [tuple(row) for row in rows]


@pytest.fixture
def empty_database_url(postgres_server_url: str) -> Iterator[str]:
    """Return the URL of a new database that was never migrated; it is dropped afterwards."""
    name = f"enrolink_test_empty_{uuid.uuid4().hex[:12]}"
    asyncio.run(_execute(postgres_server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_execute(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _run_migrate(database_url: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "ENROLINK_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "enrolink", "migrate"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_migrate_twice_changes_nothing(empty_database_url: str) -> None:
    first = _run_migrate(empty_database_url)
    after_first = asyncio.run(_schema_snapshot(empty_database_url))
    second = _run_migrate(empty_database_url)
    after_second = asyncio.run(_schema_snapshot(empty_database_url))

    assert first.returncode == 0, first.stderr
    assert "Migrated the database" in first.stdout
    assert "(empty database)" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "nothing to migrate" in second.stdout
    assert after_second == after_first


def test_migrate_unreachable_database_exits_1() -> None:
    # Nothing normally listens on port 1 of the loopback address, so the connection is refused.
    completed = _run_migrate("postgresql://postgres@127.0.0.1:1/enrolink")

    assert completed.returncode == 1
    assert "could not migrate the database at" in completed.stderr
    assert "Traceback" not in completed.stderr
