"""Celery workers: the app, the asyncio bridge of every task, the tasks and the outbox publisher.

Imports ``models`` and ``enrolink``; never ``schema``.
"""
