"""Team keys (providers.shared): the one credential rule, grants, the command, the admin,
what users see, and running projects following a grant change."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from projects.jobs import JobType
from projects.models import Project
from providers import shared
from providers.credentials import CredentialUnavailable, credential_for
from providers.models import AuditEvent, ProviderConnection
from providers.selectors import (
    connection_in_use,
    connections_in_use,
    credential_label,
    usable_provider_ids,
)
from queue_jobs.models import Job
from tests.factories import ProviderConnectionFactory, UserFactory
from tests.providers.conftest import new_key
from tests.providers.stubs import ProviderAPI

pytestmark = pytest.mark.django_db


def _team_key(
    provider_id="openrouter",
    *,
    name="Company OpenRouter",
    everyone=False,
    users=(),
    groups=(),
    **fields,
) -> ProviderConnection:
    key = fields.pop("api_key", new_key())
    connection = ProviderConnection.objects.create(
        user=None,
        provider_id=provider_id,
        api_key=key,
        name=name,
        shared_with_all=everyone,
        **fields,
    )
    connection.shared_with_users.set(users)
    connection.shared_with_groups.set(groups)
    return connection


# --- the rule: own first, else a granted team key ------------------------------------------


def test_a_team_key_serves_only_the_users_it_is_granted_to(alice, bob):
    team = _team_key(users=[alice])
    assert connection_in_use(user=alice, provider_id="openrouter") == team
    assert connection_in_use(user=bob, provider_id="openrouter") is None
    assert "openrouter" in usable_provider_ids(user=alice)
    assert "openrouter" not in usable_provider_ids(user=bob)
    with pytest.raises(CredentialUnavailable) as refused:
        credential_for(user=bob, provider_id="openrouter")
    assert refused.value.reason == "missing"


def test_groups_and_everyone_grant_it(alice, bob):
    designers = Group.objects.create(name="designers")
    bob.groups.add(designers)
    _team_key(groups=[designers])
    _team_key("anthropic", name="Company Claude", everyone=True)
    assert usable_provider_ids(user=bob) == {"openrouter", "anthropic"}
    assert usable_provider_ids(user=alice) == {"anthropic"}


def test_the_users_own_key_comes_first(alice):
    team = _team_key(everyone=True)
    own = ProviderConnectionFactory(user=alice, provider_id="openrouter")
    assert connection_in_use(user=alice, provider_id="openrouter") == own
    assert list(connections_in_use(user=alice)) == [own]
    credential = credential_for(user=alice, provider_id="openrouter")
    assert credential.source == "connection"
    assert credential.credential.key == own.api_key
    own.delete()
    credential = credential_for(user=alice, provider_id="openrouter")
    assert credential.source == "shared"
    assert credential.connection_id == team.pk
    assert credential.credential.key == team.api_key


def test_pages_say_whose_key_pays(alice):
    team = _team_key(name="ACME gateway", everyone=True)
    own = ProviderConnectionFactory(user=alice, provider_id="anthropic")
    assert credential_label(team) == "team key: ACME gateway"
    assert credential_label(own) == "your key"


def test_one_team_key_per_provider(admin_user):
    _team_key(everyone=True)
    with pytest.raises(ValidationError) as refused:
        shared.shared_connection_add(
            actor=admin_user,
            provider_id="openrouter",
            name="Another",
            api_key=new_key(),
            grants=shared.Grants(everyone=True),
        )
    assert "already has a team key" in str(refused.value)


# --- adding one: checked like a user's key ------------------------------------------------


def test_the_key_is_checked_with_the_provider_and_a_rejected_one_is_not_saved(
    provider_api, admin_user, alice
):
    provider_api.answer(401, {"error": "no"})
    with pytest.raises(ValidationError) as refused:
        shared.shared_connection_add(
            actor=admin_user,
            provider_id="openrouter",
            name="Company OpenRouter",
            api_key=new_key(),
            grants=shared.Grants(users=(alice,)),
        )
    assert "rejected the key" in str(refused.value)
    assert not ProviderConnection.objects.filter(user__isnull=True).exists()
    provider_api.answer(200, {"data": {"label": "ok"}})
    key = new_key()
    connection, check = shared.shared_connection_add(
        actor=admin_user,
        provider_id="openrouter",
        name="Company OpenRouter",
        api_key=key,
        grants=shared.Grants(users=(alice,)),
    )
    assert check.outcome == "valid"
    assert connection.is_shared and connection.shared_by == admin_user
    assert provider_api.seen[-1].headers["authorization"] == f"Bearer {key}"
    assert list(connection.shared_with_users.all()) == [alice]


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"name": ""}, "name", "Give the team key a name"),
        ({"provider_id": "Not An Id"}, "provider_id", "lower-case"),
        ({"provider_id": "unheard-of"}, "provider_id", "give a base URL"),
        ({"api_key": ""}, "api_key", "needs its API key"),
        ({"grants": shared.Grants()}, "grants", "Say who may use it"),
        ({"base_url": "http://169.254.169.254/v1", "provider_id": "meta"}, "base_url", ""),
        ({"base_url": "https://x.test/v1", "provider_id": "x", "models": ["a b"]}, "models", ""),
    ],
)
def test_bad_input_gets_a_clear_error_on_its_field(admin_user, alice, fields, field, says):
    values = {
        "provider_id": "openrouter",
        "name": "Team",
        "api_key": new_key(),
        "grants": shared.Grants(users=(alice,)),
        **fields,
    }
    with pytest.raises(ValidationError) as refused:
        shared.shared_connection_add(actor=admin_user, **values)
    assert field in refused.value.message_dict
    assert says in " ".join(refused.value.message_dict[field])
    assert not ProviderConnection.objects.exists()


def test_a_custom_endpoint_team_key_takes_its_models_from_the_endpoint(admin_user, alice):
    with ProviderAPI() as endpoint:
        endpoint.answer(200, {"data": [{"id": "gpt-team"}, {"id": "llama-team"}]})
        connection, check = shared.shared_connection_add(
            actor=admin_user,
            provider_id="acme",
            name="ACME gateway",
            api_key=new_key("sk-"),
            base_url=endpoint.url + "/v1",
            grants=shared.Grants(everyone=True),
        )
    assert check.outcome == "valid"
    assert connection.models == ["gpt-team", "llama-team"]
    assert connection.is_custom


# --- the command --------------------------------------------------------------------------


def _command(*args, stdin: str = "") -> str:
    out = io.StringIO()
    import sys

    saved, sys.stdin = sys.stdin, io.StringIO(stdin)
    try:
        call_command("shared_connection", *args, stdout=out)
    finally:
        sys.stdin = saved
    return out.getvalue()


def test_the_command_adds_lists_and_removes(provider_api, alice, bob):
    key = new_key()
    designers = Group.objects.create(name="designers")
    said = _command(
        "add",
        "openrouter",
        "--name",
        "Company OpenRouter",
        "--users",
        "alice,bob",
        "--groups",
        "designers",
        "--api-key-stdin",
        stdin=key + "\n",
    )
    assert (
        "Shared openrouter as “Company OpenRouter” with user alice, user bob, group designers"
        in said
    )
    assert key not in said
    connection = ProviderConnection.objects.get(user__isnull=True)
    assert connection.api_key == key
    assert list(connection.shared_with_groups.all()) == [designers]
    listing = _command("list")
    assert "Company OpenRouter" in listing and key not in listing and key[-4:] in listing
    assert "Removed the team key of openrouter" in _command("remove", "openrouter")
    assert not ProviderConnection.objects.exists()
    assert AuditEvent.objects.filter(action="disconnected", provider_id="openrouter").exists()


@pytest.mark.parametrize(
    ("args", "stdin", "says"),
    [
        (["add", "openrouter", "--name", "T", "--all"], "", "--api-key-stdin"),
        (["add", "openrouter", "--name", "T", "--all", "--api-key-stdin"], "\n", "held no key"),
        (
            ["add", "openrouter", "--name", "T", "--users", "nobody", "--api-key-stdin"],
            "k" * 30,
            "No such user “nobody”",
        ),
        (["remove", "openrouter"], "", "has no team key"),
    ],
)
def test_the_command_refuses_bad_input_clearly(provider_api, alice, args, stdin, says):
    with pytest.raises(CommandError) as refused:
        _command(*args, stdin=stdin)
    assert says in str(refused.value)
    assert not ProviderConnection.objects.exists()


def test_the_command_needs_who_may_use_it(provider_api):
    with pytest.raises(CommandError):
        _command("add", "openrouter", "--name", "T", "--api-key-stdin", stdin=new_key())


# --- what users see -----------------------------------------------------------------------


def test_users_see_the_team_key_but_never_its_key_or_hint(client, alice, bob):
    team = _team_key(name="Company OpenRouter", users=[alice], api_key=new_key())
    client.force_login(alice)
    page = client.get(reverse("providers:list")).content.decode()
    assert "Company OpenRouter" in page and "shared by your administrator" in page
    assert team.api_key not in page and team.api_key[-4:] not in page
    assert team.key_hint not in page or not team.key_hint
    # Not editable: the user's own pages do not know it.
    assert client.get(reverse("providers:api_key", args=["openrouter"])).status_code in (200, 302)
    assert client.post(reverse("providers:disconnect", args=["openrouter"])).status_code == 404
    assert ProviderConnection.objects.filter(pk=team.pk).exists()
    client.force_login(bob)
    assert "Company OpenRouter" not in client.get(reverse("providers:list")).content.decode()


# --- the admin ----------------------------------------------------------------------------


def test_staff_add_a_team_key_in_the_admin_and_the_key_is_checked(
    provider_api, admin_client, alice
):
    url = reverse("admin:providers_sharedconnection_add")
    provider_api.answer(401, {"error": "no"})
    key = new_key()
    form = {
        "provider_id": "openrouter",
        "name": "Company OpenRouter",
        "new_api_key": key,
        "shared_with_users": [alice.pk],
    }
    refused = admin_client.post(url, form)
    assert refused.status_code == 200
    assert "rejected the key" in refused.content.decode()
    assert key not in refused.content.decode()
    assert not ProviderConnection.objects.exists()
    provider_api.answer(200, {"data": {}})
    assert admin_client.post(url, form).status_code == 302
    connection = ProviderConnection.objects.get()
    assert connection.is_shared and connection.api_key == key
    assert list(connection.shared_with_users.all()) == [alice]
    listing = admin_client.get(reverse("admin:providers_sharedconnection_changelist"))
    assert "user alice" in listing.content.decode() and key not in listing.content.decode()


def test_a_staff_oauth_sign_in_can_become_a_team_key(admin_client, admin_user, alice):
    own = ProviderConnectionFactory(
        user=admin_user,
        provider_id="github-copilot",
        auth_type="oauth",
        api_key=None,
        oauth_access_token="gho_" + "a" * 36,
        oauth_refresh_token="ghr_" + "b" * 36,
    )
    response = admin_client.post(
        reverse("admin:providers_providerconnection_changelist"),
        {"action": "share_with_everyone", "_selected_action": [own.pk]},
    )
    assert response.status_code == 302
    own.refresh_from_db()
    assert own.is_shared and own.shared_with_all
    assert credential_for(user=alice, provider_id="github-copilot").source == "shared"


# --- running projects follow --------------------------------------------------------------


def _running_project(owner, provider_id="openrouter") -> Project:
    return Project.objects.create(
        owner=owner,
        name="site",
        prompt="x",
        status=Project.Status.RUNNING,
        current_model_provider_id=provider_id,
        current_model_id="m",
    )


def test_revoking_a_grant_takes_the_key_out_of_that_users_running_projects(
    django_capture_on_commit_callbacks, admin_user, alice, bob
):
    team = _team_key(users=[alice, bob])
    alices, bobs = _running_project(alice), _running_project(bob)
    bob_own = ProviderConnectionFactory(
        user=UserFactory(username="carol"), provider_id="openrouter"
    )
    assert bob_own  # another user's own key changes nothing here
    with django_capture_on_commit_callbacks(execute=True):
        shared.shared_connection_grants_set(
            connection=team, actor=admin_user, grants=shared.Grants(users=(bob,))
        )
    jobs = {job.subject_id: job.type for job in Job.objects.all()}
    assert jobs[alices.pk] == JobType.REMOVE_CREDENTIALS
    assert jobs[bobs.pk] == JobType.REINJECT_CREDENTIALS
    alices.refresh_from_db()
    assert alices.rebuild_pending
    # And no prompt goes out meanwhile.
    from projects.services import ProjectNotRunning, message_send

    alices.bootstrap_session_id = "ses_1"
    with pytest.raises(ProjectNotRunning) as refused:
        message_send(project=alices, text="hello")
    assert "no longer shared with you" in str(refused.value)


def test_removing_a_team_key_falls_back_to_the_users_own(
    django_capture_on_commit_callbacks, alice, bob
):
    _team_key(everyone=True)
    ProviderConnectionFactory(user=alice, provider_id="openrouter")
    alices, bobs = _running_project(alice), _running_project(bob)
    with django_capture_on_commit_callbacks(execute=True):
        assert shared.shared_connection_remove(provider_id="openrouter", actor=None)
    jobs = {job.subject_id: job.type for job in Job.objects.all()}
    assert jobs == {
        alices.pk: JobType.REINJECT_CREDENTIALS,
        bobs.pk: JobType.REMOVE_CREDENTIALS,
    }
