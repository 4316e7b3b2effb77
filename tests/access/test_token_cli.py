"""`enrolink token create | list | revoke` against a real database."""

from __future__ import annotations

import asyncio

import pytest

from enrolink.cli import main
from models.db import create_engine, create_sessionmaker
from models.tables import Partner
from models.tokens import TOKEN_PREFIX, TokenRejected, authenticate


@pytest.fixture
def token_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ENROLINK_DATABASE_URL", database_url)

    async def add_partner() -> None:
        engine = create_engine(database_url)
        async with create_sessionmaker(engine)() as session:
            session.add(Partner(code="ACME", name="Acme Builders"))
            await session.commit()
        await engine.dispose()

    asyncio.run(add_partner())
    return database_url


def _is_valid(database_url: str, secret: str) -> bool:
    async def check() -> bool:
        engine = create_engine(database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                await authenticate(session, secret)
                return True
        except TokenRejected:
            return False
        finally:
            await engine.dispose()

    return asyncio.run(check())


def test_token_create_prints_secret_once(
    token_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["token", "create", "--role", "partner", "--partner", "ACME", "--name", "portal"])

    output = capsys.readouterr()
    secret = output.out.strip()
    assert status == 0
    assert secret.startswith(TOKEN_PREFIX)
    assert secret not in output.err
    assert "not shown again" in output.err
    assert _is_valid(token_database, secret)


def test_token_list_and_revoke(token_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    main(["token", "create", "--role", "staff", "--name", "ops", "--expires-in-days", "30"])
    secret = capsys.readouterr().out.strip()

    main(["token", "list"])
    listing = capsys.readouterr().out
    row = next(line for line in listing.splitlines() if line.endswith("ops"))
    fingerprint = row.split()[1]
    assert "staff" in row
    assert "active" in row
    assert secret not in listing

    status = main(["token", "revoke", fingerprint])
    revoked = capsys.readouterr().out
    main(["token", "list"])
    after = capsys.readouterr().out

    assert status == 0
    assert "is revoked since" in revoked
    assert "revoked" in next(line for line in after.splitlines() if line.endswith("ops"))
    assert not _is_valid(token_database, secret)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--role", "partner"], "needs --partner CODE"),
        (["--role", "partner", "--partner", "NOPE"], "no partner with code 'NOPE'"),
        (["--role", "staff", "--partner", "ACME"], "applies only to --role partner"),
    ],
)
def test_token_create_rejects_bad_partner(
    token_database: str, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    status = main(["token", "create", *arguments])

    output = capsys.readouterr()
    assert status == 1
    assert message in output.err
    assert output.out == ""


def test_token_revoke_unknown_fails(
    token_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["token", "revoke", "deadbeef00"])

    assert status == 1
    assert "No token has a fingerprint starting deadbeef00" in capsys.readouterr().err
