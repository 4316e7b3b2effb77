"""The walkthrough end to end: its examples, in order, against `enrolink serve` and a real worker.

The module runs every example once on a database loaded by `enrolink seed`, as a user would in
GraphiQL under `enrolink dev`, and the tests below check what the responses show. The last test
checks that docs/walkthrough.md shows these same documents and responses.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
import pytest
from sqlalchemy.engine import make_url

from examples.services import start_demo
from examples.walkthrough import (
    FOLLOWED_ENROLMENT_ID,
    WALKTHROUGH_PATH,
    Outcome,
    documented_blocks,
    examples,
    plain_postgres_url,
    render_block,
)


@dataclass(frozen=True)
class WalkthroughRun:
    outcomes: dict[str, Outcome]
    first_seed_output: str
    second_seed_output: str
    reconcile_output: str

    def data(self, name: str) -> dict[str, Any]:
        response = self.outcomes[name].response
        assert response is not None, f"{name} is not a GraphQL example"
        assert "errors" not in response, response
        data: dict[str, Any] = response["data"]
        return data


async def _admin_execute(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(plain_postgres_url(server_url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def walkthrough_database_url(postgres_server_url: str, template_database: str) -> Iterator[str]:
    name = f"enrolink_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(
        _admin_execute(
            postgres_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'
        )
    )
    try:
        yield make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(
            _admin_execute(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        )


@pytest.fixture(scope="module")
def walkthrough(
    walkthrough_database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WalkthroughRun]:
    folder: Path = tmp_path_factory.mktemp("walkthrough")
    stack, demo = start_demo(walkthrough_database_url, redis_url, folder)
    try:
        outcomes = {outcome.example.name: outcome for outcome in demo.walkthrough.run_all()}
        # Whatever the last example changed is rolled up before the reconciler runs again.
        demo.walkthrough.wait_for_roll_up()
        second_seed = stack.run_command("seed")
        reconciled = stack.run_command("reconcile")
    finally:
        demo.walkthrough.close()
        stack.stop()
    assert second_seed.returncode == 0, second_seed.stderr
    assert reconciled.returncode == 0, reconciled.stderr
    yield WalkthroughRun(outcomes, demo.seed_output, second_seed.stdout, reconciled.stdout)


def results_by_unit(enrolment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {result["unit"]["code"]: result for result in enrolment["results"]}


def source_occurrence(result: dict[str, Any]) -> str | None:
    source = result["sourceResult"]
    return None if source is None else str(source["enrolment"]["occurrence"]["code"])


def test_every_example_runs(walkthrough: WalkthroughRun) -> None:
    assert sorted(walkthrough.outcomes) == [example.name for example in examples()]
    for name, outcome in walkthrough.outcomes.items():
        if outcome.response is not None:
            assert "errors" not in outcome.response, (name, outcome.response)


def test_seed_command_loads_once(walkthrough: WalkthroughRun) -> None:
    assert "Loaded the demo data" in walkthrough.first_seed_output
    assert "already in the database" in walkthrough.second_seed_output


def test_enrolment_links_to_administrative(walkthrough: WalkthroughRun) -> None:
    enrolled = walkthrough.data("05-enrol-with-link")["enrolClient"]

    assert enrolled["errors"] == []
    assert enrolled["link"]["administrativeEnrolment"]["id"] == FOLLOWED_ENROLMENT_ID
    assert enrolled["link"]["sharedUnits"] == [{"code": "BSBCMM511"}]


def test_administrative_results_are_rolled_up(walkthrough: WalkthroughRun) -> None:
    enrolment = walkthrough.data("09-administrative-results")["enrolment"]
    results = results_by_unit(enrolment)

    assert enrolment["rollUp"] == {"pending": False}
    assert len(results) == 12
    for code, result in results.items():
        assert result["source"] == "ROLLED_UP", code
        assert result["outcomeCode"] is not None, code
        assert result["sourceResult"] is not None, code
    # The re-attempt recorded in the catch-up session outranks the 30 of session 1.
    assert results["BSBCMM511"]["outcomeCode"] == 20
    assert source_occurrence(results["BSBCMM511"]) == "LDM26-CU1"
    assert results["BSBCMM511"]["startDate"] == "2026-02-02"
    assert results["BSBCMM511"]["endDate"] == "2026-07-31"


def test_results_rejected_on_administrative(walkthrough: WalkthroughRun) -> None:
    payload = walkthrough.data("10-result-on-administrative")["recordResult"]

    assert payload["result"] is None
    assert [error["code"] for error in payload["errors"]] == [
        "RESULTS_NOT_ALLOWED_ON_ADMINISTRATIVE"
    ]


def test_attendance_rejected_on_administrative(walkthrough: WalkthroughRun) -> None:
    payload = walkthrough.data("11-attendance-on-administrative")["recordAttendance"]

    assert payload["attendance"] is None
    assert [error["code"] for error in payload["errors"]] == [
        "ATTENDANCE_NOT_ALLOWED_ON_ADMINISTRATIVE"
    ]


def test_unlink_removes_session_results(walkthrough: WalkthroughRun) -> None:
    unlinked = walkthrough.data("13-unlink")["unlinkEnrolments"]
    enrolment = walkthrough.data("14-after-unlink")["enrolment"]
    results = results_by_unit(enrolment)

    assert unlinked["errors"] == []
    assert enrolment["rollUp"] == {"pending": False}
    assert "LDM26-CU1" not in {source_occurrence(result) for result in results.values()}
    assert results["BSBCMM511"]["outcomeCode"] == 30
    assert source_occurrence(results["BSBCMM511"]) == "LDM26-S1"


def test_link_later_restores_results(walkthrough: WalkthroughRun) -> None:
    linked = walkthrough.data("15-link-later")["linkEnrolments"]
    results = results_by_unit(walkthrough.data("18-after-reconcile")["enrolment"])

    assert linked["errors"] == []
    assert linked["link"]["unlinkedAt"] is None
    assert source_occurrence(results["BSBCMM511"]) == "LDM26-CU1"


def test_reconciler_repairs_deleted_enrolment(walkthrough: WalkthroughRun) -> None:
    deleted = walkthrough.outcomes["16-import-deletes-enrolment"]
    run = walkthrough.data("17-reconcile")["reconcileLinks"]["run"]
    counts = {count["cause"]: count for count in run["counts"]}
    enrolment = walkthrough.data("18-after-reconcile")["enrolment"]
    results = results_by_unit(enrolment)
    linked = [linked["occurrence"]["code"] for linked in enrolment["linkedEnrolments"]]

    assert deleted.status == "UPDATE 1"
    assert counts["ENROLMENT_DELETED"] == {
        "cause": "ENROLMENT_DELETED",
        "found": 1,
        "repaired": 1,
    }
    assert enrolment["rollUp"] == {"pending": False}
    assert "LDM26-S2" not in linked
    for code in ("BSBLDR523", "BSBPEF502"):
        assert results[code]["outcomeCode"] is None, code
        assert results[code]["sourceResult"] is None, code


def test_reconcile_command_finds_nothing_left(walkthrough: WalkthroughRun) -> None:
    assert "ENROLMENT_DELETED: found 0, repaired 0" in walkthrough.reconcile_output


def test_walkthrough_doc_matches_responses(walkthrough: WalkthroughRun) -> None:
    documented = documented_blocks(WALKTHROUGH_PATH.read_text(encoding="utf-8"))
    hint = "docs/walkthrough.md is out of date; run `python -m examples.capture` to rewrite it."

    for name, outcome in walkthrough.outcomes.items():
        assert name in documented, f"{name} has no block in docs/walkthrough.md. {hint}"
        assert documented[name] == render_block(outcome), f"{name} differs. {hint}"
