"""Servers under test, each in a uvicorn subprocess on a free 127.0.0.1 port.

``python -m bench serve KIND`` is the subprocess's entry point; :class:`ServerProcess` starts
it, reads its CPU time and peak resident memory from /proc, and always stops it.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

HOST = "127.0.0.1"
# A server whose /bench/stats does not respond within this time has failed to start.
START_TIMEOUT_SECONDS = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# One committed transaction: each statement with its parameters and whether it ran executemany.
Transaction = list[tuple[str, Any, bool]]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def create_enrolink_app() -> Starlette:
    """Return Enrolink's application, configured from ENROLINK_* variables, plus bench routes.

    /bench/stats counts statements. It leaves out the statements on api_tokens, the bearer-token
    check that opens each request's transaction, so the count is what the GraphQL operation
    sent. When ENROLINK_BENCH_RECORD is set, /bench/transactions returns the statements of the
    committed transactions.
    """
    from enrolink.app import create_app, tune_garbage_collector
    from enrolink.logging import configure_logging_from_settings
    from enrolink.settings import load_settings

    # As enrolink serve does: without it structlog keeps its defaults, which render every
    # request's log line for the console at any ENROLINK_LOG_LEVEL.
    configure_logging_from_settings(load_settings())
    totals = {"statements": 0}

    def count(_connection: Any, _cursor: Any, statement: str, *_arguments: Any) -> None:
        if "api_tokens" not in statement:
            totals["statements"] += 1

    event.listen(Engine, "before_cursor_execute", count)
    recorded: list[Transaction] = []
    if os.environ.get("ENROLINK_BENCH_RECORD"):
        record_transactions(recorded)

    async def stats(_request: Request) -> JSONResponse:
        return JSONResponse(totals)

    async def transactions(request: Request) -> Response:
        since = request.query_params.get("since", "0")
        if not since.isdigit():
            return PlainTextResponse(
                f"Invalid since={since!r}: pass the number of transactions already read.", 400
            )
        return Response(pickle.dumps(recorded[int(since) :]), media_type="application/octet-stream")

    app = create_app()
    app.router.routes.insert(0, Route("/bench/stats", stats))
    app.router.routes.insert(0, Route("/bench/transactions", transactions))
    # As enrolink serve does (enrolink.app.create_server_app).
    tune_garbage_collector()
    return app


def record_transactions(recorded: list[Transaction]) -> None:
    """Append the statements of every committed transaction to ``recorded``.

    The mutations bench replays them with asyncpg, so the two paths send the same SQL. The
    bearer-token lookup that opens each request's transaction is part of it, so it is recorded
    and replayed too. They stay in memory until the bench asks for them, so recording costs a
    request no file writes.
    """

    def begin(connection: Any) -> None:
        connection.info["bench_statements"] = []

    def before_execute(
        connection: Any,
        _cursor: Any,
        statement: str,
        parameters: Any,
        _context: Any,
        executemany: bool,
    ) -> None:
        statements = connection.info.get("bench_statements")
        if statements is not None:
            statements.append((statement, parameters, executemany))

    def commit(connection: Any) -> None:
        statements = connection.info.pop("bench_statements", None)
        if statements:
            recorded.append(statements)

    def rollback(connection: Any) -> None:
        connection.info.pop("bench_statements", None)

    event.listen(Engine, "begin", begin)
    event.listen(Engine, "before_cursor_execute", before_execute)
    event.listen(Engine, "commit", commit)
    event.listen(Engine, "rollback", rollback)


def serve(kind: str, port: int, database_url: str, occurrence_id: int) -> None:
    """Run one server in this process until it is terminated."""
    import uvicorn

    app: Starlette
    if kind == "physical":
        from bench.physical import create_physical_app

        app = create_physical_app(database_url, occurrence_id)
    elif kind == "naive":
        from bench.naive import create_naive_app

        app = create_naive_app(database_url)
    else:
        app = create_enrolink_app()
    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False)


def process_cpu_seconds(pid: int) -> float:
    """Return user plus system CPU time of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name, utime and stime are the 12th and 13th fields (man 5 proc).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_bytes(pid: int) -> int:
    """Return the peak resident set size (VmHWM) of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"VmHWM is missing from /proc/{pid}/status")


class ServerProcess:
    """One ``python -m bench serve`` subprocess; use it as a context manager."""

    def __init__(
        self,
        kind: str,
        database_url: str,
        *,
        occurrence_id: int,
        environment: dict[str, str] | None = None,
        log_path: Path,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.headers = headers or {}
        self._command = [
            sys.executable,
            "-m",
            "bench",
            "serve",
            kind,
            "--port",
            str(self.port),
            "--serve-database-url",
            database_url,
            "--occurrence-id",
            str(occurrence_id),
        ]
        self._environment = {**os.environ, **(environment or {})}
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def __enter__(self) -> ServerProcess:
        log = self._log_path.open("ab")
        self._process = subprocess.Popen(
            self._command, env=self._environment, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"the {self.kind} server exited at start; see {self._log_path}")
            try:
                self.statements()
                return self
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    self.__exit__(None, None, None)
                    raise RuntimeError(
                        f"the {self.kind} server did not start in {START_TIMEOUT_SECONDS} s; "
                        f"see {self._log_path}"
                    ) from None
                time.sleep(0.2)

    def __exit__(self, *_exc: object) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def transactions(self, since: int = 0) -> list[Transaction]:
        """Return the committed transactions that the server recorded, from number ``since``."""
        response = httpx.get(
            f"{self.base_url}/bench/transactions",
            params={"since": since},
            headers=self.headers,
            timeout=30,
        )
        response.raise_for_status()
        # The bench started this server itself, on 127.0.0.1, so its pickles are trusted.
        transactions: list[Transaction] = pickle.loads(response.content)
        return transactions

    def statements(self) -> int:
        response = httpx.get(f"{self.base_url}/bench/stats", headers=self.headers, timeout=5)
        response.raise_for_status()
        total: int = response.json()["statements"]
        return total

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def peak_rss(self) -> int:
        return peak_rss_bytes(self.pid)
