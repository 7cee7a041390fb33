"""doce settings: one module, read from the environment (django-environ).

Embedded defaults run on a laptop with nothing else installed (SQLite and a filesystem
Celery broker under DOCE_DATA_DIR). Anything unsafe for production stops start-up with
a message that says what to set.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from doce import bootstrap, keyring

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# An optional .env file; DOCE_ENV_FILE names another one ("" reads none).
_env_file = os.environ.get("DOCE_ENV_FILE", str(BASE_DIR / ".env"))
if _env_file and os.path.isfile(_env_file):
    environ.Env.read_env(_env_file, overwrite=False)


def _path_setting(name: str, default: str) -> Path:
    path = Path(env.str(name, default=default)).expanduser()
    return path if path.is_absolute() else (BASE_DIR / path).resolve()


DEBUG = env.bool("DEBUG", default=False)
DOCE_DATA_DIR = _path_setting("DOCE_DATA_DIR", "./var")
# The data folder holds the database, the key files, the broker and every project: doce's
# alone, also when the operator created it beforehand (with a looser mode). Everything
# doce creates from here on is private too (files 0600, folders 0700).
os.umask(0o077)
DOCE_DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
# Not ours to change (the check reports it), or mounted read-only (compose's preview).
with contextlib.suppress(OSError):
    DOCE_DATA_DIR.chmod(0o700)

# --- secrets ---------------------------------------------------------------------------
_SETUP_HINT = (
    "With DEBUG=false doce does not invent keys. Set {name} in the environment or in .env ({how})."
)
# Key files that a first run (DEBUG=true, `make run`) generated in this data folder are
# always read back, also with DEBUG=false (e.g. `manage.py` commands); only DEBUG creates.
_SECRET_KEY_FILE = DOCE_DATA_DIR / "secret_key"
_ENCRYPTION_KEYS_FILE = DOCE_DATA_DIR / "encryption_keys"

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG and not _SECRET_KEY_FILE.exists():
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. "
            + _SETUP_HINT.format(
                name="SECRET_KEY",
                how="a random string of at least 50 characters, e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`",
            )
        )
    SECRET_KEY = bootstrap.read_or_create_key_file(
        _SECRET_KEY_FILE, lambda: secrets.token_urlsafe(50)
    )
elif not DEBUG and (len(SECRET_KEY) < 32 or SECRET_KEY.startswith("django-insecure")):
    raise ImproperlyConfigured(
        "SECRET_KEY is too weak for DEBUG=false: use a random string of at least 50 characters."
    )

_raw_encryption_keys = env.str("DOCE_ENCRYPTION_KEYS", default="")
if not _raw_encryption_keys:
    if not DEBUG and not _ENCRYPTION_KEYS_FILE.exists():
        raise ImproperlyConfigured(
            "DOCE_ENCRYPTION_KEYS is not set. "
            + _SETUP_HINT.format(
                name="DOCE_ENCRYPTION_KEYS",
                how="comma-separated Fernet keys, the first one encrypts; make one with "
                "`python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`",
            )
        )
    _raw_encryption_keys = bootstrap.read_or_create_key_file(
        _ENCRYPTION_KEYS_FILE, keyring.generate_key
    )
try:
    DOCE_ENCRYPTION_KEYS = keyring.parse_keys(_raw_encryption_keys)
except keyring.KeyringError as exc:
    raise ImproperlyConfigured(str(exc)) from None

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- applications --------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "csp",
    "axes",
    "doce",
    "providers",
    "providers.organisations",
    "projects",
    "queue_jobs",
    "doce.team",
    # Tools, not product: the benchmark commands and the stub LLM (bench/__init__.py).
    "bench",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy (django-csp) and Permissions-Policy on every answer.
    "csp.middleware.CSPMiddleware",
    "doce.middleware.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "doce.middleware.FirstRunSetupMiddleware",
    "doce.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # A temporary password (set on the team page) must be changed before anything else.
    "doce.team.middleware.PasswordChangeRequiredMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, so it sees the login view's answer and turns a lockout into its own page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "doce.urls"
WSGI_APPLICATION = "doce.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "doce.context_processors.sandbox",
            ],
        },
    },
]

# --- database ------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{DOCE_DATA_DIR / 'doce.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker write to one file: WAL and a write lock taken at
    # BEGIN avoid "database is locked" and lost updates between them.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
# true: refuse to start on SQLite (system check doce.E002), so a deployment that lost its
# DATABASE_URL fails loudly instead of writing to an empty file.
DOCE_REQUIRE_POSTGRES = env.bool("DOCE_REQUIRE_POSTGRES", default=False)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache ---------------------------------------------------------------------------
# Per-process memory by default (one web process on a first run); with several web
# processes point it at Redis (redis://host:6379/1) so limits and counters are shared.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
# Several doce instances on one Redis (staging beside production; the test suite's
# workers): each one's broker queues, task results and cache keys under its own prefix.
DOCE_REDIS_KEY_PREFIX = env.str("DOCE_REDIS_KEY_PREFIX", default="")
if DOCE_REDIS_KEY_PREFIX:
    CACHES["default"]["KEY_PREFIX"] = DOCE_REDIS_KEY_PREFIX

# --- auth ----------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Mail: only the "forgot password" link (and the admin's "send a reset link") is sent.
# EMAIL_URL as django-environ reads it, e.g. smtp+tls://user:password@smtp.example.com:587;
# the default prints every mail, its reset link included, to the web server's output.
globals().update(
    (name, value)
    for name, value in env.email_url("EMAIL_URL", default="consolemail://").items()
    if value not in (None, "")
)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="doce@localhost")
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# axes first: it refuses a locked-out login before the password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# --- login throttling (django-axes, doce/login_throttle.py) ----------------------------
# Failed logins are counted in Django's cache (CACHES["default"]; with several web
# processes set CACHE_URL to Redis so they share the counts), twice: per user name *from
# one client address*, and per client address whatever the user name. After
# DOCE_LOGIN_FAILURE_LIMIT failures for a user name from one address, that user name is
# throttled at that address only (the real user still logs in from anywhere else, so
# nobody can lock a stranger out); after DOCE_LOGIN_ADDRESS_FAILURE_LIMIT failures from one
# address, that address is throttled for every user name. A throttled login is refused
# (the login page says why and until when, with 429) until DOCE_LOGIN_COOLOFF_MINUTES
# pass without another attempt.
DOCE_LOGIN_FAILURE_LIMIT = env.int("DOCE_LOGIN_FAILURE_LIMIT", default=10)
DOCE_LOGIN_ADDRESS_FAILURE_LIMIT = env.int("DOCE_LOGIN_ADDRESS_FAILURE_LIMIT", default=100)
DOCE_LOGIN_COOLOFF_MINUTES = env.int("DOCE_LOGIN_COOLOFF_MINUTES", default=15)
# Reverse proxies in front of doce that append the client's address to X-Forwarded-For,
# trusted to say who the client is (0, the default: doce is reached directly and the
# header, which any client can send, is ignored). Without it behind a proxy every client
# would share the proxy's address; with it, doce must be reachable only through them.
DOCE_LOGIN_PROXY_COUNT = env.int("DOCE_LOGIN_PROXY_COUNT", default=0)
if (
    DOCE_LOGIN_FAILURE_LIMIT < 1
    or DOCE_LOGIN_COOLOFF_MINUTES < 1
    or DOCE_LOGIN_PROXY_COUNT < 0
    or DOCE_LOGIN_ADDRESS_FAILURE_LIMIT < DOCE_LOGIN_FAILURE_LIMIT
):
    raise ImproperlyConfigured(
        "DOCE_LOGIN_FAILURE_LIMIT and DOCE_LOGIN_COOLOFF_MINUTES must be at least 1, "
        "DOCE_LOGIN_ADDRESS_FAILURE_LIMIT at least DOCE_LOGIN_FAILURE_LIMIT, "
        "DOCE_LOGIN_PROXY_COUNT at least 0."
    )
AXES_HANDLER = "doce.login_throttle.LoginThrottle"
AXES_FAILURE_LIMIT = DOCE_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = DOCE_LOGIN_COOLOFF_MINUTES / 60  # axes reads a float as hours
# The pair first, the address second: doce.login_throttle gives each its own limit.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_USERNAME_CALLABLE = "doce.views.login_throttle_username"
AXES_CLIENT_IP_CALLABLE = "doce.views.login_client_address"
AXES_LOCKOUT_CALLABLE = "doce.views.login_locked_out"
# The cache handler keeps nothing in axes' tables: their admin pages would stay empty.
AXES_ENABLE_ADMIN = False
# axes warns about a per-process memory cache: right for one web process (`make run`);
# with several, CACHE_URL must point at Redis (README, docker-compose.yml).
SILENCED_SYSTEM_CHECKS = ["axes.W001"]

# --- i18n / static -------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = _path_setting("STATIC_ROOT", str(DOCE_DATA_DIR / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# --- production hardening ------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
DOCE_HTTPS = env.bool("DOCE_HTTPS", default=False)
if DOCE_HTTPS:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Browsers then refuse plain http for doce's host for this long (one year by default).
    SECURE_HSTS_SECONDS = env.int("DOCE_HSTS_SECONDS", default=365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = False  # a preview on a subdomain may be plain http
# Where doce's web server listens (rundoce; the worker learns it from the same variable):
# no endpoint may name it.
DOCE_PORT = env.int("DOCE_PORT", default=8000)
# The site preview (docs/preview.md): the workspace the agent writes is untrusted, so it is
# served by a server of its own on an origin other than doce's, never on doce's. By default
# another port of the same host (rundoce starts it); in production a domain of its own
# behind the proxy (DOCE_PREVIEW_ORIGIN, e.g. https://preview.example.com). With
# ``{token}`` as the first label of its host (https://{token}.preview.example.com, or
# http://{token}.localhost:8001 on one machine) every project's preview has an origin of
# its own, named by its preview token.
DOCE_PREVIEW_PORT = env.int("DOCE_PREVIEW_PORT", default=DOCE_PORT + 1)
# An origin is case-insensitive (no path): lowercase, as browsers send the Host.
DOCE_PREVIEW_ORIGIN = env.str("DOCE_PREVIEW_ORIGIN", default="").strip().rstrip("/").lower()
if DOCE_PREVIEW_ORIGIN and (
    not DOCE_PREVIEW_ORIGIN.startswith(("http://", "https://"))
    or DOCE_PREVIEW_ORIGIN.count("/") > 2
    or (
        "{token}" in DOCE_PREVIEW_ORIGIN
        and not re.fullmatch(
            r"https?://\{token\}(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+(:[0-9]{1,5})?",
            DOCE_PREVIEW_ORIGIN,
        )
    )
):
    raise ImproperlyConfigured(
        f"DOCE_PREVIEW_ORIGIN={DOCE_PREVIEW_ORIGIN!r} is not an origin, or {{token}} is not "
        "the first label of its host (e.g. https://preview.example.com, or "
        "https://{token}.preview.example.com for one origin per project)."
    )
if DOCE_PREVIEW_PORT == DOCE_PORT or not 0 < DOCE_PREVIEW_PORT < 65536:
    raise ImproperlyConfigured(
        f"DOCE_PREVIEW_PORT={DOCE_PREVIEW_PORT}: use a port other than DOCE_PORT: the preview "
        "must never share doce's origin."
    )
# The preview serves files up to this size; the zip download stops adding files past its
# bound (both in MB).
DOCE_PREVIEW_MAX_FILE_MB = env.int("DOCE_PREVIEW_MAX_FILE_MB", default=50)
DOCE_DOWNLOAD_MAX_MB = env.int("DOCE_DOWNLOAD_MAX_MB", default=500)
if DOCE_PREVIEW_MAX_FILE_MB < 1 or DOCE_DOWNLOAD_MAX_MB < 1:
    raise ImproperlyConfigured(
        "DOCE_PREVIEW_MAX_FILE_MB and DOCE_DOWNLOAD_MAX_MB must be at least 1."
    )


def _preview_frame_origins() -> list[str]:
    """Where the preview is, for frame-src: DOCE_PREVIEW_ORIGIN (every project's
    subdomain when it names ``{token}``), or the preview port on every host doce answers
    to (the page links the host it was asked on)."""
    if DOCE_PREVIEW_ORIGIN:
        return [DOCE_PREVIEW_ORIGIN.replace("{token}", "*")]
    scheme = "https" if DOCE_HTTPS else "http"
    origins = []
    for host in ALLOWED_HOSTS:
        if host == "*":
            origins.append(f"{scheme}://*:{DOCE_PREVIEW_PORT}")
        elif host.startswith("."):
            origins.append(f"{scheme}://{host[1:]}:{DOCE_PREVIEW_PORT}")
            origins.append(f"{scheme}://*{host}:{DOCE_PREVIEW_PORT}")
        elif host and not host.startswith("["):  # CSP has no syntax for IPv6 literals
            origins.append(f"{scheme}://{host}:{DOCE_PREVIEW_PORT}")
    return origins


# The Content-Security-Policy of every page (django-csp): scripts, styles, images and
# connections (htmx, the live transcript's event stream) from doce's own origin only; no
# inline script, no eval, no plugin, no framing of doce. DOCE_PREVIEW_ORIGINS: origins doce
# pages may show in a frame; by default where the site preview is (above).
DOCE_PREVIEW_ORIGINS = env.list("DOCE_PREVIEW_ORIGINS", default=_preview_frame_origins())
for _origin in DOCE_PREVIEW_ORIGINS:
    if not _origin.startswith(("http://", "https://")) or _origin.rstrip("/").count("/") > 2:
        raise ImproperlyConfigured(
            f"DOCE_PREVIEW_ORIGINS entry {_origin!r} is not an origin "
            "(e.g. https://preview.example.com)."
        )
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "frame-src": [o.rstrip("/") for o in DOCE_PREVIEW_ORIGINS] or ["'none'"],
    },
}
# Browser features no doce page uses (doce.middleware.PermissionsPolicyMiddleware).
DOCE_PERMISSIONS_POLICY = (
    "accelerometer=(), autoplay=(), camera=(), display-capture=(), encrypted-media=(), "
    "fullscreen=(self), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), "
    "midi=(), payment=(), picture-in-picture=(), publickey-credentials-get=(), "
    "screen-wake-lock=(), serial=(), usb=(), xr-spatial-tracking=()"
)
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# --- Celery --------------------------------------------------------------------------
_broker_dir = DOCE_DATA_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
DOCE_EMBEDDED_BROKER = CELERY_BROKER_URL.startswith("filesystem://")
if DOCE_EMBEDDED_BROKER:
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # kombu polls the folder; its default of 1 s would be paid at every hand-off
        # between tasks.
        "polling_interval": env.float("DOCE_BROKER_POLL_INTERVAL", default=0.02),
    }
    _default_backend = f"file://{DOCE_DATA_DIR / 'celery-results'}"
    (DOCE_DATA_DIR / "celery-results").mkdir(parents=True, exist_ok=True)
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A task whose worker died is redelivered after this many seconds (acks_late).
        "visibility_timeout": env.int("DOCE_BROKER_VISIBILITY_TIMEOUT", default=3600),
    }
    if DOCE_REDIS_KEY_PREFIX:
        CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = DOCE_REDIS_KEY_PREFIX
    _default_backend = CELERY_BROKER_URL
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=_default_backend)
if DOCE_REDIS_KEY_PREFIX and CELERY_RESULT_BACKEND.startswith(("redis://", "rediss://")):
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"global_keyprefix": DOCE_REDIS_KEY_PREFIX}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("DOCE_TASK_TIME_LIMIT", default=15 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("DOCE_TASK_SOFT_TIME_LIMIT", default=14 * 60)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE: dict = {}
CELERY_BEAT_SCHEDULE_FILENAME = str(DOCE_DATA_DIR / "celerybeat-schedule")

# --- OpenCode ------------------------------------------------------------------------
DOCE_RUNTIME = env.str("DOCE_RUNTIME", default="local")
if DOCE_RUNTIME not in {"local", "docker"}:
    raise ImproperlyConfigured(
        f"DOCE_RUNTIME={DOCE_RUNTIME!r} is not supported: use 'local' or 'docker'."
    )
DOCE_OPENCODE_BIN = env.str("DOCE_OPENCODE_BIN", default="")
DOCE_OPENCODE_CONFIG = env.str("DOCE_OPENCODE_CONFIG", default="")

# --- the sandbox every OpenCode server runs in (docs/sandbox.md) ------------------------
# "on" (default): the local runtime starts each server inside bubblewrap with its own
# network namespace (pasta), and refuses to start servers when that cannot be set up.
# "off": plain processes, for a single trusted user only; doce warns about it.
DOCE_SANDBOX = env.str("DOCE_SANDBOX", default="on").strip().lower()
if DOCE_SANDBOX not in {"on", "off"}:
    raise ImproperlyConfigured(f"DOCE_SANDBOX={DOCE_SANDBOX!r}: use 'on' or 'off'.")
# Host-side services (host:port) every sandboxed server may reach, beyond the user's own
# connected endpoints: an operator's OAuth token endpoint, a shared model server.
DOCE_SANDBOX_ALLOW = env.list("DOCE_SANDBOX_ALLOW", default=[])
for _entry in DOCE_SANDBOX_ALLOW:
    _host, _sep, _port = _entry.rpartition(":")
    if not _sep or not _host or not _port.isdigit() or not 0 < int(_port) < 65536:
        raise ImproperlyConfigured(
            f"DOCE_SANDBOX_ALLOW entry {_entry!r} is not host:port (e.g. 127.0.0.1:11434)."
        )
# Bounds on every OpenCode server (docs/sandbox.md, "Bounds"): the whole process tree the
# agent starts. Empty: derived from the machine (doce/opencode/runtimes/limits.py).
DOCE_SERVER_MEMORY_LIMIT_MB = env.str("DOCE_SERVER_MEMORY_LIMIT_MB", default="")
DOCE_SERVER_PIDS_LIMIT = env.str("DOCE_SERVER_PIDS_LIMIT", default="")
DOCE_SERVER_CPUS = env.str("DOCE_SERVER_CPUS", default="")
DOCE_SERVER_DISK_LIMIT_MB = env.str("DOCE_SERVER_DISK_LIMIT_MB", default="")
for _name in (
    "DOCE_SERVER_MEMORY_LIMIT_MB",
    "DOCE_SERVER_PIDS_LIMIT",
    "DOCE_SERVER_CPUS",
    "DOCE_SERVER_DISK_LIMIT_MB",
):
    _value = globals()[_name].strip()
    try:
        if _value and float(_value) <= 0:
            raise ValueError
    except ValueError:
        raise ImproperlyConfigured(
            f"{_name}={_value!r}: use a positive number, or leave it empty for the default."
        ) from None
# "auto" (default): bounds are enforced where the machine allows, and doce says loudly
# (start-up, /healthz, admin) which cannot be; "required": no server starts unbounded.
DOCE_LIMITS = env.str("DOCE_LIMITS", default="auto").strip().lower()
if DOCE_LIMITS not in {"auto", "required"}:
    raise ImproperlyConfigured(f"DOCE_LIMITS={DOCE_LIMITS!r}: use 'auto' or 'required'.")
# Endpoints on this machine or its private networks (loopback, private, link-local, the
# host's own addresses) that every user may name (host:port or host:low-high,
# comma-separated); staff may name any. doce's own services never (docs/sandbox.md,
# "What a user types").
DOCE_ENDPOINT_ALLOW = env.list("DOCE_ENDPOINT_ALLOW", default=[])
for _entry in DOCE_ENDPOINT_ALLOW:
    _host, _sep, _ports = _entry.rpartition(":")
    _bounds = _ports.split("-", 1)
    if (
        not _sep
        or not _host
        or not all(part.isdigit() and 0 < int(part) < 65536 for part in _bounds)
        or int(_bounds[0]) > int(_bounds[-1])
    ):
        raise ImproperlyConfigured(
            f"DOCE_ENDPOINT_ALLOW entry {_entry!r} is not host:port or host:low-high "
            "(e.g. 127.0.0.1:11434)."
        )
# The loopback ports OpenCode servers listen on: no endpoint may name one.
DOCE_SERVER_PORT_RANGE = env.str("DOCE_SERVER_PORT_RANGE", default="20000-29999")
try:
    _low, _high = (int(part) for part in DOCE_SERVER_PORT_RANGE.split("-"))
    if not 1024 <= _low < _high <= 65535:
        raise ValueError
except ValueError:
    raise ImproperlyConfigured(
        f"DOCE_SERVER_PORT_RANGE={DOCE_SERVER_PORT_RANGE!r}: use LOW-HIGH between 1024 and "
        "65535 (e.g. 20000-29999)."
    ) from None
DOCE_SERVER_PORTS = range(_low, _high + 1)
# The sandbox tools (Debian packages bubblewrap and passt); found on PATH by default.
DOCE_BWRAP_BIN = env.str("DOCE_BWRAP_BIN", default="bwrap")
DOCE_PASTA_BIN = env.str("DOCE_PASTA_BIN", default="pasta")

# --- OpenCode client and project runtimes ---------------------------------------------
# Each project gets a folder here (workspace, OpenCode home with its auth.json, log).
DOCE_PROJECTS_DIR = _path_setting("DOCE_PROJECTS_DIR", str(DOCE_DATA_DIR / "projects"))
# Start to healthy takes about 3.5 s on an idle machine; many starting at once take longer.
DOCE_OPENCODE_START_TIMEOUT = env.float("DOCE_OPENCODE_START_TIMEOUT", default=60.0)
# Every call to a server has a timeout; prompts and the blocking OAuth callback longer ones.
DOCE_OPENCODE_REQUEST_TIMEOUT = env.float("DOCE_OPENCODE_REQUEST_TIMEOUT", default=10.0)
DOCE_OPENCODE_PROMPT_TIMEOUT = env.float("DOCE_OPENCODE_PROMPT_TIMEOUT", default=300.0)
DOCE_OPENCODE_OAUTH_CALLBACK_TIMEOUT = env.float(
    "DOCE_OPENCODE_OAUTH_CALLBACK_TIMEOUT", default=900.0
)
# Seconds between SIGTERM, a second SIGTERM and SIGKILL (OpenCode ignores SIGTERM while
# its background npm install runs).
DOCE_OPENCODE_STOP_GRACE = env.float("DOCE_OPENCODE_STOP_GRACE", default=3.0)
# OpenCode installs @opencode-ai/plugin with npm at start and after every dispose; offline
# that retries for over a minute. Set false only if servers can reach an npm registry and
# the operator config (DOCE_OPENCODE_CONFIG) lists npm plugins.
DOCE_OPENCODE_NPM_OFFLINE = env.bool("DOCE_OPENCODE_NPM_OFFLINE", default=True)
# An npm registry (mirror) for those installs; "" keeps npm's default.
DOCE_OPENCODE_NPM_REGISTRY = env.str("DOCE_OPENCODE_NPM_REGISTRY", default="")
# DOCE_RUNTIME=docker: the image (the doce image carries the pinned binary), the binary's
# path inside it, the home folder the named volume is mounted on, and the docker CLI.
DOCE_OPENCODE_IMAGE = env.str("DOCE_OPENCODE_IMAGE", default="doce:latest")
DOCE_OPENCODE_IMAGE_BIN = env.str(
    "DOCE_OPENCODE_IMAGE_BIN", default="/app/node_modules/opencode-linux-x64/bin/opencode"
)
DOCE_OPENCODE_IMAGE_HOME = env.str("DOCE_OPENCODE_IMAGE_HOME", default="/home/doce")
# The user a project's container runs as (never root): the image's doce user.
DOCE_OPENCODE_IMAGE_USER = env.str("DOCE_OPENCODE_IMAGE_USER", default="1000:1000")
if DOCE_OPENCODE_IMAGE_USER.split(":")[0] in {"0", "root"}:
    raise ImproperlyConfigured("DOCE_OPENCODE_IMAGE_USER must not be root.")
DOCE_DOCKER_BIN = env.str("DOCE_DOCKER_BIN", default="docker")

# --- provider connections, catalog and validation -------------------------------------
# Beat marks OAuth connections "expired" whose tokens are past their expiry and cannot be
# refreshed (no refresh token); tokens with one are refreshed by OpenCode.
CELERY_BEAT_SCHEDULE["providers.expire-oauth-connections"] = {
    "task": "providers.expire_oauth_connections",
    "schedule": env.float("DOCE_OAUTH_EXPIRY_CHECK_SECONDS", default=300.0),
}
# OAuth token write-back (docs/oauth-tokens.md): beat reads the refresh-token holder's
# auth.json this often, so refreshed tokens reach the connection and the user's other
# projects within seconds; a project about to be prompted whose access token expires
# within the margin takes over the refresh token first.
CELERY_BEAT_SCHEDULE["projects.watch-oauth-tokens"] = {
    "task": "projects.watch_oauth_tokens",
    "schedule": env.float("DOCE_OAUTH_TOKEN_WATCH_SECONDS", default=5.0),
}
DOCE_OAUTH_REFRESH_MARGIN_SECONDS = env.float("DOCE_OAUTH_REFRESH_MARGIN_SECONDS", default=300.0)
if DOCE_OAUTH_REFRESH_MARGIN_SECONDS < 0:
    raise ImproperlyConfigured("DOCE_OAUTH_REFRESH_MARGIN_SECONDS must be 0 or more.")
# Connections marked "cannot decrypt" go back to connected once the key that made them is
# configured again (checked this often).
CELERY_BEAT_SCHEDULE["providers.recover-undecryptable"] = {
    "task": "providers.recover_undecryptable",
    "schedule": env.float("DOCE_OAUTH_EXPIRY_CHECK_SECONDS", default=300.0),
}
# The catalog (providers, auth methods, models) comes from OpenCode itself; beat checks
# this often and refreshes it once it is older than the max age (or was never fetched).
DOCE_PROVIDER_CATALOG_MAX_AGE_HOURS = env.float("DOCE_PROVIDER_CATALOG_MAX_AGE_HOURS", default=24)
# A worker that starts fetches the catalog at once when it is missing or stale (so a new
# installation has the full list within seconds, not at beat's first round).
DOCE_PROVIDER_CATALOG_REFRESH_ON_START = env.bool(
    "DOCE_PROVIDER_CATALOG_REFRESH_ON_START", default=True
)
# OpenCode Zen's free models (provider "opencode"), which OpenCode serves without a key:
# offered to every user, no connection needed (prompts then go to OpenCode's service).
DOCE_FREE_MODELS = env.bool("DOCE_FREE_MODELS", default=True)
CELERY_BEAT_SCHEDULE["providers.refresh-catalog"] = {
    "task": "providers.refresh_catalog",
    "schedule": env.float("DOCE_PROVIDER_CATALOG_CHECK_SECONDS", default=300.0),
}
# API keys are checked against the provider's API when saved and on "Test" (OpenRouter,
# Anthropic, OpenAI, Google, Groq and custom endpoints); an unreachable provider saves the
# key marked "not verified".
DOCE_PROVIDER_CHECK_KEYS = env.bool("DOCE_PROVIDER_CHECK_KEYS", default=True)
DOCE_PROVIDER_CHECK_TIMEOUT = env.float("DOCE_PROVIDER_CHECK_TIMEOUT", default=5.0)
# Organisations (docs/providers.md): how long doce waits for an organisation's
# /.well-known/opencode document, at registration and before each injection.
DOCE_ORGANISATION_FETCH_TIMEOUT = env.float("DOCE_ORGANISATION_FETCH_TIMEOUT", default=5.0)
DOCE_PROVIDER_API_URLS = {
    "openrouter": env.str("DOCE_OPENROUTER_API_URL", default="https://openrouter.ai"),
    "anthropic": env.str("DOCE_ANTHROPIC_API_URL", default="https://api.anthropic.com"),
    "openai": env.str("DOCE_OPENAI_API_URL", default="https://api.openai.com"),
    "google": env.str("DOCE_GOOGLE_API_URL", default="https://generativelanguage.googleapis.com"),
    "groq": env.str("DOCE_GROQ_API_URL", default="https://api.groq.com"),
}
# Networks a key check never connects to (comma-separated CIDRs): a custom endpoint whose
# host is or resolves into one is refused when saved and never asked. Default: link-local
# and cloud metadata addresses, and the unspecified 0.0.0.0/8 and ::/128 (an IPv6 form of
# an IPv4 address counts as that address, so [::ffff:0.0.0.0] too); loopback and private
# ranges stay allowed (a self-hosted Ollama or vLLM lives there). "" blocks nothing.
DOCE_ENDPOINT_BLOCKED_NETWORKS = env.list(
    "DOCE_ENDPOINT_BLOCKED_NETWORKS",
    default=["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "0.0.0.0/8", "::/128"],
)
for _network in DOCE_ENDPOINT_BLOCKED_NETWORKS:
    try:
        ipaddress.ip_network(_network.strip(), strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"DOCE_ENDPOINT_BLOCKED_NETWORKS entry {_network!r} is not a network in CIDR "
            "notation (e.g. 169.254.0.0/16)."
        ) from None
# Connect, test and OAuth attempts a user may make per window (seconds).
DOCE_PROVIDER_ATTEMPTS = env.int("DOCE_PROVIDER_ATTEMPTS", default=10)
DOCE_PROVIDER_ATTEMPTS_WINDOW = env.int("DOCE_PROVIDER_ATTEMPTS_WINDOW", default=60)
# An OAuth sign-in runs on its own OpenCode server for at most this many seconds; beat
# reaps servers and folders that outlive their flow.
DOCE_OAUTH_FLOW_TTL = env.int("DOCE_OAUTH_FLOW_TTL", default=600)
if DOCE_OAUTH_FLOW_TTL > CELERY_TASK_SOFT_TIME_LIMIT - 30:
    raise ImproperlyConfigured(
        "DOCE_OAUTH_FLOW_TTL must be at least 30 s shorter than DOCE_TASK_SOFT_TIME_LIMIT: "
        "the task that waits for an OAuth approval would be killed first."
    )
CELERY_BEAT_SCHEDULE["providers.reap-oauth-flows"] = {
    "task": "providers.reap_oauth_flows",
    "schedule": env.float("DOCE_OAUTH_REAP_SECONDS", default=60.0),
}
# Sign-ins live on their own queue, consumed by a worker of threads of its own (make run's
# "signin" child, compose's signin-worker): waiting for an approval never holds a worker
# that project work needs. Each live sign-in is an OpenCode server (300+ MB): at most
# DOCE_OAUTH_MAX_FLOWS at once, DOCE_OAUTH_MAX_FLOWS_PER_USER of them one user's. The
# sign-in worker runs DOCE_OAUTH_MAX_FLOWS threads, so no sign-in within the bound waits.
DOCE_OAUTH_QUEUE = "signin"
CELERY_TASK_ROUTES = {"providers.oauth_flow_run": {"queue": DOCE_OAUTH_QUEUE}}
DOCE_OAUTH_MAX_FLOWS = env.int("DOCE_OAUTH_MAX_FLOWS", default=8)
DOCE_OAUTH_MAX_FLOWS_PER_USER = env.int("DOCE_OAUTH_MAX_FLOWS_PER_USER", default=3)
if DOCE_OAUTH_MAX_FLOWS < 1 or DOCE_OAUTH_MAX_FLOWS_PER_USER < 1:
    raise ImproperlyConfigured(
        "DOCE_OAUTH_MAX_FLOWS and DOCE_OAUTH_MAX_FLOWS_PER_USER must be at least 1."
    )

# --- projects and the pipeline --------------------------------------------------------
# A running project nobody used for this long is stopped to free its server's memory.
DOCE_PROJECT_IDLE_MINUTES = env.int("DOCE_PROJECT_IDLE_MINUTES", default=60)
# How many OpenCode servers (projects, sign-ins, catalog reads) run at once
# (docs/capacity.md): 0 = what the memory holds at DOCE_SERVER_MEMORY_MB a server.
DOCE_MAX_SERVERS = env.int("DOCE_MAX_SERVERS", default=0)
DOCE_SERVER_MEMORY_MB = env.int("DOCE_SERVER_MEMORY_MB", default=600)
# How many projects one user runs at once; one more stops their least recently used.
DOCE_MAX_SERVERS_PER_USER = env.int("DOCE_MAX_SERVERS_PER_USER", default=3)
for _name, _value, _least in (
    ("DOCE_MAX_SERVERS", DOCE_MAX_SERVERS, 0),
    ("DOCE_SERVER_MEMORY_MB", DOCE_SERVER_MEMORY_MB, 1),
    ("DOCE_MAX_SERVERS_PER_USER", DOCE_MAX_SERVERS_PER_USER, 1),
):
    if _value < _least:
        raise ImproperlyConfigured(f"{_name}={_value}: use a whole number of at least {_least}.")
# Monthly budgets (docs/usage.md): the default for every user, in tokens and/or US
# dollars; empty: none. An override per user in the admin or `manage.py set_budget`.
DOCE_BUDGET_TOKENS = env.str("DOCE_BUDGET_TOKENS", default="")
DOCE_BUDGET_USD = env.str("DOCE_BUDGET_USD", default="")
for _name in ("DOCE_BUDGET_TOKENS", "DOCE_BUDGET_USD"):
    _value = globals()[_name].strip()
    try:
        if _value and float(_value) < 0:
            raise ValueError
    except ValueError:
        raise ImproperlyConfigured(
            f"{_name}={_value!r}: use a number of at least 0, or leave it empty."
        ) from None
# The warm pool (docs/warm-pool.md): OpenCode servers started ahead of demand, each
# counted as a server; a new project takes a ready one. Unset: sized to memory (a quarter
# of DOCE_MAX_SERVERS' bound, at most 2); 0: no pool.
_pool_size = env.str("DOCE_POOL_SIZE", default="").strip()
if _pool_size and not (_pool_size.isdigit()):
    raise ImproperlyConfigured(
        f"DOCE_POOL_SIZE={_pool_size}: use 0 (no pool), a whole number, or leave it empty."
    )
DOCE_POOL_SIZE: int | None = int(_pool_size) if _pool_size else None
# Jobs belong to projects (queue_jobs itself is generic).
QUEUE_JOBS_SUBJECT_MODEL = "projects.Project"
_RECONCILE_SECONDS = env.float("DOCE_RECONCILE_SECONDS", default=60.0)
CELERY_BEAT_SCHEDULE["reconcile-projects"] = {
    "task": "projects.reconcile",
    "schedule": _RECONCILE_SECONDS,
}
# A running job's row is touched this often; one untouched for DOCE_JOB_STALE_SECONDS
# has lost its worker, and beat's recovery (every DOCE_JOB_RECOVER_SECONDS) runs its
# pipeline again: a killed worker costs well under a minute, on any broker.
DOCE_JOB_HEARTBEAT_SECONDS = env.float("DOCE_JOB_HEARTBEAT_SECONDS", default=5.0)
DOCE_JOB_STALE_SECONDS = env.float("DOCE_JOB_STALE_SECONDS", default=30.0)
if DOCE_JOB_STALE_SECONDS < 3 * DOCE_JOB_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured(
        "DOCE_JOB_STALE_SECONDS must be at least three DOCE_JOB_HEARTBEAT_SECONDS: a job "
        "would be taken for lost while its worker still runs it."
    )
CELERY_BEAT_SCHEDULE["recover-stale-jobs"] = {
    "task": "queue_jobs.recover_stale",
    "schedule": env.float("DOCE_JOB_RECOVER_SECONDS", default=10.0),
}

# --- logging -------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "doce.redaction.RedactSecretsFilter"}},
    "formatters": {
        "doce": {
            "format": "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s",
        }
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "doce",
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
