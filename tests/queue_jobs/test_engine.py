import pytest

from projects.jobs import START_PIPELINE, JobType
from projects.models import Project
from projects.services import pipeline_start
from queue_jobs import engine
from queue_jobs.engine import StepError
from queue_jobs.models import Job, JobState
from queue_jobs.pipeline import PipelineBusy

pytestmark = pytest.mark.django_db


def _states(project):
    return [job.state for job in Job.objects.filter(subject=project).order_by("position")]


def test_the_chain_runs_every_step_in_order(
    project, eager, fake_steps, django_capture_on_commit_callbacks
):
    calls, _ = fake_steps
    with django_capture_on_commit_callbacks(execute=True):
        jobs = pipeline_start(project=project)
    assert [job.type for job in jobs] == START_PIPELINE
    assert calls == START_PIPELINE
    assert _states(project) == [JobState.SUCCEEDED] * 5


def test_nothing_is_enqueued_before_commit(
    project, eager, fake_steps, django_capture_on_commit_callbacks
):
    calls, _ = fake_steps
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        pipeline_start(project=project)
    assert calls == [] and len(callbacks) == 1


def test_a_double_click_starts_one_pipeline(project, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        pipeline_start(project=project)
        with pytest.raises(PipelineBusy):
            pipeline_start(project=project)
    assert Job.objects.filter(subject=project).count() == 5
    assert len(callbacks) == 1


def fails_first(times: int):
    """A step that fails, retryably, ``times`` times, then succeeds."""
    failures = iter([True] * times)

    def flaky(job):
        if next(failures, False):
            raise StepError("OpenCode answered 503", retryable=True)

    return flaky


@pytest.mark.parametrize(
    ("flaky_step", "failures"),
    # The health wait is retried by a task of its own; the session, inside the task
    # that runs the steps after health: it goes on from the session, not from health.
    [(JobType.WAIT_HEALTHY, 2), (JobType.SESSION_CREATE, 1)],
)
def test_transient_failures_are_retried_from_the_failed_step_then_succeed(
    project, eager, fake_steps, django_capture_on_commit_callbacks, flaky_step, failures
):
    calls, behaviour = fake_steps
    behaviour[flaky_step] = fails_first(failures)
    with django_capture_on_commit_callbacks(execute=True):
        pipeline_start(project=project)
    at = START_PIPELINE.index(flaky_step)
    assert calls == [*START_PIPELINE[:at], *[flaky_step] * failures, *START_PIPELINE[at:]]
    assert Job.objects.get(subject=project, type=flaky_step).attempts == failures + 1
    assert _states(project) == [JobState.SUCCEEDED] * 5


def test_credentials_get_three_attempts_then_the_project_shows_the_error(
    project, eager, fake_steps, django_capture_on_commit_callbacks
):
    calls, behaviour = fake_steps

    def down(job):
        raise StepError("OpenCode answered 503", retryable=True)

    behaviour[JobType.SET_CREDENTIALS] = down
    with django_capture_on_commit_callbacks(execute=True):
        pipeline_start(project=project)
    assert calls.count(JobType.SET_CREDENTIALS) == 3
    assert _states(project) == [
        JobState.SUCCEEDED,
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.CANCELLED,
        JobState.CANCELLED,
    ]
    project.refresh_from_db()
    assert project.status == Project.Status.ERROR
    assert project.error_message == "OpenCode answered 503"


def test_a_rejected_payload_fails_at_once(
    project, eager, fake_steps, django_capture_on_commit_callbacks
):
    calls, behaviour = fake_steps

    def rejected(job):
        raise StepError("Provider not configured or key rejected: no key", kind="provider_auth")

    behaviour[JobType.SET_CREDENTIALS] = rejected
    with django_capture_on_commit_callbacks(execute=True):
        pipeline_start(project=project)
    assert calls.count(JobType.SET_CREDENTIALS) == 1
    assert JobType.SESSION_CREATE not in calls
    project.refresh_from_db()
    assert (project.status, project.error_kind) == (Project.Status.ERROR, "provider_auth")


def test_an_unexpected_exception_fails_the_step_with_a_message(
    project, eager, fake_steps, django_capture_on_commit_callbacks
):
    _, behaviour = fake_steps

    def bug(job):
        raise KeyError("id")

    behaviour[JobType.SESSION_CREATE] = bug
    with django_capture_on_commit_callbacks(execute=True):
        pipeline_start(project=project)
    job = Job.objects.get(subject=project, type=JobType.SESSION_CREATE)
    assert job.state == JobState.FAILED
    assert "Unexpected error" in job.last_error


def test_secrets_in_error_messages_are_redacted(
    project, eager, fake_steps, django_capture_on_commit_callbacks
):
    _, behaviour = fake_steps
    secret = "sk-ant-api03-" + "S" * 40

    def leaky(job):
        raise StepError(f"provider said: bad key {secret}")

    behaviour[JobType.SET_CREDENTIALS] = leaky
    with django_capture_on_commit_callbacks(execute=True):
        pipeline_start(project=project)
    project.refresh_from_db()
    assert secret not in project.error_message
    assert not Job.objects.filter(last_error__contains=secret).exists()


def test_a_running_job_is_not_taken_by_another_task(project):
    job = Job.objects.create(subject=project, type=JobType.RUNTIME_UP)
    assert engine.claim(job.pk, "task-a") is not None
    assert engine.claim(job.pk, "task-b") is None  # a duplicate message
    assert engine.claim(job.pk, "task-a") is not None  # the same message, redelivered
    assert Job.objects.get(pk=job.pk).attempts == 2


def test_cancelled_jobs_do_not_run(project, eager, fake_steps, django_capture_on_commit_callbacks):
    calls, _ = fake_steps
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        pipeline_start(project=project)
    Job.objects.filter(subject=project).update(state=JobState.CANCELLED)
    callbacks[0]()
    assert calls == []


def _task_ids(project):
    jobs = Job.objects.filter(subject=project).order_by("position")
    return [job.celery_task_id for job in jobs]


def test_the_steps_after_a_hand_off_run_on_in_one_task(
    project, eager, fake_steps, django_capture_on_commit_callbacks
):
    """The server start hands off (the wait for health is queued behind other projects'
    starts); the four steps from health to the prompt share one task, with no trip
    through the broker between them."""
    with django_capture_on_commit_callbacks(execute=True):
        pipeline_start(project=project)
    up, *rest = _task_ids(project)
    assert up and rest[0] and up != rest[0]
    assert rest == [rest[0]] * 4


def test_a_redelivered_task_passes_over_done_jobs_and_takes_up_its_running_one(project, fake_steps):
    """Its worker died while running the credential step, in the task that began with
    the health wait: the redelivery does not run the health wait again."""
    calls, _ = fake_steps
    jobs = pipeline_start(project=project)
    Job.objects.filter(pk__in=[jobs[0].pk, jobs[1].pk]).update(state=JobState.SUCCEEDED)
    Job.objects.filter(pk=jobs[2].pk).update(state=JobState.RUNNING, celery_task_id="t1")
    outcome = engine.run_pipeline(jobs[1].pk, task_id="t1")
    assert outcome.done
    assert calls == START_PIPELINE[2:]
    assert _states(project) == [JobState.SUCCEEDED] * 5


def test_a_duplicate_task_stops_at_a_job_another_task_runs(project, fake_steps):
    calls, _ = fake_steps
    jobs = pipeline_start(project=project)
    Job.objects.filter(pk__in=[jobs[0].pk, jobs[1].pk]).update(state=JobState.SUCCEEDED)
    Job.objects.filter(pk=jobs[2].pk).update(state=JobState.RUNNING, celery_task_id="t1")
    outcome = engine.run_pipeline(jobs[1].pk, task_id="t2")
    assert not outcome.done and outcome.retry_in is None
    assert calls == []
    assert _states(project)[2:] == [JobState.RUNNING, JobState.QUEUED, JobState.QUEUED]


def test_work_waits_when_a_reached_job_is_queued(project, bob):
    """What a waiting step asks before it hands its worker back: only a queued job whose
    pipeline has reached it needs a worker (not the later steps of a pipeline, nor a
    job that runs or waits for a retry)."""
    mine = pipeline_start(project=project)
    Job.objects.filter(pk=mine[0].pk).update(state=JobState.SUCCEEDED)
    Job.objects.filter(pk=mine[1].pk).update(state=JobState.RUNNING)
    assert not engine.work_waiting(besides=mine[1])  # only my own later steps are queued

    other_project = Project.objects.create(owner=bob, name="Florist", prompt="Flowers")
    theirs = pipeline_start(project=other_project)
    assert engine.work_waiting(besides=mine[1])  # their first step needs a worker
    Job.objects.filter(pk=theirs[0].pk).update(state=JobState.SUCCEEDED)
    assert engine.work_waiting(besides=mine[1])  # and now their second
    Job.objects.filter(pk=theirs[1].pk).update(state=JobState.RETRYING)
    assert not engine.work_waiting(besides=mine[1])  # it waits for its back-off
