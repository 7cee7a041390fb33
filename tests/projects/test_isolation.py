"""Another user's project answers 404 everywhere; lists show only your own."""

import pytest

from projects.models import Project

pytestmark = pytest.mark.django_db

GETS = ["", "status/", "transcript/"]
POSTS = {
    "messages/": {"text": "hi"},
    "start/": {},
    "stop/": {},
    "delete/": {},
    "model/": {"model": "stub/stub-model"},
}


@pytest.mark.parametrize("suffix", GETS)
def test_reading_someone_elses_project_is_a_404(client, bob, alice_project, suffix):
    client.force_login(bob)
    assert client.get(f"/projects/{alice_project.pk}/{suffix}").status_code == 404


@pytest.mark.parametrize("suffix", POSTS)
def test_acting_on_someone_elses_project_is_a_404_and_changes_nothing(
    client, bob, alice_project, suffix
):
    client.force_login(bob)
    before = Project.objects.values().get(pk=alice_project.pk)
    assert client.post(f"/projects/{alice_project.pk}/{suffix}", POSTS[suffix]).status_code == 404
    assert Project.objects.values().get(pk=alice_project.pk) == before
    assert not alice_project.jobs.exists()


def test_unknown_project_ids_are_404(alice_client):
    assert alice_client.get("/projects/999999/").status_code == 404


@pytest.mark.parametrize("suffix", POSTS)
def test_actions_need_post(alice_client, alice_project, suffix):
    assert alice_client.get(f"/projects/{alice_project.pk}/{suffix}").status_code == 405


def test_the_list_shows_only_your_projects_in_constant_queries(
    alice_client, alice, bob, alice_project, django_assert_max_num_queries
):
    Project.objects.create(
        owner=bob,
        name="Bob's shop",
        prompt="p",
        current_model_provider_id="stub",
        current_model_id="m",
    )
    for i in range(20):
        Project.objects.create(
            owner=alice,
            name=f"site {i}",
            prompt="p",
            current_model_provider_id="stub",
            current_model_id="m",
        )
    with django_assert_max_num_queries(6):
        html = alice_client.get("/projects/").content.decode()
    assert "Bob&#x27;s shop" not in html and "Bob's shop" not in html
    assert html.count("data-project-status=") == 21
