import pytest

from providers.models import key_hint


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("sk-ant-api03-" + "x" * 40 + "f3a9", "sk-ant-…f3a9"),
        ("sk-or-v1-" + "0" * 60 + "beef", "sk-or-…beef"),
        ("sk-proj-" + "y" * 40 + "1234", "sk-proj-…1234"),
        ("ghp_" + "z" * 32 + "9876", "ghp_…9876"),
        ("AIzaSy" + "q" * 30 + "wxyz", "…wxyz"),  # no separator: no prefix
        ("abcdefghijklmnop", "…mnop"),
        ("shortkey12", "…12"),  # short: two characters only
        ("tiny", "…"),  # too short to show anything of it
        ("", ""),
        (None, ""),
    ],
)
def test_key_hint(key, hint):
    assert key_hint(key) == hint


def test_a_hint_never_shows_more_than_twelve_characters_of_a_random_key():
    import secrets

    for _ in range(200):
        key = secrets.token_urlsafe(32)
        hint = key_hint(key)
        assert len(hint.replace("…", "")) <= 12
        assert hint.endswith(key[-4:])
