"""Test settings: the real doce.settings, fed a test environment.

Values come from the environment when set (.ci/run points DATABASE_URL and
CELERY_BROKER_URL at PostgreSQL and Redis); otherwise the embedded defaults are used,
like a new user's first run. Subprocesses started by tests (Celery worker, OpenCode,
rundoce) inherit this environment.
"""

import atexit
import os
import re
import shutil
import tempfile

_data_dir = os.environ.get("DOCE_TEST_DATA_DIR")
if not _data_dir:
    _data_dir = tempfile.mkdtemp(prefix="doce-test-")
    os.environ["DOCE_TEST_DATA_DIR"] = _data_dir
    atexit.register(shutil.rmtree, _data_dir, ignore_errors=True)

# pytest-xdist (`make test` runs two workers): each worker, and every process it starts
# (they inherit PYTEST_XDIST_WORKER), is a doce of its own: its own data folder (SQLite
# database, embedded broker, projects), its own test database (pytest-django adds the
# suffix), and its own keys in a shared Redis (DOCE_REDIS_KEY_PREFIX: broker, results,
# cache).
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker:
    _base, _data_dir = _data_dir, os.path.join(_data_dir, _worker)
    os.makedirs(_data_dir, exist_ok=True)
    if os.environ.get("DOCE_DATA_DIR") in (None, _base):  # as the controller set it
        os.environ["DOCE_DATA_DIR"] = _data_dir
    os.environ["DOCE_REDIS_KEY_PREFIX"] = f"doce-{_worker}:"
    # Tests clear the cache, and clearing a Redis cache empties its whole database: each
    # worker's cache gets a database of its own (CACHE_URL's, minus the worker's number).
    _cache_url = os.environ.get("CACHE_URL", "")
    _match = re.fullmatch(r"(rediss?://[^/]+)/(\d+)", _cache_url)
    if _match:
        _number = int(_match.group(2)) - int(_worker.removeprefix("gw") or 0)
        os.environ["CACHE_URL"] = f"{_match.group(1)}/{max(_number, 0)}"

_TEST_ENV = {
    "DOCE_DATA_DIR": _data_dir,
    "DEBUG": "false",
    "SECRET_KEY": "test-secret-key-that-is-long-enough-for-production-checks-0123456789",
    # A fixed test key; never used outside tests.
    "DOCE_ENCRYPTION_KEYS": "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=",
    "ALLOWED_HOSTS": "localhost,127.0.0.1,testserver",
    "DOCE_BROKER_POLL_INTERVAL": "0.02",
    # Playwright's sync API runs an event loop in the test thread.
    "DJANGO_ALLOW_ASYNC_UNSAFE": "true",
    "DOCE_ENV_FILE": "",
    # Test workers must not start an OpenCode server for the catalog each time.
    "DOCE_PROVIDER_CATALOG_REFRESH_ON_START": "false",
    # No warm pool: its servers would compete with every test; pool tests turn it on.
    "DOCE_POOL_SIZE": "0",
}

# Stub LLMs and closed ports on loopback stand in for users' endpoints: the operator's
# list lets every user's endpoint name any loopback port, as an operator lists a shared
# model server. doce's own services stay closed whatever the list says; the tests of
# the rule itself set their own list (tests/doce/test_endpoints.py,
# tests/integration/test_endpoint_containment.py).
_TEST_ENV["DOCE_ENDPOINT_ALLOW"] = "127.0.0.1:1-65535"
for _name, _value in _TEST_ENV.items():
    os.environ.setdefault(_name, _value)

from doce.settings import *  # noqa: E402,F403
from doce.settings import DATABASES, DOCE_DATA_DIR  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not :memory:, so a Celery worker subprocess sees the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DOCE_DATA_DIR / "test.sqlite3")}
