"""An organisation staff registered (its URL and the document last fetched from it), and
each user's token for it (encrypted, shown as a hint only)."""

from __future__ import annotations

import shlex

from django.conf import settings
from django.db import models

from doce.encrypted_fields import EncryptedTextField, is_undecryptable


class Organisation(models.Model):
    #: The organisation's URL as ``opencode auth login`` takes it, without a trailing
    #: slash (OpenCode strips them): the document is ``<url>/.well-known/opencode``.
    url = models.URLField(max_length=500, unique=True)
    name = models.CharField(max_length=100, blank=True)
    #: The last document that passed the rules (``document.py``), as fetched.
    document = models.JSONField(default=dict, blank=True)
    #: The document's ``auth.env`` and ``auth.command`` (the command as a list of words).
    env_name = models.CharField(max_length=64, blank=True)
    auth_command = models.JSONField(default=list, blank=True)
    fetched_at = models.DateTimeField(null=True, blank=True)
    #: Why the last fetch failed ("" when it worked); doce's own words.
    fetch_error = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "url"]

    def __str__(self) -> str:
        return self.name or self.url

    @property
    def display_name(self) -> str:
        return self.name or self.url

    @property
    def command_text(self) -> str:
        """The auth command as a user would type it (words with spaces quoted)."""
        return shlex.join(str(word) for word in self.auth_command or [])


class OrganisationToken(models.Model):
    """The token a user's machine printed for an organisation: OpenCode sets the
    document's environment variable to it. One per user and organisation."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="organisation_tokens"
    )
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="tokens")
    token = EncryptedTextField()
    key_hint = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "organisation"], name="organisation_token_one_per_user"
            )
        ]

    def __str__(self) -> str:
        return f"{self.organisation} token of user {self.user_id}"

    @property
    def undecryptable(self) -> bool:
        return is_undecryptable(self.token)
