"""The owner's model-access limits in opencode.json (``ServerSpec.model_limits``): the
keys OpenCode 1.18.33 reads (checked against the binary by
tests/integration/test_model_access.py), over what the operator's config says."""

from __future__ import annotations

import json

from doce.opencode.runtimes import CustomProvider, ModelLimits
from doce.opencode.runtimes.config import render_opencode_config, write_opencode_config

LIMITS = ModelLimits(
    enabled_providers=("stub", "openrouter"),
    disabled_providers=("opencode",),
    whitelist={"stub": ("stub-model",), "openrouter": ("anthropic/claude-sonnet-4.6",)},
    blacklist={"acme": ("coder-large",)},
)


def test_no_limits_write_no_keys(make_spec):
    config = render_opencode_config(make_spec(), {})
    assert not {"enabled_providers", "disabled_providers"} & set(config)
    assert "whitelist" not in json.dumps(config) and "blacklist" not in json.dumps(config)


def test_the_limits_are_written(make_spec):
    spec = make_spec(
        custom_providers=[CustomProvider("stub", "Stub", "http://127.0.0.1:9/v1", ["stub-model"])],
        model_limits=LIMITS,
    )
    spec.layout.prepare()
    written = json.loads(write_opencode_config(spec, {}).read_text())
    assert written["enabled_providers"] == ["stub", "openrouter"]
    assert written["disabled_providers"] == ["opencode"]
    assert written["provider"]["stub"]["whitelist"] == ["stub-model"]
    assert written["provider"]["stub"]["options"] == {"baseURL": "http://127.0.0.1:9/v1"}
    assert written["provider"]["openrouter"] == {"whitelist": ["anthropic/claude-sonnet-4.6"]}
    assert written["provider"]["acme"] == {"blacklist": ["coder-large"]}


def test_the_operators_lists_are_narrowed_or_added_to_never_widened(make_spec):
    operator = {
        "enabled_providers": ["openrouter", "anthropic"],
        "disabled_providers": ["xai"],
        "provider": {
            "openrouter": {"whitelist": ["openai/gpt-5.5"]},
            "acme": {"blacklist": ["coder-small"]},
        },
    }
    config = render_opencode_config(make_spec(model_limits=LIMITS), operator)
    assert config["enabled_providers"] == ["openrouter"]  # both must allow it
    assert config["disabled_providers"] == ["xai", "opencode"]
    assert config["provider"]["openrouter"]["whitelist"] == []  # nothing both allow
    assert config["provider"]["acme"]["blacklist"] == ["coder-small", "coder-large"]
