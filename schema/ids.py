"""Opaque global ids: base64 of ``<TypeName>:<primary key>``, as Relay clients expect."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection

from models.errors import DomainError, ErrorCode
from models.references import global_id, with_article


def encode_id(type_name: str, pk: int) -> str:
    return global_id(type_name, pk)


def split_id(global_id: str) -> tuple[str, int] | None:
    """Return (type name, primary key), or None for a value that is not one of our ids."""
    if not isinstance(global_id, str) or len(global_id) > 100:
        return None
    try:
        text = base64.b64decode(global_id.encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        return None
    type_name, separator, key = text.partition(":")
    if not separator or not key.isdigit() or len(key) > 18:
        return None
    return type_name, int(key)


def decode_id(global_id: str, type_name: str, *, field: str) -> int:
    """Return the primary key in ``global_id``, which must be an id of ``type_name``.

    Raises a NOT_FOUND error for anything else, so a client that mixes up ids learns which
    input was wrong and what type it should have named.
    """
    parts = split_id(global_id)
    if parts is None:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"{field} {global_id!r} is not a valid id; use the id field of "
            f"{with_article(type_name)}.",
            field=field,
        )
    actual_type, pk = parts
    if actual_type != type_name:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"{field} {global_id!r} is the id of {with_article(actual_type)}, not of "
            f"{with_article(type_name)}; use the id field of {with_article(type_name)}.",
            field=field,
        )
    return pk


def decode_node_id(global_id: str, type_names: Collection[str], *, field: str) -> tuple[str, int]:
    """Return (type name, primary key) of an id of one of ``type_names``, for ``node(id:)``.

    Raises a NOT_FOUND error for a value that is not an id or names another type.
    """
    parts = split_id(global_id)
    if parts is None:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"{field} {global_id!r} is not a valid id; use the id field of an object in a query "
            "response.",
            field=field,
        )
    if parts[0] not in type_names:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"{field} {global_id!r} is an id of type {parts[0]!r}, which the API does not have; "
            "use the id field of an object in a query response.",
            field=field,
        )
    return parts


def encode_cursor(pk: int) -> str:
    return base64.b64encode(f"cursor:{pk}".encode()).decode("ascii")


def decode_cursor(cursor: str | None) -> int:
    """Return the primary key after which a page starts (0 for the first page)."""
    if cursor is None:
        return 0
    try:
        text = base64.b64decode(cursor.encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        text = ""
    prefix, _, key = text.partition(":")
    if prefix != "cursor" or not key.isdigit() or len(key) > 18:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"after {cursor!r} is not a cursor; pass the endCursor of the previous page.",
            field="after",
        )
    return int(key)
