from __future__ import annotations

from django import forms

from doce.inputs import has_control_characters
from doce.opencode import ModelRef
from providers.selectors import usable_provider_ids

PROMPT_MAX = 20_000
MESSAGE_MAX = 20_000


class ModelField(forms.CharField):
    """``provider/model``, where the provider is one the user has connected."""

    def __init__(self, *, user, **kwargs):
        self.user = user
        kwargs.setdefault("max_length", 300)
        super().__init__(**kwargs)

    def clean(self, value):
        value = super().clean(value).strip()
        try:
            ref = ModelRef.parse(value)
        except ValueError:
            raise forms.ValidationError(
                "Write the model as provider/model, e.g. openrouter/anthropic/claude-sonnet-4."
            ) from None
        if ref.provider_id not in usable_provider_ids(user=self.user):
            raise forms.ValidationError(
                f"“{ref.provider_id}” is not connected. Connect it in Settings › Providers first."
            )
        return str(ref)


class _TextField(forms.CharField):
    def clean(self, value):
        value = super().clean(value)
        if has_control_characters(value, multiline=True):
            raise forms.ValidationError("Remove the control characters from the text.")
        return value


class ProjectCreateForm(forms.Form):
    prompt = _TextField(
        max_length=PROMPT_MAX,
        widget=forms.Textarea(attrs={"rows": 6, "placeholder": "A one-page site for my bakery…"}),
        help_text="Describe the website you want.",
    )
    model = forms.CharField()

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"] = ModelField(
            user=user, help_text="provider/model, from a provider you connected."
        )
        self.fields["model"].widget.attrs["list"] = "model-suggestions"


class MessageForm(forms.Form):
    text = _TextField(max_length=MESSAGE_MAX, widget=forms.Textarea(attrs={"rows": 3}))


class ModelChangeForm(forms.Form):
    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"] = ModelField(user=user)
