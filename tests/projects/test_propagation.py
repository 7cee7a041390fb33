import pytest

from projects.jobs import JobType
from projects.models import Project
from providers.services import connection_delete, connection_revoke, connection_update
from queue_jobs.models import Job
from tests.factories import ProviderConnectionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(alice, bob):
    connection = ProviderConnectionFactory(user=alice, provider_id="anthropic")
    projects = {
        name: Project.objects.create(
            owner=owner,
            name=name,
            prompt="p",
            current_model_provider_id=provider,
            current_model_id="m",
            status=status,
        )
        for name, owner, provider, status in [
            ("uses-it", alice, "anthropic", Project.Status.RUNNING),
            ("other-provider", alice, "openai", Project.Status.RUNNING),
            ("stopped", alice, "anthropic", Project.Status.STOPPED),
            ("bobs", bob, "anthropic", Project.Status.RUNNING),
        ]
    }
    return connection, projects


def _jobs(job_type):
    return sorted(Job.objects.filter(type=job_type).values_list("subject__name", flat=True))


def test_an_edited_key_is_reinjected_where_the_provider_is_used(
    setup, django_capture_on_commit_callbacks
):
    connection, _ = setup
    with django_capture_on_commit_callbacks(execute=True):
        connection_update(connection=connection, api_key="sk-ant-api03-" + "n" * 40)
    assert _jobs(JobType.REINJECT_CREDENTIALS) == ["uses-it"]
    assert Job.objects.get().params == {"provider_id": "anthropic"}


def test_changing_only_the_name_reinjects_nothing(setup, django_capture_on_commit_callbacks):
    connection, _ = setup
    with django_capture_on_commit_callbacks(execute=True):
        connection_update(connection=connection, name="Claude")
    assert not Job.objects.exists()


@pytest.mark.parametrize("action", ["delete", "revoke"])
def test_disconnecting_removes_the_key_from_every_live_project_of_the_user(
    setup, action, django_capture_on_commit_callbacks
):
    connection, _ = setup
    with django_capture_on_commit_callbacks(execute=True):
        if action == "delete":
            connection_delete(connection=connection)
        else:
            connection_revoke(connection=connection, reason="leaked")
    assert _jobs(JobType.REMOVE_CREDENTIALS) == ["other-provider", "uses-it"]


def test_a_second_edit_while_one_is_queued_adds_nothing(setup, django_capture_on_commit_callbacks):
    connection, _ = setup
    with django_capture_on_commit_callbacks(execute=True):
        connection_update(connection=connection, api_key="sk-ant-api03-" + "a" * 40)
        connection_update(connection=connection, api_key="sk-ant-api03-" + "b" * 40)
    assert _jobs(JobType.REINJECT_CREDENTIALS) == ["uses-it"]


def test_a_custom_endpoint_change_reaches_the_projects_using_it(
    alice, django_capture_on_commit_callbacks
):
    custom = ProviderConnectionFactory(
        user=alice,
        provider_id="ollama",
        name="Ollama",
        base_url="http://127.0.0.1:11434/v1",
        models=["llama3"],
    )
    Project.objects.create(
        owner=alice,
        name="local",
        prompt="p",
        current_model_provider_id="ollama",
        current_model_id="llama3",
        status=Project.Status.RUNNING,
    )
    with django_capture_on_commit_callbacks(execute=True):
        connection_update(connection=custom, models=["llama3", "qwen3"])
    assert _jobs(JobType.REINJECT_CREDENTIALS) == ["local"]
