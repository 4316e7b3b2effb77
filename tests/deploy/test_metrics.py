"""/metrics of the API and the task counters of the workers, on real PostgreSQL and Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from enrolink import metrics
from enrolink.settings import Settings, load_settings
from tests.deploy.conftest import AppClient, closed_port
from workers.metrics import connect_task_signals

NAMED_QUERY = "query ListProgrammes { programmes(first: 5) { edges { node { id } } } }"
ANONYMOUS_QUERY = "{ programmes(first: 5) { edges { node { id } } } }"
INVALID_QUERY = "query Broken { noSuchField }"


def sample(name: str, **labels: str) -> float:
    """Return the current value of a sample in this process, 0 when it does not exist yet."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def parse(body: str) -> dict[str, float]:
    """Return the unlabelled samples of a text exposition, by name."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        for item in family.samples:
            if not item.labels:
                values[item.name] = item.value
    return values


async def test_named_query_labelled(app_client: AppClient, app_settings: Settings) -> None:
    labels = {"operation": "ListProgrammes", "operation_type": "query"}
    before = sample("enrolink_graphql_request_duration_seconds_count", **labels, outcome="success")
    statements_before = sample("enrolink_graphql_sql_statements_sum", **labels)

    async with app_client(app_settings) as http:
        response = await http.post("/graphql", json={"query": NAMED_QUERY})

    assert response.status_code == 200
    assert "errors" not in response.json()
    after = sample("enrolink_graphql_request_duration_seconds_count", **labels, outcome="success")
    assert after == before + 1
    # The connection query counts at least one statement; nested levels would add more.
    assert sample("enrolink_graphql_sql_statements_sum", **labels) > statements_before


async def test_anonymous_query_folded(app_client: AppClient, app_settings: Settings) -> None:
    labels = {"operation": "anonymous", "operation_type": "query", "outcome": "success"}
    before = sample("enrolink_graphql_request_duration_seconds_count", **labels)

    async with app_client(app_settings) as http:
        await http.post("/graphql", json={"query": ANONYMOUS_QUERY})

    assert sample("enrolink_graphql_request_duration_seconds_count", **labels) == before + 1


async def test_invalid_query_unknown_error(app_client: AppClient, app_settings: Settings) -> None:
    labels = {"operation": "unknown", "operation_type": "unknown", "outcome": "error"}
    before = sample("enrolink_graphql_request_duration_seconds_count", **labels)

    async with app_client(app_settings) as http:
        await http.post("/graphql", json={"query": INVALID_QUERY})

    # The name in a document that failed validation is not used as a label.
    assert sample("enrolink_graphql_request_duration_seconds_count", **labels) == before + 1
    assert (
        sample(
            "enrolink_graphql_request_duration_seconds_count",
            operation="Broken",
            operation_type="query",
            outcome="error",
        )
        == 0
    )


async def test_health_routes_not_timed(app_client: AppClient, app_settings: Settings) -> None:
    before = sample(
        "enrolink_graphql_request_duration_seconds_count",
        operation="unknown",
        operation_type="unknown",
        outcome="success",
    )

    async with app_client(app_settings) as http:
        await http.get("/healthz")
        await http.get("/readyz")

    after = sample(
        "enrolink_graphql_request_duration_seconds_count",
        operation="unknown",
        operation_type="unknown",
        outcome="success",
    )
    assert after == before


def test_operation_label_caps_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_operation_names", set())
    monkeypatch.setattr(metrics, "MAX_OPERATION_NAMES", 2)

    assert metrics.operation_label("First") == "First"
    assert metrics.operation_label("Second") == "Second"
    assert metrics.operation_label("Third") == "other"
    assert metrics.operation_label("First") == "First"
    assert metrics.operation_label(None) == "anonymous"
    assert metrics.operation_label("x" * 65) == "other"


async def test_metrics_text_format(app_client: AppClient, app_settings: Settings) -> None:
    async with app_client(app_settings) as http:
        response = await http.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert "enrolink_graphql_request_duration_seconds" in names
    assert "enrolink_graphql_sql_statements" in names
    assert "enrolink_outbox_waiting_rows" in names


async def test_outbox_gauges_read_rows(
    app_client: AppClient, app_settings: Settings, database_url: str
) -> None:
    max_count = app_settings.outbox_max_publish_count
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO outbox (task_name, payload, created_at, publish_count, "
                    "processed_at) VALUES "
                    "('enrolink.roll_up', '{}', now() - interval '90 seconds', 1, NULL), "
                    "('enrolink.roll_up', '{}', now() - interval '30 seconds', :given_up, NULL), "
                    "('enrolink.roll_up', '{}', now() - interval '1 hour', 1, now())"
                ),
                {"given_up": max_count},
            )
    finally:
        await engine.dispose()

    async with app_client(app_settings) as http:
        response = await http.get("/metrics")

    values = parse(response.text)
    assert values["enrolink_outbox_query_success"] == 1
    assert values["enrolink_outbox_waiting_rows"] == 2
    assert values["enrolink_outbox_given_up_rows"] == 1
    # The processed row an hour old is not waiting; the oldest waiting one is 90 seconds old.
    assert 90 <= values["enrolink_outbox_oldest_waiting_age_seconds"] < 150


async def test_outbox_gauges_empty(app_client: AppClient, app_settings: Settings) -> None:
    async with app_client(app_settings) as http:
        response = await http.get("/metrics")

    values = parse(response.text)
    assert values["enrolink_outbox_waiting_rows"] == 0
    assert values["enrolink_outbox_oldest_waiting_age_seconds"] == 0


async def test_outbox_failure_keeps_scrape(app_client: AppClient, redis_url: str) -> None:
    settings = load_settings(
        database_url=f"postgresql://enrolink@127.0.0.1:{closed_port()}/enrolink",
        redis_url=redis_url,
    )
    async with app_client(settings, authenticated=False) as http:
        response = await http.get("/metrics")

    assert response.status_code == 200
    values = parse(response.text)
    assert values["enrolink_outbox_query_success"] == 0
    assert "enrolink_outbox_waiting_rows" not in values


# ---------------------------------------------------------------------------------------------
# Celery signals


class FakeTask:
    """The sender of a Celery task signal: the task, of which the handlers read the name."""

    def __init__(self, name: str) -> None:
        self.name = name


@pytest.fixture(scope="module")
def celery_app() -> Celery:
    """Return an eager Celery app: tasks run in this process, with the same signals.

    The tasks are not shared (shared=False), so apps that other tests create never see them,
    and their names differ from Enrolink's, whose tasks other apps register.
    """
    app = Celery(f"metrics-{uuid.uuid4().hex[:8]}", set_as_current=False)
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = False
    connect_task_signals()

    @app.task(  # type: ignore[untyped-decorator]  # Celery ships no type hints
        name="enrolink_test.succeeds", shared=False
    )
    def succeeds() -> int:
        return 1

    @app.task(  # type: ignore[untyped-decorator]  # Celery ships no type hints
        name="enrolink_test.fails", shared=False
    )
    def fails() -> None:
        raise ValueError("Failed on purpose.")

    @app.task(  # type: ignore[untyped-decorator]  # Celery ships no type hints
        name="enrolink_test.retries", bind=True, max_retries=1, shared=False
    )
    def retries(self: Any) -> None:
        raise self.retry(countdown=0)

    return app


def counts(task: str) -> dict[str, float]:
    return {
        event: sample(f"enrolink_tasks_{event}_total", task=task)
        for event in ("started", "succeeded", "retried", "failed")
    }


def test_task_success_counted(celery_app: Celery) -> None:
    before = counts("enrolink_test.succeeds")
    duration_before = sample("enrolink_task_duration_seconds_count", task="enrolink_test.succeeds")

    celery_app.tasks["enrolink_test.succeeds"].delay()

    after = counts("enrolink_test.succeeds")
    assert after["started"] == before["started"] + 1
    assert after["succeeded"] == before["succeeded"] + 1
    assert after["failed"] == before["failed"]
    assert (
        sample("enrolink_task_duration_seconds_count", task="enrolink_test.succeeds")
        == duration_before + 1
    )


def test_task_failure_counted(celery_app: Celery) -> None:
    before = counts("enrolink_test.fails")

    celery_app.tasks["enrolink_test.fails"].delay()

    after = counts("enrolink_test.fails")
    assert after["started"] == before["started"] + 1
    assert after["failed"] == before["failed"] + 1
    assert after["succeeded"] == before["succeeded"]


def test_task_retry_counted(celery_app: Celery) -> None:
    before = counts("enrolink_test.retries")

    celery_app.tasks["enrolink_test.retries"].delay()

    after = counts("enrolink_test.retries")
    # Eager mode runs the retry at once: two attempts, one retry, then the final failure.
    assert after["started"] == before["started"] + 2
    assert after["retried"] == before["retried"] + 1
    assert after["failed"] == before["failed"] + 1


def test_reconcile_counts_by_cause() -> None:
    found = sample("enrolink_reconcile_found_total", cause="client_mismatch")
    repaired = sample("enrolink_reconcile_repaired_total", cause="client_mismatch")
    stale = sample("enrolink_reconcile_found_total", cause="stale_result")
    # The return value of workers.reconciliation.reconcile_task.
    result = {
        "run_id": 3,
        "client_mismatch_found": 4,
        "client_mismatch_repaired": 3,
        "stale_result_found": 2,
        "stale_result_repaired": 2,
    }

    metrics.on_task_success(sender=FakeTask("enrolink.reconcile"), result=result)

    assert sample("enrolink_reconcile_found_total", cause="client_mismatch") == found + 4
    assert sample("enrolink_reconcile_repaired_total", cause="client_mismatch") == repaired + 3
    assert sample("enrolink_reconcile_found_total", cause="stale_result") == stale + 2


def test_other_task_result_ignored() -> None:
    found = sample("enrolink_reconcile_found_total", cause="client_mismatch")

    metrics.on_task_success(
        sender=FakeTask("enrolink.roll_up"), result={"client_mismatch_found": 1}
    )

    assert sample("enrolink_reconcile_found_total", cause="client_mismatch") == found


def test_reconcile_result_odd_shapes() -> None:
    other = sample("enrolink_reconcile_found_total", cause="other")

    metrics.record_reconciliation(None)
    metrics.record_reconciliation({"run_id": 1, "Bad Cause_found": 2, "x_found": "many"})

    assert sample("enrolink_reconcile_found_total", cause="other") == other + 2


# ---------------------------------------------------------------------------------------------
# the worker's metrics server in multiprocess mode

WORKER_SERVER_SCRIPT = textwrap.dedent(
    """
    import multiprocessing
    import sys
    import urllib.request

    from enrolink import metrics


    class Task:
        name = "enrolink.roll_up"


    def run_task_in_child() -> None:
        metrics.on_task_prerun(sender=Task(), task_id="t1")
        metrics.on_task_success(sender=Task(), result=None)


    port = int(sys.argv[1])
    metrics.start_worker_metrics_server(port, "127.0.0.1")
    # The forked child is like a prefork pool process: it counts a task and exits, and its
    # counts must still be served.
    child = multiprocessing.get_context("fork").Process(target=run_task_in_child)
    child.start()
    child.join()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        sys.stdout.write(response.read().decode())
    """
)


def test_worker_server_adds_pool_processes(tmp_path: Path) -> None:
    samples_dir = tmp_path / "prometheus"
    samples_dir.mkdir()
    # A samples file of an earlier run, which the server must delete, and a file it must keep.
    (samples_dir / "counter_999999.db").write_bytes(b"stale")
    (samples_dir / "notes.txt").write_text("not a samples file")
    environment = {**os.environ, metrics.MULTIPROCESS_DIR_VARIABLE: str(samples_dir)}

    completed = subprocess.run(
        [sys.executable, "-c", WORKER_SERVER_SCRIPT, str(closed_port())],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 0, completed.stderr
    assert 'enrolink_tasks_started_total{task="enrolink.roll_up"} 1.0' in completed.stdout
    assert 'enrolink_tasks_succeeded_total{task="enrolink.roll_up"} 1.0' in completed.stdout
    assert (samples_dir / "notes.txt").exists()
