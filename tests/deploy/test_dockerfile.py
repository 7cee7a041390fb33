"""Dockerfile, its entrypoint and .dockerignore: what can be checked without building."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from tests.deploy.sources import (
    DOCKERIGNORE,
    ENTRYPOINT,
    ROOT,
    dockerfile_instructions,
    exec_form,
    final_stage,
    final_stage_env,
    load_compose,
    settings_env_defaults,
)

WORKDIR = PurePosixPath("/app")  # where the Dockerfile puts the checkout


@pytest.fixture(scope="module")
def instructions():
    return dockerfile_instructions()


@pytest.fixture(scope="module")
def final(instructions):
    return final_stage(instructions)


def arguments_of(stage, keyword: str) -> list[str]:
    return [arguments for name, arguments in stage if name == keyword]


def repo_path(image_path: str) -> Path:
    """The checkout file that `COPY . .` puts at ``image_path``."""
    return ROOT / PurePosixPath(image_path).relative_to(WORKDIR)


# --- Dockerfile --------------------------------------------------------------------------
def test_both_stages_start_from_python_3_11_slim(instructions):
    args = {}
    for keyword, arguments in instructions:
        if keyword == "ARG" and "=" in arguments:
            name, _, value = arguments.partition("=")
            args[name] = value
    bases = [arguments.split()[0] for keyword, arguments in instructions if keyword == "FROM"]
    assert bases
    for base in bases:
        image = args.get(base.strip("${}"), base) if base.startswith("$") else base
        assert image.startswith("python:3.11-slim"), image


def test_installs_the_pinned_opencode_from_the_lock_file(instructions):
    copies = arguments_of(instructions, "COPY")
    assert any(
        "package.json" in words and "package-lock.json" in words
        for words in (arguments.split() for arguments in copies)
    ), "package.json and package-lock.json must be copied before npm install"
    assert any(
        arguments.startswith("npm install") and "--ignore-scripts" in arguments
        for arguments in arguments_of(instructions, "RUN")
    )


def test_the_opencode_binary_the_image_uses_is_pinned_in_package_lock(final):
    lock = json.loads((ROOT / "package-lock.json").read_text())
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]["opencode-ai"]
    binary = PurePosixPath(final_stage_env()["DOCE_OPENCODE_BIN"])
    package_dir = binary.parents[1]  # /app/node_modules/<package>/bin/opencode
    assert binary.parts[-2:] == ("bin", "opencode")
    entry = lock["packages"][f"node_modules/{package_dir.name}"]
    assert entry["version"] == pinned == lock["packages"]["node_modules/opencode-ai"]["version"]
    assert "linux" in entry["os"]
    copied = [
        arguments.split()[-1]
        for arguments in arguments_of(final, "COPY")
        if arguments.startswith("--from=")
    ]
    expanded = [path.replace("${OPENCODE_PACKAGE}", package_dir.name) for path in copied]
    assert str(package_dir) in expanded, "the binary's package is copied into the image"


def test_installs_doce_itself_with_pip(final):
    runs = " ".join(arguments_of(final, "RUN"))
    assert re.search(r"pip install [^&]*(--editable|-e) \.", runs) or "pip install ." in runs


def test_runs_as_a_non_root_user(final):
    users = arguments_of(final, "USER")
    assert users, "no USER instruction: the container would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}


SANDBOX_PACKAGES = {"bubblewrap", "passt", "iproute2", "util-linux"}


def test_the_image_and_make_install_the_sandbox_tools(final):
    """Every OpenCode server runs sandboxed (docs/sandbox.md): the image carries the
    tools, and `make run` / `make test` install them (both depend on `setup`)."""
    installs = " ".join(arguments_of(final, "RUN"))
    assert set(re.findall(r"[\w.+-]+", installs)) >= SANDBOX_PACKAGES
    makefile = (ROOT / "Makefile").read_text()
    rules = dict(re.findall(r"^([a-z-]+):([^=\n]*)$", makefile, flags=re.MULTILINE))
    assert "sandbox" in rules["setup"].split()
    assert "setup" in rules["run"].split() and "setup-dev" in rules["test"].split()
    assert "setup" in rules["setup-dev"].split()
    recipe = makefile.split("\nsandbox:", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"[\w.+-]+", recipe)) >= SANDBOX_PACKAGES


def test_static_files_are_collected_into_the_image_outside_the_data_volume(final):
    env = final_stage_env()
    static_root = PurePosixPath(env["STATIC_ROOT"])
    data_dir = PurePosixPath(env["DOCE_DATA_DIR"])
    assert static_root.is_absolute() and data_dir.is_absolute()
    assert data_dir not in static_root.parents and static_root != data_dir
    assert any("manage.py collectstatic --noinput" in run for run in arguments_of(final, "RUN"))


def test_build_time_keys_are_not_kept_in_the_image(instructions):
    """collectstatic needs keys to load settings with DEBUG=false; they must stay in that
    one RUN, never in ENV or ARG (both end up in the image's metadata)."""
    for keyword, arguments in instructions:
        if keyword in {"ENV", "ARG", "LABEL"}:
            assert "SECRET_KEY" not in arguments, f"{keyword} {arguments}"
            assert "DOCE_ENCRYPTION_KEYS" not in arguments, f"{keyword} {arguments}"
    collect = next(run for kw, run in instructions if kw == "RUN" and "collectstatic" in run)
    assert "SECRET_KEY=" in collect and "DOCE_ENCRYPTION_KEYS=" in collect


def test_entrypoint_and_cmd_exist(final):
    entrypoint = exec_form(arguments_of(final, "ENTRYPOINT")[-1])
    script = repo_path(entrypoint[0])
    assert script == ENTRYPOINT
    assert script.is_file() and os.access(script, os.X_OK), f"{script} must be executable"
    cmd = exec_form(arguments_of(final, "CMD")[-1])
    assert cmd[:2] == ["uvicorn", "doce.asgi:application"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--port") + 1] == "8000"
    assert "--timeout-graceful-shutdown" in cmd
    assert arguments_of(final, "EXPOSE") == ["8000"]


def test_workdir_is_where_the_checkout_is_copied(final):
    assert arguments_of(final, "WORKDIR")[-1] == str(WORKDIR)
    assert "COPY . ." in [f"COPY {arguments}" for arguments in arguments_of(final, "COPY")]


# --- the entrypoint script ---------------------------------------------------------------
@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_entrypoint_is_valid_shell(shell):
    result = subprocess.run([shell, "-n", str(ENTRYPOINT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_entrypoint_starts_with_a_posix_shebang():
    # python:3.11-slim has /bin/sh (dash); the script must not need bash.
    assert ENTRYPOINT.read_text().splitlines()[0] == "#!/bin/sh"


def run_entrypoint(
    *args: str, data_dir: Path, path_prefix: Path | None = None, read_only: bool = False
):
    environment = {"PATH": os.environ["PATH"], "DOCE_DATA_DIR": str(data_dir)}
    if read_only:
        environment["DOCE_DATA_READ_ONLY"] = "true"
    if path_prefix:
        environment["PATH"] = f"{path_prefix}:{environment['PATH']}"
    return subprocess.run(
        [str(ENTRYPOINT), *args], env=environment, capture_output=True, text=True, timeout=30
    )


def test_entrypoint_execs_the_command(tmp_path):
    result = run_entrypoint("echo", "started", data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "started\n"
    assert (tmp_path / "data").is_dir()


def test_entrypoint_migrate_runs_manage_py_migrate(tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake_python = fake_bin / "python"
    fake_python.write_text('#!/bin/sh\necho "python $*"\n')
    fake_python.chmod(0o755)
    result = run_entrypoint("migrate", data_dir=tmp_path / "data", path_prefix=fake_bin)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "python manage.py migrate --noinput\n"


def test_entrypoint_stops_with_a_message_when_the_data_dir_is_unusable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_entrypoint("echo", "started", data_dir=blocker / "data")
    assert result.returncode == 1
    assert "DOCE_DATA_DIR" in result.stderr and "not writable" in result.stderr
    assert "started" not in result.stdout


def test_entrypoint_takes_a_readable_data_dir_when_told_it_is_read_only(tmp_path):
    """The preview service mounts the data volume read-only: readable is enough."""
    data = tmp_path / "data"
    data.mkdir()
    result = run_entrypoint("echo", "started", data_dir=data, read_only=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "started\n"


def test_entrypoint_read_only_still_wants_the_data_dir_there(tmp_path):
    result = run_entrypoint("echo", "started", data_dir=tmp_path / "missing", read_only=True)
    assert result.returncode == 1
    assert "DOCE_DATA_DIR" in result.stderr and "not readable" in result.stderr
    assert "started" not in result.stdout
    assert not (tmp_path / "missing").exists(), "a read-only service creates nothing"


def test_entrypoint_without_a_command_says_what_to_run(tmp_path):
    result = run_entrypoint(data_dir=tmp_path)
    assert result.returncode != 0
    assert "no command given" in result.stderr


# --- .dockerignore ------------------------------------------------------------------------
def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def is_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        candidates = [path] + [str(parent) for parent in PurePosixPath(path).parents][:-1]
        if any(
            fnmatch.fnmatch(candidate, pattern)
            or (
                pattern.startswith("**/") and fnmatch.fnmatch(candidate.split("/")[-1], pattern[3:])
            )
            for candidate in candidates
        ):
            ignored = not negate
    return ignored


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".venv/bin/python",
        "node_modules/opencode-ai/package.json",
        "var/doce.sqlite3",
        ".git/HEAD",
        ".pytest_cache/README.md",
        ".ruff_cache/CACHEDIR.TAG",
        "doce/__pycache__/settings.cpython-311.pyc",
    ],
)
def test_dockerignore_keeps_local_state_and_secrets_out(path):
    assert is_ignored(path, ignore_patterns())


@pytest.mark.parametrize(
    "path",
    [
        "package.json",
        "package-lock.json",
        ".npmrc",
        "pyproject.toml",
        "manage.py",
        "doce/settings.py",
        "doce/static/vendor/htmx.min.js",
        "templates/base.html",
        "docker/entrypoint.sh",
        "docker/healthcheck.py",
        "docker/preview_healthcheck.py",
    ],
)
def test_dockerignore_keeps_what_the_build_needs(path):
    assert not is_ignored(path, ignore_patterns())


def test_every_file_the_dockerfile_copies_exists(instructions):
    for arguments in arguments_of(instructions, "COPY"):
        words = [word for word in shlex.split(arguments) if not word.startswith("--")]
        if arguments.startswith("--from="):
            continue
        for source in words[:-1]:
            assert (ROOT / source).exists(), source
            assert not is_ignored(source, ignore_patterns()) or source == ".", source


# --- DOCE_RUNTIME=docker runs project servers from this image ----------------------------
def test_docker_runtime_defaults_describe_this_image(final):
    """settings' defaults for the docker runtime name the image compose builds, the
    binary inside it and the doce user's home folder."""
    defaults = settings_env_defaults()
    images = {s.get("image") for s in load_compose()["services"].values() if "build" in s}
    assert images == {defaults["DOCE_OPENCODE_IMAGE"]}
    assert defaults["DOCE_OPENCODE_IMAGE_BIN"] == final_stage_env()["DOCE_OPENCODE_BIN"]
    useradd = next(run for run in arguments_of(final, "RUN") if "useradd" in run)
    home = re.search(r"--home-dir (\S+)", useradd)[1]
    assert defaults["DOCE_OPENCODE_IMAGE_HOME"] == home
