"""The checklist on the project list: what a new user does first, each step done or
not, gone once done (or, for staff, dismissed)."""

import re

import pytest

from projects.models import Project
from tests.factories import ProviderConnectionFactory, UserFactory

pytestmark = pytest.mark.django_db


def _steps(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-onboarding-step="(\w+)" data-done="(\w+)"', html))


def _project(owner) -> Project:
    return Project.objects.create(
        owner=owner,
        name="Bakery",
        prompt="A bakery",
        current_model_provider_id="stub",
        current_model_id="m",
    )


def test_a_new_admin_sees_three_steps_and_the_free_models_note(client, admin_user, settings):
    settings.DOCE_FREE_MODELS = True
    client.force_login(admin_user)
    html = client.get("/projects/").content.decode()
    assert _steps(html) == {"provider": "false", "project": "false", "team": "false"}
    assert "data-free-models-note" in html and "free models work without any connection" in html
    assert 'href="/team/"' in html and 'href="/projects/new/"' in html


def test_without_free_models_there_is_no_such_note(client, admin_user, settings):
    settings.DOCE_FREE_MODELS = False
    client.force_login(admin_user)
    assert "data-free-models-note" not in client.get("/projects/").content.decode()


def test_steps_turn_done_and_the_list_goes_once_all_are(client, admin_user):
    client.force_login(admin_user)
    ProviderConnectionFactory(user=admin_user)
    assert _steps(client.get("/projects/").content.decode())["provider"] == "true"
    _project(admin_user)
    assert _steps(client.get("/projects/").content.decode()) == {
        "provider": "true",
        "project": "true",
        "team": "false",
    }
    UserFactory(username="bob")
    assert "data-onboarding" not in client.get("/projects/").content.decode()


def test_staff_can_dismiss_it(client, admin_user):
    client.force_login(admin_user)
    response = client.post("/team/checklist/dismiss/")
    assert response.status_code == 302
    assert "data-onboarding" not in client.get("/projects/").content.decode()


def test_a_member_sees_two_steps_until_their_first_project(alice_client, alice, admin_user):
    html = alice_client.get("/projects/").content.decode()
    assert _steps(html) == {"provider": "false", "project": "false"}
    assert "Hide this checklist" not in html
    assert alice_client.post("/team/checklist/dismiss/").status_code == 404
    _project(alice)
    assert "data-onboarding" not in alice_client.get("/projects/").content.decode()


def test_the_list_with_projects_asks_few_queries(
    alice_client, alice, django_assert_max_num_queries
):
    for _ in range(5):
        _project(alice)
    with django_assert_max_num_queries(6):
        alice_client.get("/projects/")
