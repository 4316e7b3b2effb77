"""The API test fixtures: the real application in-process, or served on a local port."""

from tests.api.conftest import app_settings, graphql, live_server

__all__ = ["app_settings", "graphql", "live_server"]
