"""Passwords: users change their own (Django's views in doce's pages), "forgot password"
mails a one-time link (EMAIL_URL; printed to the server's output by default), and staff
set a password or send a reset link from the admin."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from tests.conftest import settings_from
from tests.factories import DEFAULT_PASSWORD

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "a-brand-new-passphrase-77"


def logs_in(client, username: str, password: str) -> bool:
    client.logout()
    response = client.post("/accounts/login/", {"username": username, "password": password})
    return response.status_code == 302


def test_the_nav_links_to_the_password_page(alice_client):
    html = alice_client.get("/projects/").content.decode()
    assert 'href="/accounts/password_change/"' in html


def test_a_user_changes_their_own_password(client, alice, alice_client):
    page = alice_client.get("/accounts/password_change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'class="topbar"' in html and "Change your password" in html  # doce's layout
    assert 'name="old_password"' in html and 'name="new_password1"' in html

    wrong = alice_client.post(
        "/accounts/password_change/",
        {"old_password": "not-it", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert wrong.status_code == 200 and "incorrectly" in wrong.content.decode()

    response = alice_client.post(
        "/accounts/password_change/",
        {
            "old_password": DEFAULT_PASSWORD,
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )
    assert response.status_code == 302 and response["Location"] == "/accounts/password_change/done/"
    done = alice_client.get(response["Location"])
    assert done.status_code == 200 and "data-password-changed" in done.content.decode()
    assert logs_in(client, "alice", NEW_PASSWORD)
    assert not logs_in(client, "alice", DEFAULT_PASSWORD)


def test_the_password_page_needs_a_login(client, alice):
    response = client.get("/accounts/password_change/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_login_page_offers_a_reset(client, alice):
    html = client.get("/accounts/login/").content.decode()
    assert 'href="/accounts/password_reset/"' in html


def reset_link() -> str:
    assert len(mail.outbox) == 1
    match = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", mail.outbox[0].body)
    assert match, mail.outbox[0].body
    return match.group(1)


def test_forgot_password_mails_a_one_time_link(client, alice):
    alice.email = "alice@example.com"
    alice.save(update_fields=["email"])
    page = client.get("/accounts/password_reset/")
    assert page.status_code == 200 and 'class="topbar"' in page.content.decode()
    response = client.post("/accounts/password_reset/", {"email": "alice@example.com"})
    assert response.status_code == 302 and response["Location"] == "/accounts/password_reset/done/"
    assert mail.outbox[0].to == ["alice@example.com"]
    link = reset_link()

    form = client.get(link, follow=True)
    assert form.status_code == 200 and 'name="new_password1"' in form.content.decode()
    response = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302 and response["Location"] == "/accounts/reset/done/"
    assert "data-password-reset-complete" in client.get("/accounts/reset/done/").content.decode()
    assert logs_in(client, "alice", NEW_PASSWORD)
    # The link works once.
    client.logout()
    again = client.get(link, follow=True)
    assert "data-invalid-reset-link" in again.content.decode()


def test_an_unknown_address_reads_the_same_and_sends_nothing(client, alice):
    response = client.post("/accounts/password_reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302 and response["Location"] == "/accounts/password_reset/done/"
    assert mail.outbox == []


def test_staff_send_a_reset_link_from_the_admin(client, admin_user, alice, bob):
    alice.email = "alice@example.com"
    alice.save(update_fields=["email"])
    bob.email = ""
    bob.save(update_fields=["email"])
    client.force_login(admin_user)
    response = client.post(
        "/admin/auth/user/",
        {"action": "send_password_reset", "_selected_action": [alice.pk, bob.pk]},
        follow=True,
    )
    html = response.content.decode()
    assert "Sent a password reset link to 1 user(s)." in html, [
        str(m) for m in response.context["messages"]
    ]
    assert "No link for bob" in html
    assert mail.outbox[0].to == ["alice@example.com"] and reset_link()


def test_staff_set_a_password_from_the_admin(client, admin_user, alice):
    client.force_login(admin_user)
    url = f"/admin/auth/user/{alice.pk}/password/"
    assert client.get(url).status_code == 200
    response = client.post(
        url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"}
    )
    assert response.status_code == 302
    assert get_user_model().objects.get(pk=alice.pk).check_password(NEW_PASSWORD)


def test_email_url_picks_the_mail_backend(tmp_path):
    default = settings_from(tmp_path, DEBUG="true")
    assert default["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"
    smtp = settings_from(
        tmp_path, DEBUG="true", EMAIL_URL="smtp+tls://doce:secret@mail.example.com:587"
    )
    assert (smtp["EMAIL_BACKEND"], smtp["EMAIL_HOST"]) == (
        "django.core.mail.backends.smtp.EmailBackend",
        "mail.example.com",
    )
