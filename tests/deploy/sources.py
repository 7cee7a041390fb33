"""Read the deployment files the way Docker and Compose would, without Docker.

- ``settings_env_names``: every environment variable doce/settings.py reads, found in
  its source (so the tests follow settings.py instead of a list kept by hand).
- ``interpolate``: Compose's ``${VAR}`` substitution, including ``:?`` (required) and
  ``:-`` (default), so a test can see what Compose would start with, or refuse.
- ``dockerfile_instructions`` / ``final_stage_env``: a Dockerfile split into instructions.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
HEALTHCHECK = ROOT / "docker" / "healthcheck.py"
PREVIEW_HEALTHCHECK = ROOT / "docker" / "preview_healthcheck.py"
SETTINGS = ROOT / "doce" / "settings.py"

ENV_METHODS = {
    "str",
    "bool",
    "int",
    "float",
    "list",
    "tuple",
    "dict",
    "json",
    "url",
    "db",
    "db_url",
    "cache",
    "cache_url",
    "email",
    "email_url",
    "search_url",
    "path",
    "bytes",
    "get_value",
    "parse_value",
}


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


# --- settings.py ------------------------------------------------------------------------
def _is_env_read(call: ast.Call) -> bool:
    """env.str(...), env.db(...), env(...), os.environ.get(...), os.getenv(...)."""
    func = call.func
    if isinstance(func, ast.Name):
        return func.id == "env"
    if not isinstance(func, ast.Attribute):
        return False
    owner = func.value
    if isinstance(owner, ast.Name) and owner.id == "env":
        return func.attr in ENV_METHODS
    if isinstance(owner, ast.Name) and owner.id == "os":
        return func.attr == "getenv"
    return (
        isinstance(owner, ast.Attribute)
        and owner.attr == "environ"
        and isinstance(owner.value, ast.Name)
        and owner.value.id == "os"
        and func.attr in {"get", "setdefault"}
    )


def _env_wrappers(tree: ast.Module) -> set[str]:
    """Helpers such as ``_path_setting(name, default)`` that pass their first argument
    on to an env read."""
    wrappers = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.args.args:
            first_param = node.args.args[0].arg
            for call in ast.walk(node):
                if (
                    isinstance(call, ast.Call)
                    and _is_env_read(call)
                    and call.args
                    and isinstance(call.args[0], ast.Name)
                    and call.args[0].id == first_param
                ):
                    wrappers.add(node.name)
    return wrappers


def settings_env_names(path: Path = SETTINGS) -> set[str]:
    tree = ast.parse(path.read_text())
    wrappers = _env_wrappers(tree)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            first = node.args[0]
            reads = _is_env_read(node) or (
                isinstance(node.func, ast.Name) and node.func.id in wrappers
            )
            if reads and isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            owner = ast.unparse(node.value)
            if owner in {"env", "os.environ"} and isinstance(node.slice.value, str):
                names.add(node.slice.value)
    return names


def settings_env_defaults(path: Path = SETTINGS) -> dict[str, Any]:
    """NAME -> the literal ``default=`` of ``env.<cast>("NAME", default=...)`` reads."""
    defaults = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and _is_env_read(node) and node.args:
            first = node.args[0]
            for keyword in node.keywords:
                if (
                    keyword.arg == "default"
                    and isinstance(first, ast.Constant)
                    and isinstance(keyword.value, ast.Constant)
                ):
                    defaults[first.value] = keyword.value.value
    return defaults


# --- .env files -------------------------------------------------------------------------
_ENV_LINE = re.compile(r"^\s*(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def env_file_entries(text: str) -> dict[str, tuple[str, bool]]:
    """NAME -> (value, active) for ``NAME=value`` lines, also commented-out ones."""
    entries: dict[str, tuple[str, bool]] = {}
    for line in text.splitlines():
        match = _ENV_LINE.match(line)
        if match:
            value = match["value"].strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            active = match["comment"] is None
            if active or match["name"] not in entries:
                entries[match["name"]] = (value, active)
    return entries


def env_file_values(text: str) -> dict[str, str]:
    """What Compose reads from an env file: the active ``NAME=value`` lines."""
    return {name: value for name, (value, active) in env_file_entries(text).items() if active}


# --- Compose interpolation ----------------------------------------------------------------
class InterpolationError(ValueError):
    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name


_TOKEN = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_]\w*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.S)


def _substitute(text: str, variables: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return variables.get(match["named"], "")
        braced = _BRACED.match(match["braced"])
        if braced is None:
            raise ValueError(f"invalid interpolation {match.group(0)!r}")
        name, op, arg = braced["name"], braced["op"], braced["arg"] or ""
        value = variables.get(name)
        unset_or_empty = not value if op and op.startswith(":") else value is None
        if op in (":-", "-"):
            return arg if unset_or_empty else value
        if op in (":?", "?"):
            if unset_or_empty:
                raise InterpolationError(name, arg or "required variable is missing")
            return value
        if op in (":+", "+"):
            return "" if unset_or_empty else arg
        return value or ""

    return _TOKEN.sub(replace, text)


def interpolate(node: Any, variables: dict[str, str]) -> Any:
    """The compose document as Compose would see it with ``variables`` (from .env)."""
    if isinstance(node, str):
        return _substitute(node, variables)
    if isinstance(node, list):
        return [interpolate(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, variables) for key, value in node.items()}
    return node


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's ``environment:`` as a mapping (Compose allows a list of NAME=value)."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)
    return {name: "" if value is None else str(value) for name, value in environment.items()}


# --- Dockerfile ---------------------------------------------------------------------------
def dockerfile_instructions(text: str | None = None) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text() if text is None else text
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    return instructions[starts[-1] :]


def _expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m[1] or m[2], ""), value)


def final_stage_env() -> dict[str, str]:
    """ENV of the final stage, with ${ARG} references expanded to the ARG defaults."""
    variables: dict[str, str] = {}
    for keyword, arguments in final_stage(dockerfile_instructions()):
        if keyword in {"ARG", "ENV"}:
            for word in shlex.split(arguments):
                name, _, value = word.partition("=")
                variables[name] = _expand(value, variables)
    env_names = set()
    for keyword, arguments in final_stage(dockerfile_instructions()):
        if keyword == "ENV":
            env_names |= {word.partition("=")[0] for word in shlex.split(arguments)}
    return {name: variables[name] for name in env_names}


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form ENTRYPOINT/CMD (shell form is not used here)."""
    return json.loads(arguments)
