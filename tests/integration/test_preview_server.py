"""The site preview as `make run` serves it: the real preview server process (uvicorn,
projects.preview_asgi) on a port of its own. A page written into the workspace is served
at the project page's data-preview-url within a second; a guessed token and the bare
origin show nothing."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from doce.opencode.runtimes.base import Layout
from projects.workspace import project_workspace
from tests.factories import UserFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_the_page_written_is_served_from_the_other_port(
    preview_server, alice_client, project, tmp_path, settings
):
    settings.DOCE_PREVIEW_PORT = preview_server
    project.data_dir = str(tmp_path / "project")
    project.save(update_fields=["data_dir"])
    Layout(Path(project.data_dir)).prepare()

    page = alice_client.get(f"/projects/{project.pk}/", HTTP_HOST="127.0.0.1:8000")
    assert "data-preview-url" not in page.content.decode()

    written = time.monotonic()
    (project_workspace(project) / "index.html").write_text("<h1>Fresh bread</h1>")
    page = alice_client.get(f"/projects/{project.pk}/", HTTP_HOST="127.0.0.1:8000")
    url = re.search(r'data-preview-url="([^"]+)"', page.content.decode()).group(1)
    assert url == f"http://127.0.0.1:{preview_server}/{project.preview_token}/"
    answer = httpx.get(url, timeout=5)
    assert time.monotonic() - written < 1
    assert answer.status_code == 200 and answer.text == "<h1>Fresh bread</h1>"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "set-cookie" not in answer.headers

    origin = f"http://127.0.0.1:{preview_server}"
    for path in ("/", "/index.html", "/guessed-token-0123456789abcdef/", f"/{'x' * 43}/"):
        nothing = httpx.get(origin + path, cookies={"sessionid": "x"}, timeout=5)
        assert (nothing.status_code, nothing.text) == (404, "Not found\n"), path

    alice_client.force_login(UserFactory(username="bob"))
    assert alice_client.get(f"/projects/{project.pk}/").status_code == 404
