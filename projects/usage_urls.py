"""``/usage/`` (included by doce/urls.py): the usage page lives outside ``/projects/``."""

from django.urls import path

from projects import usage_views

urlpatterns = [
    path("", usage_views.usage_page, name="usage"),
]
