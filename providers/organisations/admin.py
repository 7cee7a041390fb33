"""Staff register organisations here: a URL and a name. Saving a new one fetches its
document (``services.organisation_add``); "Refresh document" fetches it again. What it
declares is shown read-only; users' tokens are listed by hint only."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html

from doce.admin import ReadOnlyAdminMixin
from providers.organisations import services
from providers.organisations.document import DocumentError
from providers.organisations.fetch import url_normalise
from providers.organisations.models import Organisation, OrganisationToken
from providers.organisations.selectors import stored_document


class OrganisationForm(forms.ModelForm):
    url = forms.CharField(label="URL", max_length=500, help_text="e.g. https://ai.example.com")

    class Meta:
        model = Organisation
        fields = ("url", "name")

    def clean_url(self) -> str:
        try:
            return url_normalise(self.cleaned_data["url"])
        except DocumentError as exc:
            raise ValidationError(str(exc)) from exc


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    form = OrganisationForm
    list_display = ("display_name", "url", "providers", "fetched_at", "fetch_state")
    search_fields = ("name", "url")
    readonly_fields = (
        "env_name",
        "command",
        "declared",
        "fetched_at",
        "fetch_error",
        "created_by",
        "document_json",
    )
    actions = ("refresh",)

    def get_readonly_fields(self, request, obj=None):
        # The URL is the auth id every user's entry is stored under: it does not change.
        return ("url", *self.readonly_fields) if obj is not None else ()

    def get_fields(self, request, obj=None):
        return ("url", "name") if obj is None else ("url", "name", *self.readonly_fields)

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name"])
            return
        created = services.organisation_add(
            url=form.cleaned_data["url"], name=obj.name, created_by=request.user
        )
        obj.pk = created.pk
        obj.refresh_from_db()
        if obj.fetch_error:
            messages.warning(request, f"Its document could not be fetched: {obj.fetch_error}.")

    def delete_model(self, request, obj):
        services.organisation_remove(organisation=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for organisation in queryset:
            services.organisation_remove(organisation=organisation, actor=request.user)

    @admin.action(description="Refresh document", permissions=["change"])
    def refresh(self, request, queryset):
        for organisation in queryset:
            if services.organisation_refresh(organisation=organisation) is None:
                messages.error(request, f"{organisation}: {organisation.fetch_error}.")
            else:
                messages.success(request, f"{organisation}: document fetched.")

    @admin.display(description="Providers")
    def providers(self, obj) -> str:
        document = stored_document(obj)
        return ", ".join(p.id for p in document.providers) if document else "—"

    @admin.display(description="Last fetch")
    def fetch_state(self, obj) -> str:
        if obj.fetch_error:
            return f"Error: {obj.fetch_error}"
        return "OK" if obj.fetched_at else "never fetched"

    @admin.display(description="Auth command (users run it on their own machine)")
    def command(self, obj) -> str:
        return obj.command_text or "—"

    @admin.display(description="Declares")
    def declared(self, obj) -> str:
        document = stored_document(obj)
        if document is None:
            return "—"
        return "; ".join(
            f"{p.name} ({p.id}): {', '.join(m for m, _ in p.models) or 'no models listed'}"
            for p in document.providers
        )

    @admin.display(description="Document")
    def document_json(self, obj) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.document, indent=2)[:20000])


@admin.register(OrganisationToken)
class OrganisationTokenAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Tokens by hint; the token itself is never shown (an ``EncryptedTextField`` is not
    editable, so no admin form includes it)."""

    list_display = ("organisation", "user", "key_hint", "updated_at")
    list_select_related = ("organisation", "user")
    list_filter = ("organisation",)
