import pytest

from projects.models import Project
from tests.factories import ProviderConnectionFactory


@pytest.fixture
def alice_stub(alice):
    """Alice's custom OpenAI-compatible provider ``stub``."""
    return ProviderConnectionFactory(
        user=alice,
        provider_id="stub",
        name="Stub",
        base_url="http://127.0.0.1:9/v1",
        models=["stub-model"],
        api_key="sk-stub-" + "k" * 24,
    )


@pytest.fixture
def alice_project(alice):
    return Project.objects.create(
        owner=alice,
        name="Bakery",
        prompt="Build a site for my bakery",
        current_model_provider_id="stub",
        current_model_id="stub-model",
        server_password="pw-" + "x" * 30,
        status=Project.Status.ERROR,
        error_message="The project's server did not start.",
    )
