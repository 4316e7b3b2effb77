"""GraphQL shape of the domain's typed errors."""

from __future__ import annotations

import strawberry

from models.errors import DomainError, DomainErrors, ErrorCode

UserErrorCode = strawberry.enum(ErrorCode, name="UserErrorCode")


@strawberry.type(
    description="An expected failure: nothing the mutation would have written is kept."
)
class UserError:
    code: UserErrorCode  # type: ignore[valid-type]
    message: str = strawberry.field(description="A full sentence naming the values involved.")
    field: str | None = strawberry.field(
        default=None, description="The input field to blame, when one input is at fault."
    )

    @classmethod
    def from_domain(cls, error: DomainError) -> UserError:
        return cls(code=error.code, message=error.message, field=error.field)


def user_errors(error: DomainError | DomainErrors) -> list[UserError]:
    if isinstance(error, DomainErrors):
        return [UserError.from_domain(item) for item in error.errors]
    return [UserError.from_domain(error)]
