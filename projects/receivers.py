"""Connection changes (providers.signals) reach running projects through the pipeline."""

from __future__ import annotations

from django.dispatch import receiver

from projects.propagation import credentials_propagate
from projects.tokens import oauth_tokens_follow
from providers.signals import credential_changed, credential_removed, oauth_tokens_refreshed


@receiver(credential_changed, dispatch_uid="projects.reinject")
def _reinject(sender, *, user_id: int | None, provider_id: str, **kwargs) -> None:
    credentials_propagate(user_id=user_id, provider_id=provider_id, removed=False)


@receiver(credential_removed, dispatch_uid="projects.remove")
def _remove(sender, *, user_id: int | None, provider_id: str, **kwargs) -> None:
    credentials_propagate(user_id=user_id, provider_id=provider_id, removed=True)


@receiver(oauth_tokens_refreshed, dispatch_uid="projects.follow_oauth_tokens")
def _follow(sender, *, user_id: int | None, provider_id: str, holder: int, **kwargs) -> None:
    oauth_tokens_follow(user_id=user_id, provider_id=provider_id, holder=holder)
