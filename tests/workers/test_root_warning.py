"""Celery's warning about a worker run as root: silenced in development only."""

from __future__ import annotations

import os
import warnings

import pytest
from celery.exceptions import SecurityWarning
from celery.platforms import check_privileges

from enrolink.settings import load_settings
from workers.main import ROOT_WARNING_MESSAGE, ignore_root_warning_in_development


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make Celery's privilege check see uid 0, whoever runs the tests."""
    monkeypatch.setattr(os, "getuid", lambda: 0)
    monkeypatch.setattr(os, "geteuid", lambda: 0)


@pytest.mark.usefixtures("as_root")
def test_root_warning_silenced_in_development() -> None:
    settings = load_settings(environment="development")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ignore_root_warning_in_development(settings)
        check_privileges({"json"})

    assert [str(warning.message) for warning in caught] == []


@pytest.mark.usefixtures("as_root")
def test_root_warning_kept_in_production() -> None:
    settings = load_settings(environment="production")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ignore_root_warning_in_development(settings)
        check_privileges({"json"})

    assert [warning.category for warning in caught] == [SecurityWarning]
    assert str(caught[0].message).startswith(ROOT_WARNING_MESSAGE)
