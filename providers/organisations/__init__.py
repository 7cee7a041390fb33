"""Organisations: OpenCode's well-known sign-in (``opencode auth login <url>``), as
OpenCode does it (docs/providers.md, "Organisations").

Staff register an organisation's URL; doce fetches its ``/.well-known/opencode``
document (``fetch.py``, ``document.py``) and shows what it declares. A user pastes the
token the document's ``auth.command`` prints on their own machine (doce never runs it);
it is stored encrypted (``models.OrganisationToken``). A project on one of the
organisation's providers gets, instead of a provider credential, OpenCode's own
``wellknown`` entry under the URL (``credentials.py``), after doce fetched the document
itself: an unreachable document is a clear project error, never OpenCode's instance 500.

This package sits below ``providers.selectors`` (which lists its providers among the
usable ones): it imports ``providers.models`` and ``providers.validation`` only, never
the services, selectors or views of ``providers``.
"""
