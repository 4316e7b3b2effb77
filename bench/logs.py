"""Log files of the servers and workers that a benchmark starts."""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class RunLog:
    """The log file of one benchmark command; ``keep()`` leaves it in place at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.keep_after_run = False

    def keep(self) -> None:
        self.keep_after_run = True


@contextmanager
def run_log(name: str) -> Iterator[RunLog]:
    """Yield a new log file in the temporary folder, removed at the end unless needed.

    After an error, or when ``keep()`` was called because a figure points to the file, the
    file stays and its path is printed. Otherwise every bench command would leave its logs
    behind, about a megabyte for a Celery worker's.
    """
    log = RunLog(Path(tempfile.gettempdir()) / f"enrolink-bench-{name}-{uuid.uuid4().hex[:10]}.log")
    try:
        yield log
    except BaseException:
        log.keep()
        raise
    finally:
        if log.keep_after_run:
            print(f"the servers' and workers' log is kept: {log.path}", file=sys.stderr)
        else:
            log.path.unlink(missing_ok=True)
