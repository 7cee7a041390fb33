#!/usr/bin/env python
"""Django's command-line utility for doce."""

import os
import sys
from pathlib import Path

VENV_PYTHON = Path(__file__).resolve().with_name(".venv") / "bin" / "python"


def _use_the_venv() -> None:
    """Started by a Python without Django (``./manage.py`` from a shell where the venv is
    not active): go on in the venv's Python that ``make setup`` made."""
    try:
        import django  # noqa: F401  (only asks whether Django is importable here)
    except ImportError:
        if VENV_PYTHON.exists() and not os.environ.get("DOCE_MANAGE_REEXEC"):
            os.environ["DOCE_MANAGE_REEXEC"] = "1"
            os.execv(VENV_PYTHON, [str(VENV_PYTHON), __file__, *sys.argv[1:]])  # noqa: S606
        sys.exit("doce: Django is not installed for this Python: run `make setup` first.")


def main() -> None:
    _use_the_venv()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "doce.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A configuration mistake deserves one clear line, not a stack trace.
        sys.stderr.write(f"doce: configuration error: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
