"""Periodic and background work on provider connections. Tasks take ids (or nothing)
and return counts or states: never a secret in a message or a result."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.core.cache import cache

from providers.services import connections_expire_oauth

logger = logging.getLogger(__name__)
# After a failed refresh, beat's checks wait this long before starting a server again.
CATALOG_RETRY_AFTER = 3600
_CATALOG_FAILED = "doce:providers:catalog-refresh-failed"


@shared_task(name="providers.expire_oauth_connections", acks_late=False, ignore_result=True)
def expire_oauth_connections() -> int:
    """Mark OAuth connections past their expiry ``expired`` (scheduled by beat)."""
    return connections_expire_oauth()


@shared_task(name="providers.refresh_catalog", acks_late=False, ignore_result=True)
def refresh_catalog(force: bool = False) -> int:
    """Refresh the provider catalog from OpenCode when it is missing or older than
    DOCE_PROVIDER_CATALOG_MAX_AGE_HOURS (beat asks often; this is one query then)."""
    from providers.catalog import catalog_is_stale
    from providers.catalog.fetch import CatalogUnavailable, catalog_refresh

    max_age = timedelta(hours=settings.DOCE_PROVIDER_CATALOG_MAX_AGE_HOURS)
    if not force and (cache.get(_CATALOG_FAILED) or not catalog_is_stale(max_age=max_age)):
        return 0
    try:
        return catalog_refresh()
    except CatalogUnavailable as exc:
        cache.set(_CATALOG_FAILED, True, timeout=CATALOG_RETRY_AFTER)
        logger.warning("provider catalog not refreshed (next try in an hour): %s", exc)
        return 0


# acks_late: a flow whose worker died is picked up again and continues (the server it
# started keeps running in its own process group; authorize is idempotent per server).
@shared_task(name="providers.oauth_flow_run", acks_late=True, ignore_result=True)
def oauth_flow_run(flow_id: str) -> str:
    """Start an OAuth flow's server and authorize; wait for the approval of ``auto``
    flows (up to DOCE_OAUTH_FLOW_TTL)."""
    from providers.oauth import oauth_flow_run as run

    return run(flow_id)


@shared_task(name="providers.reap_oauth_flows", acks_late=False, ignore_result=True)
def reap_oauth_flows() -> int:
    """Expire abandoned OAuth flows and remove leftover servers and folders."""
    from providers.oauth import oauth_flows_reap

    return oauth_flows_reap()


@worker_ready.connect
def _refresh_catalog_on_start(sender=None, **kwargs) -> None:
    if settings.DOCE_PROVIDER_CATALOG_REFRESH_ON_START:
        refresh_catalog.delay()
