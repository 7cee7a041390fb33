"""Fixtures for the team page: a staff client, and the one-time id its create forms carry."""

import re

import pytest


@pytest.fixture
def staff_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def submission():
    """The ``submission`` id of a form on the team page (``data-invite-form`` or
    ``data-add-user-form``), read from the page as the browser would send it."""

    def read(client, form: str) -> str:
        html = client.get("/team/").content.decode()
        block = html[html.index(form) :]
        return re.search(r'name="submission" value="([^"]+)"', block)[1]

    return read
