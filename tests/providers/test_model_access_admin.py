"""Model-access rules in the admin: listed, filtered, searched; a change reaches the
user's running projects (their opencode.json is written again by a re-injection)."""

from __future__ import annotations

import pytest

from projects.jobs import JobType
from projects.models import Project
from providers.models import ModelAccess
from queue_jobs.models import Job
from tests.factories import ProviderConnectionFactory

pytestmark = pytest.mark.django_db

URL = "/admin/providers/modelaccess/"


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_the_rules_are_listed_filtered_and_searched(admin_client, alice, bob):
    ModelAccess.objects.create(user=alice, effect="allow", pattern="openrouter/anthropic/*")
    ModelAccess.objects.create(user=bob, effect="deny", pattern="opencode")
    page = admin_client.get(URL).content.decode()
    assert "openrouter/anthropic/*" in page and "opencode" in page
    denied = admin_client.get(URL + "?effect__exact=deny").content.decode()
    assert "openrouter/anthropic/*" not in denied and "bob" in denied
    found = admin_client.get(URL + "?q=alice").content.decode()
    assert "openrouter/anthropic/*" in found and "bob" not in found


def test_a_bad_pattern_or_two_subjects_is_a_form_error(admin_client, alice):
    response = admin_client.post(
        URL + "add/", {"effect": "allow", "pattern": "Open Router", "user": alice.pk}
    )
    assert response.status_code == 200 and "A provider (openrouter)" in response.content.decode()
    response = admin_client.post(URL + "add/", {"effect": "allow", "pattern": "x", "group": ""})
    assert "A rule is for one user or one group." in response.content.decode()
    assert not ModelAccess.objects.exists()


def test_a_new_rule_reaches_the_users_running_project(
    admin_client, alice, project, django_capture_on_commit_callbacks
):
    ProviderConnectionFactory(
        user=alice, provider_id="stub", base_url="http://127.0.0.1:9/v1", models=["stub-model"]
    )
    Project.objects.filter(pk=project.pk).update(status=Project.Status.RUNNING)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            URL + "add/", {"effect": "allow", "pattern": "stub/stub-model", "user": alice.pk}
        )
    assert response.status_code == 302
    job = Job.objects.get(subject=project)
    assert job.type == JobType.REINJECT_CREDENTIALS
