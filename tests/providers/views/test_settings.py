"""The provider settings: an OAuth flow must end before the task that waits for it."""

from tests.conftest import run_manage


def test_a_flow_ttl_longer_than_the_task_limit_stops_start_up(tmp_path):
    result = run_manage(
        tmp_path, "check", DEBUG="true", DOCE_OAUTH_FLOW_TTL="900", DOCE_TASK_SOFT_TIME_LIMIT="840"
    )
    assert result.returncode != 0
    assert "DOCE_OAUTH_FLOW_TTL must be at least 30 s shorter" in result.stderr


def test_the_defaults_fit(tmp_path):
    result = run_manage(tmp_path, "check", DEBUG="true")
    assert result.returncode == 0, result.stderr
