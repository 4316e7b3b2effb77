"""The GraphQL client fixture of the API tests: the real application over a fresh database."""

from tests.api.conftest import app_settings, graphql

__all__ = ["app_settings", "graphql"]
