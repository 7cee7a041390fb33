"""Login throttling: django-axes' cache handler with two limits instead of one.

axes counts failures under every entry of ``AXES_LOCKOUT_PARAMETERS`` and, by itself,
locks all of them at one limit. doce counts two things:

- a user name *from one client address* (``DOCE_LOGIN_FAILURE_LIMIT``, 10): a password
  storm against alice from one address throttles alice at that address only, so alice
  still logs in from anywhere else and nobody can lock a stranger out;
- a client address *whatever the user names* (``DOCE_LOGIN_ADDRESS_FAILURE_LIMIT``, 100):
  the ceiling for one address guessing many accounts.

A successful login clears the pair's count only: an attacker who knows one account's
password cannot reset their address's ceiling with it. Counts live in Django's cache
(``CACHE_URL``) and expire ``DOCE_LOGIN_COOLOFF_MINUTES`` after the last attempt.
"""

from __future__ import annotations

import logging

from axes.handlers.cache import AxesCacheHandler
from axes.helpers import (
    get_cache_timeout,
    get_client_cache_keys,
    get_client_str,
    get_client_username,
    get_credentials,
    get_failure_limit,
)
from axes.signals import user_locked_out
from django.conf import settings

logger = logging.getLogger(__name__)

#: What a throttled login page says, by the limit that was reached.
PAIR = "pair"
ADDRESS = "address"


class LoginThrottle(AxesCacheHandler):
    """``AXES_LOCKOUT_PARAMETERS`` is ``[["username", "ip_address"], "ip_address"]``:
    the first cache key counts the pair, the second the address."""

    def _limits(self, request, credentials) -> list[tuple[str, str, int]]:
        pair_key, address_key = get_client_cache_keys(request, credentials)
        return [
            (PAIR, pair_key, get_failure_limit(request, credentials)),
            (ADDRESS, address_key, settings.DOCE_LOGIN_ADDRESS_FAILURE_LIMIT),
        ]

    def throttled_by(self, request, credentials: dict | None = None) -> str | None:
        """``PAIR`` or ``ADDRESS``: the limit this login has reached; None when allowed."""
        for name, key, limit in self._limits(request, credentials):
            if self.cache.get(key, default=0) >= limit:
                return name
        return None

    def is_locked(self, request, credentials: dict | None = None) -> bool:
        return self.throttled_by(request, credentials) is not None

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs):
        """Count the failure under both keys; throttle when either reaches its limit."""
        if request is None:
            return
        if self.is_whitelisted(request, credentials):
            return
        timeout = get_cache_timeout(request)
        reached = None
        for name, key, limit in self._limits(request, credentials):
            if self.cache.add(key=key, value=1, timeout=timeout):
                count = 1
            else:
                count = self.cache.incr(key=key, delta=1)
                self.cache.touch(key=key, timeout=timeout)
            if count >= limit and reached is None:
                reached = name
        if reached is not None:
            request.axes_locked_out = True
            request.axes_credentials = credentials
            request.doce_throttled_by = reached
            username = get_client_username(request, credentials)
            client = get_client_str(
                username,
                request.axes_ip_address,
                request.axes_user_agent,
                request.axes_path_info,
                request,
            )
            logger.warning("login throttled: %s reached the %s limit", client, reached)
            user_locked_out.send(
                "axes", request=request, username=username, ip_address=request.axes_ip_address
            )

    def user_logged_in(self, sender, request, user, **kwargs):
        """A successful login clears its pair's count (never the address's)."""
        credentials = get_credentials(user.get_username())
        pair_key = self._limits(request, credentials)[0][1]
        self.cache.delete(pair_key)
