"""Run the walkthrough's examples against real servers, and keep docs/walkthrough.md in step.

The examples are the files ``NN-name.graphql`` (a GraphQL document) and ``NN-name.sql`` (a
statement run straight in the database) beside this module, run in the order of their numbers
on a database freshly loaded with the demo data. :class:`Stack` starts the processes the way
``enrolink dev`` does: ``enrolink serve`` on a free port of 127.0.0.1 and ``enrolink worker``.

docs/walkthrough.md shows each example's document and response between the markers
``<!-- example: NN-name -->`` and ``<!-- /example -->``; :func:`render_markdown` rewrites those
blocks and leaves the prose around them alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
import httpx
import redis

EXAMPLES_DIR = Path(__file__).resolve().parent
REPOSITORY_ROOT = EXAMPLES_DIR.parent
WALKTHROUGH_PATH = REPOSITORY_ROOT / "docs" / "walkthrough.md"

# Bounds of every wait. On a 2-core machine the server returns 200 from /healthz and the worker
# is ready within a few seconds, and a roll-up of one enrolment takes milliseconds once consumed.
START_TIMEOUT_SECONDS = 60.0
ROLL_UP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 20.0
POLL_INTERVAL_SECONDS = 0.1
HTTP_TIMEOUT_SECONDS = 30.0

# The administrative enrolment the walkthrough follows: client LDM2608's, in LDM26-ADM.
FOLLOWED_ENROLMENT_ID = "RW5yb2xtZW50Ojg="

_ROLL_UP_PENDING = """
query RollUpPending($id: ID!) { enrolment(id: $id) { rollUp { pending } } }
"""

_MARKER = re.compile(
    r"(<!-- example: (?P<name>[0-9]{2}-[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- /example -->)",
    re.DOTALL,
)


@dataclass(frozen=True)
class Example:
    name: str
    path: Path

    @property
    def is_sql(self) -> bool:
        return self.path.suffix == ".sql"

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")


def examples() -> list[Example]:
    """Return the examples in the order of their numbers."""
    paths = sorted(
        path
        for path in EXAMPLES_DIR.iterdir()
        if path.suffix in {".graphql", ".sql"} and re.match(r"[0-9]{2}-", path.name)
    )
    return [Example(path.stem, path) for path in paths]


@dataclass(frozen=True)
class Outcome:
    """The result of one example: the GraphQL response body, or the SQL command's status."""

    example: Example
    response: dict[str, Any] | None = None
    status: str | None = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def plain_postgres_url(url: str) -> str:
    """Return the URL without SQLAlchemy's driver suffix, as asyncpg.connect expects it."""
    scheme, separator, rest = url.partition("://")
    return f"{scheme.split('+')[0]}{separator}{rest}"


@dataclass
class Process:
    """A child process in a group of its own, with its output in a log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM the group (a worker finishes its task in hand), then SIGKILL what is left."""
        if self.running():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(STOP_TIMEOUT_SECONDS)


@dataclass
class Stack:
    """``enrolink serve`` and ``enrolink worker`` over one database and one Redis."""

    database_url: str
    redis_url: str
    folder: Path
    queue_suffix: str
    port: int = field(default_factory=free_port)
    processes: list[Process] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("ENROLINK_")
        }
        environment.update(
            ENROLINK_ENVIRONMENT="development",
            ENROLINK_DATABASE_URL=self.database_url,
            ENROLINK_REDIS_URL=self.redis_url,
            ENROLINK_DATA_DIR=str(self.folder),
            ENROLINK_LOG_FORMAT="json",
            # Queues of this run alone, so no other worker on the same Redis takes its tasks.
            ENROLINK_ROLL_UP_QUEUE=f"walkthrough_roll_up_{self.queue_suffix}",
            ENROLINK_RECONCILE_QUEUE=f"walkthrough_reconcile_{self.queue_suffix}",
        )
        return environment

    def run_command(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        """Run an ``enrolink`` command to completion and return its output."""
        return subprocess.run(
            [sys.executable, "-m", "enrolink", *arguments],
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_SECONDS * 2,
            check=False,
        )

    def start(self) -> None:
        server = self._start("server", "serve", "--host", "127.0.0.1", "--port", str(self.port))
        worker = self._start("worker", "worker", "--concurrency", "1")
        self._wait_for_health(server)
        self._wait_for_log_event(worker, "worker.ready")

    def queues(self) -> list[str]:
        environment = self.environment()
        return [environment["ENROLINK_ROLL_UP_QUEUE"], environment["ENROLINK_RECONCILE_QUEUE"]]

    def stop(self) -> None:
        """Stop the processes, then delete this run's queues and their bindings from Redis."""
        for process in self.processes:
            process.stop()
        client = redis.Redis.from_url(self.redis_url)
        try:
            for queue in self.queues():
                client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        finally:
            client.close()

    def _start(self, name: str, *arguments: str) -> Process:
        log_path = self.folder / f"{name}.log"
        with log_path.open("ab") as log_file:
            popen = subprocess.Popen(
                [sys.executable, "-m", "enrolink", *arguments],
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = Process(name, popen, log_path)
        self.processes.append(process)
        return process

    def _wait_for_health(self, server: Process) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            self._raise_if_exited(server)
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"enrolink serve did not return 200 from /healthz within "
                    f"{START_TIMEOUT_SECONDS:.0f} s; its log:\n{server.log_text()}"
                )
            time.sleep(POLL_INTERVAL_SECONDS)

    def _wait_for_log_event(self, process: Process, event: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while f'"event": "{event}"' not in process.log_text():
            self._raise_if_exited(process)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{process.name} did not log {event} within {START_TIMEOUT_SECONDS:.0f} s; "
                    f"its log:\n{process.log_text()}"
                )
            time.sleep(POLL_INTERVAL_SECONDS)

    @staticmethod
    def _raise_if_exited(process: Process) -> None:
        if not process.running():
            raise RuntimeError(
                f"{process.name} exited with code {process.process.returncode}; its log:\n"
                f"{process.log_text()}"
            )


@dataclass
class Walkthrough:
    """Sends the examples in order with a staff token and waits for roll-ups in between."""

    stack: Stack
    token: str
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(
            base_url=self.stack.base_url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=HTTP_TIMEOUT_SECONDS,
        )

    def close(self) -> None:
        self.http.close()

    def execute(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.http.post("/graphql", json={"query": document, "variables": variables})
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def wait_for_roll_up(self, enrolment_id: str = FOLLOWED_ENROLMENT_ID) -> None:
        """Poll rollUp.pending of the enrolment until it is false, for a bounded time."""
        deadline = time.monotonic() + ROLL_UP_TIMEOUT_SECONDS
        while True:
            body = self.execute(_ROLL_UP_PENDING, {"id": enrolment_id})
            if "errors" in body:
                raise RuntimeError(f"Reading rollUp.pending failed: {body['errors']}")
            if not body["data"]["enrolment"]["rollUp"]["pending"]:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"The roll-up of enrolment {enrolment_id} was still pending after "
                    f"{ROLL_UP_TIMEOUT_SECONDS:.0f} s; is the worker consuming its queue?"
                )
            time.sleep(POLL_INTERVAL_SECONDS)

    def run(self, example: Example) -> Outcome:
        """Run one example once the followed enrolment's roll-up has caught up."""
        self.wait_for_roll_up()
        if example.is_sql:
            return Outcome(example, status=asyncio.run(self._execute_sql(example.text)))
        return Outcome(example, response=self.execute(example.text))

    def run_all(self) -> Iterator[Outcome]:
        for example in examples():
            yield self.run(example)

    async def _execute_sql(self, statement: str) -> str:
        connection = await asyncpg.connect(plain_postgres_url(self.stack.database_url))
        try:
            status: str = await connection.execute(statement)
            return status
        finally:
            await connection.close()


# ---------------------------------------------------------------------------------------------
# docs/walkthrough.md


def format_response(response: dict[str, Any]) -> str:
    return json.dumps(response, indent=2, ensure_ascii=False)


def render_block(outcome: Outcome) -> str:
    """Return the Markdown between an example's markers: its document, then its response."""
    example = outcome.example
    if example.is_sql:
        status = f"PostgreSQL returns the command status `{outcome.status}`."
        return f"```sql\n{example.text.rstrip()}\n```\n\n{status}\n"
    assert outcome.response is not None
    return (
        f"```graphql\n{example.text.rstrip()}\n```\n\n"
        f"Response:\n\n```json\n{format_response(outcome.response)}\n```\n"
    )


def documented_blocks(markdown: str) -> dict[str, str]:
    """Return the text between each example's markers in the Markdown, by example name."""
    return {match["name"]: match["body"] for match in _MARKER.finditer(markdown)}


def render_markdown(markdown: str, outcomes: list[Outcome]) -> str:
    """Return the Markdown with every example block replaced by its document and response."""
    rendered = {outcome.example.name: render_block(outcome) for outcome in outcomes}
    missing = [name for name in rendered if name not in documented_blocks(markdown)]
    if missing:
        raise ValueError(
            f"{WALKTHROUGH_PATH.name} has no markers for {', '.join(missing)}; add "
            "`<!-- example: NAME -->` and `<!-- /example -->` where each belongs."
        )

    def replace(match: re.Match[str]) -> str:
        body = rendered.get(match["name"], match["body"])
        return f"{match.group(1)}{body}{match.group(4)}"

    return _MARKER.sub(replace, markdown)
