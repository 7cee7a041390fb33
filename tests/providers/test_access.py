"""Model access: how a user's rules (their own and their groups') decide which models
they may pick, and what goes into their projects' opencode.json (providers.access)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import IntegrityError

from doce.opencode.runtimes import ModelLimits
from providers.access import Pattern, access_for, opencode_limits_for, rules_of
from providers.models import ModelAccess
from tests.factories import ProviderConnectionFactory

pytestmark = pytest.mark.django_db

ALLOW, DENY = ModelAccess.Effect.ALLOW, ModelAccess.Effect.DENY


def rule(effect, pattern, *, user=None, group=None) -> ModelAccess:
    return ModelAccess.objects.create(effect=effect, pattern=pattern, user=user, group=group)


@pytest.mark.parametrize(
    ("pattern", "provider_id", "model_id", "matches"),
    [
        ("openrouter", "openrouter", "anthropic/claude-sonnet-4", True),
        ("openrouter", "anthropic", "claude-sonnet-4", False),
        ("openrouter/*", "openrouter", "x", True),
        ("openrouter/anthropic/*", "openrouter", "anthropic/claude-sonnet-4", True),
        ("openrouter/anthropic/*", "openrouter", "openai/gpt-5", False),
        ("openrouter/anthropic/claude-sonnet-4", "openrouter", "anthropic/claude-sonnet-4", True),
        (
            "openrouter/anthropic/claude-sonnet-4",
            "openrouter",
            "anthropic/claude-sonnet-4.1",
            False,
        ),
    ],
)
def test_a_pattern_names_a_provider_a_prefix_or_a_model(pattern, provider_id, model_id, matches):
    assert Pattern.parse(pattern).matches(provider_id, model_id) is matches


def test_without_rules_everything_is_allowed(alice):
    rules = access_for(user=alice)
    assert not rules.limited
    assert rules.allows("anything", "at-all") and rules.problem("anything", "at-all") is None


def test_with_allow_rules_only_what_they_match(alice):
    rule(ALLOW, "openrouter/anthropic/*", user=alice)
    rule(ALLOW, "stub", user=alice)
    rules = access_for(user=alice)
    assert rules.allows("openrouter", "anthropic/claude-sonnet-4")
    assert rules.allows("stub", "whatever")
    assert not rules.allows("openrouter", "openai/gpt-5")
    assert not rules.allows("anthropic", "claude-sonnet-4")
    assert rules.problem("openrouter", "openai/gpt-5") == (
        "Your administrator does not let you use openrouter/openai/gpt-5. Pick another model."
    )


def test_a_deny_rule_always_wins(alice):
    rule(ALLOW, "openrouter", user=alice)
    rule(DENY, "openrouter/anthropic/claude-opus-4.7", user=alice)
    rules = access_for(user=alice)
    assert rules.allows("openrouter", "anthropic/claude-sonnet-4.6")
    assert not rules.allows("openrouter", "anthropic/claude-opus-4.7")


def test_a_deny_only_list_leaves_the_rest_allowed(alice):
    rule(DENY, "openai", user=alice)
    rules = access_for(user=alice)
    assert not rules.allows("openai", "gpt-5.5") and not rules.allows_provider("openai")
    assert rules.allows("anthropic", "claude-sonnet-4-6")


def test_group_rules_apply_to_members_only_and_in_one_query(alice, bob, django_assert_num_queries):
    team = Group.objects.create(name="interns")
    team.user_set.add(alice)
    rule(ALLOW, "opencode", group=team)
    rule(DENY, "opencode/big-pickle", user=alice)
    with django_assert_num_queries(1):
        rules = access_for(user=alice)
    assert rules.allows("opencode", "grok-code") and not rules.allows("opencode", "big-pickle")
    assert not rules.allows("openrouter", "x")
    assert not access_for(user=bob).limited  # not in the group


def test_a_rule_is_for_one_user_or_one_group(alice):
    team = Group.objects.create(name="interns")
    with pytest.raises(IntegrityError):
        rule(ALLOW, "openrouter", user=alice, group=team)


def test_no_rules_write_nothing_into_opencode_json():
    assert rules_of([]).opencode_limits({}) == ModelLimits()
    assert ModelLimits().to_config() == {}


def test_limits_for_opencode_json():
    rules = rules_of(
        [
            (ALLOW, "openrouter/anthropic/*"),
            (ALLOW, "openrouter/openai/gpt-5.5"),
            (ALLOW, "stub"),
            (DENY, "openrouter/anthropic/claude-opus-4.7"),
            (DENY, "stub/big"),
            (DENY, "openai"),
        ]
    )
    known = {
        "openrouter": ["anthropic/claude-sonnet-4.6", "anthropic/claude-opus-4.7", "x/y"],
        "stub": ["small", "big"],
    }
    limits = rules.opencode_limits(known, model="openrouter/anthropic/claude-new")
    assert limits.to_config() == {
        "enabled_providers": ["openrouter", "stub"],
        "disabled_providers": ["openai"],
        "provider": {
            # OpenCode takes exact ids only: the prefix is written out, with the
            # project's own model, which doce's catalog does not know yet.
            "openrouter": {
                "whitelist": [
                    "openai/gpt-5.5",
                    "anthropic/claude-sonnet-4.6",
                    "anthropic/claude-new",
                ]
            },
            "stub": {"blacklist": ["big"]},
        },
    }


def test_a_deny_only_list_writes_no_allow_list():
    limits = rules_of([(DENY, "openrouter/openai/*"), (DENY, "opencode")]).opencode_limits(
        {"openrouter": ["openai/gpt-5.5", "anthropic/claude-sonnet-4.6"]}
    )
    assert limits.to_config() == {
        "disabled_providers": ["opencode"],
        "provider": {"openrouter": {"blacklist": ["openai/gpt-5.5"]}},
    }


def test_opencode_limits_for_reads_the_users_endpoints_and_the_catalog(alice):
    ProviderConnectionFactory(
        user=alice,
        provider_id="gw",
        name="Gateway",
        base_url="http://127.0.0.1:9/v1",
        models=["team-a-1", "team-a-2", "other"],
    )
    rule(ALLOW, "gw/team-a-*", user=alice)
    rule(ALLOW, "openrouter/anthropic/*", user=alice)
    limits = opencode_limits_for(user=alice, model="gw/team-a-1")
    assert limits.enabled_providers == ("gw", "openrouter")
    assert limits.whitelist["gw"] == ("team-a-1", "team-a-2")
    # The built-in catalog's OpenRouter models under the prefix.
    assert "anthropic/claude-sonnet-4.6" in limits.whitelist["openrouter"]
    assert not any(m.startswith("openai/") for m in limits.whitelist["openrouter"])
