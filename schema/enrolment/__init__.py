"""Mutations of this area, one module each; `Mutations` collects their fields."""

from __future__ import annotations

import strawberry

from schema.enrolment.delete_enrolment import delete_enrolment
from schema.enrolment.enrol_client import enrol_client
from schema.enrolment.withdraw_enrolment import withdraw_enrolment


@strawberry.type
class Mutations:
    enrol_client = strawberry.mutation(resolver=enrol_client)
    withdraw_enrolment = strawberry.mutation(resolver=withdraw_enrolment)
    delete_enrolment = strawberry.mutation(resolver=delete_enrolment)
