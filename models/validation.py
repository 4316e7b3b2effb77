"""Input hygiene shared by every domain operation: text, codes, USIs and date ranges."""

from __future__ import annotations

import re
import unicodedata
from datetime import date

from models.errors import DomainError, ErrorCode

# Control characters (C0, DEL, C1) are never meaningful in names or codes, and PostgreSQL
# rejects U+0000 in text outright; line breaks and tabs are allowed only in free-text notes.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_EXCEPT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_UNIT_CODE = re.compile(r"[A-Z0-9]{1,12}")

# The USI alphabet: digits and upper-case letters without 0, 1, I and O (32 characters).
USI_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"


def clean_text(
    value: str, *, field: str, max_length: int, multiline: bool = False, required: bool = True
) -> str:
    """Return ``value`` trimmed and NFC-normalised, or raise INVALID_INPUT naming the field."""
    text = unicodedata.normalize("NFC", value).strip()
    pattern = _CONTROL_EXCEPT_LINES if multiline else _CONTROL
    bad = pattern.search(text)
    if bad is not None:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"{field} contains the control character U+{ord(bad.group()):04X} at position "
            f"{bad.start()}; remove it.",
            field=field,
        )
    if required and not text:
        raise DomainError(ErrorCode.INVALID_INPUT, f"{field} must not be blank.", field=field)
    if len(text) > max_length:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"{field} is {len(text)} characters long; at most {max_length} are allowed.",
            field=field,
        )
    return text


def clean_optional_text(
    value: str | None, *, field: str, max_length: int, multiline: bool = False
) -> str | None:
    """Like :func:`clean_text`, but None and blank values become None."""
    if value is None:
        return None
    text = clean_text(
        value, field=field, max_length=max_length, multiline=multiline, required=False
    )
    return text or None


def clean_unit_code(value: str, *, field: str = "code") -> str:
    code = clean_text(value, field=field, max_length=12).upper()
    if not _UNIT_CODE.fullmatch(code):
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"{field} {value!r} is not a unit code: use 1 to 12 upper-case letters and digits, "
            "e.g. BSBWHS411.",
            field=field,
        )
    return code


def usi_check_character(body: str) -> str:
    """Return the Luhn mod-32 check character for the first nine characters of a USI."""
    factor = 2
    total = 0
    base = len(USI_ALPHABET)
    for character in reversed(body):
        addend = factor * USI_ALPHABET.index(character)
        factor = 1 if factor == 2 else 2
        total += addend // base + addend % base
    return USI_ALPHABET[(base - total % base) % base]


def clean_usi(value: str | None, *, field: str = "usi") -> str | None:
    """Return a valid USI in upper case, None for blank, or raise INVALID_USI."""
    if value is None:
        return None
    usi = clean_text(value, field=field, max_length=20, required=False).upper()
    if not usi:
        return None
    if len(usi) != 10 or any(character not in USI_ALPHABET for character in usi):
        raise DomainError(
            ErrorCode.INVALID_USI,
            f"{field} {value!r} is not a USI: a USI is 10 characters from digits 2-9 and letters "
            "other than I and O.",
            field=field,
        )
    expected = usi_check_character(usi[:9])
    if usi[9] != expected:
        raise DomainError(
            ErrorCode.INVALID_USI,
            f"{field} {value!r} has the wrong check character {usi[9]!r}; check the USI for a "
            "typing mistake.",
            field=field,
        )
    return usi


def check_date_range(
    start: date | None,
    end: date | None,
    *,
    start_field: str = "startDate",
    end_field: str = "endDate",
) -> None:
    if start is not None and end is not None and start > end:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"{start_field} {start.isoformat()} is after {end_field} {end.isoformat()}; the start "
            "must be on or before the end.",
            field=start_field,
        )
