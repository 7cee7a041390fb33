import pytest

from projects.jobs import START_PIPELINE
from projects.models import Project
from queue_jobs.models import Job

pytestmark = pytest.mark.django_db


def test_without_a_connected_provider_the_page_says_what_to_do(alice_client, settings):
    settings.DOCE_FREE_MODELS = False  # else OpenCode Zen's free models are offered
    html = alice_client.get("/projects/new/").content.decode()
    assert "Connect an LLM provider first" in html
    assert 'href="/settings/providers/"' in html
    assert 'name="prompt"' not in html
    response = alice_client.post("/projects/new/", {"prompt": "x", "model": "stub/stub-model"})
    assert response.status_code == 200
    assert not Project.objects.exists()


def test_a_project_is_created_with_its_pipeline(alice_client, alice, alice_stub):
    response = alice_client.post(
        "/projects/new/", {"prompt": "  Build a site for my bakery  ", "model": "stub/stub-model"}
    )
    project = Project.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/projects/{project.pk}/"
    assert (project.owner, project.current_model_provider_id, project.current_model_id) == (
        alice,
        "stub",
        "stub-model",
    )
    assert project.status == Project.Status.STARTING
    assert project.name == "Build a site for my bakery"
    assert len(str(project.server_password)) >= 32
    assert list(Job.objects.filter(subject=project).values_list("type", flat=True)) == (
        START_PIPELINE
    )


def test_a_double_submit_creates_one_project(alice_client, alice_stub):
    data = {"prompt": "Build a site for my bakery", "model": "stub/stub-model"}
    first = alice_client.post("/projects/new/", data)
    second = alice_client.post("/projects/new/", data)
    assert Project.objects.count() == 1
    assert first["Location"] == second["Location"]
    assert Job.objects.count() == 5


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"prompt": "", "model": "stub/stub-model"}, "This field is required."),
        ({"prompt": "   ", "model": "stub/stub-model"}, "This field is required."),
        ({"prompt": "x" * 20_001, "model": "stub/stub-model"}, "at most 20000 characters"),
        ({"prompt": "hi\x00there", "model": "stub/stub-model"}, "Null characters are not allowed"),
        ({"prompt": "hi\x07there", "model": "stub/stub-model"}, "control characters"),
        ({"prompt": "hello", "model": ""}, "Pick a model, or pick “Other model”"),
        ({"prompt": "hello", "model": "other", "model_other": ""}, "Pick a model"),
        ({"prompt": "hello", "model": "gpt-4o"}, "Write the model as provider/model"),
        ({"prompt": "hello", "model": "anthropic/claude-sonnet-4"}, "is not connected"),
    ],
)
def test_bad_input_gets_a_clear_error_and_creates_nothing(alice_client, alice_stub, data, error):
    response = alice_client.post("/projects/new/", data)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Project.objects.exists()


def test_a_revoked_connection_is_not_usable(alice_client, alice_stub, settings):
    settings.DOCE_FREE_MODELS = False
    alice_stub.status = "revoked"
    alice_stub.save()
    response = alice_client.post("/projects/new/", {"prompt": "hi", "model": "stub/stub-model"})
    assert "Connect an LLM provider first" in response.content.decode()
    assert not Project.objects.exists()


def test_the_legacy_openrouter_key_still_works(alice_client, alice):
    from providers.models import UserSettings

    UserSettings.objects.create(user=alice, openrouter_api_key="sk-or-v1-" + "a" * 40)
    response = alice_client.post(
        "/projects/new/", {"prompt": "hi", "model": "openrouter/anthropic/claude-sonnet-4"}
    )
    assert response.status_code == 302
    assert Project.objects.get().current_model_id == "anthropic/claude-sonnet-4"


def test_the_model_picker_offers_models_of_connected_providers_only(
    alice_client, alice, alice_stub
):
    from tests.factories import ProviderConnectionFactory

    ProviderConnectionFactory(user=alice, provider_id="anthropic")
    html = alice_client.get("/projects/new/").content.decode()
    assert '<option value="stub/stub-model">' in html
    assert '<option value="anthropic/' in html  # from the catalog (or its built-in list)
    assert '<option value="openai/' not in html


def test_a_folder_already_at_a_new_projects_place_is_moved_aside(
    alice_client, alice_stub, settings, tmp_path, caplog
):
    """SQLite hands out the id of a rolled-back creation again (and a restored database
    does the same): a folder left at that id's place must not become the new project's."""
    settings.DOCE_PROJECTS_DIR = str(tmp_path)
    new = {"prompt": "Build a site for my bakery", "model": "stub/stub-model"}
    alice_client.post("/projects/new/", new)
    first = Project.objects.get()
    assert not (tmp_path / str(first.pk)).exists()  # nothing was there: nothing moved
    left = tmp_path / str(first.pk + 1)
    (left / "home").mkdir(parents=True)
    (left / "home" / "auth.json").write_text('{"stub": "someone else\'s key"}')

    alice_client.post("/projects/new/", {**new, "prompt": "A second site"})

    second = Project.objects.exclude(pk=first.pk).get()
    assert second.pk == first.pk + 1
    assert second.data_dir == str(left)
    assert not left.exists()
    (aside,) = tmp_path.glob(f".leftover-{second.pk}-*")
    assert (aside / "home" / "auth.json").read_text() == '{"stub": "someone else\'s key"}'
    assert f"moved to {aside}" in caplog.text
