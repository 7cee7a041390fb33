"""Run a coroutine to completion from a synchronous test.

Playwright's sync API (the browser tests) leaves an event loop running in the main thread
for the rest of the session, and asyncio.run() refuses to start inside one: the coroutine
runs on its own loop in a thread of its own instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-loop") as pool:
        return pool.submit(asyncio.run, coro).result()
