from html import unescape

import pytest

from projects.forms import MESSAGE_MAX
from projects.jobs import JobType
from projects.models import Project
from queue_jobs.models import Job, JobState

pytestmark = pytest.mark.django_db


def test_the_page_shows_status_steps_and_the_prompt(alice_client, alice_project):
    Job.objects.create(
        subject=alice_project,
        type=JobType.RUNTIME_UP,
        state=JobState.FAILED,
        last_error="OpenCode did not become healthy",
    )
    html = alice_client.get(f"/projects/{alice_project.pk}/").content.decode()
    assert 'data-project-status="error"' in html
    assert 'data-step="runtime.up"' in html and 'data-state="failed"' in html
    assert "OpenCode did not become healthy" in html
    assert "Build a site for my bakery" in html
    assert "Retry" in html
    assert str(alice_project.server_password) not in html


def test_a_provider_auth_error_links_to_settings(alice_client, alice_project):
    Project.objects.filter(pk=alice_project.pk).update(
        error_kind="provider_auth", error_message="the provider rejected the credential (401)"
    )
    html = alice_client.get(f"/projects/{alice_project.pk}/status/").content.decode()
    assert "Provider not configured or key rejected" in html
    assert 'href="/settings/providers/"' in html


def test_the_status_fragment_polls_only_while_work_is_active(alice_client, alice_project):
    html = alice_client.get(f"/projects/{alice_project.pk}/status/").content.decode()
    assert "hx-trigger" not in html  # an error: nothing more will happen by itself
    Project.objects.filter(pk=alice_project.pk).update(status=Project.Status.STARTING)
    html = alice_client.get(f"/projects/{alice_project.pk}/status/").content.decode()
    assert 'hx-trigger="every 1s"' in html


def test_retry_starts_a_new_pipeline_once(alice_client, alice_project):
    alice_client.post(f"/projects/{alice_project.pk}/start/")
    alice_client.post(f"/projects/{alice_project.pk}/start/")
    assert Job.objects.filter(subject=alice_project).count() == 5
    alice_project.refresh_from_db()
    assert alice_project.status == Project.Status.STARTING
    assert alice_project.error_message == ""


def test_messages_to_a_project_that_is_not_running_say_so(alice_client, alice_project):
    response = alice_client.post(
        f"/projects/{alice_project.pk}/messages/", {"text": "more"}, follow=True
    )
    assert "not running" in response.content.decode()


def test_an_empty_message_is_refused(alice_client, alice_project):
    response = alice_client.post(
        f"/projects/{alice_project.pk}/messages/", {"text": ""}, follow=True
    )
    assert "This field is required." in response.content.decode()


def _textarea(html: str) -> str:
    """The message form's textarea content, unescaped."""
    start = html.index(">", html.index('<textarea name="text"')) + 1
    return unescape(html[start : html.index("</textarea>", start)]).strip()


@pytest.mark.parametrize("htmx", [False, True], ids=["form", "htmx"])
def test_a_refused_message_comes_back_as_the_draft_once(alice_client, alice_project, htmx):
    text = "Ajoute un menu « café » & <b>prix</b> 🍰\nsur deux lignes"
    url = f"/projects/{alice_project.pk}/messages/"
    if htmx:
        response = alice_client.post(url, {"text": text}, headers={"HX-Request": "true"})
        assert response.status_code == 204
        assert response["HX-Redirect"] == f"/projects/{alice_project.pk}/"
        html = alice_client.get(response["HX-Redirect"]).content.decode()
    else:
        html = alice_client.post(url, {"text": text}, follow=True).content.decode()
    assert "not running" in html
    assert _textarea(html) == text
    # Shown once: the next visit starts empty.
    assert _textarea(alice_client.get(f"/projects/{alice_project.pk}/").content.decode()) == ""


def test_a_too_long_message_is_refused_and_kept(alice_client, alice_project):
    text = "x" * (MESSAGE_MAX + 1)
    html = alice_client.post(
        f"/projects/{alice_project.pk}/messages/", {"text": text}, follow=True
    ).content.decode()
    assert f"at most {MESSAGE_MAX} characters (it has {MESSAGE_MAX + 1})" in html
    assert _textarea(html) == text


def test_a_draft_stays_with_its_own_project(alice_client, alice_project, alice):
    other = Project.objects.create(owner=alice, name="Other", prompt="Another site")
    alice_client.post(f"/projects/{alice_project.pk}/messages/", {"text": "for the first"})
    assert _textarea(alice_client.get(f"/projects/{other.pk}/").content.decode()) == ""
    html = alice_client.get(f"/projects/{alice_project.pk}/").content.decode()
    assert _textarea(html) == "for the first"


def test_delete_hands_the_project_to_the_pipeline(alice_client, alice_project):
    response = alice_client.post(f"/projects/{alice_project.pk}/delete/")
    assert response.status_code == 302
    alice_project.refresh_from_db()
    assert alice_project.status == Project.Status.DELETING
    assert alice_project.jobs.get().type == JobType.PROJECT_DELETE


def test_changing_to_an_unconnected_model_is_refused(alice_client, alice_project, alice_stub):
    response = alice_client.post(
        f"/projects/{alice_project.pk}/model/", {"model": "openai/gpt-4o"}, follow=True
    )
    assert "is not connected" in response.content.decode()
    alice_project.refresh_from_db()
    assert alice_project.current_model_provider_id == "stub"
