"""Run a coroutine to completion from a synchronous test.

Playwright's sync API (the browser tests) leaves an event loop running in the main thread
for the rest of the session, and asyncio.run() refuses to start inside one: the coroutine
runs on its own loop in a thread of its own instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import connections

T = TypeVar("T")


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    return run_in_thread(lambda: asyncio.run(coro))


def run_in_thread(function: Callable[[], T]) -> T:
    """``function()`` in a thread of its own: Django's test client on an async view runs
    it with ``async_to_sync``, which refuses a thread with a running loop too. Its database
    connection is that thread's: the data it reads must be committed
    (``django_db(transaction=True)``)."""

    def closing_connections() -> T:
        try:
            return function()
        finally:  # the thread's connection would outlive it (and hold the test database)
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-loop") as pool:
        return pool.submit(closing_connections).result()
