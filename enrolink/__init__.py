"""Enrolink: the composition root (settings, ASGI app, command line, embedded dev servers)."""
