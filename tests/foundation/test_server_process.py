"""The server process that ``enrolink serve`` starts tunes Python's garbage collector."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from enrolink.app import GC_THRESHOLDS

ROOT = Path(__file__).resolve().parents[2]
# Only stops a hung process. Importing the application takes a second or two.
TIMEOUT_SECONDS = 120

PROBE = """
import gc, json
from enrolink.app import create_server_app
app = create_server_app()
print(json.dumps({"frozen": gc.get_freeze_count(), "thresholds": gc.get_threshold()}))
"""


def test_server_app_freezes_startup_objects() -> None:
    # A process of its own, because the tuning changes the whole interpreter.
    environment = {**os.environ, "ENROLINK_ENVIRONMENT": "development"}
    completed = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    state = json.loads(completed.stdout.strip().splitlines()[-1])
    # The imports and the schema leave well over 100,000 objects.
    assert state["frozen"] > 100_000
    assert tuple(state["thresholds"]) == GC_THRESHOLDS
