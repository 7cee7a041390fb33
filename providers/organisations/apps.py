from django.apps import AppConfig


class OrganisationsConfig(AppConfig):
    name = "providers.organisations"
    label = "organisations"
    verbose_name = "Organisations (well-known sign-in)"
