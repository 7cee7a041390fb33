"""Periodic and background work on provider connections. Tasks take ids (or nothing)
and return counts or states: never a secret in a message or a result."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.core.cache import cache

from providers import oauth  # noqa: F401  (defines the OAuth flow tasks)
from providers.catalog import catalog_is_stale
from providers.catalog.fetch import CatalogUnavailable, catalog_refresh
from providers.services import connections_expire_oauth, connections_recover_undecryptable

logger = logging.getLogger(__name__)
# After a failed refresh, beat's checks wait this long before starting a server again.
CATALOG_RETRY_AFTER = 3600
_CATALOG_FAILED = "doce:providers:catalog-refresh-failed"


@shared_task(name="providers.expire_oauth_connections", acks_late=False, ignore_result=True)
def expire_oauth_connections() -> int:
    """Mark OAuth connections past their expiry ``expired`` (scheduled by beat)."""
    return connections_expire_oauth()


@shared_task(name="providers.recover_undecryptable", acks_late=False, ignore_result=True)
def recover_undecryptable() -> int:
    """Connections marked "cannot decrypt" that decrypt again (scheduled by beat)."""
    return connections_recover_undecryptable()


@shared_task(name="providers.refresh_catalog", acks_late=False, ignore_result=True)
def refresh_catalog(force: bool = False) -> int:
    """Refresh the provider catalog from OpenCode when it is missing or older than
    DOCE_PROVIDER_CATALOG_MAX_AGE_HOURS (beat asks often; this is one query then)."""
    max_age = timedelta(hours=settings.DOCE_PROVIDER_CATALOG_MAX_AGE_HOURS)
    if not force and (cache.get(_CATALOG_FAILED) or not catalog_is_stale(max_age=max_age)):
        return 0
    try:
        return catalog_refresh()
    except CatalogUnavailable as exc:
        cache.set(_CATALOG_FAILED, True, timeout=CATALOG_RETRY_AFTER)
        logger.warning("provider catalog not refreshed (next try in an hour): %s", exc)
        return 0


@worker_ready.connect
def _refresh_catalog_on_start(sender=None, **kwargs) -> None:
    if settings.DOCE_PROVIDER_CATALOG_REFRESH_ON_START:
        refresh_catalog.delay()
