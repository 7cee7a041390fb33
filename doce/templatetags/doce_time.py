"""``{{ moment|ago }}``: doce.timefmt.ago against the current time."""

from __future__ import annotations

from django import template
from django.utils import timezone

from doce.timefmt import ago as _ago

register = template.Library()


@register.filter
def ago(moment):
    return _ago(moment, timezone.now())
