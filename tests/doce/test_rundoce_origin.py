"""`rundoce` warns when DOCE_PREVIEW_ORIGIN names this machine on a port the preview
does not run on (every preview link would answer 404 or reach something else)."""

from __future__ import annotations

import pytest

from doce.management.commands.rundoce import preview_origin_mismatch


@pytest.mark.parametrize(
    "origin",
    [
        "http://{token}.localhost:8001",
        "http://localhost:8001",
        "http://127.0.0.1:8001",
    ],
)
def test_a_local_origin_on_another_port_is_named(origin):
    warning = preview_origin_mismatch(origin, 8003)
    assert "port 8001" in warning and "port 8003" in warning
    assert "DOCE_PREVIEW_PORT=8001" in warning


@pytest.mark.parametrize(
    "origin",
    [
        "",  # the preview port of the page's host: always right
        "http://{token}.localhost:8003",  # the port it runs on
        "https://{token}.preview.example.com",  # a reverse proxy's
        "https://preview.example.com:8443",  # another host: a proxy's too
        "http://[::1]:8001",  # not recognised: no warning rather than a wrong one
    ],
)
def test_origins_that_reach_the_preview_or_a_proxy_are_not_named(origin):
    assert preview_origin_mismatch(origin, 8003) == ""
