"""Fixtures of the reliability tests: worker processes and `enrolink serve` on loopback ports."""

from __future__ import annotations

from tests.workers.conftest import worker_stack

__all__ = ["worker_stack"]
