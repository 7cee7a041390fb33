"""The admin says it is doce's, and its model names read as words."""

import pytest

pytestmark = pytest.mark.django_db


def test_the_admin_is_doces(client, admin_user):
    client.force_login(admin_user)
    html = client.get("/admin/").content.decode()
    assert "doce administration" in html
    assert "Django administration" not in html
    assert "OAuth sign-ins" in html
    assert "O auth" not in html
