"""Clients: the learners who enrol."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.errors import DomainError, ErrorCode
from models.references import global_id
from models.tables import Client, Partner
from models.validation import clean_optional_text, clean_text, clean_usi

CLIENT_CODE_MAX_LENGTH = 10
# RFC 5321 limits a forward path to 256 octets, which leaves 254 for the address itself.
EMAIL_MAX_LENGTH = 254
EARLIEST_DATE_OF_BIRTH = date(1900, 1, 1)

# One @, something on each side, a dot inside the domain and no spaces. Whether the mailbox
# exists is only known by sending to it, so this catches typing mistakes and nothing more.
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")


def clean_email(value: str | None) -> str | None:
    email = clean_optional_text(value, field="email", max_length=EMAIL_MAX_LENGTH)
    if email is not None and not _EMAIL.fullmatch(email):
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"email {email!r} is not an email address; use the form name@example.com.au.",
            field="email",
        )
    return email


def check_date_of_birth(value: date | None) -> None:
    if value is None:
        return
    # Today in UTC: a birth date that is already today somewhere east of UTC is still rejected,
    # which matters only for a newborn.
    today = datetime.now(UTC).date()
    if value >= today:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"dateOfBirth {value.isoformat()} is not in the past; check the year.",
            field="dateOfBirth",
        )
    if value < EARLIEST_DATE_OF_BIRTH:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"dateOfBirth {value.isoformat()} is before {EARLIEST_DATE_OF_BIRTH.isoformat()}; "
            "check the year.",
            field="dateOfBirth",
        )


async def create_client(
    session: AsyncSession,
    *,
    client_code: str,
    given_name: str | None,
    surname: str,
    date_of_birth: date | None,
    email: str | None,
    usi: str | None,
    partner_id: int | None,
) -> Client:
    """Create a client. Client codes and USIs are unique, and the unique indexes settle races."""
    client_code = clean_text(client_code, field="clientCode", max_length=CLIENT_CODE_MAX_LENGTH)
    given_name = clean_optional_text(given_name, field="givenName", max_length=100)
    surname = clean_text(surname, field="surname", max_length=100)
    check_date_of_birth(date_of_birth)
    email = clean_email(email)
    usi = clean_usi(usi)

    if partner_id is not None and await session.get(Partner, partner_id) is None:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"partnerId {global_id('Partner', partner_id)} is not a partner.",
            field="partnerId",
        )
    if await session.scalar(select(Client.id).where(Client.client_code == client_code)):
        raise DomainError(
            ErrorCode.DUPLICATE_CODE,
            f"A client with client code {client_code} already exists; choose another code.",
            field="clientCode",
        )
    if usi is not None:
        holder = await session.scalar(select(Client.client_code).where(Client.usi == usi))
        if holder is not None:
            raise DomainError(
                ErrorCode.DUPLICATE_CODE,
                f"USI {usi} already belongs to client {holder}; a USI identifies one learner, "
                "so check whether this client is already recorded.",
                field="usi",
            )

    client = Client(
        client_code=client_code,
        given_name=given_name,
        surname=surname,
        date_of_birth=date_of_birth,
        email=email,
        usi=usi,
        partner_id=partner_id,
    )
    session.add(client)
    await session.flush()
    return client
