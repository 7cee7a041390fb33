"""Every page answers with a Content-Security-Policy (django-csp), a Permissions-Policy,
and Strict-Transport-Security when DOCE_HTTPS is on; no page carries an inline script or
an inline event handler, which the policy would block."""

from __future__ import annotations

import re

import pytest
from django.conf import settings

from tests.conftest import run_manage
from tests.factories import ProviderConnectionFactory

pytestmark = pytest.mark.django_db

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


def test_the_settings_build_the_frame_source_from_doce_preview_origins(tmp_path):
    script = "from django.conf import settings; print(settings.CONTENT_SECURITY_POLICY)"
    result = run_manage(
        tmp_path,
        "shell",
        "-c",
        script,
        DEBUG="true",
        DOCE_PREVIEW_ORIGINS="https://preview.example.com/",
    )
    assert result.returncode == 0, result.stderr
    assert "'frame-src': ['https://preview.example.com']" in result.stdout
    bad = run_manage(tmp_path, "check", DEBUG="true", DOCE_PREVIEW_ORIGINS="preview.example.com")
    assert bad.returncode == 2 and "DOCE_PREVIEW_ORIGINS" in bad.stderr


def test_frame_src_follows_the_preview_settings(tmp_path):
    script = "from django.conf import settings; print(settings.CONTENT_SECURITY_POLICY)"
    hosts = "localhost,127.0.0.1,[::1]"  # CSP cannot name an IPv6 literal: left out
    port = run_manage(
        tmp_path, "shell", "-c", script, DEBUG="true", DOCE_PORT="9000", ALLOWED_HOSTS=hosts
    )
    assert port.returncode == 0, port.stderr
    assert "'frame-src': ['http://localhost:9001', 'http://127.0.0.1:9001']" in port.stdout
    origin = run_manage(
        tmp_path,
        "shell",
        "-c",
        script,
        DEBUG="true",
        DOCE_PREVIEW_ORIGIN="https://preview.example.com/",
    )
    assert "'frame-src': ['https://preview.example.com']" in origin.stdout
    for bad_env in ({"DOCE_PREVIEW_PORT": "8000"}, {"DOCE_PREVIEW_ORIGIN": "preview.example"}):
        bad = run_manage(tmp_path, "check", DEBUG="true", **bad_env)
        assert bad.returncode != 0 and next(iter(bad_env)) in bad.stderr


def test_one_origin_per_project_frames_every_subdomain_and_nothing_else(tmp_path):
    script = (
        "from django.test import Client; from django.test.utils import setup_test_environment;"
        "setup_test_environment();"
        "r = Client().get('/healthz', HTTP_HOST='localhost');"
        "print('CSP', r.headers['Content-Security-Policy'])"
    )
    env = {"DEBUG": "true", "DOCE_PREVIEW_ORIGIN": "https://{token}.Preview.example.com"}
    result = run_manage(tmp_path, "shell", "-c", script, **env)
    assert result.returncode == 0, result.stderr
    frame_src = re.search(r"frame-src ([^;]+)", result.stdout).group(1).split()
    assert frame_src == ["https://*.preview.example.com"]
    local = run_manage(
        tmp_path,
        "shell",
        "-c",
        script,
        DEBUG="true",
        DOCE_PREVIEW_ORIGIN="http://{token}.localhost:8001",
    )
    assert "frame-src http://*.localhost:8001;" in local.stdout, local.stderr
    for bad in (
        "https://preview.example.com/{token}",
        "https://x{token}.preview.example.com",
        "https://preview.{token}.example.com",
        "https://{token}",
    ):
        refused = run_manage(tmp_path, "check", DEBUG="true", DOCE_PREVIEW_ORIGIN=bad)
        assert refused.returncode != 0 and "DOCE_PREVIEW_ORIGIN" in refused.stderr, bad


def test_https_adds_strict_transport_security(tmp_path):
    script = (
        "from django.test import Client; from django.test.utils import setup_test_environment;"
        "setup_test_environment();"
        "r = Client().get('/healthz', secure=True, HTTP_HOST='localhost');"
        "print('HSTS', r.headers.get('Strict-Transport-Security'))"
    )
    on = run_manage(tmp_path, "shell", "-c", script, DEBUG="true", DOCE_HTTPS="true")
    assert on.returncode == 0, on.stderr
    assert "HSTS max-age=31536000" in on.stdout
    off = run_manage(tmp_path, "shell", "-c", script, DEBUG="true")
    assert "HSTS None" in off.stdout
