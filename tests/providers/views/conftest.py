"""Fixtures the settings pages' tests share."""

from __future__ import annotations

import pytest

from providers import oauth


@pytest.fixture
def queued(monkeypatch):
    """``(flow id, browser_on_host)`` of each sign-in task the views queued, instead of a
    broker (the tests run the task by hand where they need it)."""
    calls = []
    monkeypatch.setattr(
        oauth.oauth_flow_task,
        "delay",
        lambda flow_id, browser_on_host=False: calls.append((flow_id, browser_on_host)),
    )
    return calls
