from __future__ import annotations

import re

from django import forms

from doce.inputs import config_substitution_message, has_config_substitution, has_control_characters
from doce.opencode import ModelRef
from projects.selectors import ModelGroup, initial_model, model_choices, models_offered
from projects.usage import MAX_RANGE_DAYS, DateRange
from providers.access import access_for
from providers.catalog import FREE_PROVIDER_ID, free_models
from providers.selectors import shared_connections, usable_provider_ids

PROMPT_MAX = 20_000
MESSAGE_MAX = 20_000


# The model id is stored in a varchar(255) (Project.current_model_id); the provider id
# in a varchar(100).
MODEL_ID_MAX = 255
PROVIDER_ID_MAX = 100
_PATH_SEPARATORS = re.compile(r"[/\\]")


def model_id_problem(model_id: str) -> str | None:
    """Why ``model_id`` (the part after ``provider/``) cannot be stored or sent, or None:
    it must fit its column and have no ``..`` path segment (OpenCode's ids never do).
    ``ModelField`` has already refused whitespace and control characters."""
    if len(model_id) > MODEL_ID_MAX:
        return (
            f"The model id is {len(model_id)} characters long: at most {MODEL_ID_MAX} are allowed."
        )
    if ".." in _PATH_SEPARATORS.split(model_id):
        return "A model id cannot contain “..” as a path segment."
    if has_config_substitution(model_id):
        return config_substitution_message("A model id")
    return None


class ModelField(forms.CharField):
    """``provider/model``, where the provider is one the user has connected and the
    model one that provider offers; or one of OpenCode Zen's free models, which need no
    connection (``DOCE_FREE_MODELS``). Either way, one the user's model-access rules
    allow (``providers.access``). Whatever the picker showed, this is the check."""

    def __init__(self, *, user, **kwargs):
        self.user = user
        kwargs.setdefault("max_length", PROVIDER_ID_MAX + 1 + MODEL_ID_MAX)
        kwargs.setdefault(
            "error_messages",
            {"required": "Pick a model, or pick “Other model” and type it as provider/model."},
        )
        super().__init__(**kwargs)

    def widget_attrs(self, widget):
        attrs = super().widget_attrs(widget)
        if isinstance(widget, forms.Select):
            attrs.pop("maxlength", None)  # a select has no length
        return attrs

    def clean(self, value):
        value = super().clean(value)  # stripped: spaces around the value are dropped
        if has_control_characters(value) or any(char.isspace() for char in value):
            raise forms.ValidationError(
                "A model id has no spaces, line breaks or control characters."
            )
        try:
            ref = ModelRef.parse(value)
        except ValueError:
            raise forms.ValidationError(
                "Write the model as provider/model, e.g. openrouter/anthropic/claude-sonnet-4."
            ) from None
        problem = model_id_problem(ref.model_id) or access_for(user=self.user).problem(
            ref.provider_id, ref.model_id
        )
        if problem:
            raise forms.ValidationError(problem)
        if ref.provider_id not in usable_provider_ids(user=self.user):
            free = free_models() if ref.provider_id == FREE_PROVIDER_ID else {}
            if ref.model_id in free:
                return str(ref)
            if free:
                raise forms.ValidationError(
                    f"“{ref.model_id}” is not one of OpenCode Zen's free models: pick a free "
                    "one from the list, or connect an OpenCode Zen key in Settings › Providers."
                )
            if shared_connections().filter(provider_id=ref.provider_id).exists():
                raise forms.ValidationError(
                    f"“{ref.provider_id}” is a team key that is not shared with you: ask your "
                    "administrator for it, or connect your own key in Settings › Providers."
                )
            raise forms.ValidationError(
                f"“{ref.provider_id}” is not connected. Connect it in Settings › Providers first."
            )
        offered = models_offered(user=self.user, provider_id=ref.provider_id)
        if not offered.offers(ref.model_id):
            raise forms.ValidationError(
                f"“{ref.model_id}” is not a model of {offered.provider_name}: "
                "pick one from the list."
            )
        return str(ref)


#: The picker's value that means "the model typed into ``model_other``".
OTHER_MODEL = "other"


class ModelPicker(forms.Select):
    """A select of the models the user may pick, grouped by provider
    (``projects.selectors.model_choices``), ending with "Other model", which takes the
    text of the form's ``model_other`` field: a provider whose models doce does not know
    stays usable. A POST of ``model=provider/model`` alone works too (no select at all).
    ``doce/model_picker.js`` adds a filter box; without it this is a plain select."""

    def __init__(self, groups: list[ModelGroup], attrs=None):
        choices = [(g.label, [(o.value, o.label) for o in g.options]) for g in groups if g.options]
        choices.append((OTHER_MODEL, "Other model (type it below)"))
        super().__init__({"data-model-picker": "", **(attrs or {})}, choices=choices)
        self.offered = {o.value for g in groups for o in g.options}

    def value_from_datadict(self, data, files, name):
        value = super().value_from_datadict(data, files, name)
        if value == OTHER_MODEL:
            return data.get(f"{name}_other", "")
        return value

    def format_value(self, value):
        """A model that is not in the list (typed, or no longer offered) shows as "Other
        model", with its text in ``model_other``."""
        values = super().format_value(value)
        return [v if v in self.offered else OTHER_MODEL for v in values if v]


class ModelPickerForm(forms.Form):
    """A form with the model picker: ``model`` (the value that counts) and
    ``model_other`` (its text when "Other model" is picked)."""

    def add_model_picker(self, *, user, initial: str = "", **field_options) -> None:
        rules = access_for(user=user)
        groups = model_choices(user=user, rules=rules)
        picker = ModelPicker(groups)
        self.fields["model"] = ModelField(user=user, widget=picker, **field_options)
        unknown = [g.label for g in groups if not g.options]
        self.fields["model_other"] = forms.CharField(
            required=False,
            label="Other model",
            max_length=PROVIDER_ID_MAX + 1 + MODEL_ID_MAX,
            widget=forms.TextInput(attrs={"data-model-other": "", "placeholder": "provider/model"}),
            help_text="Used when “Other model” is picked above: provider/model"
            + (f" (models of {', '.join(unknown)})." if unknown else "."),
        )
        posted = self.data.get(self.add_prefix("model"), "") if self.is_bound else ""
        if posted not in ("", OTHER_MODEL, *picker.offered) and not self.data.get(
            self.add_prefix("model_other")
        ):  # posted as text (no picker): shown back in the text field
            self.data = self.data.copy()
            self.data[self.add_prefix("model_other")] = posted
        initial = self.initial.get("model", initial)
        if not self.is_bound and initial:
            provider_id, _, model_id = initial.partition("/")
            if rules.allows(provider_id, model_id):
                self.initial["model"] = initial
                if initial not in picker.offered:
                    self.initial["model_other"] = initial
            else:
                self.initial.pop("model", None)


class _TextField(forms.CharField):
    def clean(self, value):
        value = super().clean(value)
        if has_control_characters(value, multiline=True):
            raise forms.ValidationError("Remove the control characters from the text.")
        return value


class ProjectCreateForm(ModelPickerForm):
    prompt = _TextField(
        max_length=PROMPT_MAX,
        widget=forms.Textarea(attrs={"rows": 6, "placeholder": "A one-page site for my bakery…"}),
        help_text="Describe the website you want.",
    )
    model = forms.CharField()

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        free = " or one of OpenCode Zen's free models" if free_models() else ""
        # The default model, or the preferred provider's first, pre-selected.
        self.add_model_picker(
            user=user,
            initial="" if self.is_bound else initial_model(user=user),
            help_text=f"A model of a provider you may use{free}.",
        )


class MessageForm(forms.Form):
    text = _TextField(max_length=MESSAGE_MAX, widget=forms.Textarea(attrs={"rows": 3}))


class ModelChangeForm(ModelPickerForm):
    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_model_picker(user=user, label="Model")


class UsageRangeForm(forms.Form):
    """The usage page's range (whole days, both included; this month by default) and how
    its chart is drawn."""

    start = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Write the start date as YYYY-MM-DD, e.g. 2026-01-31."},
    )
    end = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Write the end date as YYYY-MM-DD, e.g. 2026-01-31."},
    )
    by = forms.ChoiceField(
        required=False, choices=[("provider", "provider"), ("model", "model")], label="Stack by"
    )
    metric = forms.ChoiceField(
        required=False, choices=[("tokens", "tokens"), ("cost", "cost")], label="Show"
    )

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        default = DateRange.this_month()
        start = data.get("start") or (
            default.start if not data.get("end") else data["end"].replace(day=1)
        )
        end = data.get("end") or (default.end if start <= default.end else start)
        if end < start:
            raise forms.ValidationError(
                f"The range ends ({end.isoformat()}) before it starts ({start.isoformat()}): "
                "pick an end on or after the start."
            )
        if (end - start).days + 1 > MAX_RANGE_DAYS:
            raise forms.ValidationError(
                f"The range covers {(end - start).days + 1} days: at most {MAX_RANGE_DAYS} "
                "fit on one page. Pick a shorter range."
            )
        data["span"] = DateRange(start, end)
        data["by"] = data.get("by") or "provider"
        data["metric"] = data.get("metric") or "tokens"
        return data
