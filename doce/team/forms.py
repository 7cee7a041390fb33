"""The team page's forms: each parses one action's input."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group

from doce.team.services import INVITATION_DAYS


class InviteForm(forms.Form):
    email = forms.EmailField(
        required=False,
        help_text="Optional: the link is also mailed to this address.",
    )
    days = forms.IntegerField(
        label="Valid for (days)", min_value=1, max_value=30, initial=INVITATION_DAYS
    )
    submission = forms.CharField(widget=forms.HiddenInput)


class TemporaryPasswordForm(forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    password = forms.CharField(
        label="Temporary password",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Tell it to the user; they must choose their own at first login.",
    )
    submission = forms.CharField(widget=forms.HiddenInput)

    def clean_username(self) -> str:
        username = self.cleaned_data["username"].strip()
        field = get_user_model()._meta.get_field("username")
        for validator in field.validators:
            validator(username)
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise forms.ValidationError(f"A user named “{username}” already exists.")
        return username

    def clean(self):
        cleaned = super().clean()
        password = cleaned.get("password")
        if password and cleaned.get("username"):
            user = get_user_model()(username=cleaned["username"], email=cleaned.get("email", ""))
            try:
                password_validation.validate_password(password, user)
            except forms.ValidationError as exc:
                self.add_error("password", exc)
        return cleaned


class SwitchForm(forms.Form):
    """An explicit target value, so a double submit sets the same thing twice."""

    value = forms.TypedChoiceField(choices=[("1", "on"), ("0", "off")], coerce=lambda v: v == "1")


class GroupsForm(forms.Form):
    groups = forms.ModelMultipleChoiceField(queryset=Group.objects.all(), required=False)


class GroupCreateForm(forms.Form):
    name = forms.CharField(max_length=150)
