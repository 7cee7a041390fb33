"""Fixtures for tests/doce."""

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def fresh_login_throttle():
    """django-axes counts failed logins in the cache (AxesCacheHandler): start and leave
    every test with no failures counted, so lockouts never leak between tests."""
    cache.clear()
    yield
    cache.clear()
