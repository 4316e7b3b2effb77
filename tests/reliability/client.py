"""A synchronous GraphQL client for the reliability tests, and the documents they share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx

CREATE_UNIT = """
mutation ($code: String!, $title: String!) {
  createUnit(input: {code: $code, title: $title, nominalHours: 20}) {
    unit { id } errors { code message }
  }
}
"""

CREATE_PROGRAMME = """
mutation ($code: String!, $name: String!, $unitIds: [ID!]!) {
  createProgramme(input: {code: $code, name: $name, unitIds: $unitIds}) {
    programme { id } errors { code message }
  }
}
"""

CREATE_OCCURRENCE = """
mutation ($input: CreateOccurrenceInput!) {
  createOccurrence(input: $input) { occurrence { id } errors { code message field } }
}
"""

CREATE_CLIENT = """
mutation ($code: String!, $surname: String!) {
  createClient(input: {clientCode: $code, surname: $surname}) {
    client { id } errors { code message }
  }
}
"""

ENROL_CLIENT = """
mutation ($input: EnrolClientInput!) {
  enrolClient(input: $input) {
    enrolment { id startDate endDate }
    link { id administrativeEnrolment { id } }
    errors { code message field }
  }
}
"""

LINK_ENROLMENTS = """
mutation ($administrative: ID!, $session: ID!) {
  linkEnrolments(
    input: {administrativeEnrolmentId: $administrative, sessionEnrolmentId: $session}
  ) {
    link { id } errors { code message field }
  }
}
"""

UNLINK_ENROLMENTS = """
mutation ($session: ID!) {
  unlinkEnrolments(input: {sessionEnrolmentId: $session}) {
    link { id administrativeEnrolment { id } } errors { code message field }
  }
}
"""

RECORD_RESULT = """
mutation ($input: RecordResultInput!) {
  recordResult(input: $input) { result { id outcomeCode } errors { code message field } }
}
"""

RECORD_RESULTS = """
mutation ($input: RecordResultsInput!) {
  recordResults(input: $input) { results { id } errors { code message field } }
}
"""

WITHDRAW_ENROLMENT = """
mutation ($id: ID!, $on: Date!, $cascade: Boolean) {
  withdrawEnrolment(input: {enrolmentId: $id, withdrawnOn: $on, cascade: $cascade}) {
    enrolments { id } errors { code message field }
  }
}
"""

DELETE_ENROLMENT = """
mutation ($id: ID!) {
  deleteEnrolment(input: {enrolmentId: $id}) { enrolment { id } errors { code message field } }
}
"""

ADD_OCCURRENCE_UNITS = """
mutation ($occurrence: ID!, $units: [ID!]!) {
  addOccurrenceUnits(input: {occurrenceId: $occurrence, unitIds: $units}) {
    occurrence { id } errors { code message field }
  }
}
"""

REMOVE_OCCURRENCE_UNIT = """
mutation ($occurrence: ID!, $unit: ID!) {
  removeOccurrenceUnit(input: {occurrenceId: $occurrence, unitId: $unit}) {
    occurrence { id } errors { code message field }
  }
}
"""

RECONCILE_LINKS = """
mutation { reconcileLinks { run { id counts { cause found repaired } } errors { code message } } }
"""

CREATE_CLASS = """
mutation ($occurrence: ID!, $startsAt: DateTime!, $endsAt: DateTime!) {
  createClass(input: {occurrenceId: $occurrence, startsAt: $startsAt, endsAt: $endsAt}) {
    class { id } errors { code message }
  }
}
"""

RECORD_PAYMENT = """
mutation ($enrolment: ID!, $amount: Decimal!, $paidOn: Date!) {
  recordPayment(input: {enrolmentId: $enrolment, amount: $amount, paidOn: $paidOn}) {
    payment { id } errors { code message }
  }
}
"""

CREATE_PARTNER = """
mutation ($code: String!, $name: String!) {
  createPartner(input: {code: $code, name: $name}) { partner { id } errors { code message } }
}
"""


class GraphQLFailure(AssertionError):
    """A response that carried top-level errors or an unexpected status."""


@dataclass
class ApiClient:
    """Posts GraphQL documents to /graphql with a bearer token over one kept-alive connection."""

    url: str
    token: str
    timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        self.http = httpx.Client(
            timeout=self.timeout_seconds, headers={"Authorization": f"Bearer {self.token}"}
        )

    def close(self) -> None:
        self.http.close()

    def execute(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Return the whole response body; raise GraphQLFailure unless the status is 200."""
        response = self.http.post(self.url, json={"query": document, "variables": variables or {}})
        if response.status_code != 200:
            raise GraphQLFailure(f"HTTP {response.status_code}: {response.text[:2000]}")
        body: dict[str, Any] = response.json()
        return body

    def payload(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Return the mutation's payload (user errors included); raise on top-level errors."""
        body = self.execute(document, variables)
        if body.get("errors"):
            raise GraphQLFailure(f"top-level errors: {body['errors']}")
        data: dict[str, Any] = body["data"]
        (payload,) = data.values()
        assert isinstance(payload, dict)
        return payload

    def create(self, document: str, variables: dict[str, Any], key: str) -> str:
        """Run a create mutation that must succeed and return the new object's global id."""
        payload = self.payload(document, variables)
        if payload["errors"]:
            raise GraphQLFailure(f"{key} not created: {payload['errors']}")
        created: str = payload[key]["id"]
        return created


def iso(day: date) -> str:
    return day.isoformat()
