"""Per-user limits on attempts that reach a provider or start a server (connect, test,
OAuth): a fixed window counted in Django's cache (atomic ``add`` + ``incr``).

With the default local-memory cache each web process counts on its own; a shared cache
(Redis) makes the limit exact across processes.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache


class RateLimited(Exception):
    """Too many attempts; ``str()`` is the message for the user."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"Too many attempts to connect or test providers. Wait {retry_after} s and try again."
        )


def attempt_register(*, user, scope: str = "connect") -> None:
    """Count one attempt of ``user``; RateLimited once the window's limit is passed."""
    limit = settings.DOCE_PROVIDER_ATTEMPTS
    window = max(1, settings.DOCE_PROVIDER_ATTEMPTS_WINDOW)
    now = time.time()
    bucket = int(now // window)
    key = f"doce:providers:attempts:{scope}:{user.pk}:{bucket}"
    cache.add(key, 0, timeout=window * 2)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.add(key, 1, timeout=window * 2)
        count = 1
    if count > limit:
        raise RateLimited(retry_after=max(1, int((bucket + 1) * window - now) + 1))
