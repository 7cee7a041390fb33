"""Migration projects/0007: preview tokens of the old form (``secrets.token_urlsafe``:
mixed case, ``-``, ``_``) are replaced by DNS labels; tokens already of the new form stay."""

from __future__ import annotations

import importlib
import secrets

import pytest
from django.apps import apps

from projects.models import Project, is_preview_token

pytestmark = pytest.mark.django_db

rotate_old_tokens = importlib.import_module(
    "projects.migrations.0007_preview_token_dns_label"
).rotate_old_tokens


def test_old_tokens_are_rotated_new_ones_kept(project, alice):
    old = "Ab-_" + secrets.token_urlsafe(32)[4:]
    Project.objects.filter(pk=project.pk).update(preview_token=old)
    other = Project.objects.create(
        owner=alice, name="B", prompt="x", current_model_provider_id="s", current_model_id="m"
    )
    kept = other.preview_token
    rotate_old_tokens(apps, None)
    project.refresh_from_db()
    other.refresh_from_db()
    assert project.preview_token != old and is_preview_token(project.preview_token)
    assert other.preview_token == kept
