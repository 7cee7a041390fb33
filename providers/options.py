"""Provider options: what a connection holds beyond its key, for the providers that need
more (docs/providers.md).

A small known table (Azure, Amazon Bedrock, Google Vertex) and a custom endpoint's extra
HTTP headers. Each field is non-secret (kept in ``ProviderConnection.options`` and
written as it is into opencode.json) or secret (kept encrypted in ``secret_options``).
Every value is checked by a strict rule here, by the forms and again by the services
before anything is saved. ``providers.credentials.opencode_provider_config`` turns the
stored values into what OpenCode reads.

No imports from the rest of the app (only ``doce.inputs``' shared rules): the model uses
``credential_in_options``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from doce.inputs import config_substitution_message, has_config_substitution

#: The AWS profile doce writes a user's access keys under, in the server's own home.
AWS_PROFILE = "doce"
MAX_HEADERS = 20
MAX_HEADER_NAME = 64
MAX_HEADER_VALUE = 2048
MAX_SERVICE_ACCOUNT_BYTES = 64 * 1024
HEADERS = "headers"
# Headers the HTTP client sets itself: a second value would break the request.
RESERVED_HEADERS = frozenset(
    {"host", "content-length", "content-type", "transfer-encoding", "connection"}
)
# RFC 7230 token characters ("tchar").
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ONE_LINE_PRINTABLE = re.compile(r"[\x20-\x7e]*")
NOT_ASCII = "Use plain ASCII characters only (no accented letters, “…” quotes or emoji)"


@dataclass(frozen=True)
class OptionField:
    """One form field. ``key`` names it in the stored options and in the form."""

    key: str
    label: str
    secret: bool = False
    required: bool = False
    multiline: bool = False
    help: str = ""
    placeholder: str = ""
    pattern: re.Pattern[str] | None = None
    problem: str = ""  # what a value that does not match ``pattern`` is told
    max_length: int = 200
    # A finer check: the cleaned value, or ValidationError.
    check: Callable[[str], Any] | None = None
    # The value decides where the credential is sent (part of the provider's base URL):
    # a new value forgets the stored key and secret options unless they are typed again.
    endpoint: bool = False


@dataclass(frozen=True)
class OptionSet:
    """The option fields of one provider. ``api_key``: ``required``, ``optional`` (the
    options may carry the credential instead) or ``none`` (OpenCode takes no key).
    ``method`` and ``method_hint``: how the provider picker names the form, when not
    "API key" (e.g. a service account)."""

    provider_id: str
    fields: tuple[OptionField, ...]
    api_key: str = "required"
    intro: str = ""
    method: str = ""
    method_hint: str = ""

    def field(self, key: str) -> OptionField | None:
        return next((field for field in self.fields if field.key == key), None)


def _service_account(text: str) -> str:
    """A Google service-account key (JSON), re-serialised: bounded, an object of type
    ``service_account`` with its e-mail and private key."""
    if len(text.encode()) > MAX_SERVICE_ACCOUNT_BYTES:
        raise ValidationError(
            f"That is too long for a service-account key (over "
            f"{MAX_SERVICE_ACCOUNT_BYTES // 1024} KB): paste the key file's JSON only."
        )
    if not text.isascii():
        raise ValidationError(f"{NOT_ASCII}: paste the key file's JSON as it is.")
    try:
        data = json.loads(text)
    except ValueError:
        raise ValidationError(
            "This is not JSON: paste the whole key file you downloaded for the service "
            "account (it starts with “{”)."
        ) from None
    if not isinstance(data, dict) or data.get("type") != "service_account":
        raise ValidationError(
            'This is not a service-account key: its JSON must have "type": "service_account".'
        )
    for key in ("client_email", "private_key"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise ValidationError(f'The service-account key has no "{key}".')
    return json.dumps(data, indent=2)


def parse_headers(text: str, stored: Mapping[str, str] | None = None) -> dict[str, str]:
    """``Name: value`` lines into headers. ``Name:`` with no value keeps ``stored``'s value
    of that header (an edit: values are never shown back). ValidationError with the line
    number on a bad line."""
    stored = stored or {}
    headers: dict[str, str] = {}
    seen: set[str] = set()
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        if not line.isascii():
            raise ValidationError(f"Line {number}: {NOT_ASCII}.")
        if has_config_substitution(line):  # in a name or a value ("{env:" holds the colon)
            raise ValidationError(f"Line {number}: {config_substitution_message('A header')}")
        name, colon, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not colon:
            raise ValidationError(f"Line {number}: write a header as “Name: value”.")
        if not _TOKEN.fullmatch(name) or len(name) > MAX_HEADER_NAME:
            raise ValidationError(
                f"Line {number}: a header name is 1 to {MAX_HEADER_NAME} letters, digits or "
                "!#$%&'*+.^_`|~- (no spaces)."
            )
        if name.lower() in RESERVED_HEADERS:
            raise ValidationError(f"Line {number}: {name} is set by the HTTP client itself.")
        if name.lower() in seen:
            raise ValidationError(f"Line {number}: {name} is given twice.")
        seen.add(name.lower())
        if not value:
            kept = next((v for k, v in stored.items() if k.lower() == name.lower()), None)
            if kept is None:
                raise ValidationError(f"Line {number}: {name} has no value.")
            value = kept
        if has_config_substitution(value):
            raise ValidationError(
                f"Line {number}: {config_substitution_message(f'The value of {name}')}"
            )
        if not _ONE_LINE_PRINTABLE.fullmatch(value):
            raise ValidationError(
                f"Line {number}: the value of {name} has control characters (a tab or an "
                "invisible character)."
            )
        if len(value) > MAX_HEADER_VALUE:
            raise ValidationError(
                f"Line {number}: the value of {name} is over {MAX_HEADER_VALUE} characters."
            )
        headers[name] = value
        if len(headers) > MAX_HEADERS:
            raise ValidationError(f"At most {MAX_HEADERS} headers.")
    return headers


AZURE = OptionSet(
    "azure",
    (
        OptionField(
            "resourceName",
            "Azure resource name",
            required=True,
            placeholder="my-models",
            help="The name of your Azure OpenAI resource, as in https://NAME.openai.azure.com. "
            "Changing it forgets the stored key: enter the key again with it.",
            pattern=re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{1,63}"),
            problem="A resource name is 2 to 64 letters, digits or '-', starting with a "
            "letter or a digit.",
            max_length=64,
            endpoint=True,
        ),
    ),
)

_AWS_SECRET = re.compile(r"[A-Za-z0-9/+=]{16,128}")
BEDROCK = OptionSet(
    "amazon-bedrock",
    (
        OptionField(
            "region",
            "AWS region",
            placeholder="us-east-1",
            help="Where your Bedrock models run. Empty: us-east-1.",
            pattern=re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]{3,12}-[0-9]{1,2}"),
            problem="An AWS region looks like us-east-1 or eu-west-3.",
            max_length=32,
        ),
        OptionField(
            "accessKeyId",
            "Access key id",
            secret=True,
            placeholder="AKIA…",
            help="With the secret access key, instead of an API key.",
            pattern=re.compile(r"[A-Z0-9]{16,128}"),
            problem="An access key id is 16 to 128 capital letters and digits (AKIA…).",
            max_length=128,
        ),
        OptionField(
            "secretAccessKey",
            "Secret access key",
            secret=True,
            pattern=_AWS_SECRET,
            problem="A secret access key is 16 to 128 letters, digits, '/', '+' or '='.",
            max_length=128,
        ),
        OptionField(
            "sessionToken",
            "Session token",
            secret=True,
            help="Only for temporary credentials.",
            pattern=re.compile(r"[A-Za-z0-9/+=]{16,4096}"),
            problem="A session token is letters, digits, '/', '+' or '=' (at most 4096).",
            max_length=4096,
        ),
    ),
    api_key="optional",
    intro="Either a Bedrock API key, or an access key id with its secret access key.",
    method_hint="paste an API key, or an access key id and its secret",
)

VERTEX = OptionSet(
    "google-vertex",
    (
        OptionField(
            "project",
            "Google Cloud project id",
            required=True,
            placeholder="my-project-123",
            pattern=re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]"),
            problem="A project id is 6 to 30 lower-case letters, digits or '-', starting "
            "with a letter.",
            max_length=30,
        ),
        OptionField(
            "location",
            "Location",
            placeholder="us-central1",
            help="The Vertex AI region (or global). Empty: us-central1.",
            pattern=re.compile(r"[a-z]{2,20}(-[a-z]{2,20}[0-9]{0,2})?"),
            problem="A location looks like us-central1, europe-west4 or global.",
            max_length=44,
        ),
        OptionField(
            "serviceAccount",
            "Service-account key (JSON)",
            secret=True,
            required=True,
            multiline=True,
            help="The JSON key file of a service account allowed to use Vertex AI.",
            max_length=MAX_SERVICE_ACCOUNT_BYTES,
            check=_service_account,
        ),
    ),
    api_key="none",
    intro="Vertex AI signs in with a service account, not an API key.",
    method="Service account",
    method_hint="paste a service-account key (JSON)",
)

CUSTOM_HEADERS = OptionSet(
    "",
    (
        OptionField(
            HEADERS,
            "Extra HTTP headers",
            secret=True,
            multiline=True,
            help=f"Optional: one “Name: value” per line (at most {MAX_HEADERS}), sent with "
            "every request. Values are stored encrypted and not shown again: on an edit, "
            "“Name:” alone keeps the stored value, and a header left out is removed.",
            placeholder="X-Org-Id: 1234",
            max_length=MAX_HEADERS * (MAX_HEADER_NAME + MAX_HEADER_VALUE + 4),
            check=parse_headers,
        ),
    ),
    api_key="optional",
)

KNOWN: dict[str, OptionSet] = {entry.provider_id: entry for entry in (AZURE, BEDROCK, VERTEX)}


def option_set(provider_id: str, *, custom: bool = False) -> OptionSet | None:
    """The option fields of a provider (a custom endpoint's headers), or None."""
    return CUSTOM_HEADERS if custom else KNOWN.get(provider_id)


def endpoint_options_changed(
    entry: OptionSet | None, stored: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> list[str]:
    """The fields that carry the provider's address (``OptionField.endpoint``) whose stored
    value ``new`` changes: a credential typed for the old address must not follow."""
    if entry is None:
        return []
    stored, new = stored or {}, new or {}
    return [
        field.key
        for field in entry.fields
        if field.endpoint and stored.get(field.key) and new.get(field.key) != stored[field.key]
    ]


def credential_in_options(provider_id: str, secrets: Mapping[str, Any]) -> bool:
    """Do these secret options stand in for an API key?"""
    if provider_id == BEDROCK.provider_id:
        return bool(secrets.get("accessKeyId") and secrets.get("secretAccessKey"))
    return provider_id == VERTEX.provider_id and bool(secrets.get("serviceAccount"))


def clean_value(field: OptionField, value: Any, *, stored: Any = None) -> Any:
    """One field's value, checked; ValidationError says what is wrong (never the value)."""
    if field.key == HEADERS and isinstance(value, Mapping):  # already parsed (a service)
        value = "\n".join(f"{name}: {text}" for name, text in value.items())
    if not isinstance(value, str):
        raise ValidationError("Expected text.")
    value = value.strip()
    if not value:
        return ""
    if len(value) > field.max_length:
        raise ValidationError(f"At most {field.max_length} characters.")
    if field.key == HEADERS:
        return parse_headers(value, stored if isinstance(stored, Mapping) else None)
    if has_config_substitution(value):
        raise ValidationError(config_substitution_message("This value"))
    if not field.multiline and not value.isascii():
        raise ValidationError(f"{NOT_ASCII}.")
    if field.pattern is not None and not field.pattern.fullmatch(value):
        raise ValidationError(field.problem)
    return field.check(value) if field.check is not None else value


def clean_options(
    entry: OptionSet,
    values: Mapping[str, Any],
    *,
    stored_options: Mapping[str, Any] | None = None,
    stored_secrets: Mapping[str, Any] | None = None,
    has_api_key: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The form's values as (options, secret options). An empty secret field keeps the
    stored secret (headers: see ``parse_headers``); an empty plain field clears it.
    ValidationError keyed by field on any bad or missing value."""
    stored_options = stored_options or {}
    stored_secrets = stored_secrets or {}
    options: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in entry.fields:
        stored = (stored_secrets if field.secret else stored_options).get(field.key)
        try:
            value = clean_value(field, values.get(field.key, ""), stored=stored)
        except ValidationError as error:
            errors[field.key] = " ".join(error.messages)
            continue
        if not value and field.secret and field.key != HEADERS and stored:
            value = stored  # an edit: secrets are not shown back
        if value:
            (secrets if field.secret else options)[field.key] = value
        elif field.required:
            errors[field.key] = "This is needed to connect."
    if entry is BEDROCK and not errors:
        has_id, has_secret = bool(secrets.get("accessKeyId")), bool(secrets.get("secretAccessKey"))
        if has_id != has_secret:
            missing = "secretAccessKey" if has_id else "accessKeyId"
            errors[missing] = "The access key id and the secret access key go together."
        elif not has_id and not has_api_key:
            errors["accessKeyId"] = "Give an API key, or an access key id and its secret."
        if secrets.get("sessionToken") and not has_id:
            errors["sessionToken"] = "A session token goes with an access key id."
    if errors:
        raise ValidationError(errors)
    return options, secrets


def stored_problems(
    provider_id: str, *, custom: bool, options: Any, secrets: Mapping[str, Any]
) -> dict[str, str]:
    """The services' last check before a save: every stored option is one the table
    knows for this provider and passes its rule (whatever wrote it)."""
    if not options and not secrets:
        return {}
    entry = option_set(provider_id, custom=custom)
    if entry is None:
        return {"options": f"{provider_id} takes no options."}
    if not isinstance(options, dict):
        return {"options": "Options are a mapping of names to values."}
    errors: dict[str, str] = {}
    for source, secret in ((options, False), (secrets, True)):
        for key, value in source.items():
            field = entry.field(key)
            if field is None or field.secret != secret:
                errors[key] = f"{key} is not an option of {provider_id}."
                continue
            try:
                if not clean_value(field, value):
                    errors[key] = "An empty option is left out, not stored."
            except ValidationError as error:
                errors[key] = " ".join(error.messages)
    return errors
