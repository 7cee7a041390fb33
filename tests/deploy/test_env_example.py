""".env.example documents every setting and every value docker-compose.yml asks for."""

from __future__ import annotations

import re

import pytest

from tests.deploy.sources import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    env_file_entries,
    settings_env_names,
)


@pytest.fixture(scope="module")
def entries():
    return env_file_entries(ENV_EXAMPLE.read_text())


def test_lists_every_variable_settings_read(entries):
    missing = settings_env_names() - set(entries)
    assert not missing, f".env.example does not document {sorted(missing)}"


def test_lists_every_variable_compose_interpolates(entries):
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_]\w*)", COMPOSE_FILE.read_text()))
    assert used, "the compose file interpolates nothing?"
    assert used <= set(entries), sorted(used - set(entries))


@pytest.mark.parametrize("name", ["SECRET_KEY", "DOCE_ENCRYPTION_KEYS", "POSTGRES_PASSWORD"])
def test_secrets_are_commented_placeholders_with_a_recipe(entries, name):
    """Commented out, as the README says of every setting: a copied .env runs `make run`
    (DEBUG=true generates the keys), and compose still refuses to start until they are
    set (``${NAME:?...}`` fails on unset as on empty)."""
    value, active = entries[name]
    assert not active and value == "", f"{name} must be a commented placeholder, not {value!r}"
    text = ENV_EXAMPLE.read_text()
    block = text[: text.index(f"\n# {name}=")].rsplit("\n\n", 1)[-1]
    assert "python3 -c" in block, f"the comment above {name} says how to make one"


def test_no_line_carries_a_real_looking_secret(entries):
    key_like = re.compile(r"[A-Za-z0-9_-]{32,}")  # token_urlsafe output, Fernet keys
    for name, (value, _active) in entries.items():
        assert not key_like.search(value), f"{name}={value!r} looks like a key"


def test_optional_settings_are_commented_out(entries):
    """Compose passes .env to the containers: an empty numeric setting would crash them,
    and the values compose fixes must not look changeable here."""
    active = {name for name, (_value, is_active) in entries.items() if is_active}
    assert active == set()


def test_the_defaults_shown_are_the_readmes(entries):
    readme = (ENV_EXAMPLE.parent / "README.md").read_text()
    assert entries["ALLOWED_HOSTS"] == ("localhost,127.0.0.1,[::1]", False)
    assert "| `ALLOWED_HOSTS` | `localhost,127.0.0.1,[::1]` |" in readme
    assert entries["DOCE_HOST"] == ("127.0.0.1", False)
    assert "`8000`, `127.0.0.1`" in readme
