"""Mutations of this area, one module each; `Mutations` collects their fields."""

from __future__ import annotations

import strawberry


@strawberry.type
class Mutations:
    pass
