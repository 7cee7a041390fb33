"""The Celery application: configured from Django settings (CELERY_* names)."""

import os

from celery import Celery

from doce import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "doce.settings")
broker.install()  # the embedded broker's atomic writes (see doce/broker.py)

app = Celery("doce")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
