"""The settings module refuses unsafe production configuration, clearly, and makes its
first-run keys once. Each case loads doce.settings afresh: in this process when only the
settings are under test (``settings_from``), in a fresh ``manage.py`` when what doce
prints or Django's checks are."""

import secrets
import stat

import pytest
from django.core.exceptions import ImproperlyConfigured

from doce import keyring
from tests.conftest import run_manage, settings_from

STRONG_SECRET = secrets.token_urlsafe(50)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"DEBUG": "false", "DOCE_ENCRYPTION_KEYS": keyring.generate_key()},
            "SECRET_KEY is not set",
        ),
        ({"DEBUG": "false", "SECRET_KEY": STRONG_SECRET}, "DOCE_ENCRYPTION_KEYS is not set"),
        (
            {
                "DEBUG": "false",
                "SECRET_KEY": "django-insecure-abc",
                "DOCE_ENCRYPTION_KEYS": keyring.generate_key(),
            },
            "SECRET_KEY is too weak",
        ),
        (
            {"DEBUG": "false", "SECRET_KEY": STRONG_SECRET, "DOCE_ENCRYPTION_KEYS": "not-a-key"},
            "key #1 is not a Fernet key",
        ),
        (
            {
                "DEBUG": "false",
                "SECRET_KEY": STRONG_SECRET,
                "DOCE_ENCRYPTION_KEYS": f"{keyring.generate_key()},short",
            },
            "key #2 is not a Fernet key",
        ),
        ({"DEBUG": "true", "DOCE_RUNTIME": "kubernetes"}, "DOCE_RUNTIME='kubernetes'"),
        ({"DEBUG": "true", "DOCE_SANDBOX": "maybe"}, "DOCE_SANDBOX='maybe': use 'on' or 'off'"),
        (
            {"DEBUG": "true", "DOCE_SANDBOX_ALLOW": "127.0.0.1:11434,ollama"},
            "DOCE_SANDBOX_ALLOW entry 'ollama' is not host:port",
        ),
        (
            {"DEBUG": "true", "DOCE_OPENCODE_IMAGE_USER": "0:0"},
            "DOCE_OPENCODE_IMAGE_USER must not be root",
        ),
    ],
)
def test_unsafe_configuration_stops_start_up(tmp_path, env, expected):
    with pytest.raises(ImproperlyConfigured) as refused:
        settings_from(tmp_path, **env)
    assert expected in str(refused.value)


def test_a_configuration_error_is_one_clear_line(tmp_path):
    """What manage.py (and so every doce process) prints for it: no traceback."""
    result = run_manage(tmp_path, "check", DEBUG="true", DOCE_SANDBOX="maybe")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr == (
        "doce: configuration error: DOCE_SANDBOX='maybe': use 'on' or 'off'.\n"
    )


def test_a_complete_production_configuration_starts(tmp_path):
    result = run_manage(
        tmp_path,
        "check",
        "--deploy",
        "--fail-level",
        "ERROR",
        DEBUG="false",
        SECRET_KEY=STRONG_SECRET,
        DOCE_ENCRYPTION_KEYS=keyring.generate_key(),
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "secret_key").exists()
    assert not (tmp_path / "encryption_keys").exists()


def test_debug_generates_key_files_once_with_mode_0600_and_says_so(tmp_path):
    first = run_manage(tmp_path, "check", DEBUG="true")
    assert first.returncode == 0, first.stderr
    assert "Generated" in first.stderr and "encryption_keys" in first.stderr
    secret_file, keys_file = tmp_path / "secret_key", tmp_path / "encryption_keys"
    for path in (secret_file, keys_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keyring.parse_keys(keys_file.read_text())  # a valid Fernet key
    before = (secret_file.read_text(), keys_file.read_text())

    second = run_manage(tmp_path, "check", DEBUG="true")
    assert second.returncode == 0
    assert "Generated" not in second.stderr
    assert (secret_file.read_text(), keys_file.read_text()) == before


def test_existing_key_files_are_never_overwritten(tmp_path):
    existing = keyring.generate_key()
    (tmp_path / "encryption_keys").write_text(existing + "\n")
    made = settings_from(tmp_path, DEBUG="true")
    assert made["DOCE_ENCRYPTION_KEYS"][0] == existing
    assert (tmp_path / "encryption_keys").read_text() == existing + "\n"


def test_an_empty_key_file_is_an_error_not_a_new_key(tmp_path):
    (tmp_path / "encryption_keys").write_text("")
    with pytest.raises(ValueError, match="exists but is empty"):
        settings_from(tmp_path, DEBUG="true")
    assert (tmp_path / "encryption_keys").read_text() == ""


def test_celery_is_configured_for_safe_delivery():
    from doce.celery import app

    conf = app.conf
    assert (conf.task_serializer, conf.result_serializer) == ("json", "json")
    assert conf.accept_content == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_time_limit and conf.task_soft_time_limit < conf.task_time_limit
    assert conf.broker_connection_retry_on_startup is True


def test_embedded_defaults_need_no_server_and_poll_fast(tmp_path):
    made = settings_from(tmp_path, DEBUG="true")
    assert str(made["DATABASES"]["default"]["NAME"]) == str(tmp_path / "doce.sqlite3")
    assert made["CELERY_BROKER_URL"] == "filesystem://"
    assert made["CELERY_RESULT_BACKEND"] == f"file://{tmp_path / 'celery-results'}"
    assert made["CELERY_BROKER_TRANSPORT_OPTIONS"]["polling_interval"] <= 0.1


@pytest.mark.parametrize(
    ("content", "expected"),
    [("{not json", "cannot be read as JSON"), ("[1, 2]", "must hold a JSON object")],
)
def test_a_broken_operator_opencode_config_is_reported_at_start(tmp_path, content, expected):
    config = tmp_path / "operator.json"
    config.write_text(content)
    result = run_manage(tmp_path, "check", DEBUG="true", DOCE_OPENCODE_CONFIG=str(config))
    assert result.returncode == 1
    assert expected in result.stderr and "doce.E003" in result.stderr


def test_key_files_of_a_first_run_are_read_with_debug_off(tmp_path):
    first = run_manage(tmp_path, "check", DEBUG="true")
    assert first.returncode == 0, first.stderr
    keys = (tmp_path / "encryption_keys").read_text().strip()
    secret = (tmp_path / "secret_key").read_text()
    # e.g. `manage.py createsuperuser` after `make run`, without DEBUG in the environment
    made = settings_from(tmp_path, DEBUG="false")
    assert made["DOCE_ENCRYPTION_KEYS"][0] == keys
    assert made["SECRET_KEY"] == secret.strip()
    assert (tmp_path / "encryption_keys").read_text().strip() == keys  # nothing new made


def test_a_data_folder_the_operator_made_is_made_private(tmp_path):
    """0700 for the folder and whatever doce creates in it, also when the operator
    created DOCE_DATA_DIR beforehand with a looser mode."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    result = run_manage(data_dir, "check", DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for path in data_dir.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


def test_a_sandbox_turned_off_is_said_at_start_up(tmp_path):
    result = run_manage(tmp_path, "check", DEBUG="true", DOCE_SANDBOX="off")
    assert result.returncode == 0, result.stderr
    assert "doce.W010" in result.stderr and "unsandboxed" in result.stderr
