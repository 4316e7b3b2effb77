"""Bearer tokens: issuing, storing, authenticating over HTTP, expiry and revocation."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models.enums import TokenRole
from models.errors import DomainError, ErrorCode
from models.tables import ApiToken, Partner, Unit
from models.tokens import (
    TOKEN_PREFIX,
    authenticate,
    create_token,
    fingerprint,
    revoke_token,
)
from tests.api.conftest import GraphQLClient, issue_token

CREATE_UNIT = """
mutation { createUnit(input: {code: "TOK1", title: "Token unit"}) { unit { id } errors { code } } }
"""
PARTNERS = "{ partners { code } }"
# A request that waited for the locked token row would wait until the test's transaction ends,
# which happens only after this many seconds.
LOCKED_ROW_TIMEOUT_SECONDS = 10.0


async def _post(
    graphql: GraphQLClient, headers: dict[str, str]
) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = await graphql.http.post("/graphql", json={"query": CREATE_UNIT}, headers=headers)
    return response.status_code, response.json(), dict(response.headers)


async def _unit_count(graphql: GraphQLClient) -> int:
    async with graphql.app.state.enrolink.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Unit)) or 0)


async def test_missing_token_is_unauthenticated(graphql: GraphQLClient) -> None:
    status, body, headers = await _post(graphql, {})

    assert status == 401
    assert body["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}
    assert "Authorization: Bearer" in body["errors"][0]["message"]
    assert headers["www-authenticate"] == 'Bearer realm="enrolink"'
    assert await _unit_count(graphql) == 0


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer not-a-token",
        "Bearer enr_short",
        "enr_" + "a" * 43,
        "Bearer enr_" + "a" * 42 + "!",
    ],
)
async def test_malformed_header_is_unauthenticated(
    graphql: GraphQLClient, authorization: str
) -> None:
    status, body, headers = await _post(graphql, {"Authorization": authorization})

    assert status == 401
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "malformed" in body["errors"][0]["message"]
    assert headers["www-authenticate"] == 'Bearer realm="enrolink", error="invalid_token"'
    assert await _unit_count(graphql) == 0


async def test_unknown_token_is_unauthenticated(graphql: GraphQLClient) -> None:
    status, body, headers = await _post(graphql, {"Authorization": f"Bearer enr_{'x' * 43}"})

    assert status == 401
    assert body["errors"][0]["message"] == (
        "The bearer token is not valid; check that it was copied whole. A token that an earlier "
        "`enrolink dev` run printed is unknown once its data folder is deleted, so use the token "
        "that the current run printed."
    )
    assert 'error="invalid_token"' in headers["www-authenticate"]
    assert await _unit_count(graphql) == 0


async def test_expired_token_is_unauthenticated(graphql: GraphQLClient) -> None:
    secret = await issue_token(graphql.app)
    async with graphql.app.state.enrolink.sessionmaker() as session:
        await session.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == hashlib.sha256(secret.encode()).hexdigest())
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()

    status, body, _ = await _post(graphql, {"Authorization": f"Bearer {secret}"})

    assert status == 401
    assert "expired" in body["errors"][0]["message"]
    assert await _unit_count(graphql) == 0


async def test_revoked_token_is_unauthenticated(graphql: GraphQLClient) -> None:
    secret = await issue_token(graphql.app)
    async with graphql.app.state.enrolink.sessionmaker() as session:
        await revoke_token(session, secret)
        await session.commit()

    status, body, _ = await _post(graphql, {"Authorization": f"Bearer {secret}"})

    assert status == 401
    message = body["errors"][0]["message"]
    assert message.startswith("The bearer token was revoked at ")
    assert message.endswith(
        "; ask staff for a new one. Each `enrolink dev` run prints a new token and revokes the "
        "previous one, and `enrolink token create` makes one."
    )
    assert await _unit_count(graphql) == 0


async def test_staff_token_is_accepted(graphql: GraphQLClient) -> None:
    status, body, _ = await _post(graphql, {"Authorization": f"Bearer {graphql.token}"})

    assert status == 200
    assert body["data"]["createUnit"]["errors"] == []
    assert await _unit_count(graphql) == 1


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_probes_need_no_token(graphql: GraphQLClient, path: str) -> None:
    response = await graphql.http.get(path)

    assert response.status_code == 200


async def test_graphiql_page_needs_no_token(graphql: GraphQLClient) -> None:
    response = await graphql.http.get("/graphql", headers={"Accept": "text/html"})

    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_get_query_needs_token(graphql: GraphQLClient) -> None:
    response = await graphql.http.get(
        "/graphql", params={"query": PARTNERS}, headers={"Accept": "text/html"}
    )

    assert response.status_code == 401


async def test_last_used_written_once_a_minute(graphql: GraphQLClient) -> None:
    secret = await issue_token(graphql.app)
    token_hash = hashlib.sha256(secret.encode()).hexdigest()

    async def last_used() -> datetime | None:
        async with graphql.app.state.enrolink.sessionmaker() as session:
            last: datetime | None = await session.scalar(
                select(ApiToken.last_used_at).where(ApiToken.token_hash == token_hash)
            )
            return last

    await graphql.execute(PARTNERS, token=secret)
    first = await last_used()
    await graphql.execute(PARTNERS, token=secret)
    second = await last_used()
    async with graphql.app.state.enrolink.sessionmaker() as session:
        await session.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == token_hash)
            .values(last_used_at=func.now() - timedelta(minutes=2))
        )
        await session.commit()
    await graphql.execute(PARTNERS, token=secret)
    third = await last_used()

    assert first is not None
    assert second == first
    assert third is not None and third > first


async def test_token_stored_as_sha256(session: AsyncSession) -> None:
    issued = await create_token(session, role=TokenRole.STAFF, name="ops")

    assert issued.secret.startswith(TOKEN_PREFIX)
    assert len(issued.secret) == len(TOKEN_PREFIX) + 43
    assert issued.token.token_hash == hashlib.sha256(issued.secret.encode()).hexdigest()
    stored = await session.scalar(select(func.count()).where(ApiToken.token_hash == issued.secret))
    assert stored == 0


async def test_tokens_are_distinct(session: AsyncSession) -> None:
    secrets = {
        (await create_token(session, role=TokenRole.STAFF, name="ops")).secret for _ in range(20)
    }

    assert len(secrets) == 20


async def test_partner_token_needs_partner(session: AsyncSession) -> None:
    with pytest.raises(DomainError) as raised:
        await create_token(session, role=TokenRole.PARTNER, name="portal")

    assert raised.value.code is ErrorCode.INVALID_INPUT


async def test_staff_token_takes_no_partner(session: AsyncSession) -> None:
    partner = Partner(code="P1", name="Partner one")
    session.add(partner)
    await session.flush()

    with pytest.raises(DomainError) as raised:
        await create_token(session, role=TokenRole.STAFF, name="ops", partner_id=partner.id)

    assert raised.value.code is ErrorCode.INVALID_INPUT


async def test_token_expiry_in_past_rejected(session: AsyncSession) -> None:
    with pytest.raises(DomainError) as raised:
        await create_token(
            session,
            role=TokenRole.STAFF,
            name="ops",
            expires_at=datetime.now(UTC) - timedelta(days=1),
        )

    assert raised.value.code is ErrorCode.INVALID_INPUT


async def test_revoke_by_id_fingerprint_or_secret(session: AsyncSession) -> None:
    by_id = await create_token(session, role=TokenRole.STAFF, name="one")
    by_fingerprint = await create_token(session, role=TokenRole.STAFF, name="two")
    by_secret = await create_token(session, role=TokenRole.STAFF, name="three")

    await revoke_token(session, str(by_id.token.id))
    await revoke_token(session, fingerprint(by_fingerprint.token))
    await revoke_token(session, by_secret.secret)

    assert by_id.token.revoked_at is not None
    assert by_fingerprint.token.revoked_at is not None
    assert by_secret.token.revoked_at is not None


async def test_revoke_by_fingerprint_of_digits(session: AsyncSession) -> None:
    # About one fingerprint in 300 has no letter in it, so it reads as a number.
    issued = await create_token(session, role=TokenRole.STAFF, name="digits")
    issued.token.token_hash = "123456789012" + issued.token.token_hash[12:]
    await session.flush()

    await revoke_token(session, fingerprint(issued.token))

    assert fingerprint(issued.token) == "123456789012"
    assert issued.token.revoked_at is not None


async def test_revoke_unknown_long_number_not_found(session: AsyncSession) -> None:
    await create_token(session, role=TokenRole.STAFF, name="other")

    with pytest.raises(DomainError) as raised:
        await revoke_token(session, "99999999999999999999999")

    assert raised.value.code is ErrorCode.NOT_FOUND
    assert "No token has a fingerprint starting 99999999999999999999999." in str(raised.value)


async def test_revoke_twice_keeps_first_time(session: AsyncSession) -> None:
    issued = await create_token(session, role=TokenRole.STAFF, name="ops")
    first = await revoke_token(session, str(issued.token.id))
    revoked_at = first.revoked_at

    second = await revoke_token(session, str(issued.token.id))

    assert second.revoked_at == revoked_at


@pytest.mark.parametrize("identifier", ["abc", "not-hex-at-all", "999999"])
async def test_revoke_unknown_identifier_rejected(session: AsyncSession, identifier: str) -> None:
    with pytest.raises(DomainError):
        await revoke_token(session, identifier)


async def test_authenticate_rejects_revoked(session: AsyncSession) -> None:
    issued = await create_token(session, role=TokenRole.STAFF, name="ops")
    await revoke_token(session, issued.secret)

    with pytest.raises(Exception, match="revoked"):
        await authenticate(session, issued.secret)


async def test_token_use_skipped_while_row_locked(graphql: GraphQLClient) -> None:
    secret = await issue_token(graphql.app)
    token_hash = hashlib.sha256(secret.encode()).hexdigest()
    sessionmaker = graphql.app.state.enrolink.sessionmaker

    async with sessionmaker() as holder, holder.begin():
        # Another request's transaction locks the row while it records the token's use.
        await holder.execute(
            select(ApiToken.id).where(ApiToken.token_hash == token_hash).with_for_update()
        )
        body = await asyncio.wait_for(
            graphql.execute(PARTNERS, token=secret), timeout=LOCKED_ROW_TIMEOUT_SECONDS
        )
    async with sessionmaker() as session:
        last_used = await session.scalar(
            select(ApiToken.last_used_at).where(ApiToken.token_hash == token_hash)
        )
    await graphql.execute(PARTNERS, token=secret)
    async with sessionmaker() as session:
        recorded = await session.scalar(
            select(ApiToken.last_used_at).where(ApiToken.token_hash == token_hash)
        )

    assert "errors" not in body, body
    assert last_used is None
    assert recorded is not None
