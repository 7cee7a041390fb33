"""The admin never shows a secret or its ciphertext; its actions go through the services."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from django.utils import timezone

from providers import services
from providers.models import AuditEvent, ProviderConnection, UserSettings
from tests.factories import UserSettingsFactory
from tests.providers.conftest import (
    WRONG_KEY,
    admin_add_form,
    raw_connection_value,
    raw_legacy_value,
)

pytestmark = pytest.mark.django_db

API_KEY = "sk-ant-api03-" + "k" * 40 + "f3a9"
NEW_API_KEY = "sk-ant-api03-" + "n" * 40 + "0042"
ACCESS, REFRESH = "oauth-access-" + "a" * 30, "oauth-refresh-" + "r" * 30
BOB_KEY = "gsk_" + "b" * 40
LEGACY_KEY = "sk-or-v1-" + "l" * 50


@pytest.fixture
def world(alice, bob):
    UserSettingsFactory(user=alice, openrouter_api_key=LEGACY_KEY)
    api = services.connection_create(user=alice, provider_id="anthropic", api_key=API_KEY)
    oauth = services.connection_create(
        user=alice,
        provider_id="github-copilot",
        auth_type="oauth",
        oauth_access_token=ACCESS,
        oauth_refresh_token=REFRESH,
        oauth_expires_at=timezone.now() + timedelta(minutes=30),
    )
    groq = services.connection_create(user=bob, provider_id="groq", api_key=BOB_KEY)
    return {"api": api, "oauth": oauth, "groq": groq}


def secrets_in(html: str) -> list[str]:
    found = [s for s in (API_KEY, NEW_API_KEY, ACCESS, REFRESH, BOB_KEY, LEGACY_KEY) if s in html]
    if "gAAAAA" in html:
        found.append("a Fernet token")
    return found


def pages(world) -> list[str]:
    connection_pages = []
    for connection in world.values():
        for view in ("change", "history", "delete"):
            connection_pages.append(
                reverse(f"admin:providers_providerconnection_{view}", args=[connection.pk])
            )
    alice_settings = UserSettings.objects.get(user__username="alice").pk
    event = AuditEvent.objects.first().pk
    changelist = reverse("admin:providers_providerconnection_changelist")
    return [
        reverse("admin:index"),
        reverse("admin:app_list", args=["providers"]),
        changelist,
        changelist + "?status__exact=error",
        changelist + "?expiry=soon",
        changelist + "?q=alice",
        changelist + "?auth_type__exact=oauth&provider_id=github-copilot",
        reverse("admin:providers_providerconnection_add"),
        *connection_pages,
        reverse("admin:providers_usersettings_changelist"),
        reverse("admin:providers_usersettings_changelist") + "?q=alice",
        reverse("admin:providers_usersettings_add"),
        reverse("admin:providers_usersettings_change", args=[alice_settings]),
        reverse("admin:providers_usersettings_history", args=[alice_settings]),
        reverse("admin:providers_auditevent_changelist"),
        reverse("admin:providers_auditevent_changelist") + "?action__exact=connected",
        reverse("admin:providers_auditevent_change", args=[event]),
        reverse("admin:providers_auditevent_history", args=[event]),
        reverse("admin:admin_logentry_changelist") if _logentry_registered() else "",
    ]


def _logentry_registered() -> bool:
    from django.contrib import admin

    return LogEntry in admin.site._registry


def assert_no_secret(admin_client, url: str) -> str:
    response = admin_client.get(url)
    assert response.status_code == 200, url
    html = response.content.decode()
    assert secrets_in(html) == [], url
    return html


def test_no_admin_page_shows_a_secret_or_a_ciphertext(admin_client, world):
    # Something in the history, with a key change among it.
    admin_client.post(
        reverse("admin:providers_providerconnection_change", args=[world["api"].pk]),
        change_form_data(world["api"], new_api_key=NEW_API_KEY, error_message="checked"),
    )
    for url in filter(None, pages(world)):
        assert_no_secret(admin_client, url)
    changelist = assert_no_secret(
        admin_client, reverse("admin:providers_providerconnection_changelist")
    )
    assert "sk-ant-…0042" in changelist  # the hint is what is shown
    change = assert_no_secret(
        admin_client, reverse("admin:providers_providerconnection_change", args=[world["api"].pk])
    )
    assert "api key: stored (encrypted)" in change


def test_undecryptable_values_show_a_clear_message_and_no_page_breaks(
    admin_client, world, use_keys
):
    use_keys(WRONG_KEY)
    for url in filter(None, pages(world)):
        assert_no_secret(admin_client, url)
    html = assert_no_secret(
        admin_client, reverse("admin:providers_providerconnection_change", args=[world["api"].pk])
    )
    assert "cannot decrypt: was DOCE_ENCRYPTION_KEYS changed?" in html
    settings_list = assert_no_secret(
        admin_client, reverse("admin:providers_usersettings_changelist")
    )
    assert "cannot decrypt: was DOCE_ENCRYPTION_KEYS changed?" in settings_list


def change_form_data(connection: ProviderConnection, **overrides) -> dict:
    data = {
        "status": connection.status,
        "error_message": connection.error_message,
        "name": connection.name,
        "base_url": connection.base_url,
        "models": "[]",
        "metadata": "{}",
        "oauth_expires_at_0": "",
        "oauth_expires_at_1": "",
        "oauth_account_id": "",
        "oauth_enterprise_url": "",
        "new_api_key": "",
        # What the browser sends back for fields with a callable default.
        "initial-models": "[]",
        "initial-metadata": "{}",
    }
    data.update(overrides)
    return data


def test_a_key_typed_in_the_admin_is_stored_encrypted_and_audited(admin_client, admin_user, world):
    connection = world["api"]
    url = reverse("admin:providers_providerconnection_change", args=[connection.pk])
    response = admin_client.post(url, change_form_data(connection, new_api_key=NEW_API_KEY))
    assert response.status_code == 302, response.content.decode()[:2000]
    connection.refresh_from_db()
    assert connection.api_key == NEW_API_KEY and connection.key_hint == "sk-ant-…0042"
    assert NEW_API_KEY not in raw_connection_value(connection.pk, "api_key")
    event = AuditEvent.objects.filter(action="updated").latest("id")
    assert event.actor == admin_user and event.detail == {"fields": ["api_key"]}
    assert NEW_API_KEY not in LogEntry.objects.latest("id").change_message

    unchanged = raw_connection_value(connection.pk, "api_key")
    admin_client.post(url, change_form_data(connection, error_message="note"))
    assert raw_connection_value(connection.pk, "api_key") == unchanged  # empty keeps the key


def test_an_operator_adds_an_api_key_connection(admin_client, admin_user, bob):
    response = admin_client.post(
        reverse("admin:providers_providerconnection_add"),
        admin_add_form(bob, new_api_key="gsk_" + "g" * 40),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    connection = ProviderConnection.objects.get(user=bob, provider_id="groq")
    assert connection.api_key == "gsk_" + "g" * 40 and connection.key_hint == "gsk_…gggg"
    assert AuditEvent.objects.get(connection=connection).actor == admin_user


def test_mark_revoked_and_revalidate_actions(admin_client, admin_user, world, use_keys):
    changelist = reverse("admin:providers_providerconnection_changelist")
    api, oauth = world["api"], world["oauth"]
    response = admin_client.post(
        changelist, {"action": "mark_revoked", "_selected_action": [api.pk]}
    )
    assert response.status_code == 302
    api.refresh_from_db()
    assert api.status == "revoked"
    assert AuditEvent.objects.get(action="revoked").actor == admin_user

    use_keys(WRONG_KEY)
    admin_client.post(changelist, {"action": "revalidate", "_selected_action": [oauth.pk]})
    oauth.refresh_from_db()
    assert oauth.status == "error" and oauth.last_validated_at is not None
    assert oauth.error_message == "cannot decrypt: was DOCE_ENCRYPTION_KEYS changed?"
    assert AuditEvent.objects.get(action="validation_failed").actor == admin_user


def test_deleting_in_the_admin_goes_through_the_service(admin_client, world):
    connection = world["groq"]
    url = reverse("admin:providers_providerconnection_delete", args=[connection.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not ProviderConnection.objects.filter(pk=connection.pk).exists()
    assert AuditEvent.objects.get(action="disconnected").provider_id == "groq"


def test_the_audit_log_is_read_only(admin_client, world):
    event = AuditEvent.objects.first()
    assert admin_client.get(reverse("admin:providers_auditevent_add")).status_code == 403
    url = reverse("admin:providers_auditevent_change", args=[event.pk])
    admin_client.post(url, {"action": "revoked"})
    event.refresh_from_db()
    assert event.action == "connected"


def test_legacy_key_stays_encrypted_when_settings_are_edited(admin_client, alice, world):
    token = raw_legacy_value(alice.pk)
    url = reverse("admin:providers_usersettings_change", args=[alice.pk])
    response = admin_client.post(
        url,
        {
            "user": alice.pk,
            "default_model": "openrouter/auto",
            "preferred_provider_id": "x",
            "provider_auth_initialized": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert raw_legacy_value(alice.pk) == token


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"new_api_key": ""}, "This API key connection needs a value."),
        (
            {"base_url": "http://127.0.0.1:9/v1", "models": '["m"]', "new_api_key": "k" * 20},
            "A custom provider needs a name.",
        ),
        ({"auth_type": "oauth", "new_api_key": "k" * 20}, "the admin can only add API-key"),
    ],
)
def test_adding_reports_what_the_services_would_refuse(admin_client, bob, overrides, message):
    data = admin_add_form(bob, **overrides)
    response = admin_client.post(reverse("admin:providers_providerconnection_add"), data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ProviderConnection.objects.exists()


def test_the_oauth_refresh_token_holder_is_shown(admin_client, world):
    """Operators see which project holds a sign-in's refresh token (docs/oauth-tokens.md)."""
    oauth = world["oauth"]
    ProviderConnection.objects.filter(pk=oauth.pk).update(oauth_token_holder=4242)
    url = reverse("admin:providers_providerconnection_change", args=[oauth.pk])
    html = assert_no_secret(admin_client, url)
    assert "Oauth token holder" in html or "OAuth token holder" in html
    assert "4242" in html


def test_provider_options_are_shown_by_name_never_by_value(admin_client, bob):
    secret = "s3cr" + "et/" + "v" * 30
    bedrock = services.connection_create(
        user=bob,
        provider_id="amazon-bedrock",
        options={"region": "eu-west-3"},
        secret_options={"accessKeyId": "AKIA" + "Q" * 16, "secretAccessKey": secret},
    )
    url = reverse("admin:providers_providerconnection_change", args=[bedrock.pk])
    html = admin_client.get(url).content.decode()
    assert "region, accessKeyId, secretAccessKey" in html
    assert secret not in html and "AKIA" + "Q" * 16 not in html
