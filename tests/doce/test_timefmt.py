"""One wording for "how long ago" on every page."""

from datetime import timedelta

import pytest
from django.utils import timezone

from doce.timefmt import ago
from projects.models import Project


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0, "just now"),
        (59, "just now"),
        (60, "1 min ago"),
        (7200, "2 h ago"),
        (3 * 86400, "3 d ago"),
    ],
)
def test_ago(seconds, said):
    now = timezone.now()
    assert ago(now - timedelta(seconds=seconds), now) == said


def test_never():
    assert ago(None, timezone.now()) == "never"


@pytest.mark.django_db
def test_a_new_project_was_created_just_now(alice_client, alice):
    Project.objects.create(
        owner=alice,
        name="Bakery",
        prompt="x",
        current_model_provider_id="stub",
        current_model_id="m",
    )
    html = alice_client.get("/projects/").content.decode()
    assert "created just now" in html
    assert "0\xa0minutes" not in html and "0 minutes" not in html
