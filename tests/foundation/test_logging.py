"""Logs of `enrolink serve`: one JSON line per event outside development, uvicorn's included."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

STARTUP_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def get_healthz(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        assert process.poll() is None, f"enrolink serve exited early:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                assert response.status == 200
                return
        except (urllib.error.URLError, OSError):
            assert time.monotonic() < deadline, f"/healthz never returned 200:\n{log.read_text()}"
            time.sleep(0.2)


def test_serve_logs_json_lines(database_url: str, redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    environment = {
        **os.environ,
        "ENROLINK_ENVIRONMENT": "production",
        "ENROLINK_LOG_FORMAT": "auto",
        "ENROLINK_DATABASE_URL": database_url,
        "ENROLINK_REDIS_URL": redis_url,
    }
    # Two server processes: uvicorn spawns them afresh, so each must set up logging itself.
    command = [sys.executable, "-m", "enrolink", "serve", "--port", str(port), "--workers", "2"]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*command, "--access-log"], env=environment, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        get_healthz(port, process, log)
        # /healthz returns 200 once one server process is up; wait for the second one too.
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while log.read_text().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, (
                f"a server process never started:\n{log.read_text()}"
            )
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=60)

    lines = [line for line in log.read_text().splitlines() if line.strip()]
    events: list[dict[str, Any]] = [json.loads(line) for line in lines]
    started = [event for event in events if event["event"].startswith("Started server process")]
    access = [event for event in events if event["event"] == "http.access_logged"]
    assert all("timestamp" in event and "level" in event for event in events)
    assert len(started) == 2
    assert all(event["logger"] == "uvicorn.error" for event in started)
    assert len(access) == 1
    assert access[0]["method"] == "GET"
    assert access[0]["path"] == "/healthz"
    assert access[0]["status"] == 200
