"""What other apps may react to when a user's credential changes. Sent after commit,
with ids only (never a secret): ``user_id``, ``provider_id``.

- ``credential_changed``: a connection was created, its secrets replaced, or a custom
  endpoint's URL, name or models changed.
- ``credential_removed``: a connection was disconnected or revoked.
- ``oauth_tokens_refreshed``: the project holding an OAuth connection's refresh token
  refreshed it; the user's other projects follow (``holder``: that project's id).
"""

from django.db import transaction
from django.dispatch import Signal

credential_changed = Signal()
credential_removed = Signal()
oauth_tokens_refreshed = Signal()


def send_on_commit(signal: Signal, *, user_id: int, provider_id: str, **extra: int) -> None:
    transaction.on_commit(
        lambda: signal.send(sender=None, user_id=user_id, provider_id=provider_id, **extra)
    )
