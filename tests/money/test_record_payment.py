"""recordPayment and Enrolment.balance: money goes on administrative and standard enrolments."""

from __future__ import annotations

from typing import Any

from models.enums import OccurrenceKind
from schema.ids import encode_id
from tests.api.conftest import GraphQLClient
from tests.catalogue.builders import (
    Qualification,
    create_client,
    create_occurrence,
    given_qualification,
    insert_enrolment,
    insert_link,
    snapshot,
)

RECORD_PAYMENT = """
mutation ($input: RecordPaymentInput!) {
  recordPayment(input: $input) {
    payment { id amount paidOn method reference enrolment { id balance } }
    errors { code message field }
  }
}
"""

BALANCE = """
query ($id: ID!) { enrolment(id: $id) { balance payments { amount } } }
"""


async def _given_administrative(graphql: GraphQLClient) -> tuple[Qualification, str, str]:
    """Return the qualification, its client and the client's administrative enrolment."""
    qualification = await given_qualification(graphql, fee="4500.00")
    client_id = await create_client(graphql, "C001")
    enrolment_id = await insert_enrolment(graphql, client_id, qualification.administrative_id)
    return qualification, client_id, enrolment_id


def _input(enrolment_id: str, amount: Any = "1000.00", **fields: Any) -> dict[str, Any]:
    return {"enrolmentId": enrolment_id, "amount": amount, "paidOn": "2026-02-10", **fields}


async def _errors(graphql: GraphQLClient, input: dict[str, Any]) -> list[dict[str, Any]]:
    data = await graphql.data(RECORD_PAYMENT, {"input": input})
    assert data["recordPayment"]["payment"] is None
    errors: list[dict[str, Any]] = data["recordPayment"]["errors"]
    return errors


def _codes(errors: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(error["code"], error["field"]) for error in errors]


async def test_record_payment_reduces_balance(graphql: GraphQLClient) -> None:
    _, _, enrolment_id = await _given_administrative(graphql)

    data = await graphql.data(
        RECORD_PAYMENT,
        {"input": _input(enrolment_id, method=" card ", reference="INV-0042")},
    )

    payload = data["recordPayment"]
    assert payload["errors"] == []
    payment = payload["payment"]
    assert payment["amount"] == "1000.00"
    assert payment["paidOn"] == "2026-02-10"
    assert payment["method"] == "card"
    assert payment["reference"] == "INV-0042"
    assert payment["enrolment"] == {"id": enrolment_id, "balance": "3500.00"}


async def test_record_payment_sums_payments_exactly(graphql: GraphQLClient) -> None:
    # 0.10 + 0.20 is 0.30000000000000004 in binary floating point; the balance stays exact.
    _, _, enrolment_id = await _given_administrative(graphql)

    await graphql.data(RECORD_PAYMENT, {"input": _input(enrolment_id, "0.10")})
    await graphql.data(RECORD_PAYMENT, {"input": _input(enrolment_id, 0.2)})

    data = await graphql.data(BALANCE, {"id": enrolment_id})
    assert data["enrolment"]["balance"] == "4499.70"
    assert data["enrolment"]["payments"] == [{"amount": "0.10"}, {"amount": "0.20"}]


async def test_record_payment_on_standard(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    standard = await create_occurrence(
        graphql, qualification.programme_id, "BSB50420-STD", OccurrenceKind.STANDARD, fee="350"
    )
    enrolment_id = await insert_enrolment(graphql, await create_client(graphql, "C001"), standard)

    data = await graphql.data(RECORD_PAYMENT, {"input": _input(enrolment_id, "350")})

    assert data["recordPayment"]["payment"]["enrolment"]["balance"] == "0.00"


async def test_record_payment_rejects_linked_session(graphql: GraphQLClient) -> None:
    qualification, client_id, administrative = await _given_administrative(graphql)
    session_enrolment = await insert_enrolment(graphql, client_id, qualification.session_ids[0])
    await insert_link(graphql, administrative, session_enrolment)
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input(session_enrolment))

    assert _codes(errors) == [("PAYMENTS_NOT_ALLOWED_ON_SESSION", "enrolmentId")]
    assert administrative in errors[0]["message"]
    assert await snapshot(graphql) == before


async def test_record_payment_rejects_unlinked_session(graphql: GraphQLClient) -> None:
    qualification, client_id, _ = await _given_administrative(graphql)
    session_enrolment = await insert_enrolment(graphql, client_id, qualification.session_ids[0])
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input(session_enrolment))

    assert _codes(errors) == [("PAYMENTS_NOT_ALLOWED_ON_SESSION", "enrolmentId")]
    assert "ADMINISTRATIVE occurrence" in errors[0]["message"]
    assert await snapshot(graphql) == before


async def test_session_enrolment_has_no_balance(graphql: GraphQLClient) -> None:
    qualification, client_id, _ = await _given_administrative(graphql)
    session_enrolment = await insert_enrolment(graphql, client_id, qualification.session_ids[0])

    data = await graphql.data(BALANCE, {"id": session_enrolment})

    assert data["enrolment"]["balance"] is None


async def test_record_payment_rejects_amounts(graphql: GraphQLClient) -> None:
    _, _, enrolment_id = await _given_administrative(graphql)
    before = await snapshot(graphql)

    for amount in ["0", "0.00", "-5.00", "10.005", "10000000000.00", "NaN", "Infinity"]:
        errors = await _errors(graphql, _input(enrolment_id, amount))

        assert _codes(errors) == [("INVALID_INPUT", "amount")], amount

    assert await snapshot(graphql) == before


async def test_record_payment_accepts_amounts(graphql: GraphQLClient) -> None:
    _, _, enrolment_id = await _given_administrative(graphql)

    for amount, stored in [
        ("0.01", "0.01"),
        ("9999999999.99", "9999999999.99"),
        ("12.300", "12.30"),
        ("1E+2", "100.00"),
    ]:
        data = await graphql.data(RECORD_PAYMENT, {"input": _input(enrolment_id, amount)})

        assert data["recordPayment"]["errors"] == [], amount
        assert data["recordPayment"]["payment"]["amount"] == stored, amount


async def test_record_payment_rejects_deleted_enrolment(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    client_id = await create_client(graphql, "C001")
    enrolment_id = await insert_enrolment(
        graphql, client_id, qualification.administrative_id, deleted=True
    )
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input(enrolment_id))

    assert _codes(errors) == [("ENROLMENT_NOT_ACTIVE", "enrolmentId")]
    assert await snapshot(graphql) == before


async def test_record_payment_rejects_missing_enrolment(graphql: GraphQLClient) -> None:
    await _given_administrative(graphql)
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input(encode_id("Enrolment", 999_999)))

    assert _codes(errors) == [("NOT_FOUND", "enrolmentId")]
    assert await snapshot(graphql) == before
