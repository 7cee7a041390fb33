"""Migration 0007 drops the "wellknown" auth type: such a connection is deleted with an
audit event saying why, every other row stays as it was; and it goes back."""

from __future__ import annotations

from django.db import connection as db

from tests.factories import UserFactory
from tests.providers.conftest import latest, raw_connection_value

BEFORE = [("providers", "0006_catalog_and_oauth_flows")]
AFTER = [("providers", "0007_drop_wellknown_add_catalog_free_models")]


def _columns() -> set[str]:
    with db.cursor() as cursor:
        return {
            column.name
            for column in db.introspection.get_table_description(cursor, "provider_connections")
        }


def test_wellknown_connections_go_and_every_other_row_stays(migrator):  # noqa: F811
    apps = migrator(BEFORE)
    ProviderConnection = apps.get_model("providers", "ProviderConnection")
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    api = ProviderConnection.objects.create(
        user_id=alice.pk, provider_id="anthropic", api_key="sk-ant-" + "k" * 30, key_hint="h"
    )
    oauth = ProviderConnection.objects.create(
        user_id=alice.pk,
        provider_id="github-copilot",
        auth_type="oauth",
        oauth_access_token="gho_" + "a" * 30,
        oauth_refresh_token="ghr_" + "r" * 30,
    )
    ProviderConnection.objects.create(
        user_id=bob.pk,
        provider_id="corp",
        auth_type="wellknown",
        wellknown_key="https://ai.example.test",
        wellknown_token="wk-token-" + "t" * 20,
    )
    api_key_before = raw_connection_value(api.pk, "api_key")

    apps = migrator(AFTER)
    ProviderConnection = apps.get_model("providers", "ProviderConnection")
    AuditEvent = apps.get_model("providers", "AuditEvent")
    assert sorted(ProviderConnection.objects.values_list("pk", flat=True)) == sorted(
        [api.pk, oauth.pk]
    )
    assert raw_connection_value(api.pk, "api_key") == api_key_before  # untouched ciphertext
    assert ProviderConnection.objects.get(pk=oauth.pk).auth_type == "oauth"
    event = AuditEvent.objects.get(action="disconnected")
    assert (event.user_id, event.provider_id) == (bob.pk, "corp")
    assert (
        event.detail["auth_type"] == "wellknown" and "no longer supported" in event.detail["reason"]
    )
    assert "wk-token" not in str(event.detail)
    assert not {"wellknown_key", "wellknown_token"} & _columns()

    migrator(BEFORE)  # and back: the columns return, empty
    assert {"wellknown_key", "wellknown_token"} <= _columns()
    migrator(latest())
