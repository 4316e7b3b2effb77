"""Mutations of this area, one module each; `Mutations` collects their fields."""

from __future__ import annotations

import strawberry

from schema.catalogue.create_partner import create_partner
from schema.catalogue.create_programme import create_programme
from schema.catalogue.create_unit import create_unit


@strawberry.type
class Mutations:
    create_unit = strawberry.mutation(resolver=create_unit)
    create_programme = strawberry.mutation(resolver=create_programme)
    create_partner = strawberry.mutation(resolver=create_partner)
