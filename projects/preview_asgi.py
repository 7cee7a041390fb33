"""What uvicorn serves for the site preview (``projects.preview_server``): rundoce starts
it on DOCE_PREVIEW_PORT; in production it runs as a service of its own behind
DOCE_PREVIEW_ORIGIN (docs/preview.md)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "doce.settings")
django.setup()

from projects.preview_server import PreviewApp  # noqa: E402 (needs the apps loaded)

application = PreviewApp()
