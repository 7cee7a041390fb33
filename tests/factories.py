import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

DEFAULT_PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.test")
    password = factory.django.Password(DEFAULT_PASSWORD)


class ProviderConnectionFactory(factory.django.DjangoModelFactory):
    """An API-key connection; secrets are random so a test can grep for them."""

    class Meta:
        model = "providers.ProviderConnection"

    user = factory.SubFactory(UserFactory)
    provider_id = "anthropic"
    auth_type = "api"
    api_key = factory.LazyFunction(lambda: f"sk-ant-api03-{_random_secret()}")
    key_hint = factory.LazyAttribute(lambda c: _hint(c.api_key))


class UserSettingsFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "providers.UserSettings"
        django_get_or_create = ("user",)

    user = factory.SubFactory(UserFactory)


def _random_secret() -> str:
    import secrets

    return secrets.token_urlsafe(32)


def _hint(key):
    from providers.models import key_hint

    return key_hint(key)


class UsageFactory(factory.django.DjangoModelFactory):
    """One reply's usage (projects.models.Usage), priced, made now."""

    class Meta:
        model = "projects.Usage"

    user = factory.SubFactory(UserFactory)
    project = None
    project_name = factory.LazyAttribute(lambda u: u.project.name if u.project else "A site")
    message_id = factory.Sequence(lambda n: f"msg_{n:08d}")
    provider_id = "anthropic"
    model_id = "claude-sonnet-4"
    input_tokens = 100
    output_tokens = 50
    cost = 0
    created_at = factory.LazyFunction(timezone.now)
