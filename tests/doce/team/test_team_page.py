"""The team page: staff only, lists every user, and its switches and groups."""

import pytest
from django.contrib.auth.models import Group

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_only_staff_see_the_page_and_the_nav_link(client, alice, admin_user):
    client.force_login(alice)
    assert client.get("/team/").status_code == 404
    assert client.post("/team/groups/", {"name": "x"}).status_code == 404
    assert client.post(f"/team/users/{admin_user.pk}/active/", {"value": "0"}).status_code == 404
    assert 'href="/team/"' not in client.get("/projects/").content.decode()
    admin_user.refresh_from_db()
    assert admin_user.is_active and not Group.objects.exists()

    client.force_login(admin_user)
    assert 'href="/team/"' in client.get("/projects/").content.decode()


def test_anonymous_is_sent_to_login(client, admin_user):
    response = client.get("/team/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_lists_users_with_staff_active_groups_and_last_login(
    staff_client, alice, django_assert_max_num_queries
):
    editors = Group.objects.create(name="editors")
    alice.groups.add(editors)
    UserFactory(username="carol", is_active=False)
    for n in range(5):
        UserFactory(username=f"member{n}").groups.add(editors)
    with django_assert_max_num_queries(12):
        html = staff_client.get("/team/").content.decode()
    assert 'data-member="alice" data-active="true" data-staff="false"' in html
    assert 'data-member="carol" data-active="false"' in html
    assert 'data-member="admin" data-active="true" data-staff="true"' in html
    assert f'<option value="{editors.pk}" selected>editors</option>' in html
    assert "never" in html  # alice never logged in


def test_posts_need_csrf(admin_user, alice):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.post(f"/team/users/{alice.pk}/active/", {"value": "0"})
    assert response.status_code == 403
    alice.refresh_from_db()
    assert alice.is_active


def test_deactivate_and_reactivate(staff_client, alice):
    response = staff_client.post(f"/team/users/{alice.pk}/active/", {"value": "0"}, follow=True)
    alice.refresh_from_db()
    assert not alice.is_active
    assert "alice is deactivated" in response.content.decode()
    # A double submit sets the same value again: no harm, no flip back.
    staff_client.post(f"/team/users/{alice.pk}/active/", {"value": "0"})
    alice.refresh_from_db()
    assert not alice.is_active
    staff_client.post(f"/team/users/{alice.pk}/active/", {"value": "1"})
    alice.refresh_from_db()
    assert alice.is_active


def test_a_deactivated_user_cannot_log_in(client, alice):
    alice.is_active = False
    alice.save()
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": "correct-horse-battery-staple"}
    )
    assert response.status_code == 200 and not response.wsgi_request.user.is_authenticated


def test_make_and_unmake_staff(staff_client, alice):
    staff_client.post(f"/team/users/{alice.pk}/staff/", {"value": "1"})
    alice.refresh_from_db()
    assert alice.is_staff
    staff_client.post(f"/team/users/{alice.pk}/staff/", {"value": "0"})
    alice.refresh_from_db()
    assert not alice.is_staff


def test_never_yourself(staff_client, admin_user):
    for url in ("active", "staff"):
        response = staff_client.post(
            f"/team/users/{admin_user.pk}/{url}/", {"value": "0"}, follow=True
        )
        assert "You cannot" in response.content.decode()
    admin_user.refresh_from_db()
    assert admin_user.is_active and admin_user.is_staff


def test_bad_input_is_refused_plainly(staff_client, alice):
    response = staff_client.post(f"/team/users/{alice.pk}/active/", {"value": "maybe"}, follow=True)
    assert "not understood" in response.content.decode()
    assert staff_client.post("/team/users/999999/active/", {"value": "0"}).status_code == 404
    assert staff_client.get(f"/team/users/{alice.pk}/active/").status_code == 405


def test_create_a_group_and_put_users_in_it(staff_client, alice):
    response = staff_client.post("/team/groups/", {"name": " designers "}, follow=True)
    assert "Created the group “designers”" in response.content.decode()
    group = Group.objects.get(name="designers")

    response = staff_client.post("/team/groups/", {"name": "Designers"}, follow=True)
    assert "already exists" in response.content.decode()
    assert Group.objects.count() == 1
    response = staff_client.post("/team/groups/", {"name": ""}, follow=True)
    assert "needs a name" in response.content.decode()

    staff_client.post(f"/team/users/{alice.pk}/groups/", {"groups": [group.pk]})
    assert list(alice.groups.all()) == [group]
    staff_client.post(f"/team/users/{alice.pk}/groups/", {})
    assert not alice.groups.exists()
    response = staff_client.post(f"/team/users/{alice.pk}/groups/", {"groups": [9999]}, follow=True)
    assert "does not exist" in response.content.decode()
