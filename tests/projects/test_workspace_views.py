"""The project page's preview (data-preview-url, the iframe, a new link) and the owner's
files: list, viewer, zip. Another user gets 404 for all of them."""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path

import pytest
from django.conf import settings

from doce.opencode.runtimes.base import Layout
from projects.models import Project, is_preview_token
from projects.workspace import project_workspace
from tests.factories import UserFactory


@pytest.fixture
def site(project, tmp_path) -> Path:
    project.data_dir = str(tmp_path / "project")
    project.save(update_fields=["data_dir"])
    Layout(Path(project.data_dir)).prepare()
    root = project_workspace(project)
    (root / "css").mkdir()
    (root / "css" / "site.css").write_text("h1 { color: red }")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / "secret.txt").write_text("SECRET")
    (root / "leak.txt").symlink_to(tmp_path / "secret.txt")
    return root


def preview_url_on(html: str) -> str | None:
    match = re.search(r'data-preview-url="([^"]+)"', html)
    return match.group(1) if match else None


def test_no_preview_before_the_agent_wrote_a_page(alice_client, project, site):
    html = alice_client.get(f"/projects/{project.pk}/").content.decode()
    assert preview_url_on(html) is None
    assert "Nothing to show yet" in html


def test_the_page_frames_the_preview_on_another_origin(alice_client, project, site):
    (site / "index.html").write_text("<h1>Bakery</h1>")
    response = alice_client.get(f"/projects/{project.pk}/", HTTP_HOST="localhost:8000")
    html = response.content.decode()
    url = preview_url_on(html)
    origin = f"http://localhost:{settings.DOCE_PREVIEW_PORT}"
    assert url == f"{origin}/{project.preview_token}/"
    assert settings.DOCE_PREVIEW_PORT != settings.DOCE_PORT
    iframe = re.search(r"<iframe[^>]*>", html).group(0)
    assert 'sandbox="allow-scripts allow-forms allow-popups"' in iframe
    assert "allow-same-origin" not in iframe
    assert "Open in a new tab" in html
    frame_src = re.search(r"frame-src ([^;]+)", response.headers["Content-Security-Policy"])
    assert origin in frame_src.group(1).split()


def test_production_origin(alice_client, project, site, settings):
    (site / "index.html").write_text("<h1>Bakery</h1>")
    settings.DOCE_PREVIEW_ORIGIN = "https://preview.example.com"
    html = alice_client.get(f"/projects/{project.pk}/").content.decode()
    assert preview_url_on(html) == f"https://preview.example.com/{project.preview_token}/"


def test_one_origin_per_project(alice_client, admin_client, project, site, settings):
    (site / "index.html").write_text("<h1>Bakery</h1>")
    settings.DOCE_PREVIEW_ORIGIN = "https://{token}.preview.example.com"
    expected = f"https://{project.preview_token}.preview.example.com/"
    html = alice_client.get(f"/projects/{project.pk}/").content.decode()
    assert preview_url_on(html) == expected
    opened = admin_client.get(f"/admin/projects/project/{project.pk}/preview/")
    assert (opened.status_code, opened.headers["Location"]) == (302, expected)


def test_new_preview_link_is_the_owners_post(client, alice_client, project, site):
    old = project.preview_token
    assert alice_client.get(f"/projects/{project.pk}/preview/new-link/").status_code == 405
    response = alice_client.post(f"/projects/{project.pk}/preview/new-link/")
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.preview_token != old and is_preview_token(project.preview_token)
    client.force_login(UserFactory(username="bob"))
    assert client.post(f"/projects/{project.pk}/preview/new-link/").status_code == 404
    project.refresh_from_db()
    assert project.preview_token != old


def test_every_project_has_its_own_token_a_dns_label(project, alice):
    other = Project.objects.create(
        owner=alice, name="B", prompt="x", current_model_provider_id="s", current_model_id="m"
    )
    assert other.preview_token and other.preview_token != project.preview_token
    # 160 bits; lowercase letters and digits only: the first label of a host name.
    assert re.fullmatch(r"[a-z2-7]{32}", other.preview_token)


def test_files_list_shows_regular_files_without_following_links(alice_client, project, site):
    os.mkfifo(site / "pipe")
    html = alice_client.get(f"/projects/{project.pk}/files/").content.decode()
    assert 'data-file="css/site.css"' in html and 'data-file="logo.png"' in html
    assert "leak.txt" not in html and "pipe" not in html.split("<tbody>")[1].split("</tbody>")[0]
    assert "Download as .zip" in html


def test_viewer_shows_text_escaped_and_refuses_links(alice_client, project, site):
    (site / "page.html").write_text("<script>alert(1)</script>")
    html = alice_client.get(f"/projects/{project.pk}/files/view/page.html").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html
    binary = alice_client.get(f"/projects/{project.pk}/files/view/logo.png").content.decode()
    assert "not a text file" in binary
    assert alice_client.get(f"/projects/{project.pk}/files/view/leak.txt").status_code == 404
    assert alice_client.get(f"/projects/{project.pk}/files/view/../secret.txt").status_code == 404
    assert alice_client.get(f"/projects/{project.pk}/files/view/css").status_code == 404


def test_zip_holds_the_files_and_skips_links(alice_client, project, site):
    os.mkfifo(site / "pipe")
    response = alice_client.get(f"/projects/{project.pk}/files/download.zip")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert sorted(archive.namelist()) == ["css/site.css", "logo.png"]
    assert archive.read("css/site.css") == b"h1 { color: red }"


def test_zip_is_bounded(alice_client, project, site, settings):
    settings.DOCE_DOWNLOAD_MAX_MB = 1
    (site / "big.bin").write_bytes(os.urandom(1024 * 1024 + 1))
    response = alice_client.get(f"/projects/{project.pk}/files/download.zip")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert "big.bin" not in archive.namelist()
    assert "big.bin" in archive.read("DOWNLOAD-NOTE.txt").decode()


@pytest.mark.parametrize(
    "path", ["files/", "files/view/css/site.css", "files/download.zip", "preview/new-link/"]
)
def test_another_user_gets_404(client, project, site, path):
    client.force_login(UserFactory(username="bob"))
    method = client.post if path.startswith("preview") else client.get
    assert method(f"/projects/{project.pk}/{path}").status_code == 404


def test_staff_open_any_preview_from_the_admin(client, admin_user, project, site):
    client.force_login(admin_user)
    page = client.get(f"/admin/projects/project/{project.pk}/change/").content.decode()
    assert f"/admin/projects/project/{project.pk}/preview/" in page
    response = client.get(f"/admin/projects/project/{project.pk}/preview/", HTTP_HOST="localhost")
    assert response.status_code == 302
    assert response["Location"] == (
        f"http://localhost:{settings.DOCE_PREVIEW_PORT}/{project.preview_token}/"
    )
