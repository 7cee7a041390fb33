"""Settings › Providers: connect, edit, test and disconnect LLM providers; OAuth sign-ins;
preferences; the legacy-key banner.

Every view works on ``request.user``'s own rows (anyone else's answers 404). Full pages
work without JavaScript; htmx requests get the fragment (``providers/_*.html``) and, when
a form is done, an ``HX-Redirect``. Keys are only ever in POST bodies: never in a URL,
a page or a message.
"""

from __future__ import annotations

from providers.views.connections import (
    provider_add,
    provider_api_key,
    provider_custom,
    provider_disconnect,
    provider_list,
    provider_methods,
    provider_test,
)
from providers.views.endpoints import provider_custom_rescan
from providers.views.oauth import oauth_cancel, oauth_code, oauth_flow, provider_oauth
from providers.views.user_settings import legacy_migrate, preferences

__all__ = [
    "legacy_migrate",
    "oauth_cancel",
    "oauth_code",
    "oauth_flow",
    "preferences",
    "provider_add",
    "provider_api_key",
    "provider_custom",
    "provider_custom_rescan",
    "provider_disconnect",
    "provider_list",
    "provider_methods",
    "provider_oauth",
    "provider_test",
]
