"""Mutations of this area, one module each; `Mutations` collects their fields."""

from __future__ import annotations

import strawberry

from schema.linking.link_enrolments import link_enrolments
from schema.linking.unlink_enrolments import unlink_enrolments


@strawberry.type
class Mutations:
    link_enrolments = strawberry.mutation(resolver=link_enrolments)
    unlink_enrolments = strawberry.mutation(resolver=unlink_enrolments)
