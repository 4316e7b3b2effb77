"""Fixtures of the scale-out test: a Redis of the test's own (see test_scale_out.py for why)."""

from __future__ import annotations

from tests.workers.conftest import private_redis

__all__ = ["private_redis"]
