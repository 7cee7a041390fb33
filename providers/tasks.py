"""Periodic work on provider connections. Tasks take ids (or nothing) and return counts:
never a secret in a message or a result."""

from celery import shared_task

from providers.services import connections_expire_oauth


@shared_task(name="providers.expire_oauth_connections", acks_late=False, ignore_result=True)
def expire_oauth_connections() -> int:
    """Mark OAuth connections past their expiry ``expired`` (scheduled by beat)."""
    return connections_expire_oauth()
