"""Forms of the provider settings pages. Secrets are never rendered back into a page
(``PasswordInput(render_value=False)``) and every error message is about the input, not
its value."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.forms.boundfield import BoundField
from django.views.decorators.debug import sensitive_variables

from doce.endpoints import endpoint_problem
from doce.inputs import (
    config_substitution_message,
    has_config_substitution,
    has_control_characters,
    refuse_config_substitution,
)
from providers import services, validation
from providers.catalog import AuthMethod, Prompt, catalog_ids
from providers.models import PROVIDER_ID_RE, ProviderConnection
from providers.options import (
    HEADERS,
    OptionField,
    OptionSet,
    clean_options,
    endpoint_options_changed,
    option_set,
)
from providers.origins import origin_changed
from providers.selectors import connection_for

MAX_KEY_BYTES = 4096
MAX_MODELS = validation.MAX_MODELS
MAX_MODEL_ID = validation.MAX_MODEL_ID
# The model list's text: MAX_MODELS ids of MAX_MODEL_ID characters, one per (CRLF) line.
MAX_MODELS_TEXT = MAX_MODELS * (MAX_MODEL_ID + 2)
# Paths of the settings pages that a provider id must not shadow.
RESERVED_IDS = frozenset({"add", "custom", "oauth", "legacy", "new", "preferences"})
# Form field names a prompt key may not take.
_RESERVED_FIELDS = frozenset({"api_key", "csrfmiddlewaretoken", "method", "code", "q"})
_PROVIDER_ID = re.compile(PROVIDER_ID_RE)
# Beside the base URL of an endpoint being edited (providers.origins).
MOVED_ENDPOINT_HELP = (
    "Changing its scheme, host or port forgets the stored key and header values: type them "
    "again in this form to keep sending them."
)
MOVED_OPTION_KEY = "enter the key again (a stored key is not sent to a new address)."
MOVED_ENDPOINT_SAVED = (
    "the base URL points to another address now, so a stored key or header value that was "
    "not typed again is forgotten (the audit log records the move)."
)
MOVED_ENDPOINT_HEADERS = (
    "The base URL's scheme, host or port changed: stored header values are not sent to a "
    "new address. Type each value again."
)


class SecretField(forms.CharField):
    """An API key: one line of printable ASCII characters, at most 4 KB, never shown back
    (an HTTP header takes nothing else)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("label", "API key")
        kwargs.setdefault(
            "widget",
            forms.PasswordInput(
                render_value=False,
                attrs={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off"},
            ),
        )
        kwargs.setdefault("error_messages", {"required": "Enter the API key."})
        super().__init__(strip=False, **kwargs)
        # Django's null-character validator would say less than validate() below.
        self.validators = []

    @sensitive_variables()
    def validate(self, value):
        super().validate(value)
        if value in self.empty_values:
            return
        if not value.strip():
            raise ValidationError(
                "The key is only spaces: paste the key itself.", code="whitespace"
            )
        if len(value.strip().encode()) > MAX_KEY_BYTES:
            raise ValidationError(
                "That is too long for an API key (over 4 KB): paste only the key.",
                code="too_long",
            )
        if has_control_characters(value.strip()):
            raise ValidationError(
                "The key contains control characters (a line break, a tab or an invisible "
                "character): paste it again, on one line.",
                code="control",
            )
        if any(char.isspace() for char in value.strip()):
            raise ValidationError(
                "The key contains spaces: paste it again without them.", code="spaces"
            )
        refuse_config_substitution(value, what="A key")
        if not value.isascii():
            raise ValidationError(f"{validation.NOT_ASCII_MESSAGE}.", code="not_ascii")

    @sensitive_variables()
    def clean(self, value):
        value = super().clean(value)
        return value.strip() if value else value


def prompt_field_name(prompt: Prompt) -> str:
    return f"prompt_{prompt.key}" if prompt.key in _RESERVED_FIELDS else prompt.key


def _prompt_field(prompt: Prompt) -> forms.Field:
    if prompt.type == "select":
        return forms.ChoiceField(
            label=prompt.message,
            choices=[("", "—"), *prompt.options],
            required=False,
            initial=prompt.options[0][0] if prompt.options else "",
        )
    return forms.CharField(
        label=prompt.message,
        required=False,
        max_length=500,
        widget=forms.TextInput(attrs={"placeholder": prompt.placeholder}),
    )


class _ConditionalPromptField(BoundField):
    """A prompt with a ``when`` on another of the form's prompts (GitHub Copilot's
    Enterprise URL, for "GitHub Enterprise"): its row is hidden (``prompt-inactive``)
    while the form's values say it does not apply. Without a script it shows once the
    form comes back from a submit with the value that needs it; app.js shows it at once."""

    def css_classes(self, extra_classes=None) -> str:
        classes = super().css_classes(extra_classes)
        if self.name in self.form.inactive_prompts:
            classes = f"{classes} prompt-inactive".strip()
        return classes


class PromptsMixin:
    """One field per prompt input of an auth method; ``self.metadata`` holds the values
    of the prompts that apply (a prompt with a ``when`` may not, and is shown only when it
    does: ``_ConditionalPromptField``)."""

    prompts: tuple[Prompt, ...] = ()
    inactive_prompts: frozenset[str] = frozenset()

    def add_prompt_fields(self, prompts: Iterable[Prompt]) -> None:
        self.prompts = tuple(prompts)
        by_key = {prompt.key: prompt for prompt in self.prompts}
        for prompt in self.prompts:
            field = _prompt_field(prompt)
            other = by_key.get((prompt.when or {}).get("key", ""))
            if other is not None:
                field.bound_field_class = _ConditionalPromptField
                field.widget.attrs.update(
                    {
                        "data-when-field": prompt_field_name(other),
                        "data-when-op": prompt.when.get("op") or "eq",
                        "data-when-value": prompt.when.get("value", ""),
                    }
                )
            self.fields[prompt_field_name(prompt)] = field
        values = self._shown_prompt_values()
        self.inactive_prompts = frozenset(
            prompt_field_name(prompt)
            for prompt in self.prompts
            if prompt.when and prompt.when.get("key") in by_key and not prompt.applies(values)
        )
        self.metadata: dict[str, str] = {}

    def _shown_prompt_values(self) -> dict[str, str]:
        """The prompts' values as the page shows them: submitted, else the initial ones."""
        values = {}
        for prompt in self.prompts:
            name = prompt_field_name(prompt)
            if self.is_bound:
                values[prompt.key] = (self.data.get(name) or "").strip()
            else:
                values[prompt.key] = self.initial.get(name, self.fields[name].initial) or ""
        return values

    def _needed_because(self, prompt: Prompt) -> str:
        """Why an empty prompt that applies is needed: the choice that made it apply."""
        other = next((p for p in self.prompts if p.key == (prompt.when or {}).get("key")), None)
        if other is None or prompt.when.get("op") == "neq":
            return "This is needed to connect."
        value = prompt.when.get("value", "")
        return f"This is needed to connect with “{dict(other.options).get(value, value)}”."

    @sensitive_variables()  # ``cleaned`` holds the API key
    def clean_prompts(self, cleaned: dict) -> None:
        values = {p.key: (cleaned.get(prompt_field_name(p)) or "").strip() for p in self.prompts}
        for prompt in self.prompts:
            name = prompt_field_name(prompt)
            value = values[prompt.key]
            if not prompt.applies(values):
                continue
            if not value:
                if "(optional)" not in prompt.message.lower():
                    self.add_error(name, self._needed_because(prompt))
                continue
            if has_control_characters(value):
                self.add_error(name, "Remove the control characters.")
                continue
            if has_config_substitution(value):
                self.add_error(name, config_substitution_message("This value"))
                continue
            self.metadata[prompt.key] = value


def _option_field(field: OptionField, *, stored: bool) -> forms.Field:
    attrs = {"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off"}
    if field.placeholder:
        attrs["placeholder"] = field.placeholder
    if field.multiline:  # never filled with a stored secret (see OptionsMixin)
        widget: forms.Widget = forms.Textarea(attrs={**attrs, "rows": 6})
    elif field.secret:
        widget = forms.PasswordInput(render_value=False, attrs=attrs)
    else:
        widget = forms.TextInput(attrs=attrs)
    help_text = field.help
    if field.secret and stored and field.key != HEADERS:
        help_text = f"{help_text} A value is stored: leave empty to keep it.".strip()
    # Lengths, characters and rules are checked by providers.options, which says more.
    return forms.CharField(
        label=field.label, required=False, strip=False, help_text=help_text, widget=widget
    )


class OptionsMixin:
    """The option fields of a provider (``providers.options``): after ``clean``,
    ``self.options`` and ``self.secret_options`` hold what to store (None: the provider
    has none). Secrets are never shown back: an empty secret field keeps the stored one."""

    option_set: OptionSet | None = None
    options: dict | None = None
    secret_options: dict | None = None

    def add_option_fields(
        self, entry: OptionSet | None, connection: ProviderConnection | None
    ) -> None:
        self.option_set = entry
        self.stored_options = dict(connection.options or {}) if connection else {}
        self.stored_secrets = connection.secret_option_values if connection else {}
        if entry is None:
            return
        for field in entry.fields:
            stored = field.key in (self.stored_secrets if field.secret else self.stored_options)
            self.fields[field.key] = _option_field(field, stored=stored)
            if not field.secret and not self.initial.get(field.key):
                self.initial[field.key] = self.stored_options.get(field.key, "")
            elif field.key == HEADERS and self.stored_secrets.get(HEADERS):
                # The names only: "Name:" keeps a stored value (providers.options).
                names = self.stored_secrets[HEADERS]
                self.initial.setdefault(field.key, "".join(f"{name}:\n" for name in names))

    @sensitive_variables()
    def clean_option_fields(self, cleaned: dict, *, has_api_key: bool) -> None:
        if self.option_set is None:
            return
        values = {field.key: cleaned.get(field.key) or "" for field in self.option_set.fields}
        try:
            self.options, self.secret_options = clean_options(
                self.option_set,
                values,
                stored_options=self.stored_options,
                stored_secrets=self.stored_secrets,
                has_api_key=has_api_key,
            )
        except ValidationError as error:
            for key, problems in error.message_dict.items():
                self.add_error(key if key in self.fields else None, problems)


class ApiKeyForm(PromptsMixin, OptionsMixin, forms.Form):
    """An API key, the prompt inputs of the method, and the provider's options. For a
    provider with options, ``connection`` given: an empty key keeps the stored one."""

    api_key = SecretField()

    def __init__(
        self,
        *args,
        method: AuthMethod | None = None,
        options: OptionSet | None = None,
        connection: ProviderConnection | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        prompts = method.prompts if method else ()
        if options is not None:  # the known table's field replaces a prompt of that key
            prompts = tuple(p for p in prompts if options.field(p.key) is None)
        self.add_prompt_fields(prompts)
        self.add_option_fields(options, connection)
        self.has_stored_key = bool(
            options is not None
            and connection is not None
            and connection.auth_type == ProviderConnection.AuthType.API
            and connection.api_key
            and not connection.undecryptable_fields()
        )
        if options is not None and options.api_key == "none":
            del self.fields["api_key"]
        elif self.has_stored_key:
            self.fields["api_key"].required = False
            self.fields["api_key"].help_text = "A key is stored: leave empty to keep it."
        elif options is not None and options.api_key == "optional":
            self.fields["api_key"].required = False

    @sensitive_variables()
    def clean(self):
        cleaned = super().clean()
        self.clean_prompts(cleaned)
        typed = {key: str(cleaned.get(key) or "").strip() for key in self.stored_options}
        moved = endpoint_options_changed(self.option_set, self.stored_options, typed)
        if moved:  # a stored secret is not sent to the new address unless typed again
            self.stored_secrets = {}
            if self.has_stored_key and "api_key" in self.fields and not cleaned.get("api_key"):
                labels = ", ".join(self.fields[key].label for key in moved)
                self.add_error("api_key", f"{labels} changed: {MOVED_OPTION_KEY}")
            self.has_stored_key = False
        has_key = bool(cleaned.get("api_key")) or self.has_stored_key
        self.clean_option_fields(cleaned, has_api_key=has_key)
        return cleaned


class OAuthStartForm(PromptsMixin, forms.Form):
    method = forms.TypedChoiceField(coerce=int, widget=forms.HiddenInput)

    def __init__(self, *args, method: AuthMethod, methods: Iterable[AuthMethod], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["method"].choices = [(m.index, m.label) for m in methods]
        self.fields["method"].initial = method.index
        self.auth_method = method
        self.add_prompt_fields(method.prompts)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("method") is not None and cleaned["method"] != self.auth_method.index:
            raise ValidationError("Choose the sign-in method again.")
        self.clean_prompts(cleaned)
        return cleaned


def parse_models(text: str, *, limit: int | None = None) -> list[str]:
    """The model ids of a textarea, one per line: trimmed, without blanks and repeats, in
    their order; at most ``limit`` (reading stops there). Linear in the text."""
    models: dict[str, None] = {}  # an ordered set
    for line in (text or "").splitlines():
        model = line.strip()
        if model:
            models.setdefault(model)
            if limit is not None and len(models) >= limit:
                break
    return list(models)


def _netloc(url: str) -> str:
    try:
        return urlsplit(url).netloc
    except ValueError:  # e.g. an unclosed "[": URLValidator says what is wrong
        return ""


#: A price per million tokens above this is a typo, not a model.
MAX_PRICE = 100_000


class CustomProviderForm(OptionsMixin, forms.Form):
    """An OpenAI-compatible endpoint (Ollama, vLLM, LM Studio, a company gateway), with
    extra headers (``providers.options.CUSTOM_HEADERS``). ``connection`` given: editing
    it (the id is fixed; an empty key keeps the key)."""

    provider_id = forms.CharField(
        label="Provider id",
        max_length=100,
        help_text="Lower-case letters, digits, '.', '_' or '-'; used in model names "
        "(provider/model).",
        widget=forms.TextInput(attrs={"placeholder": "my-ollama", "autocapitalize": "off"}),
    )
    name = forms.CharField(
        label="Display name",
        max_length=100,
        widget=forms.TextInput(attrs={"placeholder": "Ollama"}),
    )
    base_url = forms.CharField(
        label="Base URL",
        max_length=500,
        help_text="The OpenAI-compatible API root, e.g. http://localhost:11434/v1.",
        widget=forms.URLInput(attrs={"placeholder": "http://localhost:11434/v1"}),
    )
    models = forms.CharField(
        label="Model ids",
        required=False,
        help_text=f"One per line, as the endpoint names them (at most {MAX_MODELS}). Leave "
        "empty to take the list the endpoint gives at /models.",
        max_length=MAX_MODELS_TEXT,
        error_messages={
            "max_length": f"That is too long for a list of model ids: at most {MAX_MODELS} "
            f"ids of at most {MAX_MODEL_ID} characters, one per line.",
        },
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "llama3.1:8b"}),
    )
    price_input = forms.DecimalField(
        label="Input price",
        required=False,
        min_value=0,
        max_value=MAX_PRICE,
        decimal_places=4,
        help_text="Optional: US dollars per million input tokens. Without a price, usage "
        "counts this endpoint's tokens and shows “no price”.",
    )
    price_output = forms.DecimalField(
        label="Output price",
        required=False,
        min_value=0,
        max_value=MAX_PRICE,
        decimal_places=4,
        help_text="Optional: US dollars per million output tokens.",
    )
    api_key = SecretField(
        required=False, help_text="Optional: only if the endpoint asks for a key."
    )

    def __init__(self, *args, user, connection: ProviderConnection | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.connection = connection
        # The same endpoint, saved a moment ago by this form (a double submit).
        self.duplicate_of: ProviderConnection | None = None
        # The base URL moved to another scheme, host or port (after ``clean``): the stored
        # key and header values stay behind unless typed again here.
        self.endpoint_moved = False
        if connection is not None:
            self.fields["provider_id"].disabled = True
            self.fields["provider_id"].initial = connection.provider_id
            self.fields["api_key"].help_text = (
                "Leave empty to keep the stored key (not when the base URL's scheme, host or "
                "port changes)."
            )
            self.fields["base_url"].help_text += f" {MOVED_ENDPOINT_HELP}"
        self.add_option_fields(option_set("", custom=True), connection)

    @property
    def prices(self) -> dict[str, str]:
        """The price to store (US dollars per million tokens), after ``is_valid()``: both
        or neither (an empty one counts as 0 when the other is given)."""
        given = {kind: self.cleaned_data.get(f"price_{kind}") for kind in ("input", "output")}
        if all(value is None for value in given.values()):
            return {}
        return {kind: str(value if value is not None else 0) for kind, value in given.items()}

    @property
    def headers(self) -> dict[str, str]:
        """The headers to store, after ``is_valid()``."""
        return dict((self.secret_options or {}).get(HEADERS) or {})

    def clean_provider_id(self):
        provider_id = self.cleaned_data["provider_id"].strip()
        if self.connection is not None:
            return self.connection.provider_id
        if not _PROVIDER_ID.match(provider_id):
            raise ValidationError(
                "Use lower-case letters, digits, '.', '_' or '-', starting with a letter or "
                "a digit (e.g. my-ollama)."
            )
        if provider_id in RESERVED_IDS:
            raise ValidationError("That id is reserved: choose another one.")
        if provider_id in catalog_ids():
            raise ValidationError(
                f"“{provider_id}” is a provider OpenCode already knows: connect it from the "
                "list of providers, or choose another id."
            )
        return provider_id

    def clean_base_url(self):
        base_url = self.cleaned_data["base_url"].strip()
        refuse_config_substitution(base_url, what="A base URL")
        if "@" in _netloc(base_url):
            # It would be stored and shown in plain text, and sent to every project.
            raise ValidationError(
                "Remove the user name and password from the URL: put the key in the API key "
                "field (it is stored encrypted)."
            )
        try:
            URLValidator(schemes=["http", "https"])(base_url)
        except ValidationError:
            raise ValidationError(
                "Enter an http:// or https:// URL, e.g. http://localhost:11434/v1."
            ) from None
        problem = endpoint_problem(base_url, trusted=self.user.is_staff)
        if problem:
            raise ValidationError(problem)
        return base_url.rstrip("/")

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not name or has_control_characters(name):
            raise ValidationError("Enter a name without control characters.")
        if has_config_substitution(name):
            raise ValidationError(config_substitution_message("A name"))
        return name

    def clean_models(self):
        models = parse_models(self.cleaned_data["models"], limit=MAX_MODELS + 1)
        if len(models) > MAX_MODELS:
            raise ValidationError(f"At most {MAX_MODELS} models: remove some.")
        for model in models:
            if len(model) > MAX_MODEL_ID:
                raise ValidationError(
                    f"A model id is at most {MAX_MODEL_ID} characters: “{model[:40]}…” is longer."
                )
            if (
                any(char.isspace() for char in model)
                or has_control_characters(model)
                or has_config_substitution(model)
            ):
                raise ValidationError(
                    f"A model id is one word of at most {MAX_MODEL_ID} characters: "
                    f"“{model[:40]}” is not."
                )
        return models

    @sensitive_variables()
    def clean(self):
        cleaned = super().clean()
        base_url = cleaned.get("base_url")
        if self.connection is not None and base_url:
            self.endpoint_moved = origin_changed(self.connection.base_url, base_url)
        if self.endpoint_moved:
            self.stored_secrets = {}  # "Name:" alone keeps nothing for a new address
        self.clean_option_fields(cleaned, has_api_key=True)
        if self.endpoint_moved and HEADERS in self.errors:
            self.add_error(HEADERS, MOVED_ENDPOINT_HEADERS)
        provider_id = cleaned.get("provider_id")
        if self.connection is None and provider_id:
            existing = connection_for(user=self.user, provider_id=provider_id)
            if existing is not None:
                if services.endpoint_resubmitted(
                    existing,
                    name=cleaned.get("name"),
                    base_url=cleaned.get("base_url"),
                    models=cleaned.get("models"),
                    api_key=cleaned.get("api_key") or "",
                ):
                    self.duplicate_of = existing  # a double submit: it is saved already
                else:
                    self.add_error(
                        "provider_id", f"You already have a provider called “{provider_id}”."
                    )
        return cleaned


class PreferencesForm(forms.Form):
    preferred_provider_id = forms.ChoiceField(label="Preferred provider", required=False)
    default_model = forms.ChoiceField(
        label="Default model",
        required=False,
        help_text="Offered first when you create a project.",
    )

    def __init__(self, *args, providers: list[tuple[str, str]], models: list, **kwargs):
        """``providers``: [(id, name)] of connected providers; ``models``: grouped choices
        [(provider name, [("provider/model", model name)])]."""
        super().__init__(*args, **kwargs)
        self.fields["preferred_provider_id"].choices = [("", "No preference"), *providers]
        self.fields["default_model"].choices = [("", "No default"), *models]

    def clean(self):
        cleaned = super().clean()
        model = cleaned.get("default_model") or ""
        provider = cleaned.get("preferred_provider_id") or ""
        if model and not provider:
            cleaned["preferred_provider_id"] = model.split("/", 1)[0]
        return cleaned
