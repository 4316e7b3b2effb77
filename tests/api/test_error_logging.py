"""Errors a client caused are logged at INFO; unexpected exceptions once, at ERROR."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import structlog

from models import catalogue
from tests.api.conftest import GraphQLClient

CREATE_UNIT = """
mutation { createUnit(input: {code: "LOG1", title: "Logged unit"}) { unit { id } } }
"""


async def test_invalid_document_logged_as_rejected(
    graphql: GraphQLClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO), structlog.testing.capture_logs() as logs:
        body = await graphql.execute("{ partners { nosuchfield } }")

    rejected = [entry for entry in logs if entry["event"] == "graphql.request_rejected"]
    assert body["errors"], body
    assert len(rejected) == 1
    assert rejected[0]["log_level"] == "info"
    assert "nosuchfield" in rejected[0]["error"]
    assert rejected[0]["request_id"]
    assert [entry for entry in logs if entry["log_level"] == "error"] == []
    assert [record for record in caplog.records if record.levelno >= logging.ERROR] == []


async def test_unexpected_error_logged_once(
    graphql: GraphQLClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("the catalogue is broken")

    monkeypatch.setattr(catalogue, "create_unit", broken)
    with caplog.at_level(logging.INFO), structlog.testing.capture_logs() as logs:
        body = await graphql.execute(CREATE_UNIT)

    errors = [entry for entry in logs if entry["log_level"] == "error"]
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert [entry["event"] for entry in errors] == ["graphql.unexpected_error"]
    assert [record for record in caplog.records if record.levelno >= logging.ERROR] == []
