"""Read tests run twice: on the compiled single-statement path and on the resolvers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from enrolink.settings import Settings, load_settings
from tests.api.conftest import graphql
from tests.conftest import delete_queue_keys

__all__ = ["app_settings", "graphql"]


@pytest.fixture(params=[True, False], ids=["compiled", "resolvers"])
def app_settings(
    request: pytest.FixtureRequest, database_url: str, redis_url: str
) -> Iterator[Settings]:
    suffix = uuid.uuid4().hex[:8]
    settings = load_settings(
        environment="development",
        database_url=database_url,
        redis_url=redis_url,
        roll_up_queue=f"roll_up_{suffix}",
        reconcile_queue=f"reconcile_{suffix}",
        compiled_reads=request.param,
    )
    yield settings
    delete_queue_keys(redis_url, [settings.roll_up_queue, settings.reconcile_queue])
