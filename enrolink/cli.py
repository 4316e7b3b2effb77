"""The `enrolink` command line."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("enrolink: commands arrive with the command-line module", file=sys.stderr)
    return 2
