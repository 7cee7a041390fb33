"""The team page (staff only; anyone else gets a 404), its actions, the invitation accept
page (no login) and the password change that clears a temporary password."""

from __future__ import annotations

import secrets
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from doce.setup import NewAccountForm
from doce.team import selectors, services
from doce.team.forms import (
    GroupCreateForm,
    GroupsForm,
    InviteForm,
    SwitchForm,
    TemporaryPasswordForm,
)
from doce.team.models import Invitation

_SUBMISSIONS = "doce_team_submissions"
_NEW_LINK = "doce_team_new_link"
ALREADY_SENT = "This form was already sent (a double click?): nothing was done twice."


def staff_required(view):
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_staff:
            raise Http404("No such page.")
        return view(request, *args, **kwargs)

    return wrapped


def _issue_submission(request) -> str:
    """A one-time id for a form that creates something: a second POST with it is a double
    submit and is refused rather than creating a second user or link."""
    token = secrets.token_urlsafe(16)
    request.session[_SUBMISSIONS] = [*request.session.get(_SUBMISSIONS, [])[-19:], token]
    return token


def _spend_submission(request, token: str) -> bool:
    issued = request.session.get(_SUBMISSIONS, [])
    if token not in issued:
        return False
    request.session[_SUBMISSIONS] = [t for t in issued if t != token]
    return True


def _page(request, *, invite_form=None, password_form=None, status=200):
    context = {
        "members": selectors.members(),
        "groups": selectors.groups(),
        "invitations": selectors.pending_invitations(),
        "invite_form": invite_form
        or InviteForm(initial={"submission": _issue_submission(request)}),
        "password_form": password_form
        or TemporaryPasswordForm(initial={"submission": _issue_submission(request)}),
        "group_form": GroupCreateForm(),
        "new_link": request.session.pop(_NEW_LINK, None),
        "email_note": _email_note(),
    }
    return render(request, "team/team.html", context, status=status)


def _email_note() -> str:
    if "console" in settings.EMAIL_BACKEND or "locmem" in settings.EMAIL_BACKEND:
        return (
            "With an email address the link is also mailed; this server prints mail to its "
            "output (set EMAIL_URL to send it)."
        )
    return "With an email address the link is also mailed."


@staff_required
def team(request):
    return _page(request)


def _refresh_submission(form, request) -> None:
    form.data = form.data.copy()
    form.data["submission"] = _issue_submission(request)


@staff_required
@require_POST
def invite(request):
    form = InviteForm(request.POST)
    if form.is_valid() and not _spend_submission(request, form.cleaned_data["submission"]):
        form.add_error(None, ALREADY_SENT)
    if not form.is_valid():
        _refresh_submission(form, request)
        return _page(request, invite_form=form, status=400)
    new = services.invitation_create(
        created_by=request.user, email=form.cleaned_data["email"], days=form.cleaned_data["days"]
    )
    link = request.build_absolute_uri(reverse("team:accept", args=[new.token]))
    request.session[_NEW_LINK] = link
    if new.invitation.email:
        services.invitation_send(
            invitation=new.invitation, link=link, site=request.build_absolute_uri("/")
        )
        messages.success(request, f"Invitation made and mailed to {new.invitation.email}.")
    else:
        messages.success(request, "Invitation made.")
    return redirect("team:team")


@staff_required
@require_POST
@sensitive_post_parameters("password")
def add_user(request):
    form = TemporaryPasswordForm(request.POST)
    if form.is_valid() and not _spend_submission(request, form.cleaned_data["submission"]):
        form.add_error(None, ALREADY_SENT)
    if form.is_valid():
        try:
            user = services.user_create_with_temporary_password(
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password"],
            )
        except services.TeamError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(
                request,
                f"Added {user.get_username()}: they choose their own password at first login.",
            )
            return redirect("team:team")
    _refresh_submission(form, request)
    return _page(request, password_form=form, status=400)


def _switch(request, user_id: int, change, done: str):
    user = get_object_or_404(get_user_model(), pk=user_id)
    form = SwitchForm(request.POST)
    if not form.is_valid():
        messages.error(request, "That change was not understood; nothing was changed.")
        return redirect("team:team")
    try:
        change(actor=request.user, user=user, value=form.cleaned_data["value"])
    except services.TeamError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done.format(user=user.get_username()))
    return redirect("team:team")


@staff_required
@require_POST
def user_active(request, user_id: int):
    return _switch(
        request,
        user_id,
        lambda *, actor, user, value: services.user_set_active(
            actor=actor, user=user, active=value
        ),
        "Saved: {user} is " + ("active." if request.POST.get("value") == "1" else "deactivated."),
    )


@staff_required
@require_POST
def user_staff(request, user_id: int):
    return _switch(
        request,
        user_id,
        lambda *, actor, user, value: services.user_set_staff(actor=actor, user=user, staff=value),
        "Saved: {user} is " + ("staff." if request.POST.get("value") == "1" else "not staff."),
    )


@staff_required
@require_POST
def user_groups(request, user_id: int):
    user = get_object_or_404(get_user_model(), pk=user_id)
    form = GroupsForm(request.POST)
    if form.is_valid():
        services.user_set_groups(user=user, groups=form.cleaned_data["groups"])
        messages.success(request, f"Saved {user.get_username()}'s groups.")
    else:
        messages.error(request, "A group in that list does not exist (any more); nothing changed.")
    return redirect("team:team")


@staff_required
@require_POST
def group_create(request):
    form = GroupCreateForm(request.POST)
    if form.is_valid():
        try:
            group = services.group_create(name=form.cleaned_data["name"])
        except services.TeamError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Created the group “{group.name}”.")
    else:
        messages.error(request, "A group needs a name of at most 150 characters.")
    return redirect("team:team")


@staff_required
@require_POST
def invitation_revoke(request, invitation_id: int):
    invitation = get_object_or_404(Invitation, pk=invitation_id)
    if services.invitation_revoke(invitation=invitation):
        messages.success(request, "Invitation withdrawn: its link no longer works.")
    else:
        messages.error(request, "That invitation was already used or withdrawn.")
    return redirect("team:team")


@staff_required
@require_POST
def onboarding_dismiss(request):
    services.onboarding_dismiss(user=request.user)
    return redirect("home")


@login_not_required
@sensitive_post_parameters("password1", "password2")
def accept(request, token: str):
    try:
        invitation = services.invitation_for_token(token)
    except services.InvitationUnusable as exc:
        return _unusable(request, exc)
    form = NewAccountForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.invitation_accept(
                token=token,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
            )
        except services.InvitationUnusable as exc:
            return _unusable(request, exc)
        except services.TeamError as exc:
            form.add_error("username", str(exc))
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, f"Welcome, {user.get_username()}!")
            return redirect("home")
    return render(request, "team/accept.html", {"form": form, "invitation": invitation})


def _unusable(request, exc: services.InvitationUnusable):
    return render(
        request,
        "team/invitation_unusable.html",
        {"reason": str(exc), "state": exc.state},
        status=410,
    )


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's, which also ends a temporary password's hold on the session."""

    def form_valid(self, form):
        response = super().form_valid(form)
        services.password_changed(user=form.user)
        self.request.session.pop(services.SESSION_FLAG, None)
        return response

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["temporary"] = bool(self.request.session.get(services.SESSION_FLAG))
        return context
