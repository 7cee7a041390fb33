"""A starting worker asks for the catalog once (the task itself skips a fresh one)."""

from providers import tasks


def test_a_starting_worker_refreshes_a_missing_catalog(settings, monkeypatch):
    calls = []
    monkeypatch.setattr(tasks.refresh_catalog, "delay", lambda: calls.append("refresh"))
    settings.DOCE_PROVIDER_CATALOG_REFRESH_ON_START = True
    tasks._refresh_catalog_on_start()
    settings.DOCE_PROVIDER_CATALOG_REFRESH_ON_START = False
    tasks._refresh_catalog_on_start()
    assert calls == ["refresh"]
