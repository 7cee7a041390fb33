import pytest

from tests.factories import DEFAULT_PASSWORD

PROTECTED = ["/", "/projects/", "/settings/providers/", "/admin/"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", PROTECTED)
def test_anonymous_visitors_are_sent_to_login(client, alice, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/") or response["Location"].startswith(
        "/admin/login/"
    )


@pytest.mark.django_db
def test_login_and_logout(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": DEFAULT_PASSWORD})
    assert response.status_code == 302
    assert client.get("/projects/").status_code == 200
    # Logout is a POST (a GET would let any page log you out).
    assert client.get("/accounts/logout/").status_code == 405
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/projects/").status_code == 302


@pytest.mark.django_db
def test_wrong_password_is_refused(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


@pytest.mark.django_db
def test_post_without_csrf_token_is_rejected(alice):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    response = strict.post("/accounts/login/", {"username": "alice", "password": DEFAULT_PASSWORD})
    assert response.status_code == 403


@pytest.mark.django_db
def test_layout_has_navigation_messages_and_local_htmx(client, alice, admin_user):
    client.force_login(alice)
    html = client.get("/projects/").content.decode()
    assert 'href="/projects/"' in html and 'href="/settings/providers/"' in html
    assert 'href="/admin/"' not in html  # staff only
    assert '<script src="/static/vendor/htmx.min.js"' in html
    assert "http://" not in html and "https://" not in html  # nothing from a CDN
    client.force_login(admin_user)
    assert 'href="/admin/"' in client.get("/projects/").content.decode()


@pytest.mark.django_db
def test_htmx_is_served_from_our_static_files(client, alice):
    client.force_login(alice)
    response = client.get("/static/vendor/htmx.min.js")
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"htmx" in body[:200]
