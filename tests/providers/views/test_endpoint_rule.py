"""What a user types never widens the sandbox onto the host (doce.endpoints), where a
user meets it: the custom-endpoint form refuses, the key check never connects, a row
that breaks the rule shows what to change and its project does not start."""

from __future__ import annotations

import socket
import threading

import pytest

from doce.opencode.runtimes import RuntimeFailure
from projects import services as project_services
from projects.models import Project
from providers import services, validation
from providers.models import ProviderConnection
from tests.providers.conftest import new_key
from tests.providers.stubs import ProviderAPI

pytestmark = pytest.mark.django_db
URL = "/settings/providers/custom/"


@pytest.fixture(autouse=True)
def rule(settings):
    """No operator list (the test settings list every loopback port)."""
    settings.DOCE_ENDPOINT_ALLOW = []
    settings.DOCE_PORT = 8000
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/15"
    return settings


@pytest.fixture
def bob_client(client, bob):
    client.force_login(bob)
    return client


def form(base_url: str, **overrides) -> dict:
    return {
        "provider_id": "mine",
        "name": "Mine",
        "base_url": base_url,
        "models": "m1",
        "api_key": "",
        **overrides,
    }


def errors(response) -> str:
    assert response.status_code == 200
    return " ".join(response.context["form"].errors.get("base_url", []))


@pytest.mark.parametrize(
    ("base_url", "said"),
    [
        ("http://127.0.0.1:6379/v1", "doce's broker"),
        ("http://127.0.0.1:8000/v1", "doce's web server"),
        ("http://localhost:21234/v1", "an OpenCode server port of doce's"),
        # doce's database when the run uses PostgreSQL, otherwise just a host service
        ("http://127.0.0.1:5432/v1", "only administrators|doce's database"),
        ("http://127.0.0.1:11434/v1", "only administrators may use such an endpoint"),
        ("http://10.1.2.3:8000/v1", "only administrators may use such an endpoint"),
    ],
)
def test_an_ordinary_users_endpoint_on_the_host_is_refused_at_save(bob_client, base_url, said):
    response = bob_client.post(URL, form(base_url))
    message = errors(response)
    assert any(part in message for part in said.split("|")), message
    assert not ProviderConnection.objects.exists()
    if "administrators" in message:  # says who can allow it, and how
        assert "DOCE_ENDPOINT_ALLOW" in message


def test_staff_may_name_the_machine_but_never_doces_services(admin_client):
    assert admin_client.post(URL, form("http://127.0.0.1:11434/v1")).status_code == 302
    for base_url in ("http://127.0.0.1:6379/v1", "http://[::1]:8000/v1"):
        message = errors(admin_client.post(URL, form(base_url, provider_id="other")))
        assert "no endpoint may point there" in message


def test_an_operator_listed_endpoint_works_for_everyone(bob_client, rule):
    rule.DOCE_ENDPOINT_ALLOW = ["127.0.0.1:11434"]
    assert bob_client.post(URL, form("http://localhost:11434/v1")).status_code == 302


class _Counter:
    """A listener that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("trusted", [False, True])
def test_the_key_check_never_connects_to_a_service_whoever_asks(rule, trusted):
    """doce's own (unsandboxed) process: the web server's port stands in for a service."""
    listener = _Counter()
    try:
        rule.DOCE_PORT = listener.port
        check = validation.key_check(
            provider_id="mine",
            api_key=new_key("sk-"),
            base_url=f"http://127.0.0.1:{listener.port}/v1",
            list_models=True,
            trusted=trusted,
        )
    finally:
        listener.close()
    assert check.outcome == validation.UNVERIFIED
    assert listener.accepted == 0


def test_the_key_check_asks_the_machine_only_for_staff_or_a_listed_endpoint(rule):
    with ProviderAPI() as api:
        ordinary = validation.key_check(
            provider_id="mine", api_key=new_key("sk-"), base_url=api.url, trusted=False
        )
        assert ordinary.outcome == validation.UNVERIFIED and api.seen == []
        staff = validation.key_check(
            provider_id="mine", api_key=new_key("sk-"), base_url=api.url, trusted=True
        )
        assert staff.outcome == validation.VALID and len(api.seen) == 1
        rule.DOCE_ENDPOINT_ALLOW = [api.url.removeprefix("http://")]
        listed = validation.key_check(
            provider_id="mine", api_key=new_key("sk-"), base_url=api.url, trusted=False
        )
        assert listed.outcome == validation.VALID and len(api.seen) == 2


def _forced(user, base_url: str, provider_id: str = "forced") -> ProviderConnection:
    """A row written around the form (a script, an older release)."""
    return ProviderConnection.objects.create(
        user=user,
        provider_id=provider_id,
        auth_type="api",
        name="Forced",
        base_url=base_url,
        models=["m1"],
        status="connected",
    )


def test_a_row_that_breaks_the_rule_says_what_to_change(bob, bob_client):
    _forced(bob, "http://127.0.0.1:6379/v1")
    page = bob_client.get("/settings/providers/").content.decode()
    assert 'data-status="error"' in page
    assert "doce&#x27;s broker" in page and "Change its base URL." in page
    assert ProviderConnection.objects.count() == 1  # not deleted
    tested = bob_client.post("/settings/providers/forced/test/", follow=True)
    assert "Change its base URL." in tested.content.decode()
    assert ProviderConnection.objects.get().status == "error"


def test_a_project_on_such_a_row_cannot_start_and_says_why(bob, project_factory_model):
    _forced(bob, "http://127.0.0.1:11434/v1")
    _forced(bob, "http://127.0.0.1:6379/v1", provider_id="unused")
    project = project_factory_model(owner=bob, model="forced/m1")
    with pytest.raises(RuntimeFailure) as failure:
        project_services.project_spec(project)
    assert failure.value.retryable is False
    assert "only administrators may use such an endpoint" in failure.value.message
    assert "Change its base URL in Settings." in failure.value.message


def test_rows_that_break_the_rule_are_left_out_of_other_projects(bob, project_factory_model):
    _forced(bob, "http://127.0.0.1:6379/v1", provider_id="unused")
    _forced(bob, "https://api.example.test/v1", provider_id="public")
    spec = project_services.project_spec(project_factory_model(owner=bob, model="public/m1"))
    assert [provider.id for provider in spec.custom_providers] == ["public"]
    assert spec.trusted_endpoints is False


@pytest.fixture
def project_factory_model():
    def make(*, owner, model: str) -> Project:
        provider, model_id = model.split("/", 1)
        return Project.objects.create(
            owner=owner,
            name="Site",
            prompt="Build a site",
            current_model_provider_id=provider,
            current_model_id=model_id,
            server_password="pw-" + "x" * 30,
        )

    return make


def test_services_connection_create_is_not_the_gate(bob):
    """The service layer stores what it is given (the admin, scripts): the gates are the
    form, the key check and the sandbox, so the row shows its error instead."""
    connection = services.connection_create(
        user=bob, provider_id="svc", name="S", base_url="http://127.0.0.1:6379/v1", models=["m"]
    )
    connection = services.connection_revalidate(connection=connection)
    assert connection.status == "error" and "doce's broker" in connection.error_message
