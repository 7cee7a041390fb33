"""A real Celery worker (subprocess) on the configured broker: Redis in CI's production
run, the embedded filesystem broker in the first-run configuration."""

import pytest

from doce.tasks import ping

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_task_round_trips_through_the_real_broker(celery_worker_process):
    results = [ping.apply_async() for _ in range(5)]
    assert [result.get(timeout=20, interval=0.02) for result in results] == ["pong"] * 5
    assert celery_worker_process.poll() is None


def test_healthz_is_green_with_a_worker(client, admin_user, celery_worker_process):
    public = client.get("/healthz")
    assert public.status_code == 200, public.json()
    assert public.json()["broker"] == {"ok": True}  # anonymous: ok or not, no details
    client.force_login(admin_user)
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["broker"]["ok"] is True
    assert body["broker"]["round_trip_ms"] > 0
