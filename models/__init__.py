"""Enrolink's data model and domain operations. Never imports ``schema`` or ``workers``."""
