"""Names for rows in error messages: the API's global id and the codes staff know."""

from __future__ import annotations

import base64

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.errors import DomainError, ErrorCode
from models.tables import Client, Enrolment, Occurrence

# Words that start with a vowel letter but a consonant sound, so they take "a": "a Unit".
_CONSONANT_SOUND_PREFIXES = ("uni", "usa", "use", "usi", "usu", "uti", "eu", "one")


def with_article(name: str) -> str:
    """Return the name with its indefinite article, e.g. ``an ADMINISTRATIVE`` or ``a Unit``.

    Messages interpolate kinds and type names, so the article must follow the name's first
    sound. The rule goes by the first letter, with the "you" and "wun" sounds above as exceptions.
    """
    lowered = name.lower()
    starts_with_vowel_sound = lowered[:1] in set("aeiou") and not lowered.startswith(
        _CONSONANT_SOUND_PREFIXES
    )
    return f"{'an' if starts_with_vowel_sound else 'a'} {name}"


def global_id(type_name: str, pk: int) -> str:
    """Return the opaque id the GraphQL API shows for a row: base64 of ``<TypeName>:<pk>``.

    ``schema.ids.encode_id`` encodes the same way; models cannot import schema, and a test
    checks that the two agree.
    """
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode("ascii")


async def describe_enrolment(session: AsyncSession, enrolment_id: int) -> str:
    """Return e.g. ``enrolment RW5y… (client C001 in occurrence BSB50420-ADM)``."""
    row = (
        await session.execute(
            select(Client.client_code, Occurrence.code)
            .select_from(Enrolment)
            .join(Client, Client.id == Enrolment.client_id)
            .join(Occurrence, Occurrence.id == Enrolment.occurrence_id)
            .where(Enrolment.id == enrolment_id)
        )
    ).one()
    client_code, occurrence_code = row
    return (
        f"enrolment {global_id('Enrolment', enrolment_id)} "
        f"(client {client_code} in occurrence {occurrence_code})"
    )


async def load_enrolment_with_occurrence(
    session: AsyncSession, enrolment_id: int, *, field: str = "enrolmentId"
) -> tuple[Enrolment, Occurrence]:
    """Return the enrolment and its occurrence, or raise NOT_FOUND naming ``field``."""
    row = (
        await session.execute(
            select(Enrolment, Occurrence)
            .join(Occurrence, Occurrence.id == Enrolment.occurrence_id)
            .where(Enrolment.id == enrolment_id)
        )
    ).one_or_none()
    if row is None:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"{field} {global_id('Enrolment', enrolment_id)} is not an enrolment.",
            field=field,
        )
    enrolment, occurrence = row
    return enrolment, occurrence
