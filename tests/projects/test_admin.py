import pytest

from projects.jobs import JobType
from projects.models import Project
from queue_jobs.models import Job, JobState

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_project_and_job_pages_never_show_the_server_password(staff_client, alice_project):
    job = Job.objects.create(
        subject=alice_project,
        type=JobType.RUNTIME_UP,
        state=JobState.FAILED,
        last_error="did not start",
    )
    pages = [
        "/admin/projects/project/",
        f"/admin/projects/project/{alice_project.pk}/change/",
        f"/admin/projects/project/{alice_project.pk}/history/",
        "/admin/queue_jobs/job/",
        f"/admin/queue_jobs/job/{job.pk}/change/",
    ]
    for url in pages:
        response = staff_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert str(alice_project.server_password) not in html
        assert "gAAAAA" not in html, url


def test_retry_action_restarts_the_failed_pipeline(staff_client, alice_project):
    job = Job.objects.create(subject=alice_project, type=JobType.RUNTIME_UP, state=JobState.FAILED)
    response = staff_client.post(
        "/admin/queue_jobs/job/", {"action": "retry_pipeline", "_selected_action": [job.pk]}
    )
    assert response.status_code == 302
    assert Job.objects.filter(subject=alice_project, state=JobState.QUEUED).count() == 5
    alice_project.refresh_from_db()
    assert alice_project.status == Project.Status.STARTING


def test_cancel_action_cancels_active_jobs(staff_client, alice_project):
    job = Job.objects.create(subject=alice_project, type=JobType.RUNTIME_UP, state=JobState.QUEUED)
    staff_client.post(
        "/admin/queue_jobs/job/", {"action": "cancel_jobs", "_selected_action": [job.pk]}
    )
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED
    assert "cancelled by admin" in job.last_error


def test_non_staff_users_cannot_use_the_admin(alice_client):
    assert alice_client.get("/admin/queue_jobs/job/").status_code == 302
