"""docker-compose.yml: the production stack parses, is complete, and matches the settings.

Docker cannot run here, so these tests read the file as Compose would (YAML with anchors,
then ${...} interpolation from .env) and check it against doce/settings.py, the
Dockerfile and .env.example (test_compose_cli.py adds `docker compose config`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
from cryptography.fernet import Fernet
from django.conf import settings

from doce.management.commands.rundoce import preview_command
from tests.deploy.sources import (
    COMPOSE_FILE,
    DOCKERFILE,
    ENTRYPOINT,
    ENV_EXAMPLE,
    HEALTHCHECK,
    PREVIEW_HEALTHCHECK,
    ROOT,
    InterpolationError,
    env_file_values,
    final_stage_env,
    interpolate,
    load_compose,
    service_environment,
    settings_env_names,
)

APP_SERVICES = ("web", "worker", "beat")
DJANGO_SERVICES = (*APP_SERVICES, "migrate", "preview")  # everything that loads doce.settings
# Read by docker/entrypoint.sh, not by doce.settings.
ENTRYPOINT_VARIABLES = {"DOCE_DATA_READ_ONLY"}
REQUIRED_SETTINGS = {
    "SECRET_KEY",
    "DOCE_ENCRYPTION_KEYS",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "DOCE_DATA_DIR",
    "DEBUG",
    "ALLOWED_HOSTS",
}
REQUIRED_FROM_ENV_FILE = ("SECRET_KEY", "DOCE_ENCRYPTION_KEYS")


@pytest.fixture(scope="module")
def compose():
    return load_compose()


@pytest.fixture(scope="module")
def services(compose):
    return compose["services"]


@pytest.fixture(scope="module")
def built_services(services):
    """The services that run the doce image (web, preview, worker, beat, migrate, pod)."""
    return {name: service for name, service in services.items() if "build" in service}


@pytest.fixture
def dot_env():
    """A filled-in .env, as an operator following .env.example would write it."""
    return {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DOCE_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "ALLOWED_HOSTS": "doce.example.com",
    }


def named_volume_mounts(service) -> dict[str, str]:
    """volume name -> target for the named volumes a service mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target = rest.split(":")[0]
        else:
            source, target = volume.get("source", ""), volume.get("target", "")
        if source and not source.startswith((".", "/", "~")):
            mounts[source] = target
    return mounts


# --- services ------------------------------------------------------------------------------
def test_the_five_services_exist(services):
    assert {"web", "worker", "beat", "db", "redis"} <= set(services)


def test_web_worker_and_beat_build_from_the_dockerfile(services, built_services):
    assert set(APP_SERVICES) <= set(built_services)
    for name, service in built_services.items():
        build = service["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        assert (COMPOSE_FILE.parent / context / dockerfile).resolve() == DOCKERFILE, name
    # One image: compose builds it once, and every service runs the same code.
    assert len({service.get("image") for service in built_services.values()}) == 1


def test_db_and_redis_use_the_intended_images(services):
    assert services["db"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")


def test_web_runs_uvicorn_on_port_8000_published_on_a_configurable_port(services):
    web = services["web"]
    command = " ".join(web["command"]) if isinstance(web["command"], list) else web["command"]
    # ASGI: the live transcript's event streams (projects.stream).
    assert command.startswith("uvicorn doce.asgi:application ")
    assert re.search(r"--host[= ]0\.0\.0\.0\b", command)
    assert re.search(r"--port[= ]8000\b", command)
    # A stop must not wait for the open streams, which never end by themselves.
    assert re.search(r"--timeout-graceful-shutdown[= ]\d+\b", command)
    # web listens in the pod's network namespace, so the pod publishes its port.
    publisher = services[namespace_owner(web, "network_mode")]
    ports = [str(port) for port in publisher["ports"] if str(port).endswith(":8000")]
    assert len(ports) == 1
    assert "${DOCE_PORT" in ports[0], "the published port comes from .env"
    assert "ports" not in web


def namespace_owner(service, key: str) -> str:
    mode = service.get(key, "")
    assert mode.startswith("service:"), f"{key} is {mode!r}"
    return mode.removeprefix("service:")


def test_web_and_worker_share_loopback_and_processes(services):
    """DOCE_RUNTIME=local: the worker starts project servers on 127.0.0.1 and web calls
    them there and checks them by pid (projects/runtimes), so both join one namespace
    holder. The holder reaps orphaned servers and does nothing else, so web and worker
    restart independently."""
    owners = {
        namespace_owner(services[name], key)
        for name in ("web", "worker")
        for key in ("network_mode", "pid")
    }
    assert len(owners) == 1
    owner = services[owners.pop()]
    assert owner.get("init") is True
    assert owner.get("restart") == "unless-stopped"
    assert "healthcheck" not in owner and "command" not in owner
    assert owner["entrypoint"] == ["sleep", "infinity"]
    for name in ("web", "worker"):
        assert "hostname" not in services[name]


def test_worker_and_beat_run_celery_for_the_doce_app(services):
    for name, subcommand in (("worker", "worker"), ("beat", "beat")):
        command = services[name]["command"]
        words = command if isinstance(command, list) else command.split()
        assert words[0] == "celery", name
        assert "--app=doce" in words or ("-A" in words and words[words.index("-A") + 1] == "doce")
        assert subcommand in words, name


def test_migrations_run_once_before_the_app_starts(services):
    """A one-shot migrate service; web, worker and beat wait until it succeeded."""
    migrate = services["migrate"]
    command = migrate["command"]
    assert (command if isinstance(command, list) else command.split()) == ["migrate"]
    assert migrate["restart"] == "no"
    for name in APP_SERVICES:
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }, name


# --- health --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["web", "worker", "preview", "db", "redis"])
def test_health_checks(services, name):
    check = services[name].get("healthcheck")
    assert check and not check.get("disable"), f"{name} has no health check"
    test = check["test"]
    assert isinstance(test, list) and test[0] in {"CMD", "CMD-SHELL"}
    command = " ".join(test[1:])
    expected = {
        "web": "/app/docker/healthcheck.py",
        "worker": "inspect ping",
        "preview": "/app/docker/preview_healthcheck.py",
        "db": "pg_isready",
        "redis": "redis-cli ping",
    }[name]
    assert expected in command
    assert check.get("start_period"), "a start period keeps a slow start from counting"


def test_preview_health_check_asks_the_preview_port():
    assert '"http://127.0.0.1:8001"' in PREVIEW_HEALTHCHECK.read_text()


def test_web_health_check_asks_healthz_with_a_host_django_allows():
    source = HEALTHCHECK.read_text()
    assert '"http://127.0.0.1:8000/healthz"' in source
    assert "ALLOWED_HOSTS" in source


def test_worker_health_check_pings_its_own_node(services):
    command = " ".join(services["worker"]["healthcheck"]["test"][1:])
    # $$ reaches the container as $: the shell there expands the worker's own hostname.
    assert "celery@$$HOSTNAME" in command
    assert services["worker"]["healthcheck"]["test"][0] == "CMD-SHELL"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_wait_for_healthy_db_and_redis(services, name):
    depends_on = services[name]["depends_on"]
    for dependency in ("db", "redis"):
        assert depends_on[dependency] == {"condition": "service_healthy"}, (name, dependency)


# --- volumes -------------------------------------------------------------------------------
def test_named_volumes_are_declared_and_used(compose, services):
    declared = set(compose["volumes"])
    used = set()
    for service in services.values():
        used |= set(named_volume_mounts(service))
    assert used == declared
    assert named_volume_mounts(services["db"]) == {"postgres-data": "/var/lib/postgresql/data"}
    assert named_volume_mounts(services["redis"]) == {"redis-data": "/data"}


def test_web_worker_and_beat_share_the_data_dir_volume(services):
    """Projects' folders live under DOCE_DATA_DIR: web and worker must see the same files,
    and beat keeps its schedule file there."""
    targets = set()
    for name in APP_SERVICES:
        mounts = named_volume_mounts(services[name])
        data_dir = service_environment(services[name])["DOCE_DATA_DIR"]
        assert data_dir in mounts.values(), f"{name}: DOCE_DATA_DIR is not on a volume"
        targets.add(next(volume for volume, target in mounts.items() if target == data_dir))
    assert len(targets) == 1
    # The image's own default agrees, so `docker run` without compose uses the same path.
    assert final_stage_env()["DOCE_DATA_DIR"] == data_dir


# --- environment ---------------------------------------------------------------------------
def test_settings_source_parser_finds_the_settings():
    """Guards the parser below: an empty or partial result would make the checks vacuous."""
    names = settings_env_names()
    assert REQUIRED_SETTINGS | {"DOCE_RUNTIME", "DOCE_OPENCODE_BIN", "STATIC_ROOT"} <= names


@pytest.mark.parametrize("name", DJANGO_SERVICES)
def test_app_environment_only_names_settings_that_exist(services, name):
    unknown = set(service_environment(services[name])) - settings_env_names()
    unknown -= ENTRYPOINT_VARIABLES
    assert not unknown, f"{name} sets variables doce/settings.py never reads: {unknown}"


def test_the_entrypoint_reads_its_variables():
    for name in ENTRYPOINT_VARIABLES:
        assert "${" + name in ENTRYPOINT.read_text(), name


@pytest.mark.parametrize("name", DJANGO_SERVICES)
def test_app_environment_sets_the_required_settings(services, name):
    environment = service_environment(services[name])
    assert set(environment) >= REQUIRED_SETTINGS, REQUIRED_SETTINGS - set(environment)
    assert environment["DEBUG"].lower() == "false"
    assert environment["DOCE_RUNTIME"] == "local"


@pytest.mark.parametrize("name", DJANGO_SERVICES)
@pytest.mark.parametrize("variable", REQUIRED_FROM_ENV_FILE)
def test_keys_come_from_env_as_required_variables(services, name, variable):
    value = service_environment(services[name])[variable]
    assert re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", value), (
        f"{name}: {variable} must be ${{{variable}:?message}}, not {value!r}"
    )


@pytest.mark.parametrize("missing", [*REQUIRED_FROM_ENV_FILE, "POSTGRES_PASSWORD"])
@pytest.mark.parametrize("how", ["unset", "empty"])
def test_compose_refuses_to_start_without_a_required_value(compose, dot_env, missing, how):
    if how == "unset":
        del dot_env[missing]
    else:
        dot_env[missing] = ""
    with pytest.raises(InterpolationError) as error:
        interpolate(compose, dot_env)
    assert error.value.name == missing
    assert ".env" in str(error.value), "the message says where to set it"


def test_env_example_as_copied_is_refused_until_filled_in(compose):
    with pytest.raises(InterpolationError):
        interpolate(compose, env_file_values(ENV_EXAMPLE.read_text()))


def test_resolved_environment_points_at_the_compose_services(compose, dot_env):
    resolved = interpolate(compose, dot_env)
    for name in APP_SERVICES:
        environment = service_environment(resolved["services"][name])
        assert environment["SECRET_KEY"] == dot_env["SECRET_KEY"]
        assert environment["DOCE_ENCRYPTION_KEYS"] == dot_env["DOCE_ENCRYPTION_KEYS"]
        assert environment["ALLOWED_HOSTS"] == "doce.example.com"
        database = urlsplit(environment["DATABASE_URL"])
        assert database.scheme in {"postgres", "postgresql"}
        assert (database.hostname, database.port) == ("db", 5432)
        assert database.password == dot_env["POSTGRES_PASSWORD"]
        db_env = service_environment(resolved["services"]["db"])
        assert database.username == db_env["POSTGRES_USER"]
        assert database.path == "/" + db_env["POSTGRES_DB"]
        assert db_env["POSTGRES_PASSWORD"] == dot_env["POSTGRES_PASSWORD"]
        broker = urlsplit(environment["CELERY_BROKER_URL"])
        assert (broker.scheme, broker.hostname) == ("redis", "redis")
    assert resolved["services"]["pod"]["ports"] == ["127.0.0.1:8000:8000", "127.0.0.1:8001:8001"]


def test_settings_load_with_the_container_environment(compose, dot_env, tmp_path):
    """doce.settings accepts what a container gets (image ENV, then .env, then the
    compose environment) and passes its system checks with DEBUG=false."""
    resolved = interpolate(compose, dot_env)
    web = resolved["services"]["web"]
    environment = {
        **final_stage_env(),
        **dot_env,  # env_file: .env
        **service_environment(web),
        # Paths that exist only inside the image.
        "DOCE_DATA_DIR": str(tmp_path / "data"),
        "STATIC_ROOT": str(tmp_path / "static"),
        "DOCE_OPENCODE_BIN": "",
        "DJANGO_SETTINGS_MODULE": "doce.settings",
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
    }
    script = (
        "import json, django\n"
        "django.setup()\n"
        "from django.conf import settings\n"
        "from django.core.management import call_command\n"
        "call_command('check', fail_level='ERROR', verbosity=0)\n"
        "db = settings.DATABASES['default']\n"
        "print(json.dumps({'debug': settings.DEBUG, 'engine': db['ENGINE'], 'host': db['HOST'],"
        " 'broker': settings.CELERY_BROKER_URL, 'embedded': settings.DOCE_EMBEDDED_BROKER,"
        " 'runtime': settings.DOCE_RUNTIME, 'hosts': settings.ALLOWED_HOSTS}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {
        "debug": False,
        "engine": "django.db.backends.postgresql",
        "host": "db",
        "broker": "redis://redis:6379/0",
        "embedded": False,
        "runtime": "local",
        "hosts": ["doce.example.com"],
    }


# --- the sandbox in production (docs/sandbox.md) ----------------------------------------
def test_database_and_broker_sit_on_an_internal_network_only(compose, services):
    assert compose["networks"]["backend"] == {"internal": True}
    for name in ("db", "redis", "migrate", "beat"):
        assert services[name]["networks"] == ["backend"], name
    # The pod (web and worker's namespace) reaches them, and the internet through egress,
    # which carries the default route the sandboxes use; they are routed away from the
    # pod's other networks (backend) and its own addresses.
    assert services["pod"]["networks"] == ["egress", "backend"]
    assert not compose["networks"]["egress"].get("internal")


@pytest.mark.parametrize("name", ["web", "worker", "signin-worker"])
def test_web_and_worker_can_make_sandboxes_but_keep_no_privilege(services, name):
    service = services[name]
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    # User namespaces, mounts and a fresh /proc inside the container (bubblewrap), a tun
    # device (pasta): what Docker's default profiles forbid.
    assert {"seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"} <= set(
        service["security_opt"]
    )
    assert service["devices"] == ["/dev/net/tun:/dev/net/tun"]
    assert "privileged" not in service and "cap_add" not in service
    assert service["environment"].get("DOCE_SANDBOX", "on") == "on"
    assert not any("docker.sock" in str(volume) for volume in service.get("volumes", []))


def test_services_that_run_no_server_get_no_sandbox_rights(services):
    for name in ("pod", "migrate", "beat", "preview"):
        assert services[name]["security_opt"] == ["no-new-privileges:true"], name
        assert "devices" not in services[name]


def test_sign_ins_have_a_worker_of_their_own(services):
    """Issue 11: waiting for a sign-in's approval never holds a project worker. The
    project worker consumes the default queue only; the sign-in worker the sign-in
    queue, on threads (one per sign-in allowed at once), beside it in the pod (web
    reaches the flows' servers there and stops them by pid)."""

    def words(name: str) -> list[str]:
        command = services[name]["command"]
        return command if isinstance(command, list) else command.split()

    assert "--queues=celery" in words("worker")
    signin = words("signin-worker")
    assert signin[:3] == ["celery", "--app=doce", "worker"]
    assert f"--queues={settings.DOCE_OAUTH_QUEUE}" in signin
    assert "--pool=threads" in signin
    assert "--concurrency=${DOCE_OAUTH_MAX_FLOWS:-8}" in signin
    assert "--hostname=signin@%h" in signin
    for key in ("network_mode", "pid"):
        assert services["signin-worker"][key] == services["worker"][key] == "service:pod"
    check = " ".join(services["signin-worker"]["healthcheck"]["test"][1:])
    assert "signin@$$HOSTNAME" in check
    assert services["signin-worker"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }


def test_allowed_hosts_fallback_agrees_with_the_settings_and_the_readme(compose, dot_env):
    """Without ALLOWED_HOSTS in .env, compose passes the default the settings and the
    README's table name (an IPv6 loopback client is not refused behind compose only)."""
    del dot_env["ALLOWED_HOSTS"]
    resolved = interpolate(compose, dot_env)
    readme = (ROOT / "README.md").read_text()
    default = re.search(r"^\| `ALLOWED_HOSTS` \| `([^`]+)` \|", readme, re.MULTILINE)[1]
    for name in APP_SERVICES:
        environment = service_environment(resolved["services"][name])
        assert environment["ALLOWED_HOSTS"] == default == "localhost,127.0.0.1,[::1]"
    source = (ROOT / "doce" / "settings.py").read_text()
    assert 'env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])' in source


# --- the site preview (docs/preview.md) ---------------------------------------------------
def command_words(service) -> list[str]:
    command = service["command"]
    return command if isinstance(command, list) else command.split()


def test_preview_service_runs_the_preview_asgi_app_with_websockets(services):
    """What `make run` starts (rundoce.preview_command), on port 8001 of the container:
    the preview's ASGI app, WebSocket through websockets-sansio (a dev server's hot
    reload), no access log (every path carries a preview token)."""
    words = command_words(services["preview"])
    assert words[:2] == ["uvicorn", "projects.preview_asgi:application"]
    assert "--host=0.0.0.0" in words and "--port=8001" in words
    assert "--lifespan=off" in words
    assert any(re.fullmatch(r"--timeout-graceful-shutdown=\d+", word) for word in words)
    flags = preview_command(host="127.0.0.1", port=8001)
    flags = flags[flags.index("projects.preview_asgi:application") + 1 :]
    assert flags[flags.index("--ws") + 1] == "websockets-sansio"
    assert "--ws=websockets-sansio" in words
    for flag in ("--no-access-log", "--no-server-header"):
        assert flag in flags and flag in words, flag


def test_preview_shares_the_workers_network_namespace(services):
    """Dev servers listen on 127.0.0.1:<port> of the worker that started their sandbox
    (pasta forwards the port there): the preview must see that loopback. It joins the
    namespace the worker joins (the pod), so a restarted worker does not cut it off,
    and not the pod's processes: it signals nothing."""
    preview, worker = services["preview"], services["worker"]
    assert preview["network_mode"] == worker["network_mode"] == "service:pod"
    assert "pid" not in preview
    assert "ports" not in preview and "networks" not in preview
    assert preview["depends_on"]["pod"] == {"condition": "service_started"}
    assert preview["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert preview["depends_on"]["db"] == {"condition": "service_healthy"}


# address:host port:container port, each side possibly ${VAR:-default}
PORT_MAPPING = re.compile(r"(\$\{[^}]*\}|[^:]+):(\$\{[^}]*\}|\d+):(\d+)")


def test_preview_port_is_published_beside_webs(services, compose, dot_env):
    """The namespace's holder publishes 8001 on the address web's 8000 is published on,
    on DOCE_PREVIEW_PORT, which the containers are told too (preview links and
    frame-src without DOCE_PREVIEW_ORIGIN)."""
    publisher = services[namespace_owner(services["preview"], "network_mode")]
    assert publisher is services[namespace_owner(services["worker"], "network_mode")]
    published = {}  # container port -> (host address, host port), as written
    for port in publisher["ports"]:
        address, host_port, target = PORT_MAPPING.fullmatch(str(port)).groups()
        published[target] = (address, host_port)
    assert published["8001"][0] == published["8000"][0] == "${DOCE_BIND_ADDRESS:-127.0.0.1}"
    assert published["8001"][1] == "${DOCE_PREVIEW_PORT:-8001}"
    dot_env.update(DOCE_BIND_ADDRESS="0.0.0.0", DOCE_PREVIEW_PORT="9101")
    resolved = interpolate(compose, dot_env)["services"]
    assert "0.0.0.0:9101:8001" in resolved["pod"]["ports"]
    for name in (*DJANGO_SERVICES, "signin-worker"):
        assert service_environment(resolved[name])["DOCE_PREVIEW_PORT"] == "9101", name
    del dot_env["DOCE_PREVIEW_PORT"]
    resolved = interpolate(compose, dot_env)["services"]
    assert service_environment(resolved["web"])["DOCE_PREVIEW_PORT"] == "8001"


def test_preview_reads_the_data_volume_read_only(services):
    """The workspaces it serves are on the data volume, at DOCE_DATA_DIR as in the
    worker; it never writes (projects.preview_server opens files read-only and saves no
    row), so the mount, and its root, are read-only."""
    preview, worker = services["preview"], services["worker"]
    data_dir = service_environment(preview)["DOCE_DATA_DIR"]
    assert data_dir == service_environment(worker)["DOCE_DATA_DIR"]
    assert named_volume_mounts(preview) == named_volume_mounts(worker) == {"doce-data": data_dir}
    assert preview["volumes"] == [f"doce-data:{data_dir}:ro"]
    assert service_environment(preview)["DOCE_DATA_READ_ONLY"] == "true"
    assert preview["read_only"] is True
    assert preview["tmpfs"] == ["/tmp"]
    assert preview["cap_drop"] == ["ALL"]
    assert preview["restart"] == "unless-stopped"
