"""Each provider-options mapping against the real binary (docs/providers.md).

One server is started with what ``providers.credentials.opencode_provider_config`` makes
of four connections (Azure, Amazon Bedrock with access keys, Google Vertex with a
service account, a custom endpoint with extra headers), written by the runtime as for a
project. Then OpenCode itself says what it configured (``GET /config/providers``), and:

- the custom endpoint's headers reach the stub LLM on a real prompt;
- Bedrock, pointed at the stub by the operator's config (``options.endpoint``), signs
  its request with the access key id and region doce wrote (AWS SigV4);
- Vertex reads the service-account key doce wrote (the fake key fails to parse: there is
  no Google to ask offline).

Azure, Bedrock and Vertex cannot be reached offline: for them this proves the
configuration and the credentials OpenCode loads, not a reply.
"""

from __future__ import annotations

import json
import secrets

import pytest
from django.test import override_settings

from bench.stub_llm import StubLLM
from doce.opencode import ApiKeyCredential, ModelRef
from doce.opencode.runtimes import CustomProvider, ServerSpec
from projects import services as project_services
from projects.jobs import JobType
from projects.models import Project
from providers import services
from providers.credentials import opencode_provider_config
from providers.models import ProviderConnection
from queue_jobs.models import Job, JobState
from tests.doce.opencode.servers import running_server
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

ACCESS_KEY_ID = "AKIA" + secrets.token_hex(8).upper()
SECRET_ACCESS_KEY = secrets.token_hex(20)
HEADER_TOKEN = "hdr-" + secrets.token_hex(16)
SERVICE_ACCOUNT = json.dumps(
    {
        "type": "service_account",
        "project_id": "my-project-123",
        "private_key_id": "k1",
        "private_key": "-----BEGIN PRIVATE KEY-----\nnot-a-key\n-----END PRIVATE KEY-----\n",
        "client_email": "doce@my-project-123.iam.gserviceaccount.com",
    }
)


def connection(provider_id: str, *, options=None, secret=None, **fields) -> ProviderConnection:
    """An unsaved connection as the services store one (secret options as JSON text)."""
    return ProviderConnection(
        provider_id=provider_id,
        options=options or {},
        secret_options=json.dumps(secret) if secret else None,
        **fields,
    )


CONNECTIONS = {
    "azure": connection("azure", options={"resourceName": "doce-res1"}),
    "amazon-bedrock": connection(
        "amazon-bedrock",
        options={"region": "eu-west-3"},
        secret={"accessKeyId": ACCESS_KEY_ID, "secretAccessKey": SECRET_ACCESS_KEY},
    ),
    "google-vertex": connection(
        "google-vertex",
        options={"project": "my-project-123", "location": "europe-west4"},
        secret={"serviceAccount": SERVICE_ACCOUNT},
    ),
    "gw": connection(
        "gw",
        base_url="http://127.0.0.1:1/v1",
        secret={"headers": {"X-Org": "12", "X-Token": HEADER_TOKEN}},
    ),
}


@pytest.fixture(scope="module")
def stub():
    with StubLLM(reply="Hello with headers.") as server:
        yield server


@pytest.fixture(scope="module")
def server(stub, tmp_path_factory):
    operator = tmp_path_factory.mktemp("operator") / "opencode.json"
    # Test only: Bedrock's requests go to the stub, which records how they are signed.
    operator.write_text(
        json.dumps({"provider": {"amazon-bedrock": {"options": {"endpoint": stub.base_url}}}})
    )
    spec = ServerSpec(
        name="options",
        data_dir=tmp_path_factory.mktemp("options"),
        model=f"gw/{stub.model}",
        password=secrets.token_urlsafe(24),
        custom_providers=(CustomProvider("gw", "Gateway", stub.base_url, [stub.model]),),
        provider_configs=[opencode_provider_config(c) for c in CONNECTIONS.values()],
    )
    with override_settings(DOCE_OPENCODE_CONFIG=str(operator)), running_server(spec) as server:
        with server.client() as client:
            client.set_auth("azure", ApiKeyCredential(key="az-" + secrets.token_hex(16)))
        yield server


@pytest.fixture(scope="module")
def configured(server):
    """OpenCode's own view: /config/providers by id, and /provider's connected ids."""
    with server.client() as client:
        active = client._json("GET", "/config/providers")
        connected = client.providers()["connected"]
    return {p["id"]: p for p in active["providers"]}, set(connected)


def test_opencode_reports_each_provider_configured_with_its_options(configured, server):
    providers, connected = configured
    assert {"azure", "amazon-bedrock", "google-vertex", "gw"} <= connected
    assert providers["azure"]["options"]["resourceName"] == "doce-res1"
    bedrock = providers["amazon-bedrock"]["options"]
    assert (bedrock["region"], bedrock["profile"]) == ("eu-west-3", "doce")
    vertex = providers["google-vertex"]["options"]
    assert (vertex["project"], vertex["location"]) == ("my-project-123", "europe-west4")
    # OpenCode read the header files: the values are in its config, not in the file.
    assert providers["gw"]["options"]["headers"] == {"X-Org": "12", "X-Token": HEADER_TOKEN}
    written = (server.spec.layout.workspace / "opencode.json").read_text()
    assert HEADER_TOKEN not in written and SECRET_ACCESS_KEY not in written


def test_the_custom_endpoints_headers_reach_it_on_a_prompt(server, stub):
    stub.clear()
    with server.client() as client:
        session = client.session_create(title="headers")
        client.prompt(session["id"], "hello", model=ModelRef("gw", stub.model))
    completion = stub.completions()[-1]
    assert completion.headers["x-token"] == HEADER_TOKEN
    assert completion.headers["x-org"] == "12"


def test_bedrock_signs_with_the_access_keys_and_region_doce_wrote(server, stub):
    stub.clear()
    with server.client() as client:
        session = client.session_create(title="bedrock")
        client.prompt_async(
            session["id"], "hello", model=ModelRef("amazon-bedrock", "google.gemma-3-12b-it")
        )
        try:
            request = wait_for(
                lambda: next((r for r in stub.requests if "/model/" in r.path), None),
                timeout=60,
                what="Bedrock's request at the stub",
            )
        finally:
            client.session_abort(session["id"])
    signed = request.authorization or ""
    assert signed.startswith("AWS4-HMAC-SHA256 ")
    assert f"Credential={ACCESS_KEY_ID}/" in signed and "/eu-west-3/bedrock/" in signed


def test_vertex_loads_the_service_account_doce_wrote(server):
    with server.client() as client:
        session = client.session_create(title="vertex")
        answer = client.prompt(
            session["id"],
            "hello",
            model=ModelRef("google-vertex", "gemini-flash-latest"),
            raise_on_error=False,
            timeout=90,
        )
    message = json.dumps(answer["info"].get("error") or {})
    # The key file was found and read (its fake private key does not parse); without it
    # Google's SDK says it could not load the default credentials.
    assert "PEM" in message or "DECODER" in message, message
    assert "default credentials" not in message.lower()


@pytest.mark.django_db
def test_a_projects_spec_carries_its_providers_options(alice, tmp_path, settings):
    settings.DOCE_PROJECTS_DIR = str(tmp_path)
    services.connection_create(
        user=alice,
        provider_id="google-vertex",
        options={"project": "my-project-123"},
        secret_options={"serviceAccount": SERVICE_ACCOUNT},
    )
    services.connection_create(
        user=alice, provider_id="azure", api_key="k" * 24, options={"resourceName": "r1"}
    )
    project = Project.objects.create(
        owner=alice,
        name="p",
        current_model_provider_id="google-vertex",
        current_model_id="gemini-flash-latest",
        server_password="pw",
    )
    spec = project_services.project_spec(project)
    # Only the project's own provider: another connection's secrets stay out of its home.
    assert [c.provider_id for c in spec.provider_configs] == ["google-vertex"]
    assert spec.provider_configs[0].options == {"project": "my-project-123"}


@pytest.mark.django_db(transaction=True)
def test_headers_added_to_a_running_projects_endpoint_reach_its_next_prompt(stub, running_project):
    """The whole road: the service, the re-injection job of the real worker (which
    rewrites opencode.json and the home's files), the rebuild, the next prompt."""
    project, connection = running_project
    assert "x-token" not in stub.completions()[-1].headers

    def reinjected() -> int:
        return Job.objects.filter(
            subject=project, type=JobType.REINJECT_CREDENTIALS, state=JobState.SUCCEEDED
        ).count()

    services.connection_update(
        connection=connection, secret_options={"headers": {"X-Token": HEADER_TOKEN}}
    )
    wait_for(lambda: reinjected() == 1, what="the re-injection")
    home = project_services.runtime_state(project).layout.home
    assert HEADER_TOKEN not in (home.parent / "workspace" / "opencode.json").read_text()
    stub.clear()
    project_services.message_send(project=project, text="Add a contact page")
    request = wait_for(stub.completions, what="the follow-up prompt")[-1]
    assert request.headers["x-token"] == HEADER_TOKEN

    # Removed: the next prompt goes without it, and its file is gone.
    services.connection_update(
        connection=ProviderConnection.objects.get(pk=connection.pk), secret_options={}
    )
    wait_for(lambda: reinjected() == 2, what="the second re-injection")
    assert list((home / ".config/doce/headers").iterdir()) == []
    stub.clear()
    project_services.message_send(project=project, text="And a menu page")
    request = wait_for(stub.completions, what="the next prompt")[-1]
    assert "x-token" not in request.headers
