"""Operators' view of connections, user settings and the audit log.

Secret columns are ``EncryptedTextField``s, which are not editable, so no admin form,
list or history can include them; pages show ``key_hint`` and a per-secret state
("stored" / "cannot decrypt"). A new key is typed into a write-only field and goes
through the services, like any other change, with an audit event.
"""

from __future__ import annotations

import copy
import logging
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.shortcuts import redirect
from django.urls import path
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html_join
from django.utils.timesince import timesince
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_POST

from doce.admin import ReadOnlyAdminMixin
from doce.encrypted_fields import UNDECRYPTABLE_MESSAGE, is_undecryptable
from providers import access, services, shared
from providers.catalog import catalog_is_stale, catalog_status
from providers.forms import SecretField
from providers.models import (
    AuditEvent,
    CatalogProvider,
    ModelAccess,
    OAuthFlow,
    ProviderConnection,
    SharedConnection,
    UserSettings,
)
from providers.oauth import oauth_flow_cancel
from providers.tasks import refresh_catalog
from providers.views.common import hide_secrets

logger = logging.getLogger(__name__)


class ExpiryFilter(admin.SimpleListFilter):
    title = "OAuth expiry"
    parameter_name = "expiry"

    def lookups(self, request, model_admin):
        return [("expired", "Expired"), ("soon", "Within an hour"), ("later", "Later")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "expired":
            return queryset.filter(oauth_expires_at__lte=now)
        if self.value() == "soon":
            return queryset.filter(
                oauth_expires_at__gt=now, oauth_expires_at__lte=now + timedelta(hours=1)
            )
        if self.value() == "later":
            return queryset.filter(oauth_expires_at__gt=now + timedelta(hours=1))
        return queryset


class ProviderConnectionForm(forms.ModelForm):
    # Write-only: never rendered back (render_value=False), left empty to keep the key.
    # The user's form field: one line of printable ASCII, at most 4 KB, stripped.
    new_api_key = SecretField(
        label="New API key",
        required=False,
        help_text="API-key connections only. Leave empty to keep the stored key.",
    )
    base_url = forms.URLField(required=False, max_length=500, assume_scheme="https")
    oauth_enterprise_url = forms.URLField(required=False, max_length=500, assume_scheme="https")

    class Meta:
        model = ProviderConnection
        fields = [
            "user",
            "provider_id",
            "auth_type",
            "status",
            "error_message",
            "name",
            "base_url",
            "models",
            "metadata",
            "oauth_expires_at",
            "oauth_account_id",
            "oauth_enterprise_url",
        ]

    @sensitive_variables()
    def clean(self):
        cleaned = super().clean()
        adding = self.instance.pk is None
        if adding and cleaned.get("auth_type") != ProviderConnection.AuthType.API:
            raise forms.ValidationError(
                "OAuth connections are made by the user's own sign-in flow; the admin can "
                "only add API-key connections."
            )
        return cleaned

    @sensitive_variables()
    def _post_clean(self):
        super()._post_clean()  # the instance now holds the form's values
        # The services' own rules (a key for API connections, custom-provider fields...),
        # checked on a copy so the admin reports them instead of failing at save.
        probe = copy.copy(self.instance)
        if self.cleaned_data.get("new_api_key"):
            if probe.auth_type != ProviderConnection.AuthType.API:
                self.add_error("new_api_key", "Only API-key connections take a key here.")
                return
            probe.api_key = self.cleaned_data["new_api_key"]
        try:
            services.connection_validate(connection=probe)
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                target = "new_api_key" if field == "api_key" else field
                self.add_error(target if target in self.fields else None, messages)


class DisconnectOnDeleteMixin:
    """Deleting a connection in the admin is a disconnect: through the service, audited,
    and running projects follow."""

    def delete_model(self, request, obj):
        services.connection_delete(connection=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for connection in queryset:
            services.connection_delete(connection=connection, actor=request.user)


@admin.register(ProviderConnection)
class ProviderConnectionAdmin(DisconnectOnDeleteMixin, admin.ModelAdmin):
    form = ProviderConnectionForm
    list_display = [
        "user",
        "provider_id",
        "name",
        "base_url",
        "auth_type",
        "status",
        "key_hint",
        "last_used_at",
        "oauth_expires_at",
        "last_validated_at",
        "updated_at",
    ]
    list_filter = ["status", "auth_type", "provider_id", ExpiryFilter, "last_used_at"]
    list_select_related = ["user"]
    search_fields = [
        "user__username",
        "user__email",
        "provider_id",
        "name",
        "key_hint",
        "oauth_account_id",
    ]
    date_hierarchy = "created_at"
    ordering = ["user__username", "provider_id"]
    readonly_fields = [
        "key_hint",
        "secrets",
        "oauth_token_holder",
        "provider_options",
        "last_used_at",
        "last_validated_at",
        "created_at",
        "updated_at",
    ]
    raw_id_fields = ["user"]
    actions = ["mark_revoked", "revalidate", "share_with_everyone"]

    def get_queryset(self, request):
        # Team keys have their own page (SharedConnectionAdmin).
        return super().get_queryset(request).filter(user__isnull=False)

    def get_fieldsets(self, request, obj=None):
        return [
            (None, {"fields": ["user", "provider_id", "auth_type", "status", "error_message"]}),
            ("Credential", {"fields": ["key_hint", "secrets", "new_api_key"]}),
            (
                "OAuth",
                {
                    "fields": [
                        "oauth_expires_at",
                        "oauth_account_id",
                        "oauth_enterprise_url",
                        "oauth_token_holder",
                    ],
                    "description": "The holder is the project whose server keeps the real "
                    "refresh token; the user's other projects follow its refreshes.",
                },
            ),
            ("Custom provider", {"fields": ["name", "base_url", "models"]}),
            ("Provider options", {"fields": ["provider_options"]}),
            (
                "Other",
                {
                    "fields": [
                        "metadata",
                        "last_used_at",
                        "last_validated_at",
                        "created_at",
                        "updated_at",
                    ]
                },
            ),
        ]

    def get_readonly_fields(self, request, obj=None):
        # The owner, provider and auth type of an existing connection do not change here
        # (another auth type needs other secrets: the user reconnects).
        extra = ["user", "provider_id", "auth_type"] if obj is not None else []
        return [*self.readonly_fields, *extra]

    @admin.display(description="Options")
    def provider_options(self, obj: ProviderConnection) -> str:
        """Names only (a header's too): the values are the user's, some of them secret."""
        return ", ".join(obj.option_names) or "-"

    @admin.display(description="Secrets")
    def secrets(self, obj: ProviderConnection) -> str:
        if obj.pk is None:
            return "-"
        used = ProviderConnection.SECRETS_BY_AUTH_TYPE.get(obj.auth_type, ())
        rows = []
        for name in used:
            value = getattr(obj, name)
            state = (
                UNDECRYPTABLE_MESSAGE
                if is_undecryptable(value)
                else ("stored (encrypted)" if value else "missing")
            )
            rows.append((name.replace("_", " "), state))
        return format_html_join("", "<div>{}: {}</div>", rows) or "-"

    @method_decorator(sensitive_post_parameters("new_api_key"))
    @method_decorator(sensitive_variables())
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        hide_secrets(request)  # a key typed here stays off error pages, DEBUG=true too
        return super().changeform_view(request, object_id, form_url, extra_context)

    @sensitive_variables()
    def save_model(self, request, obj, form, change):
        new_key = form.cleaned_data.get("new_api_key")
        if not change:
            # Through the service so the key is validated, hinted and audited.
            created = services.connection_create(
                user=obj.user,
                provider_id=obj.provider_id,
                api_key=new_key,
                metadata=obj.metadata,
                name=obj.name,
                base_url=obj.base_url,
                models=obj.models,
                actor=request.user,
            )
            obj.pk = created.pk
            obj.refresh_from_db()
            return
        # A new base URL goes through the service, which forgets a stored key and header
        # values that would otherwise follow it to another scheme, host or port.
        moved_to = None
        if "base_url" in form.changed_data:
            moved_to, obj.base_url = obj.base_url, form.initial.get("base_url") or ""
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            changed = [name for name in form.changed_data if name != "new_api_key"]
            if moved_to is not None:
                services.connection_update(
                    connection=obj,
                    base_url=moved_to,
                    actor=request.user,
                    **({"api_key": new_key} if new_key else {}),
                )
            elif new_key:
                services.connection_update(connection=obj, api_key=new_key, actor=request.user)
            if changed:
                services.audit_record(
                    action=AuditEvent.Action.UPDATED,
                    actor=request.user,
                    connection=obj,
                    detail={"fields": changed, "via": "admin"},
                )

    @admin.action(description="Mark selected connections revoked")
    def mark_revoked(self, request, queryset):
        count = 0
        for connection in queryset.exclude(status=ProviderConnection.Status.REVOKED):
            services.connection_revoke(
                connection=connection, actor=request.user, reason="revoked by an operator"
            )
            count += 1
        self.message_user(request, f"Revoked {count} connection(s).", messages.SUCCESS)

    @admin.action(description="Make the selected staff connections team keys (everyone)")
    def share_with_everyone(self, request, queryset):
        """An OAuth sign-in can only be made by its user: a staff member signs in, then
        shares it here. The grants can be narrowed on the team key's page."""
        done = []
        for connection in queryset.select_related("user"):
            if not connection.user.is_staff:
                self.message_user(
                    request,
                    f"{connection}: only a staff member's own connection can be shared.",
                    messages.ERROR,
                )
                continue
            try:
                shared.shared_connection_share(
                    connection=connection, actor=request.user, grants=shared.Grants(everyone=True)
                )
            except ValidationError as error:
                self.message_user(
                    request, f"{connection}: {' '.join(error.messages)}", messages.ERROR
                )
                continue
            done.append(connection.provider_id)
        if done:
            self.message_user(
                request, f"Shared with everyone: {', '.join(done)}.", messages.SUCCESS
            )

    @admin.action(description="Re-validate selected connections")
    def revalidate(self, request, queryset):
        results: dict[str, int] = {}
        for connection in queryset:
            services.connection_revalidate(connection=connection, actor=request.user)
            results[connection.status] = results.get(connection.status, 0) + 1
        summary = ", ".join(f"{count} {status}" for status, count in sorted(results.items()))
        self.message_user(request, f"Re-validated: {summary or 'nothing selected'}.")


@admin.register(UserSettings)
class UserSettingsAdmin(admin.ModelAdmin):
    list_display = [
        "user",
        "preferred_provider_id",
        "default_model",
        "legacy_key",
        "provider_auth_initialized",
        "migration_completed_at",
        "updated_at",
    ]
    list_filter = [
        "provider_auth_initialized",
        ("migration_completed_at", admin.EmptyFieldListFilter),
    ]
    list_select_related = ["user"]
    search_fields = ["user__username", "user__email", "preferred_provider_id", "default_model"]
    readonly_fields = ["legacy_key", "migration_completed_at", "updated_at"]
    raw_id_fields = ["user"]

    @admin.display(description="Legacy OpenRouter key")
    def legacy_key(self, obj: UserSettings) -> str:
        return {
            "none": "-",
            "stored": "stored (encrypted)",
            "undecryptable": UNDECRYPTABLE_MESSAGE,
        }[obj.legacy_key_state]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: the log is written by the services, never edited."""

    list_display = [
        "created_at",
        "action",
        "user",
        "actor_name",
        "provider_id",
        "connection",
        "project_id",
    ]
    list_filter = ["action", "provider_id", "created_at"]
    list_select_related = ["user", "connection__user"]
    search_fields = ["user__username", "actor_name", "provider_id", "=project_id"]
    date_hierarchy = "created_at"


class FlowStateFilter(admin.SimpleListFilter):
    """A flow whose time is up still reads "pending" until its task or the reaper ends
    it: this filter tells the two apart."""

    title = "live or not"
    parameter_name = "live"

    def lookups(self, request, model_admin):
        return [("live", "Live (a server runs)"), ("overdue", "Past its time, not yet reaped")]

    def queryset(self, request, queryset):
        now = timezone.now()
        active = queryset.filter(state__in=OAuthFlow.ACTIVE_STATES)
        if self.value() == "live":
            return active.filter(expires_at__gt=now)
        if self.value() == "overdue":
            return active.filter(expires_at__lte=now)
        return queryset


@admin.register(OAuthFlow)
class OAuthFlowAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Sign-ins, read-only: they are made by users and end by themselves; an operator
    may cancel live ones (their servers stop). No token is ever on a flow."""

    list_display = [
        "created_at",
        "user",
        "provider_id",
        "method_label",
        "kind",
        "shown_state",
        "age",
        "expires_at",
        "error_message",
    ]
    list_filter = ["state", FlowStateFilter, "kind", "provider_id", "created_at"]
    list_select_related = ["user"]
    search_fields = ["user__username", "user__email", "provider_id", "=id"]
    date_hierarchy = "created_at"
    # Never the server's password nor its runtime record.
    fields = [
        "id",
        "user",
        "provider_id",
        "method",
        "method_label",
        "kind",
        "shown_state",
        "error_message",
        "url",
        "instructions",
        "inputs",
        "connection",
        "created_at",
        "updated_at",
        "expires_at",
        "finished_at",
    ]
    readonly_fields = fields
    actions = ["cancel_flows"]

    @admin.display(description="State", ordering="state")
    def shown_state(self, obj: OAuthFlow) -> str:
        if obj.is_active and obj.expires_at <= timezone.now():
            return "Expired (being cleaned up)"
        return obj.get_state_display()

    @admin.display(description="Age", ordering="created_at")
    def age(self, obj: OAuthFlow) -> str:
        return timesince(obj.created_at)

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("providers.change_oauthflow")

    @admin.action(
        description="Cancel selected sign-ins (stops their servers)", permissions=["cancel"]
    )
    def cancel_flows(self, request, queryset):
        cancelled = sum(
            oauth_flow_cancel(flow=flow, reason="Cancelled by an operator.")
            for flow in queryset.select_related("user")
        )
        skipped = queryset.count() - cancelled
        message = f"Cancelled {cancelled} sign-in(s)."
        if skipped:
            message += f" {skipped} had already finished or were completing and were left alone."
        self.message_user(request, message, messages.SUCCESS if cancelled else messages.WARNING)


@admin.register(CatalogProvider)
class CatalogProviderAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The provider catalog as OpenCode gave it, read-only: the page says where it came
    from and how old it is; "Refresh from OpenCode" (a button, and an action) has the
    worker read it again (``providers.tasks.refresh_catalog``)."""

    change_list_template = "admin/providers/catalogprovider/change_list.html"
    list_display = [
        "provider_id",
        "name",
        "model_count",
        "free_model_count",
        "auth_method_labels",
        "opencode_version",
        "fetched_at",
    ]
    search_fields = ["provider_id", "name"]
    fields = [
        "provider_id",
        "name",
        "position",
        "env",
        "default_model",
        "auth_methods",
        "models",
        "free_models",
        "opencode_version",
        "fetched_at",
    ]
    readonly_fields = fields
    actions = ["refresh_from_opencode"]

    @admin.display(description="Models")
    def model_count(self, obj: CatalogProvider) -> int:
        return len(obj.models or ())

    @admin.display(description="Free models (no key)")
    def free_model_count(self, obj: CatalogProvider) -> int:
        return len(obj.free_models or ())

    @admin.display(description="Auth methods")
    def auth_method_labels(self, obj: CatalogProvider) -> str:
        return ", ".join(m.get("label", "?") for m in obj.auth_methods or ()) or "API key"

    def has_refresh_permission(self, request) -> bool:
        return request.user.has_perm("providers.change_catalogprovider")

    def get_urls(self):
        refresh = path(
            "refresh/",
            self.admin_site.admin_view(self.refresh_view),
            name="providers_catalogprovider_refresh",
        )
        return [refresh, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        status = catalog_status()
        max_age = timedelta(hours=settings.DOCE_PROVIDER_CATALOG_MAX_AGE_HOURS)
        if status.is_fallback:
            source = (
                f"Never fetched: the built-in list of {status.providers} providers is in use "
                "until a refresh succeeds."
            )
        else:
            source = (
                f"{status.providers} providers from OpenCode {status.opencode_version or '?'}, "
                f"fetched {timesince(status.fetched_at)} ago"
                + (" (stale: a refresh is due)." if catalog_is_stale(max_age=max_age) else ".")
            )
        extra_context = {
            **(extra_context or {}),
            "catalog_source": source,
            "can_refresh": self.has_refresh_permission(request),
        }
        return super().changelist_view(request, extra_context)

    @method_decorator(require_POST)
    def refresh_view(self, request):
        if not self.has_refresh_permission(request):
            raise PermissionDenied
        self._start_refresh(request)
        return redirect("admin:providers_catalogprovider_changelist")

    @admin.action(description="Refresh the catalog from OpenCode", permissions=["refresh"])
    def refresh_from_opencode(self, request, queryset):
        self._start_refresh(request)

    def _start_refresh(self, request) -> None:
        try:
            refresh_catalog.delay(force=True)
        except Exception as exc:  # the broker: nothing else can fail here
            logger.warning("could not queue a catalog refresh (%s)", type(exc).__name__)
            self.message_user(
                request,
                "The refresh could not be queued: is the task broker running?",
                messages.ERROR,
            )
            return
        self.message_user(
            request,
            "Refresh started: a worker reads the catalog from a short-lived OpenCode server "
            "(a few seconds). Reload this page to see it.",
            messages.SUCCESS,
        )


class SharedConnectionForm(forms.ModelForm):
    """A team key. Added through ``providers.shared`` (the key checked with the provider
    as a user's is, before anything is saved); afterwards its name, models, key and
    grants change here; its provider and URL do not (remove it and add it again)."""

    new_api_key = SecretField(
        label="API key",
        required=False,
        help_text="Checked with the provider before it is saved. On an existing team key, "
        "leave empty to keep the stored key.",
    )
    base_url = forms.URLField(
        required=False,
        max_length=500,
        assume_scheme="https",
        help_text="Only for a custom OpenAI-compatible endpoint.",
    )
    models = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="A custom endpoint's model ids, one per line (empty: its /models list).",
    )

    class Meta:
        model = SharedConnection
        fields = [
            "provider_id",
            "name",
            "base_url",
            "shared_with_all",
            "shared_with_users",
            "shared_with_groups",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.prepared = None
        self.fields["name"].required = True
        if self.instance.pk is not None:
            self.initial["models"] = "\n".join(self.instance.models or [])

    def _grants(self) -> shared.Grants:
        data = self.cleaned_data
        return shared.Grants(
            everyone=bool(data.get("shared_with_all")),
            users=tuple(data.get("shared_with_users") or ()),
            groups=tuple(data.get("shared_with_groups") or ()),
        )

    @sensitive_variables()
    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        models = [line.strip() for line in (cleaned.get("models") or "").splitlines()]
        cleaned["models"] = [model for model in models if model]
        if self.instance.pk is not None:
            if self._grants().empty:
                raise forms.ValidationError("Say who may use it: users, groups, or everyone.")
            return cleaned
        try:
            self.prepared = shared.shared_connection_check(
                actor=self.request_user,
                provider_id=cleaned.get("provider_id") or "",
                name=cleaned.get("name") or "",
                api_key=cleaned.get("new_api_key") or "",
                grants=self._grants(),
                base_url=cleaned.get("base_url") or "",
                models=cleaned["models"],
            )
        except ValidationError as error:
            for name, messages_ in error.message_dict.items():
                target = {"api_key": "new_api_key", "grants": None}.get(name, name)
                self.add_error(target if target in self.fields else None, messages_)
        return cleaned

    def _post_clean(self):
        # The model's own validation would run on a row without owner or key: the
        # services above are the rules here.
        pass


@admin.register(SharedConnection)
class SharedConnectionAdmin(DisconnectOnDeleteMixin, admin.ModelAdmin):
    form = SharedConnectionForm
    list_display = [
        "provider_id",
        "name",
        "base_url",
        "status",
        "key_hint",
        "grants",
        "shared_by",
        "last_used_at",
    ]
    list_filter = ["status", "shared_with_all"]
    search_fields = ["provider_id", "name", "key_hint"]
    filter_horizontal = ["shared_with_users", "shared_with_groups"]
    readonly_fields = ["key_hint", "status", "error_message", "shared_by", "last_used_at"]
    actions = ["revalidate"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.request_user = request.user
        return form

    def get_fieldsets(self, request, obj=None):
        fields = ["provider_id", "name", "base_url", "models", "new_api_key"]
        if obj is not None:
            fields = [*fields, "key_hint", "status", "error_message", "shared_by", "last_used_at"]
        return [
            (None, {"fields": fields}),
            (
                "Who may use it",
                {
                    "fields": ["shared_with_all", "shared_with_users", "shared_with_groups"],
                    "description": "A user's own connection for the provider comes first; "
                    "this key serves the users named here who have none.",
                },
            ),
        ]

    def get_readonly_fields(self, request, obj=None):
        extra = ["provider_id", "base_url"] if obj is not None else []
        return [*self.readonly_fields, *extra]

    @admin.display(description="Shared with")
    def grants(self, obj: SharedConnection) -> str:
        return shared.grants_of(obj).describe()

    @method_decorator(sensitive_post_parameters("new_api_key"))
    @method_decorator(sensitive_variables())
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        hide_secrets(request)
        return super().changeform_view(request, object_id, form_url, extra_context)

    @sensitive_variables()
    def save_model(self, request, obj, form, change):
        if not change:
            created = shared.shared_connection_save(prepared=form.prepared, actor=request.user)
            obj.pk = created.pk
            obj.refresh_from_db()
            return
        new_key = form.cleaned_data.get("new_api_key")
        changes = {}
        if "name" in form.changed_data:
            changes["name"] = obj.name
        if "models" in form.changed_data:
            changes["models"] = form.cleaned_data["models"]
        if new_key:
            changes["api_key"] = new_key
        obj.refresh_from_db()  # the service saves the fields it is given
        if changes:
            services.connection_update(connection=obj, actor=request.user, **changes)
        if new_key:
            obj, _check = services.connection_verify(connection=obj, actor=request.user)

    def save_related(self, request, form, formsets, change):
        if not change:
            return  # stored with the key by shared_connection_save
        super().save_related(request, form, formsets, change)
        if {"shared_with_all", "shared_with_users", "shared_with_groups"} & set(form.changed_data):
            shared.grants_changed(connection=form.instance, actor=request.user)

    @admin.action(description="Re-validate selected team keys")
    def revalidate(self, request, queryset):
        for connection in queryset:
            services.connection_verify(connection=connection, actor=request.user)
        self.message_user(request, "Re-validated.")


def _rule_users(rule: ModelAccess | None) -> set[int]:
    """The users a model-access rule applies to (its user, or its group's members)."""
    if rule is None:
        return set()
    if rule.user_id is not None:
        return {rule.user_id}
    return set(rule.group.user_set.values_list("pk", flat=True)) if rule.group_id else set()


@admin.register(ModelAccess)
class ModelAccessAdmin(admin.ModelAdmin):
    """Who may pick which models (``providers.access``, docs/providers.md "Model
    access"). A change reaches the users' running projects: their opencode.json is
    written again (``access.access_changed``)."""

    list_display = ("pattern", "effect", "user", "group", "created_at")
    list_filter = ("effect",)
    search_fields = ("pattern", "user__username", "user__email", "group__name")
    list_select_related = ("user", "group")
    fields = ("effect", "pattern", "user", "group")

    def save_model(self, request, obj, form, change):
        before = _rule_users(ModelAccess.objects.filter(pk=obj.pk).first()) if change else set()
        super().save_model(request, obj, form, change)
        access.access_changed(user_ids=before | _rule_users(obj))

    def delete_model(self, request, obj):
        users = _rule_users(obj)
        super().delete_model(request, obj)
        access.access_changed(user_ids=users)

    def delete_queryset(self, request, queryset):
        users = set().union(*(_rule_users(rule) for rule in queryset))
        super().delete_queryset(request, queryset)
        access.access_changed(user_ids=users)
