"""``manage.py bench_transcript``: its figures come from real requests of the page, and it
leaves nothing behind."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from projects.models import Message, Part, Project

pytestmark = pytest.mark.django_db


def test_it_measures_the_page_as_it_opens_and_whole_and_cleans_up(settings):
    settings.ALLOWED_HOSTS = ["localhost"]
    out = StringIO()
    call_command(
        "bench_transcript",
        "--messages",
        "50",
        "--parts",
        "3",
        "--rounds",
        "2",
        "--json",
        stdout=out,
    )
    figures = json.loads(out.getvalue())
    assert figures["setup"] == {"messages": 50, "parts": 150, "rounds": 2}
    assert figures["latest"]["queries"] <= 16 and figures["whole"]["queries"] <= 16
    assert figures["latest"]["kib"] < figures["whole"]["kib"]  # the latest messages only
    assert figures["latest"]["median_ms"] > 0
    assert not Project.objects.exists() and not Message.objects.exists()
    assert not Part.objects.exists() and not get_user_model().objects.exists()


@pytest.mark.parametrize("flag", ["--messages", "--parts", "--rounds"])
def test_it_refuses_counts_below_one(flag):
    with pytest.raises(CommandError, match="at least 1"):
        call_command("bench_transcript", flag, "0")
