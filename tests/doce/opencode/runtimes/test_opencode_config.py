"""The project's opencode.json: model, custom providers with baseURL, never an apiKey."""

from __future__ import annotations

import json
import stat

import pytest

from doce.opencode.runtimes import CustomProvider, RuntimeFailure
from doce.opencode.runtimes.config import (
    load_operator_config,
    render_opencode_config,
    write_opencode_config,
)


def test_model_and_custom_providers(make_spec):
    spec = make_spec(
        model="acme/coder-large",
        custom_providers=[
            CustomProvider(
                "acme",
                "Acme AI",
                "https://llm.acme.test/v1",
                {"coder-large": "Coder Large", "coder-small": "Coder Small"},
            ),
            CustomProvider("local", "Local", "http://127.0.0.1:8080/v1", ["llama3"]),
        ],
    )
    config = render_opencode_config(spec, {})
    assert config["model"] == "acme/coder-large"
    assert config["share"] == "disabled" and config["autoupdate"] is False
    assert config["provider"]["acme"] == {
        "npm": "@ai-sdk/openai-compatible",
        "name": "Acme AI",
        "options": {"baseURL": "https://llm.acme.test/v1"},
        "models": {"coder-large": {"name": "Coder Large"}, "coder-small": {"name": "Coder Small"}},
    }
    assert config["provider"]["local"]["models"] == {"llama3": {"name": "llama3"}}


def test_operator_config_is_merged_but_never_an_api_key(make_spec, caplog):
    spec = make_spec()
    operator = {
        "plugin": ["file:///opt/doce/plugins/audit.js"],
        "share": "manual",
        "model": "operator/ignored",
        "provider": {
            "stub": {"options": {"apiKey": "sk-operator-key", "timeout": 60000}},
            "openrouter": {"options": {"apiKey": "sk-or-v1-operator"}},
        },
    }
    config = render_opencode_config(spec, operator)
    assert config["plugin"] == ["file:///opt/doce/plugins/audit.js"]
    assert config["share"] == "manual"  # operators may loosen defaults
    assert config["model"] == "stub/stub-model"  # the project's model wins
    stub = config["provider"]["stub"]
    assert stub["options"] == {"timeout": 60000, "baseURL": "http://127.0.0.1:9/v1"}
    assert "apiKey" not in json.dumps(config)
    assert "removed options.apiKey" in caplog.text
    assert "sk-operator-key" not in caplog.text


def test_written_file_is_private_and_reads_the_operator_file(make_spec, settings, tmp_path):
    operator_file = tmp_path / "operator.json"
    operator_file.write_text(json.dumps({"plugin": ["file:///x/plugin.js"]}))
    settings.DOCE_OPENCODE_CONFIG = str(operator_file)
    spec = make_spec()
    spec.layout.prepare()
    path = write_opencode_config(spec)
    assert path == spec.layout.workspace / "opencode.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = json.loads(path.read_text())
    assert written["plugin"] == ["file:///x/plugin.js"]
    assert written["model"] == "stub/stub-model"


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_a_broken_operator_file_is_a_clear_permanent_error(tmp_path, content):
    path = tmp_path / "operator.json"
    path.write_text(content)
    with pytest.raises(RuntimeFailure, match="DOCE_OPENCODE_CONFIG") as info:
        load_operator_config(str(path))
    assert info.value.retryable is False
    with pytest.raises(RuntimeFailure, match="cannot be read"):
        load_operator_config(str(tmp_path / "missing.json"))
    assert load_operator_config("") == {}


def test_the_agent_never_asks_for_a_permission(make_spec):
    """An "ask" would wait forever: nobody answers OpenCode's permission requests. The
    sandbox, not these rules, bounds what the agent can reach."""
    config = render_opencode_config(make_spec(), {})
    permission = config["permission"]
    assert "ask" not in permission.values()
    assert permission["bash"] == permission["edit"] == permission["external_directory"]
    assert permission["bash"] == "allow"
    assert permission["question"] == "deny"
    # An operator may still set their own policy.
    custom = render_opencode_config(make_spec(), {"permission": {"bash": "deny"}})
    assert custom["permission"]["bash"] == "deny"
