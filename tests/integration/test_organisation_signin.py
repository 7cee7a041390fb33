"""Organisation sign-in (OpenCode's well-known credentials) against the real binary.

A fake organisation (a thread HTTP server here) serves ``/.well-known/opencode``
declaring a provider at the stub LLM whose ``Authorization`` header is ``Bearer
{env:ORG_TOKEN}``. Staff register it, Alice pastes her token, creates a project on the
organisation's model; the real worker and the real sandboxed server then:

- get the ``wellknown`` entry under the organisation's URL (auth.json as ``opencode auth
  login <url>`` writes it: ``{"type": "wellknown", "key": "ORG_TOKEN", "token": ...}``);
- fetch the document from inside the sandbox and send the prompt to the stub with
  ``Authorization: Bearer <token>``.

And when the document cannot be fetched, the project fails with doce's clear message
(never OpenCode's instance 500), and nothing is put into its server.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from doce.opencode.runtimes import sandbox_plan
from projects import services as project_services
from projects.models import Project
from providers.models import AuditEvent
from providers.organisations import services as organisation_services
from providers.organisations.models import OrganisationToken
from providers.selectors import usable_provider_ids
from tests.doce.opencode.servers import require_binary
from tests.integration.conftest import REPLY, pipeline_report, project_settled, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TOKEN = "org-token-" + "7f3a9c2e5b1d4f60"  # made up
PROMPT = "Build a site for the organisation's bakery"


class FakeOrganisation:
    """Serves ``<url>/.well-known/opencode`` (``url`` has a path, as organisations'
    addresses may); ``up = False`` answers 503; every request is recorded."""

    def __init__(self, document: dict) -> None:
        self.document = document
        self.up = True
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                owner.requests.append(self.path)
                ok = owner.up and self.path == "/org/.well-known/opencode"
                body = json.dumps(owner.document if ok else {"error": "no"}).encode()
                self.send_response(200 if ok else (503 if not owner.up else 404))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOrganisation:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/org"


def org_document(stub_base_url: str) -> dict:
    return {
        "auth": {"command": ["example-org", "auth", "print-token"], "env": "ORG_TOKEN"},
        "config": {
            "provider": {
                "orgllm": {
                    "npm": "@ai-sdk/openai-compatible",
                    "name": "Org LLM",
                    "options": {
                        "baseURL": stub_base_url,
                        "headers": {"Authorization": "Bearer {env:ORG_TOKEN}"},
                    },
                    "models": {"org-model": {"name": "Org Model"}},
                }
            }
        },
    }


@pytest.fixture
def organisation(stub, admin_user):
    with FakeOrganisation(org_document(stub.base_url)) as fake:
        row = organisation_services.organisation_add(
            url=fake.url + "/", name="Example Org", created_by=admin_user
        )
        assert row.fetch_error == "", row.fetch_error
        yield fake, row


def test_a_project_reaches_the_organisations_provider_with_the_token(
    alice, stub, organisation, celery_worker_process
):
    require_binary()
    fake, row = organisation
    assert row.url == fake.url and row.env_name == "ORG_TOKEN"
    organisation_services.token_set(user=alice, organisation=row, token=TOKEN)
    assert "orgllm" in usable_provider_ids(user=alice)

    project = project_settled(alice, PROMPT, celery_worker_process, model="orgllm/org-model")
    try:
        assert project.status == Project.Status.RUNNING, pipeline_report(project)
        # The sandbox lets the server reach the organisation and the provider it declares.
        ports, _hosts = sandbox_plan.reach(project_services.project_spec(project))
        assert {_port(fake.url), _port(stub.base_url)} <= ports
        wait_for(stub.completions, what="the prompt at the stub LLM")
        completion = stub.completions()[0]
        assert completion.authorization == f"Bearer {TOKEN}"
        assert PROMPT in json.dumps(completion.body)
        # What OpenCode's own `auth login` stores, under the URL.
        auth = json.loads(project_services.runtime_state(project).layout.auth_file.read_text())
        assert auth == {fake.url: {"type": "wellknown", "key": "ORG_TOKEN", "token": TOKEN}}
        # doce fetched the document (registration, injection), and so did the server.
        assert len(fake.requests) >= 3
        assert AuditEvent.objects.filter(
            action=AuditEvent.Action.INJECTED, provider_id="orgllm", project_id=project.pk
        ).exists()
        wait_for(
            lambda: any(
                m["info"]["role"] == "assistant" and REPLY in json.dumps(m["parts"])
                for m in _messages(project)
            ),
            what="the stub's reply in the transcript",
        )
    finally:
        project_services.server_stop(project=project)


def test_an_unreachable_document_fails_the_project_clearly(
    alice, stub, organisation, celery_worker_process
):
    require_binary()
    fake, row = organisation
    organisation_services.token_set(user=alice, organisation=row, token=TOKEN)
    fake.up = False

    project = project_settled(alice, PROMPT, celery_worker_process, model="orgllm/org-model")
    try:
        assert project.status == Project.Status.ERROR, pipeline_report(project)
        assert "could not be fetched" in project.error_message
        assert "the organisation answered 503" in project.error_message
        assert "Example Org" in project.error_message
        assert TOKEN not in project.error_message
        state = project_services.runtime_state(project)
        auth_file = state.layout.auth_file if state is not None else None
        assert auth_file is None or not auth_file.exists() or fake.url not in auth_file.read_text()
        assert stub.completions() == []
        row.refresh_from_db()
        assert "503" in row.fetch_error
        assert OrganisationToken.objects.filter(user=alice).count() == 1
    finally:
        project_services.server_stop(project=project)


def _port(url: str) -> int:
    return int(urlsplit(url).port)


def _messages(project: Project) -> list[dict]:
    with project_services.project_client(project) as client:
        return client.messages(project.bootstrap_session_id)
