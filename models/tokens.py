"""API tokens: issue, authenticate, list and revoke.

A token is ``enr_`` followed by 43 URL-safe characters (32 random bytes). It is shown once, when
it is issued; the database keeps only its SHA-256 in hex, so a leaked database does not leak
usable tokens. The functions here only flush: the caller owns the transaction and commits.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models.direct import DirectStatement
from models.enums import TokenRole
from models.errors import DomainError, ErrorCode
from models.tables import ApiToken, Partner
from models.validation import clean_text

TOKEN_PREFIX = "enr_"
# 32 random bytes, as secrets.token_urlsafe recommends for secrets that must resist guessing.
TOKEN_RANDOM_BYTES = 32
# The hex digits of the SHA-256 that `token list` shows and `token revoke` accepts.
FINGERPRINT_LENGTH = 12
MIN_FINGERPRINT_LENGTH = 8
# The largest value of the id column (bigint); a longer number can only be a fingerprint.
_MAX_TOKEN_ID = 2**63 - 1
# last_used_at is written at most once per this interval and token, so a busy token does not
# turn every read request into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
NAME_MAX_LENGTH = 100
# Statements tagged with this execution option belong to authentication, not to the GraphQL
# operation; query-count measurements leave them out.
AUTHENTICATION_OPTION = "enrolink_authentication"


@dataclass(frozen=True)
class IssuedToken:
    """A newly created token: the row, and the secret that is never stored or shown again."""

    token: ApiToken
    secret: str


class TokenRejected(Exception):
    """The presented token is unknown, expired or revoked; ``reason`` is safe to show its holder."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def fingerprint(token: ApiToken) -> str:
    """Return the short SHA-256 prefix that identifies a token in listings and revocations."""
    return token.token_hash[:FINGERPRINT_LENGTH]


def looks_like_token(value: str) -> bool:
    """Tell whether ``value`` has the shape of an Enrolink token, before any database lookup."""
    body = value.removeprefix(TOKEN_PREFIX)
    return (
        value.startswith(TOKEN_PREFIX)
        and 40 <= len(body) <= 100
        and all(char.isascii() and (char.isalnum() or char in "-_") for char in body)
    )


async def partner_by_code(session: AsyncSession, code: str) -> Partner:
    partner = await session.scalar(select(Partner).where(Partner.code == code.strip()))
    if partner is None:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"There is no partner with code {code.strip()!r}; check the code with staff.",
            field="partner",
        )
    return partner


async def create_token(
    session: AsyncSession,
    *,
    role: TokenRole,
    name: str,
    partner_id: int | None = None,
    expires_at: datetime | None = None,
) -> IssuedToken:
    """Create a token and return it with its secret, which the caller shows exactly once.

    A staff token reads and writes everything; a partner token reads the partner's own clients
    and what they reach. Only flushes: the caller commits.
    """
    name = clean_text(name, field="name", max_length=NAME_MAX_LENGTH)
    if role is TokenRole.PARTNER and partner_id is None:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "A partner token must name its partner; pass the partner's code.",
            field="partner",
        )
    if role is TokenRole.STAFF and partner_id is not None:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "A staff token sees every partner, so it takes no partner; leave the partner out "
            "or issue a partner token.",
            field="partner",
        )
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        if expires_at <= datetime.now(UTC):
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                f"The expiry {expires_at.isoformat()} is in the past; give a future time.",
                field="expiresAt",
            )

    secret = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_RANDOM_BYTES)
    token = ApiToken(
        name=name,
        token_hash=hash_token(secret),
        role=role,
        partner_id=partner_id,
        expires_at=expires_at,
    )
    session.add(token)
    await session.flush()
    return IssuedToken(token=token, secret=secret)


@dataclass(frozen=True)
class ValidToken:
    """The parts of a valid token's row that a request needs."""

    id: int
    name: str
    role: TokenRole
    partner_id: int | None


@dataclass(frozen=True)
class TokenCheck:
    """A valid token, and whether this check wrote its last_used_at (the caller then commits)."""

    token: ValidToken
    use_recorded: bool


# The token check runs first in every request, so its statements are direct statements (see
# models.direct), tagged as authentication.
_TOKEN_BY_HASH = DirectStatement(
    select(
        ApiToken.id,
        ApiToken.name,
        ApiToken.role,
        ApiToken.partner_id,
        ApiToken.expires_at,
        ApiToken.revoked_at,
        ApiToken.last_used_at,
    ).where(ApiToken.token_hash == bindparam("token_hash")),
    **{AUTHENTICATION_OPTION: True},
)
# The lookup runs in the request's own transaction, which may last seconds. SKIP LOCKED leaves
# the row to a concurrent request that is writing it already, instead of waiting for that
# request to finish. The condition repeats the check, so the row is written at most once per
# interval.
_TOKEN_USE_DUE = (
    select(ApiToken.id)
    .where(
        ApiToken.id == bindparam("token_id"),
        or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= bindparam("due_before")),
    )
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)
_RECORD_USE = DirectStatement(
    update(ApiToken)
    .where(ApiToken.id == _TOKEN_USE_DUE)
    .values(last_used_at=bindparam("now"))
    .returning(ApiToken.id),
    **{AUTHENTICATION_OPTION: True},
)


async def check_token(
    session: AsyncSession, secret: str, *, now: datetime | None = None
) -> TokenCheck:
    """Return the token for ``secret``, or raise TokenRejected saying why it is not valid.

    Costs one lookup on the unique index of token_hash. When last_used_at is older than
    LAST_USED_RESOLUTION, it is updated too, and ``use_recorded`` is True: the caller commits.
    """
    now = now or datetime.now(UTC)
    rows = await _TOKEN_BY_HASH.fetch(session, {"token_hash": hash_token(secret)})
    if not rows:
        raise TokenRejected(
            "The bearer token is not valid; check that it was copied whole. A token that an "
            "earlier `enrolink dev` run printed is unknown once its data folder is deleted, so "
            "use the token that the current run printed."
        )
    row = rows[0]
    revoked_at: datetime | None = row["revoked_at"]
    expires_at: datetime | None = row["expires_at"]
    last_used_at: datetime | None = row["last_used_at"]
    if revoked_at is not None:
        raise TokenRejected(
            f"The bearer token was revoked at {revoked_at.isoformat()}; ask staff for a "
            "new one. Each `enrolink dev` run prints a new token and revokes the previous one, "
            "and `enrolink token create` makes one."
        )
    if expires_at is not None and expires_at <= now:
        raise TokenRejected(
            f"The bearer token expired at {expires_at.isoformat()}; ask staff for a new one."
        )
    # The role column stores the enum's name.
    token = ValidToken(
        id=row["id"], name=row["name"], role=TokenRole[row["role"]], partner_id=row["partner_id"]
    )
    if last_used_at is not None and now - last_used_at < LAST_USED_RESOLUTION:
        return TokenCheck(token=token, use_recorded=False)
    written = await _RECORD_USE.fetch(
        session,
        {"token_id": token.id, "due_before": now - LAST_USED_RESOLUTION, "now": now},
    )
    return TokenCheck(token=token, use_recorded=bool(written))


async def authenticate(
    session: AsyncSession, secret: str, *, now: datetime | None = None
) -> ValidToken:
    """Return the token row for ``secret`` as :func:`check_token` does; the caller commits."""
    return (await check_token(session, secret, now=now)).token


async def list_tokens(session: AsyncSession) -> Sequence[tuple[ApiToken, str | None]]:
    """Return every token, oldest first, with its partner's code (None for staff tokens)."""
    rows = await session.execute(
        select(ApiToken, Partner.code)
        .outerjoin(Partner, Partner.id == ApiToken.partner_id)
        .order_by(ApiToken.id)
    )
    return [(token, code) for token, code in rows.all()]


async def find_token(session: AsyncSession, identifier: str) -> ApiToken:
    """Return the token named by its id, a fingerprint prefix, or the secret itself."""
    identifier = identifier.strip()
    if identifier.startswith(TOKEN_PREFIX):
        token = await session.scalar(
            select(ApiToken).where(ApiToken.token_hash == hash_token(identifier))
        )
        if token is None:
            raise DomainError(ErrorCode.NOT_FOUND, "No token matches the token given.")
        return token

    if identifier.isdigit() and len(identifier) < MIN_FINGERPRINT_LENGTH:
        token = await session.get(ApiToken, int(identifier))
        if token is None:
            raise DomainError(
                ErrorCode.NOT_FOUND,
                f"There is no token with id {identifier}; take the id or the fingerprint from "
                "`enrolink token list`.",
            )
        return token

    prefix = identifier.lower()
    is_hex = all(char in "0123456789abcdef" for char in prefix)
    if len(prefix) < MIN_FINGERPRINT_LENGTH or not is_hex:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"{identifier!r} is neither a token id nor a fingerprint of at least "
            f"{MIN_FINGERPRINT_LENGTH} hex digits; take either from `enrolink token list`.",
        )
    matches = list(
        (
            await session.scalars(
                select(ApiToken).where(ApiToken.token_hash.startswith(prefix)).limit(2)
            )
        ).all()
    )
    if identifier.isdigit() and int(identifier) <= _MAX_TOKEN_ID:
        # About one fingerprint in 300 has only decimal digits in its first 12 characters. So a
        # long number may be either, and it is ambiguous only if it names two tokens.
        by_id = await session.get(ApiToken, int(identifier))
        if by_id is not None and by_id not in matches:
            matches.append(by_id)
    if not matches:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"No token has a fingerprint starting {prefix}. Take the fingerprint from "
            "`enrolink token list`.",
        )
    if len(matches) > 1:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"More than one token has a fingerprint or id matching {prefix}; give more digits of "
            "the fingerprint, or the token id.",
        )
    return matches[0]


async def revoke_token(
    session: AsyncSession, identifier: str, *, now: datetime | None = None
) -> ApiToken:
    """Revoke the token named by id, fingerprint or secret; revoking twice keeps the first time."""
    token = await find_token(session, identifier)
    if token.revoked_at is None:
        token.revoked_at = now or datetime.now(UTC)
        await session.flush()
    return token
