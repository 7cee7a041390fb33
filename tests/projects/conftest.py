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
def alice_project(project):
    """Alice's project (tests/conftest.py) after a start that failed."""
    project.status = Project.Status.ERROR
    project.error_message = "The project's server did not start."
    project.save(update_fields=["status", "error_message"])
    return project
