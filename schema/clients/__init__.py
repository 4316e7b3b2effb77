"""Mutations of this area, one module each; `Mutations` collects their fields."""

from __future__ import annotations

import strawberry

from schema.clients.create_client import create_client


@strawberry.type
class Mutations:
    create_client = strawberry.mutation(resolver=create_client)
