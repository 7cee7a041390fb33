"""A stopped project's step list says the steps are those of its last start."""

import pytest

from projects.jobs import JobType
from projects.models import Project
from queue_jobs.models import Job, JobState

pytestmark = pytest.mark.django_db


def test_stopped_project_steps_belong_to_the_last_start(alice_client, project):
    Job.objects.create(subject=project, type=JobType.RUNTIME_UP, state=JobState.SUCCEEDED)
    Project.objects.filter(pk=project.pk).update(status=Project.Status.STOPPED)
    html = alice_client.get(f"/projects/{project.pk}/status/").content.decode()
    assert 'data-state="succeeded"' in html
    assert "data-steps-note" in html and "last start" in html


def test_a_running_project_has_no_such_note(alice_client, project):
    Job.objects.create(subject=project, type=JobType.RUNTIME_UP, state=JobState.SUCCEEDED)
    Project.objects.filter(pk=project.pk).update(status=Project.Status.RUNNING)
    assert (
        "data-steps-note"
        not in alice_client.get(f"/projects/{project.pk}/status/").content.decode()
    )
