"""Every page answers with a Content-Security-Policy (django-csp), a Permissions-Policy,
and Strict-Transport-Security when DOCE_HTTPS is on; no page carries an inline script or
an inline event handler, which the policy would block."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from doce import health
from tests.conftest import settings_from
from tests.factories import ProviderConnectionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def quick_round_trip(monkeypatch):
    """/healthz waits for a worker to answer its ping, and none runs here: its headers
    are what these tests read, not its verdict."""
    monkeypatch.setattr(health, "BROKER_ROUND_TRIP_TIMEOUT", 0.2)


ANONYMOUS_PAGES = [
    "/accounts/login/",
    "/accounts/password_reset/",
    "/accounts/password_reset/done/",
    "/accounts/reset/done/",
    "/accounts/reset/MQ/not-a-token/",
    "/admin/login/",
    "/healthz",
    "/no-such-page/",
]
USER_PAGES = [
    "/projects/",
    "/projects/new/",
    "/projects/{project}/",
    "/projects/{project}/status/",
    "/projects/{project}/transcript/",
    "/settings/providers/",
    "/settings/providers/add/",
    "/settings/providers/custom/",
    "/settings/providers/custom/my-ollama/edit/",
    "/settings/providers/my-ollama/disconnect/",
    "/settings/preferences/",
    "/accounts/password_change/",
    "/accounts/password_change/done/",
]
STAFF_PAGES = ["/admin/", "/admin/auth/user/", "/admin/providers/providerconnection/"]


def directives(response) -> dict[str, list[str]]:
    header = response.headers["Content-Security-Policy"]
    parsed = {}
    for part in header.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def assert_protected(response, url: str) -> None:
    policy = directives(response)
    assert policy["script-src"] == ["'self'"], url
    assert policy["default-src"] == ["'self'"], url
    assert policy["object-src"] == ["'none'"], url
    assert policy["frame-ancestors"] == ["'none'"], url
    # Only the site preview, on its own port of each host doce answers to.
    assert policy["frame-src"] == settings.DOCE_PREVIEW_ORIGINS, url
    assert "http://localhost:8001" in policy["frame-src"], url
    assert all(o.endswith(f":{settings.DOCE_PREVIEW_PORT}") for o in policy["frame-src"]), url
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"], url
    assert "'unsafe-eval'" not in response.headers["Content-Security-Policy"], url
    assert "camera=()" in response.headers["Permissions-Policy"], url
    assert "Strict-Transport-Security" not in response.headers, url  # DOCE_HTTPS is off
    if response.headers.get("Content-Type", "").startswith("text/html"):
        html = response.content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), url  # inline script
        assert not re.search(r"\son[a-z]+\s*=", html), url  # onclick=, onsubmit=...
        assert "hx-on" not in html and "javascript:" not in html, url


@pytest.fixture
def pages(alice, project):
    ProviderConnectionFactory(
        user=alice,
        provider_id="my-ollama",
        name="Ollama",
        base_url="http://127.0.0.1:1/v1",
        models=["m"],
    )
    return [url.format(project=project.pk) for url in USER_PAGES]


@pytest.mark.parametrize("url", ANONYMOUS_PAGES)
def test_every_anonymous_page(client, alice, url):
    response = client.get(url)
    assert response.status_code in (200, 302, 404, 503), url
    assert_protected(response, url)


def test_every_users_page(alice_client, pages):
    for url in pages:
        response = alice_client.get(url)
        assert response.status_code == 200, url
        assert_protected(response, url)


def test_every_fragment_htmx_asks_for(alice_client, pages):
    for url in pages:
        response = alice_client.get(url, HTTP_HX_REQUEST="true")
        assert response.status_code == 200, url
        assert_protected(response, url)


def test_every_admin_page(client, admin_user):
    client.force_login(admin_user)
    for url in STAFF_PAGES:
        response = client.get(url)
        assert response.status_code == 200, url
        assert_protected(response, url)


def test_a_page_posted_to_and_its_errors(alice_client):
    response = alice_client.post("/settings/providers/custom/", {"provider_id": "x"})
    assert response.status_code == 200
    assert_protected(response, "custom form errors")


def test_the_setup_page(client):
    response = client.get("/setup/")
    assert response.status_code == 200
    assert_protected(response, "/setup/")


def test_the_preview_origin_is_the_only_frame_source(alice_client, settings):
    settings.CONTENT_SECURITY_POLICY = {
        "DIRECTIVES": {
            **settings.CONTENT_SECURITY_POLICY["DIRECTIVES"],
            "frame-src": ["https://preview.example.com"],
        }
    }
    response = alice_client.get("/projects/")
    assert directives(response)["frame-src"] == ["https://preview.example.com"]


def frame_src(tmp_path, **env) -> list[str]:
    """The frame sources doce starts with in that environment."""
    made = settings_from(tmp_path, DEBUG="true", **env)
    return made["CONTENT_SECURITY_POLICY"]["DIRECTIVES"]["frame-src"]


def test_the_settings_build_the_frame_source_from_doce_preview_origins(tmp_path):
    assert frame_src(tmp_path, DOCE_PREVIEW_ORIGINS="https://preview.example.com/") == [
        "https://preview.example.com"
    ]
    with pytest.raises(ImproperlyConfigured, match="DOCE_PREVIEW_ORIGINS"):
        settings_from(tmp_path, DEBUG="true", DOCE_PREVIEW_ORIGINS="preview.example.com")


def test_frame_src_follows_the_preview_settings(tmp_path):
    hosts = "localhost,127.0.0.1,[::1]"  # CSP cannot name an IPv6 literal: left out
    assert frame_src(tmp_path, DOCE_PORT="9000", ALLOWED_HOSTS=hosts) == [
        "http://localhost:9001",
        "http://127.0.0.1:9001",
    ]
    assert frame_src(tmp_path, DOCE_PREVIEW_ORIGIN="https://preview.example.com/") == [
        "https://preview.example.com"
    ]
    for bad_env in ({"DOCE_PREVIEW_PORT": "8000"}, {"DOCE_PREVIEW_ORIGIN": "preview.example"}):
        with pytest.raises(ImproperlyConfigured, match=next(iter(bad_env))):
            settings_from(tmp_path, DEBUG="true", **bad_env)


def test_one_origin_per_project_frames_every_subdomain_and_nothing_else(tmp_path, client, settings):
    made = settings_from(
        tmp_path, DEBUG="true", DOCE_PREVIEW_ORIGIN="https://{token}.Preview.example.com"
    )
    settings.CONTENT_SECURITY_POLICY = made["CONTENT_SECURITY_POLICY"]
    response = client.get("/accounts/login/")  # the policy doce answers with
    assert directives(response)["frame-src"] == ["https://*.preview.example.com"]
    assert frame_src(tmp_path, DOCE_PREVIEW_ORIGIN="http://{token}.localhost:8001") == [
        "http://*.localhost:8001"
    ]
    for bad in (
        "https://preview.example.com/{token}",
        "https://x{token}.preview.example.com",
        "https://preview.{token}.example.com",
        "https://{token}",
    ):
        with pytest.raises(ImproperlyConfigured, match="DOCE_PREVIEW_ORIGIN"):
            settings_from(tmp_path, DEBUG="true", DOCE_PREVIEW_ORIGIN=bad)


@pytest.mark.parametrize("https", [True, False], ids=["on", "off"])
def test_https_adds_strict_transport_security(tmp_path, client, settings, https):
    made = settings_from(tmp_path, DEBUG="true", **({"DOCE_HTTPS": "true"} if https else {}))
    # What doce sets, else Django's defaults.
    defaults = {"SECURE_HSTS_SECONDS": 0, "SECURE_HSTS_INCLUDE_SUBDOMAINS": False}
    for name, default in defaults.items():
        setattr(settings, name, made.get(name, default))
    response = client.get("/accounts/login/", secure=True)
    if https:
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    else:
        assert "Strict-Transport-Security" not in response.headers
