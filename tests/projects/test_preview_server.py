"""The preview server (projects.preview_server), called as uvicorn calls it: the token is
the only authority, the bare origin and unknown tokens show nothing, nothing outside the
workspace is served, and no cookie is read or set."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from doce.opencode.runtimes.base import Layout
from projects.models import Project
from projects.preview_server import PreviewApp
from projects.workspace import preview_token_rotate, project_workspace
from tests.asyncio_helpers import run_coroutine

# The server looks tokens up in threads of its own: the rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True)


def fetch(raw_path: bytes, *, method: str = "GET", headers=()) -> tuple[int, dict, bytes]:
    """One request through the ASGI app, with the raw path exactly as sent."""
    path, _, query = raw_path.partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path.decode("latin-1"),
        "raw_path": raw_path,
        "query_string": query,
        "headers": list(headers),
        "server": ("127.0.0.1", 8001),
        "client": ("127.0.0.1", 50000),
    }
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    async def run():
        await asyncio.wait_for(PreviewApp()(scope, receive, send), timeout=10)

    run_coroutine(run())
    start = sent[0]
    headers_out = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return start["status"], headers_out, body


@pytest.fixture
def site(project, tmp_path) -> Path:
    project.data_dir = str(tmp_path / "project")
    project.save(update_fields=["data_dir"])
    Layout(Path(project.data_dir)).prepare()
    root = project_workspace(project)
    (root / "index.html").write_text("<h1>Bakery</h1>")
    (root / "about").mkdir()
    (root / "about" / "index.html").write_text("<h1>About</h1>")
    (root / "logo.svg").write_text("<svg/>")
    (root / "app.js").write_text("1")
    (tmp_path / "secret.txt").write_text("SECRET")
    return root


def url(project: Project, path: str = "") -> bytes:
    return f"/{project.preview_token}/{path}".encode()


def test_serves_the_site_with_types_and_safe_headers(project, site):
    status, headers, body = fetch(url(project))
    assert (status, body) == (200, b"<h1>Bakery</h1>")
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cross-origin-resource-policy"] == "cross-origin"
    assert "set-cookie" not in headers
    assert fetch(url(project, "logo.svg"))[1]["content-type"].startswith("image/svg+xml")
    assert fetch(url(project, "app.js"))[1]["content-type"].endswith("javascript; charset=utf-8")
    assert fetch(url(project, "about/"))[2] == b"<h1>About</h1>"


def test_folders_and_the_token_alone_redirect_to_their_slash(project, site):
    status, headers, _ = fetch(f"/{project.preview_token}".encode())
    assert (status, headers["location"]) == (308, f"/{project.preview_token}/")
    status, headers, _ = fetch(url(project, "about"))
    assert (status, headers["location"]) == (308, f"/{project.preview_token}/about/")


def test_the_bare_origin_and_unknown_tokens_show_nothing(project, site):
    for path in (b"/", b"", b"/index.html", b"/favicon.ico", b"/not-a-token/", b"/x/index.html"):
        status, headers, body = fetch(path or b"/")
        assert (status, body) == (404, b"Not found\n"), path
        assert "set-cookie" not in headers


def test_doces_cookies_are_no_authority(project, site, alice):
    cookie = [(b"cookie", b"sessionid=abc; csrftoken=def")]
    assert fetch(b"/", headers=cookie)[0] == 404
    assert fetch(b"/guessed-token/", headers=cookie)[0] == 404


def test_a_new_link_retires_the_old_one(project, site):
    old = url(project)
    preview_token_rotate(project=project)
    assert fetch(old)[0] == 404
    assert fetch(url(project))[0] == 200


def test_one_projects_token_never_opens_anothers_files(project, site, bob, tmp_path):
    other = Project.objects.create(
        owner=bob, name="Other", prompt="x", current_model_provider_id="s", current_model_id="m"
    )
    other.data_dir = str(tmp_path / "other")
    other.save(update_fields=["data_dir"])
    Layout(Path(other.data_dir)).prepare()
    (project_workspace(other) / "bob.html").write_text("BOB")
    assert fetch(url(project, "bob.html"))[0] == 404
    assert fetch(f"/{project.preview_token}/../other/workspace/bob.html".encode())[0] == 404
    assert fetch(url(other, "bob.html"))[2] == b"BOB"


@pytest.mark.parametrize(
    "path",
    [
        "../secret.txt",
        "%2e%2e/secret.txt",
        "%2e%2e%2fsecret.txt",
        "..%2fsecret.txt",
        "about/%2e%2e/%2e%2e/secret.txt",
        "about%2f..%2f..%2fsecret.txt",
        "%2fetc%2fpasswd",
        "%00",
        "%ff",
    ],
)
def test_no_way_out_of_the_workspace(project, site, path):
    status, _, body = fetch(url(project, path))
    assert status == 404 and b"SECRET" not in body and b"root:" not in body


def test_symlinks_fifos_and_huge_files_are_not_served(project, site, tmp_path, settings):
    (site / "passwd").symlink_to("/etc/passwd")
    (site / "out").symlink_to(tmp_path)
    os.mkfifo(site / "pipe")
    with open(site / "huge.bin", "wb") as handle:
        handle.truncate(2 * 1024**3)
    for path in ("passwd", "out/secret.txt", "out/", "pipe", "huge.bin"):
        status, _, body = fetch(url(project, path))  # fetch fails if it takes over 10 s
        assert status == 404, path
        assert b"SECRET" not in body and b"root:" not in body


def test_nothing_to_show_yet_without_index(project, site):
    (site / "index.html").unlink()
    status, headers, body = fetch(url(project))
    assert status == 404 and b"Nothing to show yet" in body
    assert headers["content-type"].startswith("text/html")


def test_a_deleting_project_shows_nothing(project, site):
    Project.objects.filter(pk=project.pk).update(status=Project.Status.DELETING)
    assert fetch(url(project))[0] == 404


def test_only_get_and_head(project, site):
    assert fetch(url(project), method="POST")[0] == 405
    status, headers, body = fetch(url(project), method="HEAD")
    assert (status, body, headers["content-length"]) == (200, b"", "15")
