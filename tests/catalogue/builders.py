"""Test data for the catalogue, occurrence, client, attendance and money tests.

Units, programmes, occurrences, clients and classes are created through the API, as a user
would. Enrolments, links and outcomes belong to other mutations, so they are inserted directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.enums import EnrolmentStatus, OccurrenceKind, ResultSource
from models.tables import (
    Base,
    Charge,
    EnrolledUnit,
    Enrolment,
    EnrolmentLink,
    Occurrence,
    OccurrenceUnit,
)
from models.validation import usi_check_character
from schema.ids import encode_id, split_id
from tests.api.conftest import GraphQLClient

CREATE_UNIT = """
mutation ($input: CreateUnitInput!) {
  createUnit(input: $input) { unit { id } errors { code message field } }
}
"""

CREATE_PROGRAMME = """
mutation ($input: CreateProgrammeInput!) {
  createProgramme(input: $input) { programme { id } errors { code message field } }
}
"""

CREATE_PARTNER = """
mutation ($input: CreatePartnerInput!) {
  createPartner(input: $input) { partner { id } errors { code message field } }
}
"""

CREATE_OCCURRENCE = """
mutation ($input: CreateOccurrenceInput!) {
  createOccurrence(input: $input) { occurrence { id } errors { code message field } }
}
"""

CREATE_CLIENT = """
mutation ($input: CreateClientInput!) {
  createClient(input: $input) { client { id } errors { code message field } }
}
"""

CREATE_CLASS = """
mutation ($input: CreateClassInput!) {
  createClass(input: $input) { class { id } errors { code message field } }
}
"""

TERM_START = date(2026, 2, 2)

# Authentication records when each token was last used, whatever the request did.
NOT_DOMAIN_DATA = frozenset({"api_tokens"})
TERM_END = date(2026, 11, 27)


def pk(global_id: str) -> int:
    parts = split_id(global_id)
    assert parts is not None, global_id
    return parts[1]


def valid_usi(body: str) -> str:
    """Return the USI made of a nine-character body and its check character."""
    return body + usi_check_character(body)


async def _created(graphql: GraphQLClient, document: str, name: str, input: dict[str, Any]) -> str:
    data = await graphql.data(document, {"input": input})
    payload = data[name]
    assert payload["errors"] == [], payload["errors"]
    field = next(key for key in payload if key != "errors")
    global_id: str = payload[field]["id"]
    return global_id


async def create_unit(graphql: GraphQLClient, code: str, title: str | None = None) -> str:
    return await _created(
        graphql, CREATE_UNIT, "createUnit", {"code": code, "title": title or f"Unit {code}"}
    )


async def create_programme(
    graphql: GraphQLClient, code: str, unit_ids: list[str], name: str | None = None
) -> str:
    return await _created(
        graphql,
        CREATE_PROGRAMME,
        "createProgramme",
        {"code": code, "name": name or f"Programme {code}", "unitIds": unit_ids},
    )


async def create_partner(graphql: GraphQLClient, code: str) -> str:
    return await _created(
        graphql, CREATE_PARTNER, "createPartner", {"code": code, "name": f"Partner {code}"}
    )


async def create_occurrence(
    graphql: GraphQLClient,
    programme_id: str,
    code: str,
    kind: OccurrenceKind,
    *,
    start: date = TERM_START,
    end: date = TERM_END,
    unit_ids: list[str] | None = None,
    fee: str | None = None,
) -> str:
    input: dict[str, Any] = {
        "programmeId": programme_id,
        "code": code,
        "name": f"Occurrence {code}",
        "kind": kind.value,
        "startDate": start.isoformat(),
        "endDate": end.isoformat(),
    }
    if unit_ids is not None:
        input["unitIds"] = unit_ids
    if fee is not None:
        input["fee"] = fee
    return await _created(graphql, CREATE_OCCURRENCE, "createOccurrence", input)


async def create_client(graphql: GraphQLClient, client_code: str, **fields: Any) -> str:
    input = {"clientCode": client_code, "surname": f"Surname {client_code}", **fields}
    return await _created(graphql, CREATE_CLIENT, "createClient", input)


async def create_class(
    graphql: GraphQLClient, occurrence_id: str, starts_at: str, ends_at: str
) -> str:
    return await _created(
        graphql,
        CREATE_CLASS,
        "createClass",
        {"occurrenceId": occurrence_id, "startsAt": starts_at, "endsAt": ends_at},
    )


def sessionmaker(graphql: GraphQLClient) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = graphql.app.state.enrolink.sessionmaker
    return maker


async def insert_enrolment(
    graphql: GraphQLClient,
    client_id: str,
    occurrence_id: str,
    *,
    status: EnrolmentStatus = EnrolmentStatus.ACTIVE,
    deleted: bool = False,
) -> str:
    """Insert an enrolment with one unrecorded result per unit and the occurrence's fee."""
    async with sessionmaker(graphql)() as session:
        occurrence = await session.get_one(Occurrence, pk(occurrence_id))
        enrolment = Enrolment(
            client_id=pk(client_id),
            occurrence_id=occurrence.id,
            status=status,
            start_date=occurrence.start_date,
            end_date=occurrence.end_date,
            deleted_at=datetime.now().astimezone() if deleted else None,
        )
        session.add(enrolment)
        await session.flush()
        unit_ids = await session.scalars(
            select(OccurrenceUnit.unit_id).where(OccurrenceUnit.occurrence_id == occurrence.id)
        )
        source = (
            ResultSource.ROLLED_UP
            if occurrence.kind is OccurrenceKind.ADMINISTRATIVE
            else ResultSource.RECORDED
        )
        session.add_all(
            EnrolledUnit(enrolment_id=enrolment.id, unit_id=unit_id, source=source)
            for unit_id in unit_ids
        )
        if occurrence.fee:
            session.add(
                Charge(
                    enrolment_id=enrolment.id,
                    amount=occurrence.fee,
                    description=f"Fee of {occurrence.code}",
                    charged_on=occurrence.start_date,
                )
            )
        await session.commit()
        return encode_id("Enrolment", enrolment.id)


async def insert_link(graphql: GraphQLClient, administrative_id: str, session_id: str) -> int:
    async with sessionmaker(graphql)() as session:
        link = EnrolmentLink(
            administrative_enrolment_id=pk(administrative_id),
            session_enrolment_id=pk(session_id),
        )
        session.add(link)
        await session.commit()
        return link.id


async def set_outcome(
    graphql: GraphQLClient, enrolment_id: str, unit_id: str, outcome: int
) -> None:
    async with sessionmaker(graphql)() as session:
        result = await session.scalar(
            select(EnrolledUnit).where(
                EnrolledUnit.enrolment_id == pk(enrolment_id),
                EnrolledUnit.unit_id == pk(unit_id),
            )
        )
        assert result is not None
        result.outcome = outcome
        result.start_date = TERM_START
        result.end_date = TERM_START
        result.recorded_at = datetime.now().astimezone()
        await session.commit()


async def snapshot(graphql: GraphQLClient) -> dict[str, list[tuple[Any, ...]]]:
    """Return every row of every table, to show that a rejected request changed nothing."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    async with sessionmaker(graphql)() as session:
        for table in Base.metadata.sorted_tables:
            if table.name in NOT_DOMAIN_DATA:
                continue
            result = await session.execute(text(f'SELECT * FROM "{table.name}" ORDER BY 1'))
            rows[table.name] = [tuple(row) for row in result]
    return rows


@dataclass(frozen=True)
class Qualification:
    """A diploma of three units, delivered as one administrative and two session occurrences."""

    unit_ids: list[str]
    programme_id: str
    administrative_id: str
    session_programme_ids: list[str]
    session_ids: list[str]


async def given_qualification(
    graphql: GraphQLClient, *, fee: str | None = "4500.00"
) -> Qualification:
    unit_ids = [
        await create_unit(
            graphql, "BSBLDR523", "Lead and manage effective workplace relationships"
        ),
        await create_unit(graphql, "BSBOPS502", "Manage business operational plans"),
        await create_unit(graphql, "BSBPEF502", "Develop and use emotional intelligence"),
    ]
    programme_id = await create_programme(
        graphql, "BSB50420", unit_ids, "Diploma of Leadership and Management"
    )
    administrative_id = await create_occurrence(
        graphql, programme_id, "BSB50420-ADM", OccurrenceKind.ADMINISTRATIVE, fee=fee
    )
    first_programme = await create_programme(
        graphql, "BSB50420-S1", unit_ids[:2], "Leading people and operations"
    )
    second_programme = await create_programme(
        graphql, "BSB50420-S2", unit_ids[2:], "Emotional intelligence at work"
    )
    first_session = await create_occurrence(
        graphql,
        first_programme,
        "BSB50420-S1-T1",
        OccurrenceKind.SESSION,
        start=date(2026, 2, 2),
        end=date(2026, 5, 29),
    )
    second_session = await create_occurrence(
        graphql,
        second_programme,
        "BSB50420-S2-T3",
        OccurrenceKind.SESSION,
        start=date(2026, 7, 6),
        end=date(2026, 11, 27),
    )
    return Qualification(
        unit_ids=unit_ids,
        programme_id=programme_id,
        administrative_id=administrative_id,
        session_programme_ids=[first_programme, second_programme],
        session_ids=[first_session, second_session],
    )
