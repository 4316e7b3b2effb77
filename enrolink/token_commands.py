"""`enrolink token create | revoke | list`: manage API tokens from the command line.

A new token's secret is printed once, on standard output, and never stored. Listings show a
fingerprint (the first hex digits of the token's SHA-256) that `token revoke` accepts. The
database modules are imported inside the commands, so other commands start without them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from enrolink.settings import Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILED = 1
# A token may live at most ten years; an expiry further out is almost always a typing slip.
MAX_EXPIRY_DAYS = 3650


def _expiry_days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of days, got {value!r}"
        ) from None
    if not 1 <= days <= MAX_EXPIRY_DAYS:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_EXPIRY_DAYS} days, got {days}")
    return days


def add_token_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `token` and its subcommands to the `enrolink` parser."""
    token = commands.add_parser(
        "token",
        help="create, revoke and list API tokens",
        description="Manage the bearer tokens that clients send to /graphql in "
        "'Authorization: Bearer <token>'. Staff tokens read and write everything; partner "
        "tokens read one partner's clients and what they reach, and cannot change data. Needs "
        "ENROLINK_DATABASE_URL (no default).",
    )
    actions = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)

    create = actions.add_parser(
        "create",
        help="create a token and print it once",
        description="Create a token and print its secret once on standard output; it cannot "
        "be shown again, so store it straight away.",
    )
    create.add_argument(
        "--role", required=True, choices=["staff", "partner"], help="what the token may do"
    )
    create.add_argument(
        "--partner", metavar="CODE", help="code of the partner a partner token is bound to"
    )
    create.add_argument("--name", default="api", help="label shown by `token list` (default: api)")
    create.add_argument(
        "--expires-in-days",
        type=_expiry_days,
        metavar="N",
        help=f"days until the token stops working, 1 to {MAX_EXPIRY_DAYS} (default: never)",
    )
    create.set_defaults(handler=_command_create)

    revoke = actions.add_parser(
        "revoke",
        help="revoke a token",
        description="Revoke a token at once; requests with it get 401 from then on.",
    )
    revoke.add_argument(
        "token",
        metavar="TOKEN_ID_OR_PREFIX",
        help="the token's id or fingerprint prefix (at least 8 hex digits) from `token list`, "
        "or the token itself",
    )
    revoke.set_defaults(handler=_command_revoke)

    listing = actions.add_parser(
        "list", help="list tokens", description="List every token without its secret."
    )
    listing.set_defaults(handler=_command_list)


def _run(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction on the configured database and commit it."""

    from models.db import create_engine, create_sessionmaker

    async def run() -> T:
        engine = create_engine(settings.require_database_url(), pool_size=1, max_overflow=0)
        try:
            async with create_sessionmaker(engine)() as session:
                value = await work(session)
                await session.commit()
                return value
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _command_create(args: argparse.Namespace) -> int:
    from models.enums import TokenRole
    from models.errors import DomainError
    from models.tokens import create_token, fingerprint, partner_by_code

    settings = load_settings()
    role = TokenRole(args.role.upper())
    if role is TokenRole.PARTNER and not args.partner:
        print("enrolink token create: a partner token needs --partner CODE.", file=sys.stderr)
        return EXIT_FAILED
    if role is TokenRole.STAFF and args.partner:
        print(
            "enrolink token create: --partner applies only to --role partner; staff tokens "
            "see every partner.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    expires_at = (
        datetime.now(UTC) + timedelta(days=args.expires_in_days) if args.expires_in_days else None
    )

    async def create(session: AsyncSession) -> tuple[str, int, str]:
        partner_id = None
        if args.partner:
            partner_id = (await partner_by_code(session, args.partner)).id
        issued = await create_token(
            session, role=role, name=args.name, partner_id=partner_id, expires_at=expires_at
        )
        return issued.secret, issued.token.id, fingerprint(issued.token)

    try:
        secret, token_id, print_id = _run(settings, create)
    except DomainError as error:
        print(f"enrolink token create: {error.message}", file=sys.stderr)
        return EXIT_FAILED

    expiry = f", expires {expires_at.isoformat(timespec='seconds')}" if expires_at else ""
    print(secret)
    print(
        f"Created {role.value.lower()} token {token_id} (fingerprint {print_id}{expiry}). "
        "The line above is the token; it is not shown again.",
        file=sys.stderr,
    )
    return EXIT_OK


def _command_revoke(args: argparse.Namespace) -> int:
    from models.errors import DomainError
    from models.tokens import fingerprint, revoke_token

    settings = load_settings()
    try:
        token = _run(settings, lambda session: revoke_token(session, args.token))
    except DomainError as error:
        print(f"enrolink token revoke: {error.message}", file=sys.stderr)
        return EXIT_FAILED

    assert token.revoked_at is not None
    print(
        f"Token {token.id} ({token.name}, fingerprint {fingerprint(token)}) is revoked since "
        f"{token.revoked_at.isoformat(timespec='seconds')}."
    )
    return EXIT_OK


def _command_list(args: argparse.Namespace) -> int:
    from models.tokens import fingerprint, list_tokens

    settings = load_settings()
    rows = _run(settings, list_tokens)
    if not rows:
        print("No tokens. Create one with `enrolink token create --role staff`.")
        return EXIT_OK

    now = datetime.now(UTC)
    print(f"{'ID':>5}  {'FINGERPRINT':12}  {'ROLE':7}  {'PARTNER':10}  {'STATE':8}  NAME")
    for token, partner_code in rows:
        if token.revoked_at is not None:
            state = "revoked"
        elif token.expires_at is not None and token.expires_at <= now:
            state = "expired"
        else:
            state = "active"
        print(
            f"{token.id:>5}  {fingerprint(token):12}  {token.role.value.lower():7}  "
            f"{partner_code or '-':10}  {state:8}  {token.name}"
        )
    return EXIT_OK
