"""In Chromium, the project page's preview shows the site the agent wrote, and reloads by
itself when the agent edits it: the real OpenCode binary in its sandbox, the stub LLM
making the agent write ``index.html`` with bash tool calls, doce under uvicorn (ASGI,
for the page's event stream) and the real preview server process on another port."""

from __future__ import annotations

import pytest

from bench.stream import prompt, running_project, serve_asgi
from bench.stub_llm import StubLLM
from tests.factories import DEFAULT_PASSWORD
from tests.integration.conftest import local_preview_origin, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FIRST = "Fresh bread every morning"
SECOND = "Now with croissants"
COMMANDS = {
    "write": f"printf '<h1>%s</h1>' '{FIRST}' > index.html",
    "edit": f"printf '<h1>%s</h1>' '{SECOND}' > index.html",
}


def frame_src_for(settings, port: int, mode: str) -> None:
    """doce's pages may frame the preview server of this test (a port of its own) and
    nothing else; with one origin per project, every project's."""
    frame_src = f"http://127.0.0.1:{port}"
    if mode == "subdomains":
        settings.DOCE_PREVIEW_ORIGIN = local_preview_origin(port)
        frame_src = f"http://*.localhost:{port}"
    policy = {**settings.CONTENT_SECURITY_POLICY}
    policy["DIRECTIVES"] = {**policy["DIRECTIVES"], "frame-src": [frame_src]}
    settings.CONTENT_SECURITY_POLICY = policy
    settings.DOCE_PREVIEW_PORT = port


# In "subdomains" the preview is http://<token>.localhost:<port>/: Chromium resolves
# *.localhost to this machine by itself.
@pytest.mark.parametrize("preview_server", ["path", "subdomains"], indirect=True)
def test_the_preview_shows_the_agents_page_and_reloads_on_its_edit(
    page, alice, preview_server, settings, tmp_path, request
):
    mode = request.node.callspec.params["preview_server"]
    frame_src_for(settings, preview_server, mode)
    with (
        StubLLM(reply="Done.", commands=COMMANDS) as stub,
        running_project(owner=alice, stub=stub, data_dir=tmp_path / "project") as project,
        serve_asgi() as url,
    ):
        host_url = url  # http://127.0.0.1:<port>: the preview link names the same host
        page.goto(host_url + "/accounts/login/")
        page.fill("#id_username", "alice")
        page.fill("#id_password", DEFAULT_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(host_url + "/projects/")
        page.goto(f"{host_url}/projects/{project.pk}/")
        page.wait_for_selector(
            "[data-live-stream][data-live=open]", state="attached", timeout=60_000
        )
        page.locator("[data-preview-empty]").wait_for()
        page.evaluate("window.__sameDocument = true")  # lost on a full page reload

        page.fill("textarea[name=text], input[name=text]", "Write my home page [[write]]")
        page.get_by_role("button", name="Send").click()
        frame = page.frame_locator("iframe[data-preview-url]")
        frame.locator("h1", has_text=FIRST).wait_for(timeout=120_000)
        src = page.locator("iframe[data-preview-url]").get_attribute("src")
        if mode == "subdomains":
            assert src == f"http://{project.preview_token}.localhost:{preview_server}/"
        else:
            assert src == f"http://127.0.0.1:{preview_server}/{project.preview_token}/"

        prompt(project, "Add croissants [[edit]]")
        frame.locator("h1", has_text=SECOND).wait_for(timeout=120_000)
        assert page.evaluate("window.__sameDocument") is True
        # The file is written (and shown) before the tool's output goes back to the LLM.
        wait_for(lambda: len(stub.tool_outputs()) == 2, timeout=60, what="the second output")
