"""The catalog in the admin: read-only, says where it came from and how old it is, and a
refresh (button or action) queues the worker's task."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from providers import admin as providers_admin
from providers.catalog import catalog_store
from providers.catalog.fetch import trim_catalog
from providers.models import CatalogProvider
from tests.factories import UserFactory
from tests.providers.conftest import METHODS, PROVIDERS

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:providers_catalogprovider_changelist"
REFRESH = "admin:providers_catalogprovider_refresh"


@pytest.fixture
def queued(monkeypatch):
    """The refresh task's ``delay`` calls, instead of a broker."""
    calls = []
    monkeypatch.setattr(
        providers_admin.refresh_catalog, "delay", lambda **kwargs: calls.append(kwargs)
    )
    return calls


def test_before_any_fetch_it_says_the_built_in_list_is_used(admin_client, queued):
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "Never fetched: the built-in list of 7 providers is in use" in html
    assert "data-catalog-refresh" in html  # the button works with no row to select
    response = admin_client.post(reverse(REFRESH))
    assert response.status_code == 302 and response["Location"] == reverse(CHANGELIST)
    assert queued == [{"force": True}]
    assert "Refresh started" in admin_client.get(reverse(CHANGELIST)).content.decode()


def test_a_stored_catalog_shows_its_source_age_and_rows_read_only(admin_client, settings):
    catalog_store(trim_catalog(PROVIDERS, METHODS), opencode_version="1.18.33")
    CatalogProvider.objects.update(fetched_at=timezone.now() - timedelta(hours=30))
    settings.DOCE_PROVIDER_CATALOG_MAX_AGE_HOURS = 24
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "6 providers from OpenCode 1.18.33, fetched 1\xa0day, 6\xa0hours ago" in html
    assert "(stale: a refresh is due)" in html
    assert "zeta-ai" in html and "Zeta AI" in html
    row = CatalogProvider.objects.get(provider_id="zeta-ai")
    change = reverse("admin:providers_catalogprovider_change", args=[row.pk])
    page = admin_client.get(change).content.decode()
    assert "z-2" in page and 'name="name"' not in page  # shown, not editable
    admin_client.post(change, {"name": "Renamed"})
    row.refresh_from_db()
    assert row.name == "Zeta AI"
    assert admin_client.get(reverse("admin:providers_catalogprovider_add")).status_code == 403
    delete = reverse("admin:providers_catalogprovider_delete", args=[row.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert CatalogProvider.objects.filter(pk=row.pk).exists()


def test_the_action_refreshes_too(admin_client, queued):
    catalog_store(trim_catalog(PROVIDERS, METHODS))
    pk = CatalogProvider.objects.values_list("pk", flat=True).first()
    admin_client.post(
        reverse(CHANGELIST), {"action": "refresh_from_opencode", "_selected_action": [pk]}
    )
    assert queued == [{"force": True}]


def test_a_refresh_needs_post_and_the_change_permission(client, queued):
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_catalogprovider"))
    client.force_login(viewer)
    html = client.get(reverse(CHANGELIST)).content.decode()
    assert "data-catalog-source" in html and "data-catalog-refresh" not in html
    assert client.post(reverse(REFRESH)).status_code == 403
    assert queued == []


def test_a_refresh_is_post_only(admin_client, queued):
    assert admin_client.get(reverse(REFRESH)).status_code == 405
    assert queued == []


def test_a_broker_that_is_down_is_said_plainly(admin_client, monkeypatch):
    def down(**kwargs):
        raise ConnectionRefusedError("broker")

    monkeypatch.setattr(providers_admin.refresh_catalog, "delay", down)
    response = admin_client.post(reverse(REFRESH), follow=True)
    assert "The refresh could not be queued: is the task broker running?" in (
        response.content.decode()
    )
