"""Container health check for the preview service (projects.preview_asgi on port 8001).

It asks for the site of a preview token that no project has (well formed, so the server
looks it up in the database): a healthy preview server answers 404 "Not found", one
that cannot reach the database answers 500, and a dead one nothing. Any answer below 500
passes. With one origin per project (DOCE_PREVIEW_ORIGIN names {token}) the token goes
into the Host header, as the reverse proxy passes it; otherwise into the path.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit

URL = "http://127.0.0.1:8001"  # uvicorn binds 0.0.0.0:8001 in the container
TIMEOUT_SECONDS = 10
# 32 characters of a-z2-7, like projects.models.new_preview_token (never made: a real
# token is 160 random bits).
PROBE_TOKEN = "healthcheck" + "a" * 21


def probe_request(origin: str) -> urllib.request.Request:
    origin = origin.strip().rstrip("/").lower()
    if "{token}" in origin:
        host = urlsplit(origin.replace("{token}", PROBE_TOKEN)).netloc
        return urllib.request.Request(f"{URL}/", headers={"Host": host})  # noqa: S310 (http URL)
    return urllib.request.Request(f"{URL}/{PROBE_TOKEN}/")  # noqa: S310 (http URL)


def main() -> int:
    request = probe_request(os.environ.get("DOCE_PREVIEW_ORIGIN", ""))
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        print(f"preview unreachable: {exc}")
        return 1
    print(status)
    return 0 if status < 500 else 1


if __name__ == "__main__":
    sys.exit(main())
