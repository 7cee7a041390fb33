"""Registering an organisation, a user's token (encrypted, hinted), and what the user
then has: the organisation's providers and models, and the entry a project gets."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from projects.selectors import models_offered
from providers.models import AuditEvent
from providers.organisations import services
from providers.organisations.credentials import (
    OrganisationUnavailable,
    organisation_credential_for,
)
from providers.organisations.models import OrganisationToken
from providers.organisations.selectors import (
    organisation_models_for,
    organisation_provider_ids,
    organisation_urls_for,
)
from providers.selectors import usable_provider_ids
from tests.providers.conftest import raw_value
from tests.providers.organisations.conftest import TOKEN


@pytest.fixture
def org(org_api, admin_user):
    return services.organisation_add(url=org_api.url + "/", name="Example", created_by=admin_user)


def test_registering_fetches_the_document(org, org_api):
    assert org.url == org_api.url
    assert (org.env_name, org.auth_command, org.fetch_error) == (
        "ORG_TOKEN",
        ["example-org", "auth", "print token"],
        "",
    )
    assert org.command_text == "example-org auth 'print token'"
    with pytest.raises(ValidationError, match="registered already"):
        services.organisation_add(url=org_api.url)


def test_a_failed_fetch_is_kept_and_the_stored_document_stays(org, org_api):
    org_api.answer(500, {})
    assert services.organisation_refresh(organisation=org) is None
    org.refresh_from_db()
    assert org.fetch_error == "the organisation answered 500 for /.well-known/opencode"
    assert org.env_name == "ORG_TOKEN"  # the last good document is still shown


def test_the_token_is_stored_encrypted_and_shown_as_a_hint(org, alice):
    row = services.token_set(user=alice, organisation=org, token=f"  {TOKEN}\n")
    stored = raw_value("organisations_organisationtoken", "token", "id", row.pk)
    assert TOKEN not in stored
    assert str(OrganisationToken.objects.get(pk=row.pk).token) == TOKEN
    assert row.key_hint and TOKEN not in row.key_hint
    events = AuditEvent.objects.filter(user=alice)
    assert events.count() == 1
    assert TOKEN not in str(list(events.values()))


@pytest.mark.parametrize("token", ["", "two words", 'a"quote', "back\\slash", "tök", "{x}"])
def test_tokens_that_cannot_be_one(org, alice, token):
    with pytest.raises(ValidationError):
        services.token_set(user=alice, organisation=org, token=token)


def test_a_token_gives_the_user_the_organisations_models(org, alice, bob):
    assert "orgllm" not in usable_provider_ids(user=alice)
    services.token_set(user=alice, organisation=org, token=TOKEN)
    assert organisation_provider_ids(user=alice) == {"orgllm"}
    assert "orgllm" in usable_provider_ids(user=alice)
    assert "orgllm" not in usable_provider_ids(user=bob)
    (entry,) = organisation_models_for(user=alice)
    assert (entry.provider_id, entry.provider_name, entry.organisation_name) == (
        "orgllm",
        "Org LLM",
        "Example",
    )
    offered = models_offered(user=alice, provider_id="orgllm")
    assert offered.offers("org-model") and not offered.offers("gpt-4o")
    assert organisation_urls_for(user=alice, provider_id="orgllm") == [
        org.url,
        "https://llm.example.test/v1",
    ]
    assert organisation_urls_for(user=bob, provider_id="orgllm") == []


def test_the_project_entry_is_opencodes_wellknown_under_the_url(org, org_api, alice):
    services.token_set(user=alice, organisation=org, token=TOKEN)
    org_api.clear()
    found = organisation_credential_for(user=alice, provider_id="orgllm")
    assert found.credential.url == org.url
    assert found.credential.to_json() == {"type": "wellknown", "key": "ORG_TOKEN", "token": TOKEN}
    assert len(org_api.seen) == 1  # fetched again before it is handed over
    assert organisation_credential_for(user=alice, provider_id="openai") is None


def test_an_unreachable_document_is_a_clear_error(org, org_api, alice):
    services.token_set(user=alice, organisation=org, token=TOKEN)
    org_api.answer(503, {})
    with pytest.raises(OrganisationUnavailable) as error:
        organisation_credential_for(user=alice, provider_id="orgllm")
    message = str(error.value)
    assert "could not be fetched" in message and "503" in message and TOKEN not in message
    org.refresh_from_db()
    assert "503" in org.fetch_error


def test_a_provider_the_document_dropped_is_a_clear_error(org, org_api, alice):
    services.token_set(user=alice, organisation=org, token=TOKEN)
    body = dict(org_api.body)
    body["config"] = {"provider": {"other": {"models": {"m": {}}}}}
    org_api.answer(200, body)
    with pytest.raises(OrganisationUnavailable, match="no longer declares"):
        organisation_credential_for(user=alice, provider_id="orgllm")


def test_removing_an_organisation_forgets_its_tokens(org, alice):
    services.token_set(user=alice, organisation=org, token=TOKEN)
    services.organisation_remove(organisation=org)
    assert not OrganisationToken.objects.exists()
    assert organisation_provider_ids(user=alice) == set()
