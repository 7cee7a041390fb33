"""The organisations page: what each declares, the command, the token form (the token
never shown back), disconnect, a fetch error."""

from __future__ import annotations

import pytest
from django.urls import reverse

from providers.organisations import services
from providers.organisations.models import Organisation, OrganisationToken
from tests.providers.organisations.conftest import TOKEN

URL = reverse("organisations:list")


@pytest.fixture
def org(org_api, admin_user):
    return services.organisation_add(url=org_api.url, name="Example", created_by=admin_user)


def test_the_page_shows_what_the_organisation_declares(
    alice_client, org, django_assert_max_num_queries
):
    with django_assert_max_num_queries(8):
        page = alice_client.get(URL)
    html = page.content.decode()
    assert page.status_code == 200
    assert "Example" in html and "Org LLM" in html and "org-model" in html
    assert "example-org auth &#x27;print token&#x27;" in html
    assert (
        'href="/settings/organisations/"'
        in alice_client.get(reverse("providers:list")).content.decode()
    )


def test_pasting_a_token_connects_and_never_shows_it(alice_client, alice, org):
    answer = alice_client.post(reverse("organisations:token", args=[org.pk]), {"token": TOKEN})
    assert answer.status_code == 302
    row = OrganisationToken.objects.get(user=alice)
    html = alice_client.get(URL).content.decode()
    assert TOKEN not in html
    assert row.key_hint in html and "data-connected" in html


def test_a_bad_token_is_a_form_error_and_not_echoed(alice_client, org):
    bad = TOKEN + '"'
    answer = alice_client.post(reverse("organisations:token", args=[org.pk]), {"token": bad})
    assert answer.status_code == 400
    html = answer.content.decode()
    assert "printable ASCII" in html and TOKEN not in html
    assert not OrganisationToken.objects.exists()


def test_disconnect(alice_client, alice, org):
    services.token_set(user=alice, organisation=org, token=TOKEN)
    answer = alice_client.post(reverse("organisations:disconnect", args=[org.pk]))
    assert answer.status_code == 302
    assert not OrganisationToken.objects.exists()


def test_a_fetch_error_is_shown(alice_client, org, org_api):
    org_api.answer(404, {})
    services.organisation_refresh(organisation=org)
    html = alice_client.get(URL).content.decode()
    assert "could not be fetched: the organisation answered 404" in html


def test_staff_register_in_the_admin(client, admin_user, org_api):
    client.force_login(admin_user)
    answer = client.post(
        reverse("admin:organisations_organisation_add"), {"url": org_api.url + "/", "name": "Org"}
    )
    assert answer.status_code == 302, answer.content.decode()[:2000]
    row = Organisation.objects.get()
    assert (row.url, row.env_name, row.created_by) == (org_api.url, "ORG_TOKEN", admin_user)
