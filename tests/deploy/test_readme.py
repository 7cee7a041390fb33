"""The README's newcomer path says what the code does: every setting in its table, the
same services CI tests against, a command that runs outside the venv."""

from __future__ import annotations

import re
import subprocess

from tests.deploy.sources import ROOT, settings_env_names

README = ROOT / "README.md"


def _table_names(text: str) -> set[str]:
    """Names in the first column of the README's settings table."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


def test_the_settings_table_lists_every_setting_doce_reads():
    missing = settings_env_names() - _table_names(README.read_text())
    assert not missing, f"README's settings table does not list {sorted(missing)}"


def test_the_table_lists_nothing_doce_does_not_read():
    extra = _table_names(README.read_text()) - settings_env_names()
    extra -= {"DOCE_HOST", "DOCE_PORT", "DOCE_WORKER_CONCURRENCY"}  # read by rundoce
    assert not extra, f"README lists settings nothing reads: {sorted(extra)}"


def test_the_production_like_test_command_sets_what_ci_sets():
    ci = (ROOT / ".ci" / "run").read_text()
    ci_leg = ci[ci.index("tests on PostgreSQL") :].split("make test")[0]
    ci_names = set(re.findall(r"\b([A-Z_]+_URL)=", ci_leg))
    readme = README.read_text()
    command = readme[readme.index("DATABASE_URL=postgres://") :].split("make test")[0]
    assert ci_names == set(re.findall(r"\b([A-Z_]+_URL)=", command))


def test_manage_py_runs_outside_the_venv(tmp_path):
    """`./manage.py` from a shell without the venv on PATH: the system Python has no
    Django, so manage.py hands itself to the venv's Python."""
    system_python = "/usr/bin/python3"
    probe = subprocess.run([system_python, "-c", "import django"], capture_output=True)
    assert probe.returncode != 0, "this check needs a system Python without Django"
    result = subprocess.run(
        [system_python, str(ROOT / "manage.py"), "version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "DOCE_ENV_FILE": "",
            "DEBUG": "true",
            "DOCE_DATA_DIR": str(tmp_path / "var"),
        },
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert re.match(r"5\.2", result.stdout), result.stdout


def test_the_node_version_the_readme_asks_for_is_the_one_make_checks():
    makefile = (ROOT / "Makefile").read_text()
    minimum = re.search(r"^NODE_MIN := (\d+)$", makefile, re.M)[1]
    assert f"Node.js {minimum} or newer" in README.read_text()
    target = makefile[makefile.index("node_modules/.installed:") :].split("\n\n")[0]
    assert "$(NODE_MIN)" in target, "make setup checks the version before npm install"


def test_make_setup_refuses_a_node_older_than_the_minimum():
    """Asking for a Node newer than any installed one must stop before npm runs."""
    result = subprocess.run(
        ["make", "-B", "-C", str(ROOT), "NODE_MIN=999", "node_modules/.installed"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "doce needs Node.js 999 or newer with npm (found: v" in result.stdout
    assert "npm install" not in result.stdout
