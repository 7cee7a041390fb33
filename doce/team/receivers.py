"""At login, remember in the session whether the user must change a temporary password,
so the middleware asks the session, not the database, on every request."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from doce.team.services import SESSION_FLAG, password_change_required


@receiver(user_logged_in, dispatch_uid="doce.team.password_change_required")
def _remember_password_change(sender, request, user, **kwargs) -> None:
    if request is None or not hasattr(request, "session"):
        return
    if password_change_required(user=user):
        request.session[SESSION_FLAG] = True
    else:
        request.session.pop(SESSION_FLAG, None)
