"""A small world in which every mutation of these areas has a valid input to start from.

Each table test takes a valid input, spoils one field and checks the payload. Successful calls
create rows, so every code in a valid input is made unique with a counter.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.api.conftest import GraphQLClient
from tests.catalogue.builders import (
    create_class,
    create_client,
    create_partner,
    create_unit,
    given_qualification,
    insert_enrolment,
)

# Each mutation with the object its payload returns and the fields read back from it.
DOCUMENTS = {
    "createUnit": "unit { id code title }",
    "createProgramme": "programme { id code name }",
    "createPartner": "partner { id code name }",
    "createOccurrence": "occurrence { id code name location startDate endDate fee }",
    "createClient": "client { id clientCode givenName surname email usi dateOfBirth }",
    "createClass": "class { id location startsAt }",
    "recordAttendance": "attendance { id notes }",
    "recordPayment": "payment { id amount method reference paidOn }",
    "addOccurrenceUnits": "occurrence { id }",
    "removeOccurrenceUnit": "occurrence { id }",
}


def document(mutation: str) -> str:
    input_type = mutation[0].upper() + mutation[1:] + "Input"
    return (
        f"mutation ($input: {input_type}!) {{ {mutation}(input: $input) {{ "
        f"{DOCUMENTS[mutation]} errors {{ code message field }} }} }}"
    )


@dataclass
class World:
    unit_ids: list[str]
    spare_unit_id: str
    programme_id: str
    session_id: str
    class_id: str
    partner_id: str
    session_enrolment_id: str
    administrative_enrolment_id: str
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def valid_input(self, mutation: str) -> dict[str, Any]:
        """Return an input that succeeds and differs in its codes from every earlier one."""
        n = next(self.numbers)
        inputs: dict[str, Callable[[], dict[str, Any]]] = {
            "createUnit": lambda: {"code": f"HYG{n}", "title": "Workplace safety"},
            "createProgramme": lambda: {
                "code": f"P{n}",
                "name": "Safety session",
                "unitIds": [self.unit_ids[0]],
            },
            "createPartner": lambda: {"code": f"PT{n}", "name": "Acme Plumbing"},
            "createOccurrence": lambda: {
                "programmeId": self.programme_id,
                "code": f"O{n}",
                "name": "Diploma, term 1",
                "kind": "STANDARD",
                "startDate": "2026-02-02",
                "endDate": "2026-11-27",
                "location": "Parramatta",
            },
            "createClient": lambda: {
                "clientCode": f"H{n}",
                "givenName": "Mia",
                "surname": "Nguyen",
                "email": "mia@example.com.au",
                "partnerId": self.partner_id,
            },
            "createClass": lambda: {
                "occurrenceId": self.session_id,
                "startsAt": "2026-03-02T09:00:00+11:00",
                "endsAt": "2026-03-02T12:00:00+11:00",
                "location": "Room 4",
            },
            "recordAttendance": lambda: {
                "classId": self.class_id,
                "enrolmentId": self.session_enrolment_id,
                "attendanceType": "PRESENT",
                "notes": "On time",
            },
            "recordPayment": lambda: {
                "enrolmentId": self.administrative_enrolment_id,
                "amount": "10.00",
                "paidOn": "2026-02-10",
                "method": "card",
                "reference": f"R{n}",
            },
            "addOccurrenceUnits": lambda: {
                "occurrenceId": self.session_id,
                "unitIds": [self.unit_ids[0]],
            },
            "removeOccurrenceUnit": lambda: {
                "occurrenceId": self.session_id,
                "unitId": self.spare_unit_id,
            },
        }
        return inputs[mutation]()


async def given_world(graphql: GraphQLClient) -> World:
    qualification = await given_qualification(graphql)
    session_id = qualification.session_ids[0]
    client_id = await create_client(graphql, "C001")
    class_id = await create_class(
        graphql, session_id, "2026-03-02T09:00:00+11:00", "2026-03-02T12:00:00+11:00"
    )
    return World(
        unit_ids=qualification.unit_ids,
        spare_unit_id=await create_unit(graphql, "ZZSPARE1"),
        programme_id=qualification.programme_id,
        session_id=session_id,
        class_id=class_id,
        partner_id=await create_partner(graphql, "ACME"),
        session_enrolment_id=await insert_enrolment(graphql, client_id, session_id),
        administrative_enrolment_id=await insert_enrolment(
            graphql, client_id, qualification.administrative_id
        ),
    )


async def send(graphql: GraphQLClient, mutation: str, input: dict[str, Any]) -> dict[str, Any]:
    """Send one mutation and return its payload."""
    data = await graphql.data(document(mutation), {"input": input})
    payload: dict[str, Any] = data[mutation]
    return payload


def returned(payload: dict[str, Any], field_name: str) -> Any:
    """Return a field of the object in a payload, e.g. ``surname`` of ``client``."""
    objects = [value for key, value in payload.items() if key != "errors"]
    assert len(objects) == 1, payload
    assert objects[0] is not None, payload
    return objects[0][field_name]
