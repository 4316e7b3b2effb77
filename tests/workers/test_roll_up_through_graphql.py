"""Every kind of change that affects a roll-up, made through GraphQL and rolled up by a worker.

The in-process application publishes its outbox rows to the queues of one real `enrolink worker`
subprocess, which shares this module's database. Each test builds its own units, occurrences and
client through the API, so the tests do not see each other's rows, and reads the administrative
enrolment back through the API once `rollUp.pending` is false.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from sqlalchemy import text

from enrolink.settings import Settings
from models.enums import OccurrenceKind
from models.roll_up import ROLL_UP_ACTOR
from tests.api.conftest import GraphQLClient, graphql
from tests.catalogue.builders import (
    create_client,
    create_occurrence,
    create_programme,
    create_unit,
    pk,
    sessionmaker,
)
from tests.workers.conftest import POLL_INTERVAL_SECONDS, ServiceProcess, WorkerStack

__all__ = ["graphql"]

# A roll-up through an idle worker lands well under a second after the commit. The bound allows
# for a loaded 2-core machine, so it only runs out when something is broken.
ROLLED_UP_WITHIN_SECONDS = 20.0

YEAR_START = date(2026, 2, 2)
YEAR_END = date(2026, 11, 27)

_serial = itertools.count(1)

ENROL = """
mutation ($input: EnrolClientInput!) {
  enrolClient(input: $input) { enrolment { id } errors { code message field } }
}
"""

RECORD_RESULT = """
mutation ($input: RecordResultInput!) {
  recordResult(input: $input) { result { id } errors { code message field } }
}
"""

LINK = """
mutation ($input: LinkEnrolmentsInput!) {
  linkEnrolments(input: $input) { link { id } errors { code message field } }
}
"""

UNLINK = """
mutation ($input: UnlinkEnrolmentsInput!) {
  unlinkEnrolments(input: $input) { link { unlinkedAt } errors { code message field } }
}
"""

WITHDRAW = """
mutation ($input: WithdrawEnrolmentInput!) {
  withdrawEnrolment(input: $input) {
    enrolments { id status }
    errors { code message field }
  }
}
"""

DELETE = """
mutation ($input: DeleteEnrolmentInput!) {
  deleteEnrolment(input: $input) { enrolment { deletedAt } errors { code message field } }
}
"""

ADD_UNITS = """
mutation ($input: AddOccurrenceUnitsInput!) {
  addOccurrenceUnits(input: $input) { occurrence { id } errors { code message field } }
}
"""

REMOVE_UNIT = """
mutation ($input: RemoveOccurrenceUnitInput!) {
  removeOccurrenceUnit(input: $input) { occurrence { id } errors { code message field } }
}
"""

ADMINISTRATIVE_ENROLMENT = """
query ($id: ID!) {
  enrolment(id: $id) {
    status
    results {
      unit { code }
      outcome
      source
      sourceResult { id }
      startDate
      endDate
    }
    rollUp { pending lastComputedAt }
    links { unlinkedAt unlinkReason }
  }
}
"""

_HISTORY = text(
    """
    SELECT h.outcome, h.replaced_by FROM enrolled_unit_history AS h
    WHERE h.enrolled_unit_id = :result_id
    ORDER BY h.id
    """
)


@pytest.fixture(scope="module")
def worker(module_worker_stack: WorkerStack) -> ServiceProcess:
    return module_worker_stack.start_worker()


@pytest.fixture
def app_settings(module_worker_stack: WorkerStack, worker: ServiceProcess) -> Settings:
    """Settings of the in-process app: the worker's database and queue names."""
    return module_worker_stack.settings(ENROLINK_ENVIRONMENT="development")


@dataclass(frozen=True)
class Cohort:
    """One client in an administrative occurrence and in session occurrences of its units."""

    unit_codes: list[str]
    unit_ids: list[str]
    administrative_occurrence_id: str
    session_occurrence_ids: list[str]
    administrative_id: str
    session_ids: list[str]


def session_dates(position: int) -> tuple[date, date]:
    """Return the dates of the session at ``position``: March, April, and so on."""
    return date(2026, 3 + position, 1), date(2026, 3 + position, 28)


async def mutate(
    graphql: GraphQLClient, document: str, name: str, input: dict[str, Any]
) -> dict[str, Any]:
    """Send a mutation that must succeed and return its payload."""
    data = await graphql.data(document, {"input": input})
    payload: dict[str, Any] = data[name]
    assert payload["errors"] == [], payload["errors"]
    return payload


async def given_cohort(
    graphql: GraphQLClient,
    *,
    unit_count: int,
    administrative_units: list[int],
    session_units: list[list[int]],
    linked: bool = True,
) -> Cohort:
    """Create the units, the occurrences and an enrolled client through the API.

    ``administrative_units`` and each entry of ``session_units`` are positions in the units.
    The sessions are enrolled with ``link: true`` unless ``linked`` is False.
    """
    serial = next(_serial)
    codes = [f"RG{serial:03d}U{number}" for number in range(1, unit_count + 1)]
    unit_ids = [await create_unit(graphql, code) for code in codes]
    programme_id = await create_programme(graphql, f"RG{serial:03d}", unit_ids)
    administrative_occurrence_id = await create_occurrence(
        graphql,
        programme_id,
        f"RG{serial:03d}-ADM",
        OccurrenceKind.ADMINISTRATIVE,
        start=YEAR_START,
        end=YEAR_END,
        unit_ids=[unit_ids[position] for position in administrative_units],
    )
    session_occurrence_ids = []
    for number, positions in enumerate(session_units):
        start, end = session_dates(number)
        session_occurrence_ids.append(
            await create_occurrence(
                graphql,
                programme_id,
                f"RG{serial:03d}-S{number + 1}",
                OccurrenceKind.SESSION,
                start=start,
                end=end,
                unit_ids=[unit_ids[position] for position in positions],
            )
        )

    client_id = await create_client(graphql, f"RG{serial:05d}")
    administrative = await mutate(
        graphql,
        ENROL,
        "enrolClient",
        {"clientId": client_id, "occurrenceId": administrative_occurrence_id},
    )
    session_ids = []
    for occurrence_id in session_occurrence_ids:
        enrolled = await mutate(
            graphql,
            ENROL,
            "enrolClient",
            {"clientId": client_id, "occurrenceId": occurrence_id, "link": linked},
        )
        session_ids.append(enrolled["enrolment"]["id"])
    return Cohort(
        unit_codes=codes,
        unit_ids=unit_ids,
        administrative_occurrence_id=administrative_occurrence_id,
        session_occurrence_ids=session_occurrence_ids,
        administrative_id=administrative["enrolment"]["id"],
        session_ids=session_ids,
    )


async def record(
    graphql: GraphQLClient,
    enrolment_id: str,
    unit_id: str,
    outcome: str,
    *,
    start: date | None = None,
    end: date | None = None,
) -> str:
    """Record a result through recordResult and return the result's id."""
    input: dict[str, Any] = {"enrolmentId": enrolment_id, "unitId": unit_id, "outcome": outcome}
    if start is not None:
        input["startDate"] = start.isoformat()
    if end is not None:
        input["endDate"] = end.isoformat()
    payload = await mutate(graphql, RECORD_RESULT, "recordResult", input)
    result_id: str = payload["result"]["id"]
    return result_id


async def rolled_up(graphql: GraphQLClient, administrative_id: str) -> dict[str, Any]:
    """Return the administrative enrolment once its roll-up is no longer pending.

    Every mutation marks the roll-up pending in its own transaction, so a read after the
    mutation's response sees pending until the worker has rolled up that change.
    """
    deadline = time.monotonic() + ROLLED_UP_WITHIN_SECONDS
    while True:
        data = await graphql.data(ADMINISTRATIVE_ENROLMENT, {"id": administrative_id})
        enrolment: dict[str, Any] = data["enrolment"]
        if not enrolment["rollUp"]["pending"]:
            return enrolment
        if time.monotonic() > deadline:
            # The worker stack points ENROLINK_DATA_DIR at the folder of its logs.
            logs = graphql.app.state.enrolink.settings.data_dir
            pytest.fail(
                f"The roll-up of enrolment {administrative_id} was still pending after "
                f"{ROLLED_UP_WITHIN_SECONDS} s. The worker's log is in {logs}."
            )
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


def by_unit(enrolment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {result["unit"]["code"]: result for result in enrolment["results"]}


def rolled_up_from(
    source_id: str | None, outcome: str | None, start: date | None, end: date | None
) -> dict[str, Any]:
    """Return the fields of an administrative result as the query selects them."""
    return {
        "outcome": outcome,
        "source": "ROLLED_UP",
        "sourceResult": None if source_id is None else {"id": source_id},
        "startDate": None if start is None else start.isoformat(),
        "endDate": None if end is None else end.isoformat(),
    }


UNRECORDED = rolled_up_from(None, None, None, None)


def without_unit(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key != "unit"}


async def history(graphql: GraphQLClient, result_id: str) -> list[tuple[int | None, str | None]]:
    """Return the replaced values of a result, oldest first, as (outcome, replaced_by)."""
    async with sessionmaker(graphql)() as session:
        rows = await session.execute(_HISTORY, {"result_id": pk(result_id)})
        return [(row.outcome, row.replaced_by) for row in rows]


async def test_recorded_result_rolls_up(graphql: GraphQLClient) -> None:
    cohort = await given_cohort(
        graphql, unit_count=2, administrative_units=[0, 1], session_units=[[0, 1]]
    )
    first, second = cohort.unit_codes
    start, end = date(2026, 3, 2), date(2026, 3, 20)

    session_result = await record(
        graphql,
        cohort.session_ids[0],
        cohort.unit_ids[0],
        "COMPETENCY_ACHIEVED",
        start=start,
        end=end,
    )
    enrolment = await rolled_up(graphql, cohort.administrative_id)
    results = by_unit(enrolment)

    assert enrolment["rollUp"]["lastComputedAt"] is not None
    assert without_unit(results[first]) == rolled_up_from(
        session_result, "COMPETENCY_ACHIEVED", start, end
    )
    assert without_unit(results[second]) == UNRECORDED


async def test_overwritten_result_newer_wins(graphql: GraphQLClient) -> None:
    cohort = await given_cohort(
        graphql, unit_count=1, administrative_units=[0], session_units=[[0]]
    )
    (code,) = cohort.unit_codes
    start, end = date(2026, 3, 2), date(2026, 3, 20)
    session_result = await record(
        graphql,
        cohort.session_ids[0],
        cohort.unit_ids[0],
        "COMPETENCY_NOT_ACHIEVED",
        start=start,
        end=end,
    )
    first = by_unit(await rolled_up(graphql, cohort.administrative_id))[code]
    assert first["outcome"] == "COMPETENCY_NOT_ACHIEVED"

    rewritten = await record(
        graphql,
        cohort.session_ids[0],
        cohort.unit_ids[0],
        "COMPETENCY_ACHIEVED",
        end=date(2026, 3, 27),
    )
    enrolment = await rolled_up(graphql, cohort.administrative_id)
    result = by_unit(enrolment)[code]

    assert rewritten == session_result
    assert without_unit(result) == rolled_up_from(
        session_result, "COMPETENCY_ACHIEVED", start, date(2026, 3, 27)
    )
    # The session keeps the value it replaced, and the administrative result keeps both values
    # the roll-up replaced: unrecorded, then 30 (competency not achieved).
    # The replacing value's recorder is the staff token's name, "test".
    assert await history(graphql, session_result) == [(30, "test")]
    administrative_result = await _administrative_result_id(graphql, cohort, code)
    assert await history(graphql, administrative_result) == [
        (None, ROLL_UP_ACTOR),
        (30, ROLL_UP_ACTOR),
    ]


async def _administrative_result_id(graphql: GraphQLClient, cohort: Cohort, code: str) -> str:
    document = """
    query ($id: ID!) { enrolment(id: $id) { results { id unit { code } } } }
    """
    data = await graphql.data(document, {"id": cohort.administrative_id})
    found = [
        result["id"] for result in data["enrolment"]["results"] if result["unit"]["code"] == code
    ]
    assert len(found) == 1, data
    result_id: str = found[0]
    return result_id


async def test_final_outcome_outranks_later_continuing(graphql: GraphQLClient) -> None:
    cohort = await given_cohort(
        graphql, unit_count=1, administrative_units=[0], session_units=[[0], [0]]
    )
    (code,) = cohort.unit_codes
    march, april = cohort.session_ids

    # The final outcome is recorded first, in the April session. The re-attempt in March is
    # recorded later, but it is only continuing.
    final = await record(
        graphql,
        april,
        cohort.unit_ids[0],
        "COMPETENCY_ACHIEVED",
        start=date(2026, 4, 2),
        end=date(2026, 4, 20),
    )
    before = by_unit(await rolled_up(graphql, cohort.administrative_id))[code]
    assert before["sourceResult"] == {"id": final}

    await record(
        graphql,
        march,
        cohort.unit_ids[0],
        "CONTINUING",
        start=date(2026, 3, 2),
        end=date(2026, 3, 27),
    )
    result = by_unit(await rolled_up(graphql, cohort.administrative_id))[code]

    # The start is the earliest among the counted results, so it comes from the March one.
    assert without_unit(result) == rolled_up_from(
        final, "COMPETENCY_ACHIEVED", date(2026, 3, 2), date(2026, 4, 20)
    )


async def test_link_brings_existing_results(graphql: GraphQLClient) -> None:
    cohort = await given_cohort(
        graphql, unit_count=2, administrative_units=[0, 1], session_units=[[0]], linked=False
    )
    first, second = cohort.unit_codes
    session_result = await record(
        graphql,
        cohort.session_ids[0],
        cohort.unit_ids[0],
        "RPL_GRANTED",
        start=date(2026, 3, 2),
        end=date(2026, 3, 2),
    )
    before = by_unit(await rolled_up(graphql, cohort.administrative_id))
    assert without_unit(before[first]) == UNRECORDED

    await mutate(
        graphql,
        LINK,
        "linkEnrolments",
        {
            "administrativeEnrolmentId": cohort.administrative_id,
            "sessionEnrolmentId": cohort.session_ids[0],
        },
    )
    after = by_unit(await rolled_up(graphql, cohort.administrative_id))

    assert without_unit(after[first]) == rolled_up_from(
        session_result, "RPL_GRANTED", date(2026, 3, 2), date(2026, 3, 2)
    )
    assert without_unit(after[second]) == UNRECORDED


async def test_unlink_removes_session_results(graphql: GraphQLClient) -> None:
    cohort = await given_cohort(
        graphql, unit_count=2, administrative_units=[0, 1], session_units=[[0, 1], [1]]
    )
    first, second = cohort.unit_codes
    march, april = cohort.session_ids
    april_result = await record(
        graphql,
        april,
        cohort.unit_ids[1],
        "COMPETENCY_NOT_ACHIEVED",
        start=date(2026, 4, 2),
        end=date(2026, 4, 9),
    )
    march_first = await record(graphql, march, cohort.unit_ids[0], "COMPETENCY_ACHIEVED")
    march_second = await record(graphql, march, cohort.unit_ids[1], "COMPETENCY_ACHIEVED")
    before = by_unit(await rolled_up(graphql, cohort.administrative_id))
    assert before[first]["sourceResult"] == {"id": march_first}
    assert before[second]["sourceResult"] == {"id": march_second}

    unlinked = await mutate(graphql, UNLINK, "unlinkEnrolments", {"sessionEnrolmentId": march})
    assert unlinked["link"]["unlinkedAt"] is not None
    after = by_unit(await rolled_up(graphql, cohort.administrative_id))

    # The first unit had no other source, and the second falls back to the April session.
    assert without_unit(after[first]) == UNRECORDED
    assert without_unit(after[second]) == rolled_up_from(
        april_result, "COMPETENCY_NOT_ACHIEVED", date(2026, 4, 2), date(2026, 4, 9)
    )


async def test_session_withdrawal_rolls_up_40(graphql: GraphQLClient) -> None:
    cohort = await given_cohort(
        graphql,
        unit_count=4,
        administrative_units=[0, 1, 2, 3],
        session_units=[[0, 1, 2, 3]],
    )
    started, finished, planned, unrecorded = cohort.unit_codes
    session_id = cohort.session_ids[0]
    continuing = await record(
        graphql,
        session_id,
        cohort.unit_ids[0],
        "CONTINUING",
        start=date(2026, 3, 2),
        end=date(2026, 3, 27),
    )
    achieved = await record(
        graphql,
        session_id,
        cohort.unit_ids[1],
        "COMPETENCY_ACHIEVED",
        start=date(2026, 3, 2),
        end=date(2026, 3, 9),
    )
    # Planned to start after the withdrawal date, so it never started.
    not_started = await record(
        graphql,
        session_id,
        cohort.unit_ids[2],
        "NOT_YET_STARTED",
        start=date(2026, 3, 20),
    )
    await rolled_up(graphql, cohort.administrative_id)

    withdrawn = await mutate(
        graphql,
        WITHDRAW,
        "withdrawEnrolment",
        {"enrolmentId": session_id, "withdrawnOn": "2026-03-15"},
    )
    assert withdrawn["enrolments"] == [{"id": session_id, "status": "WITHDRAWN"}]
    enrolment = await rolled_up(graphql, cohort.administrative_id)
    results = by_unit(enrolment)

    assert enrolment["status"] == "ACTIVE"
    assert without_unit(results[started]) == rolled_up_from(
        continuing, "WITHDRAWN", date(2026, 3, 2), date(2026, 3, 15)
    )
    assert without_unit(results[finished]) == rolled_up_from(
        achieved, "COMPETENCY_ACHIEVED", date(2026, 3, 2), date(2026, 3, 9)
    )
    assert without_unit(results[planned]) == rolled_up_from(
        not_started, "NOT_YET_STARTED", date(2026, 3, 20), date(2026, 3, 28)
    )
    assert without_unit(results[unrecorded]) == UNRECORDED


async def test_administrative_withdrawal_cascades(graphql: GraphQLClient) -> None:
    cohort = await given_cohort(
        graphql, unit_count=2, administrative_units=[0, 1], session_units=[[0], [1]]
    )
    started, unstarted = cohort.unit_codes
    march, april = cohort.session_ids
    continuing = await record(
        graphql, march, cohort.unit_ids[0], "CONTINUING", start=date(2026, 3, 2)
    )
    await rolled_up(graphql, cohort.administrative_id)

    withdrawn = await mutate(
        graphql,
        WITHDRAW,
        "withdrawEnrolment",
        {"enrolmentId": cohort.administrative_id, "withdrawnOn": "2026-03-15", "cascade": True},
    )
    assert withdrawn["enrolments"] == [
        {"id": cohort.administrative_id, "status": "WITHDRAWN"},
        {"id": march, "status": "WITHDRAWN"},
        {"id": april, "status": "WITHDRAWN"},
    ]
    enrolment = await rolled_up(graphql, cohort.administrative_id)
    results = by_unit(enrolment)

    assert enrolment["status"] == "WITHDRAWN"
    assert without_unit(results[started]) == rolled_up_from(
        continuing, "WITHDRAWN", date(2026, 3, 2), date(2026, 3, 15)
    )
    # The April session had not begun on the withdrawal date, so its unit never started.
    assert without_unit(results[unstarted]) == UNRECORDED


async def test_deleted_session_results_disappear(graphql: GraphQLClient) -> None:
    cohort = await given_cohort(
        graphql, unit_count=2, administrative_units=[0, 1], session_units=[[0], [0, 1]]
    )
    shared, only_april = cohort.unit_codes
    march, april = cohort.session_ids
    march_result = await record(
        graphql,
        march,
        cohort.unit_ids[0],
        "COMPETENCY_NOT_ACHIEVED",
        start=date(2026, 3, 2),
        end=date(2026, 3, 27),
    )
    april_result = await record(graphql, april, cohort.unit_ids[0], "COMPETENCY_ACHIEVED")
    await record(graphql, april, cohort.unit_ids[1], "COMPETENCY_ACHIEVED")
    before = by_unit(await rolled_up(graphql, cohort.administrative_id))
    assert before[shared]["sourceResult"] == {"id": april_result}
    assert before[only_april]["outcome"] == "COMPETENCY_ACHIEVED"

    deleted = await mutate(graphql, DELETE, "deleteEnrolment", {"enrolmentId": april})
    assert deleted["enrolment"]["deletedAt"] is not None
    after = by_unit(await rolled_up(graphql, cohort.administrative_id))

    assert without_unit(after[shared]) == rolled_up_from(
        march_result, "COMPETENCY_NOT_ACHIEVED", date(2026, 3, 2), date(2026, 3, 27)
    )
    assert without_unit(after[only_april]) == UNRECORDED


async def test_added_unit_picks_up_session_result(graphql: GraphQLClient) -> None:
    cohort = await given_cohort(
        graphql, unit_count=2, administrative_units=[0], session_units=[[0, 1]]
    )
    carried, added = cohort.unit_codes
    session_result = await record(
        graphql,
        cohort.session_ids[0],
        cohort.unit_ids[1],
        "CREDIT_TRANSFER",
        start=date(2026, 3, 2),
        end=date(2026, 3, 2),
    )
    before = await rolled_up(graphql, cohort.administrative_id)
    assert [result["unit"]["code"] for result in before["results"]] == [carried]

    await mutate(
        graphql,
        ADD_UNITS,
        "addOccurrenceUnits",
        {"occurrenceId": cohort.administrative_occurrence_id, "unitIds": [cohort.unit_ids[1]]},
    )
    after = by_unit(await rolled_up(graphql, cohort.administrative_id))

    assert list(after) == [carried, added]
    assert without_unit(after[carried]) == UNRECORDED
    assert without_unit(after[added]) == rolled_up_from(
        session_result, "CREDIT_TRANSFER", date(2026, 3, 2), date(2026, 3, 2)
    )


async def test_removed_unit_keeps_shared_link(graphql: GraphQLClient) -> None:
    cohort = await given_cohort(
        graphql, unit_count=2, administrative_units=[0, 1], session_units=[[0, 1]]
    )
    recorded, removed = cohort.unit_codes
    session_result = await record(
        graphql,
        cohort.session_ids[0],
        cohort.unit_ids[0],
        "COMPETENCY_ACHIEVED",
        start=date(2026, 3, 2),
        end=date(2026, 3, 13),
    )
    await rolled_up(graphql, cohort.administrative_id)

    await mutate(
        graphql,
        REMOVE_UNIT,
        "removeOccurrenceUnit",
        {"occurrenceId": cohort.session_occurrence_ids[0], "unitId": cohort.unit_ids[1]},
    )
    enrolment = await rolled_up(graphql, cohort.administrative_id)
    results = by_unit(enrolment)

    assert [link["unlinkedAt"] for link in enrolment["links"]] == [None]
    assert without_unit(results[recorded]) == rolled_up_from(
        session_result, "COMPETENCY_ACHIEVED", date(2026, 3, 2), date(2026, 3, 13)
    )
    assert without_unit(results[removed]) == UNRECORDED


async def test_removed_last_shared_unit_closes_link(graphql: GraphQLClient) -> None:
    # The session shares only its first unit with the administrative occurrence. Its result for
    # the second unit is never rolled up, because the administrative occurrence lacks that unit.
    cohort = await given_cohort(
        graphql, unit_count=3, administrative_units=[0, 2], session_units=[[0, 1]]
    )
    shared, session_only, administrative_only = cohort.unit_codes
    await record(graphql, cohort.session_ids[0], cohort.unit_ids[1], "COMPETENCY_ACHIEVED")
    before = await rolled_up(graphql, cohort.administrative_id)
    assert [result["unit"]["code"] for result in before["results"]] == [
        shared,
        administrative_only,
    ]

    await mutate(
        graphql,
        REMOVE_UNIT,
        "removeOccurrenceUnit",
        {"occurrenceId": cohort.session_occurrence_ids[0], "unitId": cohort.unit_ids[0]},
    )
    enrolment = await rolled_up(graphql, cohort.administrative_id)
    results = by_unit(enrolment)

    (link,) = enrolment["links"]
    assert link["unlinkedAt"] is not None
    assert link["unlinkReason"].startswith("NO_SHARED_UNITS: ")
    assert session_only not in results
    assert without_unit(results[shared]) == UNRECORDED
    assert without_unit(results[administrative_only]) == UNRECORDED
