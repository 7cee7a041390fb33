"""Operators see sign-ins (pending, expired, failed) in the admin, read-only, and may
cancel live ones: their servers stop."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from providers.models import OAuthFlow

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:providers_oauthflow_changelist")


def flow(user, provider_id: str, state: str, *, minutes_left: int = 5, **fields) -> OAuthFlow:
    return OAuthFlow.objects.create(
        user=user,
        provider_id=provider_id,
        method=0,
        method_label="Login",
        kind="auto",
        state=state,
        server_password=secrets.token_urlsafe(24),
        expires_at=timezone.now() + timedelta(minutes=minutes_left),
        **fields,
    )


@pytest.fixture
def flows(alice, bob):
    return {
        "pending": flow(alice, "github-copilot", "pending"),
        "overdue": flow(bob, "openai", "pending", minutes_left=-3),
        "failed": flow(alice, "gitlab", "failed", error_message="The provider said no."),
        "expired": flow(bob, "poe", "expired", error_message="The sign-in expired."),
    }


def test_the_list_shows_state_provider_user_and_age(admin_client, flows):
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    html = response.content.decode()
    for provider_id in ("github-copilot", "openai", "gitlab", "poe"):
        assert provider_id in html
    assert "Waiting for you" in html and "Expired (being cleaned up)" in html
    assert "The provider said no." in html and "alice" in html and "bob" in html
    assert "Age" in html and "Add o" not in html  # no "Add OAuth flow" button
    # The server's password is never shown, nor its encrypted form.
    for one in flows.values():
        assert str(one.server_password) not in html


def test_filters(admin_client, flows):
    def shown(query: str) -> set[str]:
        changelist = admin_client.get(CHANGELIST + query).context["cl"]
        return {f.provider_id for f in changelist.result_list}

    assert shown("?state__exact=failed") == {"gitlab"}
    assert shown("?live=live") == {"github-copilot"}
    assert shown("?live=overdue") == {"openai"}
    assert shown("?provider_id=poe") == {"poe"}


def test_a_flow_page_is_read_only(admin_client, flows):
    url = reverse("admin:providers_oauthflow_change", args=[flows["pending"].pk])
    html = admin_client.get(url).content.decode()
    assert "github-copilot" in html and 'name="_save"' not in html
    assert str(flows["pending"].server_password) not in html
    response = admin_client.post(url, {"provider_id": "changed"})
    assert response.status_code == 403
    delete = reverse("admin:providers_oauthflow_delete", args=[flows["pending"].pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert OAuthFlow.objects.get(pk=flows["pending"].pk).provider_id == "github-copilot"


def test_cancel_stops_live_flows_and_leaves_finished_ones(admin_client, flows, runtime, tmp_path):
    folder = tmp_path / "oauth" / flows["pending"].pk.hex
    folder.mkdir(parents=True)
    OAuthFlow.objects.filter(pk=flows["pending"].pk).update(
        data_dir=str(folder),
        runtime_state={
            "runtime": "local",
            "data_dir": str(folder),
            "port": 1,
            "directory": str(folder),
            "pid": None,
        },
    )
    response = admin_client.post(
        CHANGELIST,
        {
            "action": "cancel_flows",
            "_selected_action": [flows["pending"].pk, flows["failed"].pk],
        },
        follow=True,
    )
    html = response.content.decode()
    assert "Cancelled 1 sign-in(s)." in html and "1 had already finished" in html
    pending = OAuthFlow.objects.get(pk=flows["pending"].pk)
    assert pending.state == "cancelled" and pending.error_message == "Cancelled by an operator."
    assert runtime.removed == [str(folder)] and not Path(folder).exists()
    assert OAuthFlow.objects.get(pk=flows["failed"].pk).state == "failed"


def test_staff_without_the_permission_cannot_cancel(client, flows, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password="pw-123456789", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_oauthflow"))
    client.force_login(viewer)
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    assert "cancel_flows" not in response.content.decode()
    client.post(CHANGELIST, {"action": "cancel_flows", "_selected_action": [flows["pending"].pk]})
    assert OAuthFlow.objects.get(pk=flows["pending"].pk).state == "pending"
