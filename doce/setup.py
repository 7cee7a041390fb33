"""First-run setup: create the first admin account while no account exists."""

from __future__ import annotations

from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import UserCreationForm
from django.db import connection, transaction
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters


class SetupAlreadyDone(Exception):
    pass


class NewAccountForm(UserCreationForm):
    """A user name and a password, twice: the first admin's, and an invitee's
    (doce.team)."""

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Django 5.1+ adds an optional "usable password" switch; a new account needs one.
        self.fields.pop("usable_password", None)
        self.fields["username"].widget.attrs.update({"autofocus": True})


def first_admin_create(*, username: str, password: str):
    """Create the first superuser, or raise SetupAlreadyDone if any account exists.

    Two concurrent submissions must not both succeed: PostgreSQL takes a table lock,
    SQLite runs with BEGIN IMMEDIATE (see settings), which serialises writers.
    """
    user_model = get_user_model()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                table = connection.ops.quote_name(user_model._meta.db_table)
                cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        if user_model.objects.exists():
            raise SetupAlreadyDone
        return user_model.objects.create_superuser(username=username, password=password)


@login_not_required
@sensitive_post_parameters("password1", "password2")
def setup_view(request):
    if get_user_model().objects.exists():
        raise Http404("Setup is already complete.")
    form = NewAccountForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            user = first_admin_create(
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
            )
        except SetupAlreadyDone:
            raise Http404("Setup is already complete.") from None
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("home")
    return render(request, "setup.html", {"form": form})
